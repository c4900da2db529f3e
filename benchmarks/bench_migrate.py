#!/usr/bin/env python3
"""Migration benchmark: split a 10,000-resource monolith state into 20 stacks, against `terraform state mv`.

The monolith is generated (no terraform apply of 10,000 resources): a valid format-4 state as Terraform
1.11 writes it, 10,000 ``null_resource`` resources in 20 modules (``module.mNN``, 450 each plus 50 in a
nested ``module.mNN.module.inner``), each with an id, triggers, the null provider's ``private`` and
``dependencies`` on the module's first resource. ``terraform state list`` reads it back before anything
is timed. The migration has 20 rules (literal module prefixes with a rename that drops the module,
globs and regular expressions), one per target stack.

Cases, verification plans excluded everywhere (the issue's goal: surgery and writes <= 5 s):

1. **strata, surgery + writes**: what ``strata migrate apply`` does before verifying, on 21 real
   ``LocalStore`` states (src/strata/backends/local.py): take the 21 locks (Terraform's fcntl lock and
   lock info file), read each state and back it up (fsynced), parse the monolith, ``split()``, serialise
   the 21 new states (lineage kept, serial + 1), keep each planned copy (fsynced, as the journal does),
   write each through the store, read it back and compare, release the locks.
2. **strata state mv, the real code path** (when the repository's runner is present): the same moves
   through ``strata.migrate.runner.move_only`` on a generated repository of 21 stacks: repository
   loading excluded, journal, backups and writes included.
3. **Baseline: terraform state mv per resource**: ``terraform state mv -state=SRC -state-out=DST ADDR
   ADDR``, once per resource, as a script over hundreds of moves runs it (Terraform locks both files,
   rewrites the whole source state and keeps a backup of it on every call). Two samples:
   a 500-resource subset (the first 25 resources of each module, as a state of its own) moved entirely,
   25 per target; and 40 calls (2 per target) out of the full 10,000-resource monolith, since each call's
   cost grows with the size of the state it rewrites. Reported: per-resource cost, the 10,000-resource time
   extrapolated two ways (a lower bound: 10,000 x the subset's per-call cost; and a model in which each
   call costs a + b x the source's size, fitted to both samples, summed as the source shrinks from 10,000
   to 1), and the ratios to case 1.

Case 1 and 2 run ``--repeat`` times after an untimed round (median and min); the baseline runs once
(it is long), after an untimed ``terraform state list`` that warms the file cache.

    .venv/bin/python benchmarks/bench_migrate.py [--repeat 5] [--subset 500] [--full-calls 40] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from strata.backends.base import LockInfo  # noqa: E402
from strata.backends.local import LocalStore  # noqa: E402
from strata.errors import Source  # noqa: E402
from strata.migrate.spec import Rule  # noqa: E402
from strata.migrate.surgery import split  # noqa: E402
from strata.state.document import StateDocument  # noqa: E402

WORK = HERE / ".work" / "migrate"
MODULES = 20
PER_MODULE = 500
INNER = 50  # of each module's resources, in module.mNN.module.inner
GOAL_SECONDS = 5.0
NULL = 'provider["registry.terraform.io/hashicorp/null"]'


# -- the monolith -------------------------------------------------------------------------------------------


def fake_id(seed: str) -> str:
    return str(int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16))


def monolith() -> dict[str, Any]:
    """10,000 resources in 20 modules, laid out as Terraform 1.11 writes them (resources sorted)."""
    resources = []
    for m in range(MODULES):
        module = f"module.m{m:02d}"
        first = f"{module}.null_resource.r000"
        for i in range(PER_MODULE):
            inner = i >= PER_MODULE - INNER
            address_module = f"{module}.module.inner" if inner else module
            name = f"r{i:03d}"
            instance: dict[str, Any] = {
                "schema_version": 0,
                "attributes": {
                    "id": fake_id(f"{address_module}.{name}"),
                    "triggers": {"environment": "production", "region": "us-east-1", "component": f"m{m:02d}",
                                 "index": str(i), "cidr": f"10.{m}.{i // 256}.{i % 256}/32"},
                },
                "sensitive_attributes": [],
                "private": "bnVsbA==",
            }
            if i:
                instance["dependencies"] = [first]
            resources.append({"module": address_module, "mode": "managed", "type": "null_resource", "name": name,
                              "provider": NULL, "instances": [instance]})
    resources.sort(key=lambda r: (r["module"], r["name"]))
    return {"version": 4, "terraform_version": "1.11.4", "serial": 42, "lineage": str(uuid.UUID(int=7)),
            "outputs": {"vpc_id": {"value": "vpc-0123", "type": "string"}}, "resources": resources,
            "check_results": None}


def rules() -> list[Rule]:
    """20 move rules, one per target stack: literal module prefixes (with a rename), globs, regexes."""
    out = []
    for m in range(MODULES):
        module = f"module.m{m:02d}"
        target = f"stacks/s{m:02d}"
        where = Source("migrations/split.hcl", 1 + m * 5)
        if m % 3 == 0:
            out.append(Rule(f"r{m:02d}", "move", (module,), (), target, ((module, ""),), where))
        elif m % 3 == 1:
            out.append(Rule(f"r{m:02d}", "move", (f"{module}.*",), (), target, (), where))
        else:
            out.append(Rule(f"r{m:02d}", "move", (), (rf"^module\.m{m:02d}\.",), target, (), where))
    return out


def migration_hcl() -> str:
    """The same rules as a migration file (for the real code path, case 2)."""
    blocks = ['source {\n  stack = "legacy/monolith"\n}\n']
    for rule in rules():
        lines = [f'move "{rule.name}" {{']
        if rule.patterns:
            lines.append("  resources = [" + ", ".join(json.dumps(p) for p in rule.patterns) + "]")
        if rule.regexes:
            lines.append("  regex     = [" + ", ".join(json.dumps(r) for r in rule.regexes) + "]")
        lines.append(f'  to        = "{rule.target}"')
        if rule.rename:
            lines.append("  rename    = { " + ", ".join(f"{json.dumps(a)} = {json.dumps(b)}"
                                                       for a, b in rule.rename) + " }")
        blocks.append("\n".join(lines) + "\n}\n")
    return "\n".join(blocks)


def state_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def terraform_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update({"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
    return env


def terraform_version(binary: str) -> str:
    proc = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, check=True,
                          env=terraform_env())
    return str(json.loads(proc.stdout)["terraform_version"])


def check_with_terraform(binary: str, path: Path, expected: int) -> None:
    """terraform itself must read the generated state (and count every resource)."""
    empty = WORK / "empty"
    empty.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([binary, "state", "list", f"-state={path}"], cwd=empty, capture_output=True, text=True,
                          check=False, env=terraform_env())
    listed = proc.stdout.split()
    if proc.returncode != 0 or len(listed) != expected:
        raise SystemExit(f"terraform does not read the generated state ({len(listed)} of {expected} listed):\n"
                         f"{proc.stderr[-2000:]}")


# -- case 1: surgery + writes through LocalStore ------------------------------------------------------------


def fsynced(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def reset_local(base: Path, source_raw: bytes) -> Path:
    shutil.rmtree(base, ignore_errors=True)
    (base / "legacy").mkdir(parents=True)
    (base / "legacy" / "terraform.tfstate").write_bytes(source_raw)
    return base


def strata_surgery_and_writes(base: Path, the_rules: list[Rule]) -> dict[str, float]:
    """One migration's work before verification; returns the time of each phase (seconds)."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    names = ["legacy", *(r.target for r in the_rules if r.target)]
    stores = {name: LocalStore(base / name / "terraform.tfstate", base) for name in names}
    info = LockInfo.new("strata-migrate")
    locked: list[LocalStore] = []
    try:
        for store in stores.values():
            store.lock(info)
            locked.append(store)
        before = {name: store.read() for name, store in stores.items()}
        for name, raw in before.items():
            if raw is not None:
                fsynced(base / ".backups" / f"{name.replace('/', '__')}.tfstate", raw)
        t1 = time.perf_counter()
        docs = {name: StateDocument.parse(raw) for name, raw in before.items() if raw is not None}
        source = docs["legacy"].data
        t2 = time.perf_counter()
        result = split(source, {n: docs[n].data if n in docs else None for n in names[1:]}, the_rules)
        if not result.ok() or len(result.moves) != MODULES * PER_MODULE:
            raise SystemExit(f"split failed: {result.unmatched[:3]} {result.collisions[:3]}")
        t3 = time.perf_counter()
        planned: dict[str, bytes] = {}
        for name in names:
            data = result.source if name == "legacy" else result.targets[name]
            old = docs.get(name)
            serial = old.serial + 1 if old else 1
            lineage = old.lineage if old and old.lineage else str(uuid.uuid4())
            planned[name] = StateDocument(b"", data).with_identity(serial, lineage)
        t4 = time.perf_counter()
        for name, data in planned.items():
            fsynced(base / ".planned" / f"{name.replace('/', '__')}.tfstate", data)
        for name in [*names[1:], "legacy"]:  # targets first, the source last
            stores[name].write(planned[name])
            if stores[name].read() != planned[name]:
                raise SystemExit(f"{name}: read back differs")
    finally:
        for store in locked:
            store.unlock(info)
    t5 = time.perf_counter()
    phases.update({"locks, read, backups": t1 - t0, "parse": t2 - t1, "split()": t3 - t2, "serialise": t4 - t3,
                   "journal copies, writes, read back, unlock": t5 - t4, "total": t5 - t0})
    return phases


# -- case 2: the real runner -----------------------------------------------------------------------------------


def prepare_repository(base: Path, source_raw: bytes) -> Path:
    shutil.rmtree(base, ignore_errors=True)
    files = {"strata.hcl": "strata {}\n",
             "legacy/monolith/strata.hcl": 'stack {}\nbackend "local" {\n  path = "terraform.tfstate"\n}\n',
             "migrations/split.hcl": migration_hcl()}
    for m in range(MODULES):
        files[f"stacks/s{m:02d}/strata.hcl"] = 'stack {}\nbackend "local" {\n  path = "terraform.tfstate"\n}\n'
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text, encoding="utf-8")
    (base / "legacy" / "monolith" / "terraform.tfstate").write_bytes(source_raw)
    return base


def runner_move_only(base: Path) -> float:
    from strata.migrate import runner
    from strata.migrate.spec import load_migration
    from strata.model.loader import load

    repo = load(base, cwd=base, use_cache=False)
    if repo.diagnostics:
        raise RuntimeError(f"the generated repository has problems: {repo.diagnostics[:3]}")
    migration = load_migration(base / "migrations" / "split.hcl", "migrations/split.hcl")
    start = time.perf_counter()
    result = runner.move_only(repo, migration, lambda message: None)
    elapsed = time.perf_counter() - start
    if not result.ok or result.surgery is None or len(result.surgery.moves) != MODULES * PER_MODULE:
        raise RuntimeError(f"move_only did not move everything: {result.message}")
    return elapsed


# -- case 3: terraform state mv per resource --------------------------------------------------------------------


def subset_state(data: dict[str, Any], per_module: int) -> dict[str, Any]:
    """The first ``per_module`` resources of each module, as a state of their own."""
    keep = {f"r{i:03d}" for i in range(per_module)}
    out = dict(data)
    out["resources"] = [r for r in data["resources"] if r["name"] in keep and "inner" not in r["module"]]
    return out


def terraform_state_mv(binary: str, base: Path, source_raw: bytes, per_target: int) -> list[float]:
    """``terraform state mv`` once per resource: the first ``per_target`` resources of each module move to
    the module's target state file. Returns the wall time of every call. Terraform's backup files are
    removed after each call (untimed) so that 10,000-resource runs do not fill the disk."""
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    src = base / "monolith.tfstate"
    src.write_bytes(source_raw)
    env = terraform_env()
    subprocess.run([binary, "state", "list", f"-state={src}"], cwd=base, env=env, capture_output=True, check=True)
    times: list[float] = []
    for m in range(MODULES):
        dst = base / f"s{m:02d}.tfstate"
        for i in range(per_target):
            old = f"module.m{m:02d}.null_resource.r{i:03d}"
            new = f"null_resource.r{i:03d}" if m % 3 == 0 else old
            start = time.perf_counter()
            proc = subprocess.run([binary, "state", "mv", f"-state={src}", f"-state-out={dst}", old, new],
                                  cwd=base, env=env, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(f"terraform state mv {old} failed:\n{proc.stderr[-2000:]}")
            for backup in base.glob("*.backup"):
                backup.unlink()
    moved = sum(len(json.loads((base / f"s{m:02d}.tfstate").read_text())["resources"]) for m in range(MODULES))
    if moved != len(times):
        raise SystemExit(f"terraform moved {moved} resources, expected {len(times)}")
    return times


def extrapolate(small_n: int, small_mean: float, big_n: int, big_mean: float, total: int) -> float:
    """Seconds for ``total`` single-resource moves out of a ``total``-resource state, one call each.

    Every call reads and rewrites the whole source state, so a call costs about ``a + b * size``; the two
    samples fix a and b (``small_n``: the mean source size during the subset run, ``big_n``: the size of
    the full monolith). The source shrinks by one resource per call: the sum over sizes total..1.
    """
    b = max((big_mean - small_mean) / (big_n - small_n), 0.0)
    a = small_mean - b * small_n
    return total * a + b * total * (total + 1) / 2


# -- report ------------------------------------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--subset", type=int, default=500, help="resources moved by the terraform baseline")
    parser.add_argument("--full-calls", type=int, default=40,
                        help="terraform state mv calls timed out of the full 10,000-resource monolith")
    parser.add_argument("--terraform", default=shutil.which("terraform") or "terraform")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    binary = args.terraform
    version = terraform_version(binary)
    WORK.mkdir(parents=True, exist_ok=True)

    data = monolith()
    source_raw = state_bytes(data)
    (WORK / "monolith.tfstate").write_bytes(source_raw)
    check_with_terraform(binary, WORK / "monolith.tfstate", MODULES * PER_MODULE)
    the_rules = rules()
    print(f"monolith: {MODULES * PER_MODULE} resources, {len(source_raw) / 1e6:.1f} MB; terraform {version}",
          flush=True)

    # case 1 (one untimed round first)
    strata_surgery_and_writes(reset_local(WORK / "local", source_raw), the_rules)
    runs = []
    for _ in range(args.repeat):
        runs.append(strata_surgery_and_writes(reset_local(WORK / "local", source_raw), the_rules))
    totals = [r["total"] for r in runs]
    median_phase = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"strata surgery + writes: median {fmt(statistics.median(totals))}, min {fmt(min(totals))}", flush=True)

    # case 2
    real: list[float] = []
    real_note = ""
    try:
        for _ in range(args.repeat + 1):
            real.append(runner_move_only(prepare_repository(WORK / "repo", source_raw)))
        real = real[1:]
        print(f"strata.migrate.runner.move_only: median {fmt(statistics.median(real))}", flush=True)
    except Exception as exc:  # the runner is optional for this benchmark: report why it was skipped
        real_note = f"skipped: {type(exc).__name__}: {exc}"
        real = []
        print(f"runner.move_only {real_note}", flush=True)

    # case 3: the subset as a state of its own, every resource moved; then calls out of the full monolith
    per_target = max(args.subset // MODULES, 1)
    subset = subset_state(data, per_target)
    small = terraform_state_mv(binary, WORK / "terraform-subset", state_bytes(subset), per_target)
    print(f"terraform state mv, {len(small)}-resource state: {fmt(sum(small))}, {fmt(statistics.mean(small))} "
          "per call", flush=True)
    big = terraform_state_mv(binary, WORK / "terraform-full", source_raw, args.full_calls // MODULES)
    print(f"terraform state mv, out of the {MODULES * PER_MODULE}-resource state: {len(big)} calls, "
          f"{fmt(statistics.mean(big))} per call", flush=True)
    total = MODULES * PER_MODULE
    small_mean, big_mean = statistics.mean(small), statistics.mean(big)
    modelled = extrapolate(len(small) // 2, small_mean, total, big_mean, total)
    lower = small_mean * total
    strata_median = statistics.median(totals)

    cpus = os.cpu_count() or 1
    when = datetime.date.today().isoformat()
    lines = [
        f"{when}, {platform.machine()}, {cpus} CPUs, Python {platform.python_version()}, Terraform {version}; "
        f"monolith {MODULES * PER_MODULE:,} resources in {MODULES} modules ({len(source_raw) / 1e6:.1f} MB), "
        f"{len(the_rules)} rules, {MODULES} target stacks + the source; {args.repeat} timed run(s) of each strata case",
        "",
        "| case | median | min | per resource | vs strata |",
        "|---|---|---|---|---|",
        f"| strata: surgery + writes, 21 LocalStore states (locks, backups, journal copies) | "
        f"{fmt(strata_median)} | {fmt(min(totals))} | {strata_median / (MODULES * PER_MODULE) * 1e6:.0f} µs | "
        "1x |",
    ]
    if real:
        lines.append(f"| strata: `runner.move_only` (the `strata state mv` code path, journal included) | "
                     f"{fmt(statistics.median(real))} | {fmt(min(real))} | "
                     f"{statistics.median(real) / (MODULES * PER_MODULE) * 1e6:.0f} µs | "
                     f"{statistics.median(real) / strata_median:.1f}x slower |")
    lines += [
        f"| terraform state mv per resource: all {len(small)} resources of a {len(small)}-resource state "
        f"(measured) | {fmt(sum(small))} | | {fmt(small_mean)} (median {fmt(statistics.median(small))}) | "
        f"{sum(small) / strata_median:,.0f}x slower for 1/{total // len(small)} of the work |",
        f"| terraform state mv per resource: {len(big)} resources out of the {total:,}-resource monolith "
        f"(measured) | {fmt(sum(big))} | | {fmt(big_mean)} (median {fmt(statistics.median(big))}) | |",
        f"| terraform state mv, {total:,} resources, extrapolated: lower bound ({total:,} x the subset's "
        f"per-call cost) | {lower / 60:.1f} min | | | **{lower / strata_median:,.0f}x slower** |",
        f"| terraform state mv, {total:,} resources, extrapolated: per-call cost growing with the state "
        f"(a + b x size, fitted to both samples) | {modelled / 60:.1f} min | | | "
        f"**{modelled / strata_median:,.0f}x slower** |",
        "",
        "Phases of the strata case (median): " + ", ".join(f"{k} {fmt(v)}" for k, v in median_phase.items()
                                                          if k != "total") + ".",
        f"Goal: surgery + writes <= {GOAL_SECONDS:.0f} s: **{'met' if strata_median <= GOAL_SECONDS else 'MISSED'}** "
        f"({fmt(strata_median)}).",
    ]
    if real_note:
        lines.append(f"`runner.move_only`: {real_note}")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.markdown:
        args.markdown.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
