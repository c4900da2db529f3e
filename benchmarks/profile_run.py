#!/usr/bin/env python3
"""Where strata's time goes in the run-engine benchmark (benchmarks/bench_run.py), beyond terraform's own.

    .venv/bin/python benchmarks/profile_run.py output [--repeat 20]    strata output: start-up, imports, loading
    .venv/bin/python benchmarks/profile_run.py plan [--repeat 10]      strata plan: fixed cost and per-stack cost
    .venv/bin/python benchmarks/profile_run.py plan --cprofile 25      ... and strata's main thread under cProfile

Both work on the repository bench_run.py applied (``benchmarks/.work/run/tf-<version>/strata``; run
bench_run.py first, or pass ``--repo``), with the same environment as bench_run.py. Commands are timed
as subprocesses in rounds (each once per round, after an untimed round); medians are shown.

``output`` splits ``strata output STACK --json`` into the interpreter's start-up, importing the CLI,
importing the command, loading the repository and reading the state, each as a ``python -c`` that
stops after that step (so each row includes the ones above it).

``plan`` compares ``strata plan -j1 STACK`` on one initialised stack with ``terraform plan`` alone in
that stack (same flags and inputs, the init already done: what strata itself runs), and reports
strata's fixed cost (wall time minus the stack's own duration in the JSON report) and its per-stack
cost (the stack's duration minus terraform plan's).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_discovery  # noqa: E402
import bench_run  # noqa: E402

STEPS = {
    "python -c pass": "pass",
    "+ import strata.main (the CLI)": "import strata.main",
    "+ import strata.commands.output": "import strata.main, strata.commands.output",
    "+ load the repository": ("import strata.main, strata.commands.output\n"
                              "from pathlib import Path\nfrom strata.workspace import Workspace\n"
                              "Workspace(cwd=Path.cwd()).repository()"),
    "+ select and read the state (all but printing)": (
        "import strata.main, strata.commands.output\nfrom pathlib import Path\n"
        "from strata.workspace import Workspace\nfrom strata.run.outputs import OutputReader\n"
        "repo = Workspace(cwd=Path.cwd()).repository()\nrepo.require_valid()\n"
        "OutputReader(repo.root).outputs(repo.stacks[{stack!r}])"),
}


def default_repo() -> Path:
    found = sorted(bench_run.DEFAULT_WORK.glob("tf-1.11*/strata")) or sorted(bench_run.DEFAULT_WORK.glob("tf-*/strata"))
    if not found:
        raise SystemExit("no benchmark repository: run benchmarks/bench_run.py first, or pass --repo")
    return found[-1]


def rc_of(repo: Path) -> Path:
    return repo.parent.parent / "mirror.rc"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


def rounds(cases: dict[str, list[str]], repeat: int, cwd: Path, env: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {label: [] for label in cases}
    for round_ in range(repeat + 1):
        for label, argv in cases.items():
            elapsed = timed(argv, cwd, env)
            if round_:
                times[label].append(elapsed)
    return times


def profile_output(repo: Path, binary: str, repeat: int) -> None:
    env = bench_run.strata_env(binary, rc_of(repo))
    stack = next(p.parent.relative_to(repo).as_posix() for p in sorted(repo.glob("*/*/02-platform/main.tf")))
    cases = {label: [sys.executable, "-c", code.format(stack=stack)] for label, code in STEPS.items()}
    cases["strata output STACK --json (the whole command)"] = [*bench_discovery.strata_command(), "output", stack,
                                                                "--json"]
    times = rounds(cases, repeat, repo, env)
    print(f"strata output {stack} --json, {repeat} runs each (median, ms; each row includes the ones above):")
    previous = 0.0
    for label, values in times.items():
        med = statistics.median(values) * 1000
        print(f"  {label:<50} {med:7.1f}   (+{med - previous:5.1f})")
        previous = med


def profile_plan(repo: Path, binary: str, repeat: int, cprofile: int) -> None:
    env = bench_run.strata_env(binary, rc_of(repo))
    stack = next(p.parent.relative_to(repo).as_posix() for p in sorted(repo.glob("*/*/03-databases/main.tf")))
    vars_file = repo.parent / "loop-vars" / (stack.replace("/", "__") + ".tfvars.json")
    report = repo.parent / "profile-plan.json"
    strata_argv = [*bench_discovery.strata_command(), "plan", "-j1", "--json", str(report), stack]
    subprocess.run(strata_argv, cwd=repo, env=env, capture_output=True, check=False)  # initialised, stamped
    tf_env = bench_run.terraform_env(repo / ".strata" / "terraform.rc")
    plan = [binary, "plan", "-no-color", "-input=false", "-detailed-exitcode", "-lock-timeout=0s",
            f"-var-file={vars_file}"]
    samples: dict[str, list[float]] = {"strata": [], "in stack": [], "terraform": []}
    for round_ in range(repeat + 1):
        strata_time = timed(strata_argv, repo, env)
        in_stack = json.loads(report.read_text())["stacks"][0]["duration"]
        tf_time = timed(plan, repo / stack, tf_env)
        if round_:
            samples["strata"].append(strata_time)
            samples["in stack"].append(in_stack)
            samples["terraform"].append(tf_time)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    print(f"one initialised stack ({stack}), {repeat} runs each (median, ms):")
    print(f"  strata plan -j1 STACK (wall)                    {med['strata']:7.1f}")
    print(f"  ... the stack's duration in strata's report     {med['in stack']:7.1f}")
    print(f"  terraform plan alone in that stack              {med['terraform']:7.1f}")
    print(f"  strata's fixed cost (wall - stack)              {med['strata'] - med['in stack']:7.1f}")
    print(f"  strata's per-stack cost (stack - terraform)     {med['in stack'] - med['terraform']:7.1f}")
    if cprofile:
        profile_main_thread(repo, env, cprofile)


def profile_main_thread(repo: Path, env: dict[str, str], top: int) -> None:
    """cProfile of a whole `strata plan -j1` in this process (main thread only: start-up, validation, waiting)."""
    old_env = dict(os.environ)
    old_cwd = Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(repo)
    from strata.main import main

    profiler = cProfile.Profile()
    try:
        profiler.enable()
        with contextlib.suppress(SystemExit), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            main(["plan", "-q", "-j1"])
        profiler.disable()
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(top)
    print(stream.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("output", "plan"))
    parser.add_argument("--repo", type=Path, help="default: the 1.11 repository of bench_run.py")
    parser.add_argument("--terraform", help="default: the one the repository was benchmarked with")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--cprofile", type=int, default=0, help="plan: also show the top N functions under cProfile")
    args = parser.parse_args(argv)
    repo = (args.repo or default_repo()).resolve()
    binary = args.terraform
    if binary is None:
        version = repo.parent.name.removeprefix("tf-")
        binary = next(b for b in bench_run.terraform_binaries(None) if bench_run.terraform_version(b) == version)
    if args.what == "output":
        profile_output(repo, binary, args.repeat)
    else:
        profile_plan(repo, binary, args.repeat, args.cprofile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
