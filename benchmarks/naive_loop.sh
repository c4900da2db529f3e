#!/usr/bin/env bash
# The baseline of benchmarks/bench_run.py: what a plain shell script does without strata.
#
#   naive_loop.sh plan TERRAFORM VARS_DIR TIMES_FILE STACK...   terraform init && terraform plan, stack by stack
#   naive_loop.sh init TERRAFORM VARS_DIR TIMES_FILE STACK...   terraform init, stack by stack
#
# Run it from the repository root with the stacks in dependency order. The plan passes the stack's
# dependency outputs with -var-file=VARS_DIR/<stack with / replaced by __>.tfvars.json (the same values
# strata passes as TF_VAR_*); every other input comes from the stack's strata_inputs.auto.tfvars, which
# terraform reads by itself. The flags are the ones strata gives terraform. Per stack, one line
# "<stack> <start> <end>" (bash's $EPOCHREALTIME, no extra process) is appended to TIMES_FILE.
set -u
what=$1 tf=$2 vars=$3 times=$4
shift 4
status=0
for stack in "$@"; do
  start=$EPOCHREALTIME
  if [ "$what" = plan ]; then
    (cd "$stack" && "$tf" init -no-color -input=false &&
      "$tf" plan -no-color -input=false -lock-timeout=0s -var-file="$vars/${stack//\//__}.tfvars.json") || status=1
  else
    (cd "$stack" && "$tf" init -no-color -input=false) || status=1
  fi
  printf '%s %s %s\n' "$stack" "$start" "$EPOCHREALTIME" >>"$times"
done
exit $status
