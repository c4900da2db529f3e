#!/usr/bin/env python3
"""Where the time of one strata command goes, on the benchmark repository (see bench_discovery.py).

Runs the command once in a fresh interpreter, with timers around strata's loading phases (walking
the tree, loading/saving the parse cache, parsing, decoding, evaluating stacks, validate's checks),
garbage-collector statistics, and the time spent outside ``strata.main.main`` (interpreter start-up
and shut-down). ``--cprofile N`` adds the N costliest functions. It wraps internal functions by name
and skips any that no longer exist, so it keeps working while src/ changes.

    .venv/bin/python benchmarks/profile_discovery.py ls            # warm (cache left as it is)
    .venv/bin/python benchmarks/profile_discovery.py --cold validate
    .venv/bin/python benchmarks/profile_discovery.py --cprofile 25 ls
    .venv/bin/python benchmarks/profile_discovery.py --gc-off --fast-exit ls   # what-if: two possible fixes
    .venv/bin/python benchmarks/profile_discovery.py --freeze ls               # what-if: gc.freeze() after loading
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_REPO = HERE / ".work" / "enterprise"

# (module, attribute path, label): the phases timed inside the command
PHASES = (
    ("strata.model.loader", "config_dirs", "walk the tree"),
    ("strata.config.cache", "ParseCache._load", "load the parse cache (JSON)"),
    ("strata.config.cache", "ParseCache.parse_all", "rebuild trees, parse missing files"),
    ("strata.config.cache", "ParseCache.save", "save the parse cache (JSON)"),
    ("strata.model.loader", "decode", "decode (schema checks)"),
    ("strata.config.settings", "load_settings", "settings"),
    ("strata.model.loader", "_StackBuilder.build", "evaluate the stacks"),
    ("strata.terraform.binary", "find_binary", "terraform binary and version"),
    ("strata.validate", "validate", "validate's checks"),
    ("strata.output", "print_json", "print JSON"),
    ("strata.output", "table", "format the table"),
)


def _child(argv: list[str], cprofile: int, gc_off: bool, fast_exit: bool, freeze: bool) -> None:
    """Run ``strata argv`` in this process and report the timings as JSON on stderr's last line."""
    import gc
    import importlib

    start = time.perf_counter()
    if gc_off:
        gc.disable()
    gc_time = [0.0, 0.0]
    gc_count = [0, 0, 0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            gc_count[info["generation"]] += 1
            gc_time[0] += time.perf_counter() - gc_time[1]

    gc.callbacks.append(on_gc)
    import strata.main

    spent: dict[str, float] = {}
    for module_name, attr_path, label in PHASES:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = attr_path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            original = getattr(owner, name)
        except (ImportError, AttributeError):
            continue

        def timed(*args: Any, _f: Any = original, _label: str = label, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - t

        setattr(owner, name, timed)
    # the wrapped modules are imported now rather than inside the command: count them as imports
    imported = time.perf_counter()

    if freeze:
        import strata.model.loader as loader

        original_load = loader.load

        def load_frozen(*args: Any, **kwargs: Any) -> Any:
            enabled = gc.isenabled()
            gc.disable()
            try:
                return original_load(*args, **kwargs)
            finally:
                gc.freeze()  # what was loaded lives until the end: never scan it again (nor at exit)
                if enabled:
                    gc.enable()

        loader.load = load_frozen
    profiler = None
    if cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    real_stdout = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the command's output is not what is measured
    try:
        strata.main.main(argv)
    except SystemExit:
        pass
    finally:
        sys.stdout.close()
        sys.stdout = real_stdout
    done = time.perf_counter()
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        for order in ("cumulative", "tottime"):
            buffer = io.StringIO()
            pstats.Stats(profiler, stream=buffer).sort_stats(order).print_stats(cprofile)
            sys.stderr.write(buffer.getvalue())
    result = {"imports": imported - start, "main": done - imported, "phases": spent,
              "gc_seconds": gc_time[0], "gc_collections": gc_count}
    sys.stderr.write("\n" + json.dumps(result) + "\n")
    if fast_exit:
        sys.stderr.flush()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--cold", action="store_true", help="delete <repo>/.strata/cache first")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N", help="also print the top N functions")
    parser.add_argument("--gc-off", action="store_true",
                        help="what-if: run with the garbage collector disabled (gc.disable() before strata starts)")
    parser.add_argument("--fast-exit", action="store_true",
                        help="what-if: end the process with os._exit after the command (no interpreter shut-down)")
    parser.add_argument("--freeze", action="store_true",
                        help="what-if: collector off while the repository loads, then gc.freeze() and on again")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="strata arguments (default: ls)")
    args = parser.parse_args(argv)
    command = args.command or ["ls"]
    repo = args.repo.resolve()
    if args.child:
        _child(["-C", str(repo), *command], args.cprofile, args.gc_off, args.fast_exit, args.freeze)
        return 0
    if not (repo / "strata.hcl").is_file():
        raise SystemExit(f"no repository at {repo}: run benchmarks/bench_discovery.py (or generate_repo.py) first")
    env = {k: v for k, v in os.environ.items() if k not in ("STRATA_DEBUG", "PYTHONDONTWRITEBYTECODE")}
    env.update(NO_COLOR="1", PYTHONPYCACHEPREFIX=str(HERE / ".work" / "pycache"))
    terraform = shutil.which("terraform")
    if terraform and "STRATA_TERRAFORM" not in env:
        env["STRATA_TERRAFORM"] = terraform
    child = [sys.executable, str(Path(__file__).resolve()), "--child", "--cprofile", str(args.cprofile),
             "--repo", str(repo), *(["--gc-off"] if args.gc_off else []),
             *(["--fast-exit"] if args.fast_exit else []), *(["--freeze"] if args.freeze else []), *command]
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=False)  # warm the bytecode and file caches
    startup = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], env=env, check=False)
        startup.append(time.perf_counter() - t)
    if args.cold:
        shutil.rmtree(repo / ".strata" / "cache", ignore_errors=True)
    t = time.perf_counter()
    proc = subprocess.run(child, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall = time.perf_counter() - t
    head, _, last = proc.stderr.rstrip("\n").rpartition("\n")
    try:
        result = json.loads(last)
    except ValueError:
        raise SystemExit(f"the profiled run failed:\n{proc.stderr}") from None
    if head.strip():
        print(head)
    python = min(startup)
    outside = wall - result["imports"] - result["main"] - python
    what_if = [name for name, on in (("gc off", args.gc_off), ("fast exit", args.fast_exit),
                                     ("gc frozen after loading", args.freeze)) if on]
    print(f"strata {' '.join(command)} ({'cold' if args.cold else 'warm'}"
          f"{''.join(', ' + w for w in what_if)}): {wall * 1000:.0f} ms wall")
    print(f"  python start-up                        {python * 1000:7.0f} ms")
    print(f"  import strata (and the timed modules)  {result['imports'] * 1000:7.0f} ms")
    print(f"  strata.main.main                       {result['main'] * 1000:7.0f} ms")
    for label, seconds in result["phases"].items():
        print(f"    {label:<36} {seconds * 1000:7.0f} ms")
    gen = result["gc_collections"]
    print(f"    garbage collection (inside the above) {result['gc_seconds'] * 1000:6.0f} ms "
          f"({gen[0]} gen0, {gen[1]} gen1, {gen[2]} gen2 collections)")
    print(f"  interpreter shut-down and the rest     {outside * 1000:7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
