"""Run work over the stack graph: each stack starts as soon as its own dependencies have finished.

No waves: a stack never waits for unrelated stacks of its layer. At most ``parallelism`` run at once.
A stack whose dependency failed (or was skipped or interrupted) is skipped, and so are its own
dependents; independent stacks go on. With ``fail_fast`` nothing new starts after the first failure.
The first SIGINT/SIGTERM starts nothing new and lets running work stop gracefully; a second kills.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from strata.terraform.process import ProcessGroup

OK, CHANGES, FAILED, SKIPPED, INTERRUPTED = "ok", "changes", "failed", "skipped", "interrupted"


@dataclass(slots=True)
class Outcome:
    status: str
    detail: str = ""
    duration: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status in (OK, CHANGES)


class Scheduler:
    def __init__(self, nodes: list[str], depends_on: Mapping[str, set[str]], parallelism: int,
                 group: ProcessGroup, fail_fast: bool = False) -> None:
        self.nodes = sorted(nodes)
        chosen = set(nodes)
        self.waits_for = {n: set(depends_on.get(n, set())) & chosen for n in nodes}
        self.unblocks: dict[str, set[str]] = {n: set() for n in nodes}
        for node, deps in self.waits_for.items():
            for dep in deps:
                self.unblocks[dep].add(node)
        self.parallelism = max(1, parallelism)
        self.group = group
        self.fail_fast = fail_fast

    def run(self, work: Callable[[str], Outcome], on_start: Callable[[str], None] | None = None,
            on_finish: Callable[[str, Outcome], None] | None = None) -> dict[str, Outcome]:
        results: dict[str, Outcome] = {}
        remaining = {n: set(deps) for n, deps in self.waits_for.items()}
        ready = sorted(n for n, deps in remaining.items() if not deps)
        running: dict[Future[Outcome], str] = {}
        stop_reason = ""

        def finish(node: str, outcome: Outcome) -> None:
            results[node] = outcome
            if on_finish is not None:
                on_finish(node, outcome)

        def skip_dependents(node: str, why: str) -> None:
            for child in sorted(self.unblocks[node]):
                if child not in results and child not in running.values():
                    finish(child, Outcome(SKIPPED, why))
                    skip_dependents(child, why)

        with ThreadPoolExecutor(max_workers=self.parallelism, thread_name_prefix="strata") as pool, \
                _interrupts(self.group):
            while ready or running:
                if self.group.interrupted and not stop_reason:
                    stop_reason = "not started: interrupted"
                while ready and len(running) < self.parallelism and not stop_reason:
                    node = ready.pop(0)
                    if node in results:
                        continue
                    if on_start is not None:
                        on_start(node)
                    running[pool.submit(work, node)] = node
                if not running:
                    break
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f]):
                    node = running.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # a bug in the work function must not hang the run
                        outcome = Outcome(FAILED, f"internal error: {type(exc).__name__}: {exc}")
                    if outcome.status == FAILED and self.group.interrupted:
                        outcome.status = INTERRUPTED
                    finish(node, outcome)
                    if outcome.succeeded:
                        for child in sorted(self.unblocks[node]):
                            remaining[child].discard(node)
                            if not remaining[child] and child not in results:
                                ready.append(child)
                        ready.sort()
                    else:
                        skip_dependents(node, f"{node} {outcome.status}")
                        if self.fail_fast and outcome.status == FAILED and not stop_reason:
                            stop_reason = "not started: --fail-fast after a failure"
            for node in self.nodes:
                if node not in results:
                    finish(node, Outcome(SKIPPED, stop_reason or "not started"))
        return results


@contextmanager
def _interrupts(group: ProcessGroup) -> Iterator[None]:
    """SIGINT/SIGTERM: the first stops gracefully, the second kills. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def handler(signum: int, frame: Any) -> None:
        nonlocal count
        count += 1
        if count == 1:
            group.interrupt()
        else:
            group.kill()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
