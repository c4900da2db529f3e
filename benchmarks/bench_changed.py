#!/usr/bin/env python3
"""Change detection benchmark: `strata ls --changed` on the 1,200-stack repository, one module used by 50.

The seed-004-shaped repository of bench_discovery.py (1,200 stacks) is copied into a git repository;
a local module ``modules/logging`` is added and used by 50 service stacks, committed on ``main``; then
the module's ``main.tf`` is edited (unstaged). Timed, warm (parse cache filled by an untimed run), each
against baselines measured in the same run:

- ``strata ls --changed --base main`` (goal: <= 1 s warm) and ``--explain``;
- baselines: ``strata ls`` (the whole repository, no change detection) and ``git status --porcelain``.

    .venv/bin/python benchmarks/bench_changed.py [--repeat 5] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_discovery  # noqa: E402  (sibling scripts, not a package)
import generate_repo  # noqa: E402

WORK = HERE / ".work" / "changed"
GOAL = 1.0
USERS = 50


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    proc = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True)
    return proc.stdout


def prepare(scale: generate_repo.Scale) -> tuple[Path, list[str]]:
    source = bench_discovery.DEFAULT_REPO
    bench_discovery.ensure_repo(source, scale, regenerate=False)
    repo = WORK / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns(".strata"))
    module = repo / "modules" / "logging"
    module.mkdir(parents=True)
    (module / "main.tf").write_text('variable "name" {\n  type = string\n}\n')
    services = sorted(p.parent for p in repo.glob("*/*/03-applications/service-*/main.tf"))[:USERS]
    users = []
    for folder in services:
        rel = os.path.relpath(module, folder)
        with (folder / "main.tf").open("a") as handle:
            handle.write(f'\nmodule "logging" {{\n  source = "{rel}"\n  name   = var.service_name\n}}\n')
        users.append(folder.relative_to(repo).as_posix())
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (module / "main.tf").write_text('variable "name" {\n  type = string\n}\n\noutput "name" {\n  value = var.name\n}\n')
    return repo, users


def timed(argv: list[str], env: dict[str, str], cwd: Path, repeat: int) -> list[float]:
    bench_discovery.run_once(argv, env, cwd)  # untimed: fills the parse cache
    return [bench_discovery.run_once(argv, env, cwd) for _ in range(repeat)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    scale = generate_repo.Scale()
    repo, users = prepare(scale)
    cli = bench_discovery.strata_command()
    env = bench_discovery.run_env(None, bytecode=True)
    found = json.loads(subprocess.run([*cli, "ls", "--changed", "--base", "main", "--json"], cwd=repo, env=env,
                                      capture_output=True, text=True, check=True).stdout)
    affected = {s["path"] for s in found["stacks"]}
    if not set(users) <= affected:
        raise SystemExit(f"change detection missed {sorted(set(users) - affected)[:3]}")
    cases = {
        "strata ls --changed --base main": [*cli, "ls", "--changed", "--base", "main"],
        "strata ls --changed --base main --explain": [*cli, "ls", "--changed", "--base", "main", "--explain"],
        "baseline: strata ls (every stack)": [*cli, "ls"],
        "baseline: git status --porcelain": ["git", "status", "--porcelain"],
    }
    times = {name: timed(argv, env, repo, args.repeat) for name, argv in cases.items()}
    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["baseline: strata ls (every stack)"]
    lines = [f"{scale.stacks} stacks, {len(affected)} affected ({USERS} use the changed module, the rest depend on "
             f"them), {args.repeat} warm runs, {os.cpu_count()} CPUs", "",
             "| case | median | min | vs `strata ls` | goal |", "|---|---|---|---|---|"]
    for name, values in times.items():
        goal = f"≤ {GOAL:.1f} s: {'met' if med[name] <= GOAL else 'missed'}" if name.startswith("strata ls --changed") \
            else ""
        lines.append(f"| {name} | {med[name]:.3f} s | {min(values):.3f} s | {med[name] / base:.2f}x | {goal} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
