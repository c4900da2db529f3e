"""Parse cache and parser benchmark: this strata against an older commit, in the same run.

Measures, for the working tree's ``src`` and for ``--baseline REV`` (exported with ``git archive``):
- warm ``strata ls`` and ``strata validate`` on the 1,200-stack repository of ``bench_discovery.py``
  (each with its own parse cache already written), interleaved round by round so that the load of the
  machine touches both alike;
- the parse time of a 1 MiB heredoc and of 1 MiB of blank lines (``strata.config.parse.parse_text``,
  in a subprocess of each version).

Usage::

    .venv/bin/python benchmarks/bench_discovery.py --repeat 1      # generates the repository once
    .venv/bin/python benchmarks/bench_parse_cache.py --baseline 102f8f2^ [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
DEFAULT_REPO = HERE / ".work" / "enterprise"

PARSE = """
import statistics, sys, time
from strata.config.parse import parse_text
parse_text("a = 1\\n", "warm")
heredoc = "a = <<EOT\\n" + ("x" * 63 + "\\n") * (1024 * 1024 // 64) + "EOT\\n"
blank = "\\n" * (1024 * 1024) + "a = 1\\n"
for text in (heredoc, blank):
    times = []
    for _ in range(int(sys.argv[1])):
        started = time.perf_counter()
        parse_text(text, "f.hcl")
        times.append(time.perf_counter() - started)
    print(statistics.median(times))
"""


def _env(src: Path, pycache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as after a pip install
    env["PYTHONPATH"] = str(src)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["STRATA_TERRAFORM"] = env.get("STRATA_TERRAFORM", "/usr/local/bin/terraform")
    return env


def _strata(env: dict[str, str], repo: Path, command: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "strata", "-C", str(repo), command], env=env,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"strata {command} failed (exit {proc.returncode}):\n{proc.stderr[:2000]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with, e.g. 102f8f2^")
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="the repository bench_discovery.py made")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds of warm ls and validate")
    parser.add_argument("--parse-runs", type=int, default=3, help="parses of each big file per version")
    args = parser.parse_args()
    if not (args.repo / "strata.hcl").is_file():
        raise SystemExit(f"no repository at {args.repo}: run benchmarks/bench_discovery.py once first")
    with tempfile.TemporaryDirectory(prefix="strata-bench-") as tmp:
        base_dir = Path(tmp) / "baseline"
        base_dir.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", args.baseline, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base_dir)], input=archive, check=True)
        versions = {"baseline": _env(base_dir / "src", Path(tmp) / "pyc-baseline"),
                    "this": _env(REPO_ROOT / "src", Path(tmp) / "pyc-this")}
        for env in versions.values():  # compile, then write each version's own cache
            _strata(env, args.repo, "ls")
            _strata(env, args.repo, "ls")
        times: dict[tuple[str, str], list[float]] = {(v, c): [] for v in versions for c in ("ls", "validate")}
        for round_no in range(args.rounds):
            order = list(versions) if round_no % 2 == 0 else list(reversed(versions))
            for command in ("ls", "validate"):
                for version in order:
                    times[(version, command)].append(_strata(versions[version], args.repo, command))
        print(f"warm runs on {args.repo} ({args.rounds} interleaved rounds; median, min):")
        for command in ("ls", "validate"):
            base, this = (statistics.median(times[(v, command)]) for v in versions)
            print(f"  strata {command:<8} baseline {base:.3f} s (min {min(times[('baseline', command)]):.3f})"
                  f"   this {this:.3f} s (min {min(times[('this', command)]):.3f})   ratio {this / base:.2f}")
        print(f"parse_text, median of {args.parse_runs}:")
        results = {}
        for version, env in versions.items():
            out = subprocess.run([sys.executable, "-c", PARSE, str(args.parse_runs)], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            results[version] = [float(x) for x in out]
        for i, name in enumerate(("1 MiB heredoc", "1 MiB of blank lines")):
            base, this = results["baseline"][i], results["this"][i]
            print(f"  {name:<21} baseline {base:.2f} s   this {this:.2f} s   ratio {this / base:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
