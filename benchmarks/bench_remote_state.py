#!/usr/bin/env python3
"""Remote-state benchmark: strata reading S3 states itself against terraform doing it, on moto.

A moto server (S3, DynamoDB, KMS, STS) is started on 127.0.0.1; the bundled example is copied with an
s3 backend block pointed at it, ``strata bootstrap`` creates the production/us-east-1 backend and
``strata apply`` applies its 6 stacks. Then, each case against its baseline measured in the same run:

1. One dependency's outputs (what every dependent stack needs before it can plan):
   ``OutputReader(root).outputs(stack)`` (in-process, a new reader each call; a GetObject) and
   ``strata output STACK --json`` (the CLI) against ``terraform init && terraform output -json`` in a
   copy of the stack without ``.terraform`` (what Terragrunt's ``dependency`` block runs).
2. Listing the 6 states (serial, lineage, resources, lock): ``strata state ls --json`` against a loop
   of ``terraform state pull`` over the same, already initialised, stacks (a GetObject and a digest
   check each).

Timed runs go in rounds (one untimed round first); the tables give the median and minimum wall time.

    .venv/bin/python benchmarks/bench_remote_state.py [--repeat 5] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_run  # noqa: E402  (sibling script, not a package)

WORK = HERE / ".work" / "remote"
EXAMPLE = ROOT / "examples" / "layered"
STACKS = ["production/us-east-1/01-foundation", "production/us-east-1/02-platform",
          "production/us-east-1/03-databases", "production/us-east-1/04-applications",
          "production/us-east-1/clients/ezra", "production/us-east-1/clients/mtn-ghana"]
OUTPUT_STACK = "production/us-east-1/01-foundation"
IN_PROCESS_CALLS = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(100):
        try:
            with opener.open(f"{endpoint}/moto-api/", timeout=1):
                return proc, endpoint
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"moto did not start; see {log}")


def backend_block(endpoint: str) -> str:
    return f"""backend "s3" {{
  bucket         = "bench-${{strata.environment}}-${{strata.region}}"
  region         = strata.region
  encrypt        = true
  kms_key_id     = "alias/bench-${{strata.environment}}-${{strata.region}}"
  dynamodb_table = "bench-locks-${{strata.environment}}-${{strata.region}}"
  endpoints = {{ s3 = "{endpoint}", dynamodb = "{endpoint}", sts = "{endpoint}", iam = "{endpoint}" }}
  use_path_style              = true
  skip_credentials_validation = true
  skip_region_validation      = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}}"""


def prepare(endpoint: str, binary: str, rc: Path) -> tuple[Path, dict[str, str]]:
    repo = WORK / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".strata", ".terraform", "strata_backend.tf",
                                                                 "strata_inputs.auto.tfvars"))
    text = (repo / "strata.hcl").read_text()
    (repo / "strata.hcl").write_text(text.replace('backend "local" {}', backend_block(endpoint)))
    env = {**bench_run.strata_env(binary, rc), "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_ENDPOINT_URL_KMS": endpoint, "AWS_EC2_METADATA_DISABLED": "true", "STRATA_NO_LIVE": "1"}
    strata = [sys.executable, "-m", "strata"]
    bench_run.run_checked([*strata, "bootstrap", "production/us-east-1"], repo, env, "strata bootstrap")
    bench_run.run_checked([*strata, "apply", "--yes", "-q", "production/us-east-1"], repo, env, "strata apply")
    return repo, env


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("terraform") or ""
    if not binary:
        raise SystemExit("terraform is not on PATH")
    rc, _ = bench_run.write_mirrors(WORK)
    moto, endpoint = start_moto(WORK / "moto.log")
    try:
        repo, env = prepare(endpoint, binary, rc)
        tf_env = {**bench_run.terraform_env(rc), **{k: v for k, v in env.items() if k.startswith("AWS_")}}
        copy = WORK / "cold-copy"  # a copy of the repository (local modules sit at the same relative paths)
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".terraform", ".strata"))
        cold = copy / OUTPUT_STACK

        def terraform_output() -> None:  # Terragrunt's dependency read: the stack without .terraform
            shutil.rmtree(cold / ".terraform", ignore_errors=True)
            bench_run.run_checked([binary, "init", "-input=false", "-no-color"], cold, tf_env, "terraform init")
            bench_run.run_checked([binary, "output", "-json"], cold, tf_env, "terraform output")

        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        sys.path.insert(0, str(ROOT / "src"))
        from strata.run.outputs import OutputReader
        from strata.workspace import Workspace

        stack = Workspace(cwd=repo).repository().stacks[OUTPUT_STACK]

        def in_process() -> None:
            for _ in range(IN_PROCESS_CALLS):
                assert OutputReader(repo).outputs(stack)

        def strata_output() -> None:
            bench_run.run_checked([sys.executable, "-m", "strata", "output", OUTPUT_STACK, "--json"], repo, env,
                                  "strata output")

        def strata_state_ls() -> None:
            proc = bench_run.run_checked([sys.executable, "-m", "strata", "state", "ls", "--json",
                                          "production/us-east-1"], repo, env, "strata state ls")
            assert len(json.loads(proc.stdout)["stacks"]) == len(STACKS)

        def pull_loop() -> None:
            for path in STACKS:
                bench_run.run_checked([binary, "state", "pull"], repo / path, tf_env, "terraform state pull")

        cases: dict[str, Callable[[], object]] = {
            "terraform init + output -json": terraform_output, "strata output --json (CLI)": strata_output,
            f"OutputReader.outputs x{IN_PROCESS_CALLS}": in_process,
            "terraform state pull x6 (loop)": pull_loop, "strata state ls --json (6 stacks)": strata_state_ls,
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for fn in cases.values():  # untimed round
            fn()
        for _ in range(args.repeat):
            for name, fn in cases.items():
                times[name].append(timed(fn))
        times[f"OutputReader.outputs x{IN_PROCESS_CALLS}"] = [
            t / IN_PROCESS_CALLS for t in times[f"OutputReader.outputs x{IN_PROCESS_CALLS}"]]
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=15)
    med = {name: statistics.median(values) for name, values in times.items()}
    base_out, base_ls = med["terraform init + output -json"], med["terraform state pull x6 (loop)"]
    rows = [
        ("terraform init + output -json", base_out, "baseline"),
        ("strata output --json (CLI)", med["strata output --json (CLI)"],
         f"{base_out / med['strata output --json (CLI)']:.1f}x faster"),
        ("OutputReader.outputs (in-process, per call)", med[f"OutputReader.outputs x{IN_PROCESS_CALLS}"],
         f"{base_out / med[f'OutputReader.outputs x{IN_PROCESS_CALLS}']:.0f}x faster"),
        ("terraform state pull x6 (loop, initialised)", base_ls, "baseline"),
        ("strata state ls --json (6 stacks)", med["strata state ls --json (6 stacks)"],
         f"{base_ls / med['strata state ls --json (6 stacks)']:.1f}x faster"),
    ]
    lines = [f"Terraform {bench_run.terraform_version(binary)}, moto (S3 + DynamoDB + KMS) on 127.0.0.1, "
             f"{args.repeat} rounds, {os.cpu_count()} CPUs", "",
             "| case | median | min | vs baseline |", "|---|---|---|---|"]
    for name, value, ratio in rows:
        key = name if name in times else (f"OutputReader.outputs x{IN_PROCESS_CALLS}" if "OutputReader" in name
                                          else "terraform state pull x6 (loop)" if "pull" in name else name)
        lines.append(f"| {name} | {value * 1000:.1f} ms | {min(times[key]) * 1000:.1f} ms | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
