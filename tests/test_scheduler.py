"""The DAG scheduler (strata.scheduler): real threads, real timing, real signals; no terraform.

Work functions record what they see (start/finish order, how many run at once) and coordinate with
threading events, so each property is checked deterministically rather than by sleeping and hoping.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from conftest import write_tree
from strata.scheduler import CHANGES, FAILED, INTERRUPTED, OK, SKIPPED, Outcome, Scheduler
from strata.terraform.process import ProcessGroup
from strata.workspace import Workspace

HANG = 20.0  # seconds after which a scheduler run is considered hung
WAIT = 10.0  # seconds a work function waits for an event before it gives up (only when something is broken)


class Recorder:
    """What the work function saw: events in order, and the largest number of nodes running at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []  # ("start" | "finish", node)
        self.running = 0
        self.max_running = 0

    def start(self, node: str) -> None:
        with self.lock:
            self.events.append(("start", node))
            self.running += 1
            self.max_running = max(self.max_running, self.running)

    def finish(self, node: str) -> None:
        with self.lock:
            self.events.append(("finish", node))
            self.running -= 1

    def index(self, kind: str, node: str) -> int:
        return self.events.index((kind, node))

    def started(self) -> list[str]:
        return [node for kind, node in self.events if kind == "start"]


def run_scheduler(nodes: list[str], depends_on: Mapping[str, set[str]], work: Callable[[str], Outcome], *,
                  parallelism: int = 4, fail_fast: bool = False, group: ProcessGroup | None = None,
                  on_start: Callable[[str], None] | None = None,
                  on_finish: Callable[[str, Outcome], None] | None = None) -> dict[str, Outcome]:
    """Run the scheduler in a helper thread so that a hang fails the test instead of blocking it."""
    scheduler = Scheduler(nodes, depends_on, parallelism, group or ProcessGroup(), fail_fast)
    box: dict[str, dict[str, Outcome]] = {}
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box["results"] = scheduler.run(work, on_start=on_start, on_finish=on_finish)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    assert not thread.is_alive(), f"the scheduler did not finish within {HANG}s"
    assert not errors, errors
    return box["results"]


def recording(recorder: Recorder, body: Callable[[str], Outcome] | None = None) -> Callable[[str], Outcome]:
    def work(node: str) -> Outcome:
        recorder.start(node)
        try:
            return body(node) if body else Outcome(OK)
        finally:
            recorder.finish(node)

    return work


# -- true DAG: no waves ------------------------------------------------------------------------------

def test_a_node_starts_as_soon_as_its_own_dependencies_finish_not_after_unrelated_slow_work() -> None:
    # a -> c (fast chain); slow -> b. c must start while "slow" is still running: slow only finishes
    # once it has seen c start (it would time out if the scheduler waited for a whole "wave").
    recorder = Recorder()
    c_started = threading.Event()
    slow_saw_c = threading.Event()

    def body(node: str) -> Outcome:
        if node == "c":
            c_started.set()
        if node == "slow" and c_started.wait(WAIT):
            slow_saw_c.set()
        return Outcome(OK)

    results = run_scheduler(["a", "b", "c", "slow"], {"c": {"a"}, "b": {"slow"}}, recording(recorder, body),
                            parallelism=4)
    assert slow_saw_c.is_set(), "c did not start until the unrelated slow node finished"
    assert {n: r.status for n, r in results.items()} == {"a": OK, "b": OK, "c": OK, "slow": OK}
    assert recorder.index("finish", "a") < recorder.index("start", "c") < recorder.index("finish", "slow")
    assert recorder.index("finish", "slow") < recorder.index("start", "b")


def test_start_and_finish_order_shows_overlap_with_unrelated_slow_work() -> None:
    # "slow" is slow by waiting for c to have finished (a scheduler working in waves never runs c before
    # slow ends: slow then gives up after WAIT). Marks come from one counter, not a clock.
    marks: dict[str, tuple[int, int]] = {}
    counter = itertools.count()
    lock = threading.Lock()
    c_finished = threading.Event()

    def work(node: str) -> Outcome:
        with lock:
            started = next(counter)
        if node == "slow":
            c_finished.wait(WAIT)
        with lock:
            marks[node] = (started, next(counter))
        if node == "c":
            c_finished.set()
        return Outcome(OK)

    run_scheduler(["a", "b", "c", "slow"], {"c": {"a"}, "b": {"slow"}}, work, parallelism=4)
    assert marks["c"][0] > marks["a"][1]  # c waited for its dependency ...
    assert marks["c"][1] < marks["slow"][1]  # ... but not for the slow, unrelated one
    assert marks["b"][0] > marks["slow"][1]


def test_dependencies_always_finish_before_their_dependents_start() -> None:
    edges = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": {"d"}, "x": set(), "y": {"x", "c"}}
    recorder = Recorder()
    results = run_scheduler(sorted(edges), edges, recording(recorder), parallelism=3)
    assert all(r.status == OK for r in results.values())
    for node, deps in edges.items():
        for dep in deps:
            assert recorder.index("finish", dep) < recorder.index("start", node), (dep, node)


def test_dependencies_outside_the_selection_are_ignored() -> None:
    recorder = Recorder()
    results = run_scheduler(["b"], {"b": {"a-not-selected"}}, recording(recorder))
    assert results["b"].status == OK
    assert recorder.started() == ["b"]


# -- concurrency limit -------------------------------------------------------------------------------

@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_the_concurrency_limit_is_never_exceeded_and_is_reached(parallelism: int) -> None:
    recorder = Recorder()
    barrier = threading.Barrier(parallelism)
    first = {f"n{i:02d}" for i in range(parallelism)}

    def body(node: str) -> Outcome:
        if node in first:
            barrier.wait(timeout=WAIT)  # the first `parallelism` nodes must all be running together
        return Outcome(OK)

    nodes = [f"n{i:02d}" for i in range(12)]
    results = run_scheduler(nodes, {}, recording(recorder, body), parallelism=parallelism)
    assert all(r.status == OK for r in results.values()), results
    assert recorder.max_running == parallelism


def test_parallelism_below_one_still_runs_one_at_a_time() -> None:
    recorder = Recorder()
    results = run_scheduler(["a", "b", "c"], {}, recording(recorder), parallelism=0)
    assert all(r.status == OK for r in results.values())
    assert recorder.max_running == 1


# -- failures ----------------------------------------------------------------------------------------

def test_dependents_of_a_failed_node_are_skipped_transitively_while_independent_nodes_finish() -> None:
    recorder = Recorder()
    finished: list[str] = []
    a_failed = threading.Event()

    def body(node: str) -> Outcome:
        if node == "a":
            return Outcome(FAILED, "boom")
        a_failed.wait(WAIT)  # e and f are still running when a fails
        return Outcome(OK)

    def on_finish(node: str, outcome: Outcome) -> None:
        finished.append(node)
        if node == "a":
            a_failed.set()

    edges = {"b": {"a"}, "c": {"b"}, "d": {"c", "e"}, "e": set(), "f": set()}
    results = run_scheduler(["a", "b", "c", "d", "e", "f"], edges, recording(recorder, body), on_finish=on_finish)
    status = {n: r.status for n, r in results.items()}
    assert status == {"a": FAILED, "b": SKIPPED, "c": SKIPPED, "d": SKIPPED, "e": OK, "f": OK}
    assert results["a"].detail == "boom"
    for node in ("b", "c", "d"):
        assert "a" in results[node].detail.split() and "failed" in results[node].detail, results[node].detail
    assert set(recorder.started()) == {"a", "e", "f"}  # skipped nodes never ran
    assert sorted(finished) == ["a", "b", "c", "d", "e", "f"]  # on_finish reports skipped ones too


def test_a_skipped_dependent_names_the_node_that_actually_failed() -> None:
    results = run_scheduler(["base", "mid", "top"], {"mid": {"base"}, "top": {"mid"}},
                            lambda node: Outcome(FAILED, "x") if node == "base" else Outcome(OK))
    assert results["mid"].detail == "base failed"
    assert results["top"].detail == "base failed"


def test_changes_counts_as_success_for_dependents() -> None:
    results = run_scheduler(["a", "b"], {"b": {"a"}},
                            lambda node: Outcome(CHANGES) if node == "a" else Outcome(OK))
    assert results["a"].status == CHANGES and results["a"].succeeded
    assert results["b"].status == OK


def test_fail_fast_starts_nothing_new_after_the_first_failure() -> None:
    recorder = Recorder()
    results = run_scheduler(["a", "b", "c", "d"], {},
                            recording(recorder, lambda n: Outcome(FAILED, "no") if n == "b" else Outcome(OK)),
                            parallelism=1, fail_fast=True)
    assert recorder.started() == ["a", "b"]
    assert results["a"].status == OK and results["b"].status == FAILED
    for node in ("c", "d"):
        assert results[node].status == SKIPPED
        assert "fail-fast" in results[node].detail


def test_fail_fast_lets_running_work_finish() -> None:
    b_running = threading.Event()
    a_failed = threading.Event()  # the scheduler has taken a's failure in
    b_saw_a_fail = threading.Event()

    def work(node: str) -> Outcome:
        if node == "a":
            assert b_running.wait(WAIT)
            return Outcome(FAILED, "no")
        if node == "b":
            b_running.set()
            if a_failed.wait(WAIT):  # still running when a fails
                b_saw_a_fail.set()
        return Outcome(OK)

    def on_finish(node: str, outcome: Outcome) -> None:
        if node == "a":
            a_failed.set()

    results = run_scheduler(["a", "b", "c"], {}, work, parallelism=2, fail_fast=True, on_finish=on_finish)
    assert b_saw_a_fail.is_set(), "b was not running any more when a failed"
    assert results["a"].status == FAILED
    assert results["b"].status == OK
    assert results["c"].status == SKIPPED and "fail-fast" in results["c"].detail


def test_without_fail_fast_independent_nodes_all_run() -> None:
    recorder = Recorder()
    results = run_scheduler(["a", "b", "c"], {},
                            recording(recorder, lambda n: Outcome(FAILED) if n == "a" else Outcome(OK)),
                            parallelism=1)
    assert recorder.started() == ["a", "b", "c"]
    assert [results[n].status for n in "abc"] == [FAILED, OK, OK]


def test_an_exception_in_the_work_function_is_a_failure_with_internal_error_not_a_hang() -> None:
    def work(node: str) -> Outcome:
        if node == "a":
            raise RuntimeError("kaput")
        return Outcome(OK)

    results = run_scheduler(["a", "b", "c"], {"b": {"a"}}, work, parallelism=2)
    assert results["a"].status == FAILED
    assert "internal error" in results["a"].detail and "RuntimeError" in results["a"].detail
    assert "kaput" in results["a"].detail
    assert results["b"].status == SKIPPED and results["b"].detail == "a failed"
    assert results["c"].status == OK


def test_exceptions_in_every_node_still_end_the_run() -> None:
    def work(node: str) -> Outcome:
        raise ValueError(node)

    results = run_scheduler([f"n{i}" for i in range(6)], {}, work, parallelism=3)
    assert all(r.status == FAILED and "internal error" in r.detail for r in results.values())


# -- reverse graphs (destroy) ------------------------------------------------------------------------

def test_reverse_edges_run_dependents_first() -> None:
    depends_on = {"app": {"db"}, "db": {"net"}, "net": set()}
    dependents: dict[str, set[str]] = {"net": {"db"}, "db": {"app"}, "app": set()}
    recorder = Recorder()
    run_scheduler(sorted(depends_on), dependents, recording(recorder), parallelism=3)
    assert recorder.started() == ["app", "db", "net"]
    assert recorder.index("finish", "app") < recorder.index("start", "db")
    assert recorder.index("finish", "db") < recorder.index("start", "net")


def test_reverse_graph_of_a_real_repository(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/01-foundation/strata.hcl": "stack {}\n",
        "dev/02-platform/strata.hcl": 'stack {}\ndependencies = ["../01-foundation"]\n',
        "dev/03-databases/strata.hcl": 'stack {}\ndependencies = ["../02-platform"]\n',
        "dev/04-applications/strata.hcl": 'stack {}\ndependencies = ["../03-databases", "../01-foundation"]\n',
    })
    repo = Workspace(cwd=tmp_path).repository()
    paths = sorted(repo.stacks)
    forward, backward = Recorder(), Recorder()
    run_scheduler(paths, repo.graph.depends_on, recording(forward), parallelism=4)
    run_scheduler(paths, repo.graph.dependents, recording(backward), parallelism=4)
    assert forward.started() == paths
    assert backward.started() == paths[::-1]
    # destroy order: a dependency is destroyed only after everything that depends on it
    assert backward.index("finish", "dev/04-applications") < backward.index("start", "dev/01-foundation")


def test_a_failure_in_a_reverse_run_skips_what_it_depends_on() -> None:
    dependents: dict[str, set[str]] = {"net": {"db"}, "db": {"app"}, "app": set()}
    results = run_scheduler(["app", "db", "net"], dependents,
                            lambda n: Outcome(FAILED, "locked") if n == "app" else Outcome(OK))
    assert results["app"].status == FAILED
    assert results["db"].status == SKIPPED and results["net"].status == SKIPPED
    assert results["net"].detail == "app failed"


# -- interrupts --------------------------------------------------------------------------------------

def test_interrupt_from_a_work_function_stops_new_starts_and_skips_the_rest() -> None:
    group = ProcessGroup()
    recorder = Recorder()

    def body(node: str) -> Outcome:
        if node == "b":
            group.interrupt()
        return Outcome(OK)

    results = run_scheduler(["a", "b", "c", "d", "e"], {}, recording(recorder, body), parallelism=1, group=group)
    assert recorder.started() == ["a", "b"]
    assert results["a"].status == OK and results["b"].status == OK
    for node in ("c", "d", "e"):
        assert results[node].status == SKIPPED
        assert "interrupted" in results[node].detail
    assert group.interrupted and not group.killed


def test_interrupt_from_another_thread_marks_failing_running_work_interrupted() -> None:
    group = ProcessGroup()
    recorder = Recorder()
    both_running = threading.Barrier(3)  # a, b and the interrupting thread
    interrupted = threading.Event()

    def body(node: str) -> Outcome:
        if node in ("a", "b"):
            both_running.wait(timeout=WAIT)
            interrupted.wait(WAIT)
            return Outcome(FAILED, "terraform exited 1")  # what an interrupted terraform looks like
        return Outcome(OK)

    def interrupt_once_both_run() -> None:
        both_running.wait(timeout=WAIT)
        group.interrupt()
        interrupted.set()

    interrupter = threading.Thread(target=interrupt_once_both_run, daemon=True)
    interrupter.start()
    try:
        results = run_scheduler(["a", "b", "c", "d"], {"d": {"a"}}, recording(recorder, body),
                                parallelism=2, group=group)
    finally:
        interrupter.join(WAIT)
    assert group.interrupted
    assert recorder.started() == ["a", "b"]
    assert results["a"].status == INTERRUPTED and results["b"].status == INTERRUPTED
    assert results["c"].status == SKIPPED and "interrupted" in results["c"].detail
    assert results["d"].status == SKIPPED and "interrupted" in results["d"].detail


def test_work_that_succeeds_despite_an_interrupt_keeps_its_status_and_dependents_are_not_started() -> None:
    group = ProcessGroup()
    recorder = Recorder()

    def body(node: str) -> Outcome:
        if node == "a":
            group.interrupt()
            return Outcome(CHANGES)
        return Outcome(OK)

    results = run_scheduler(["a", "b"], {"b": {"a"}}, recording(recorder, body), group=group)
    assert results["a"].status == CHANGES
    assert results["b"].status == SKIPPED and "interrupted" in results["b"].detail
    assert recorder.started() == ["a"]


def test_sigint_to_strata_interrupts_gracefully_then_kills_and_restores_handlers() -> None:
    # The real signal path: signal handlers are installed only when run in the main thread.
    assert threading.current_thread() is threading.main_thread()
    group = ProcessGroup()
    stray: list[int] = []

    def fallback(signum: int, frame: object) -> None:  # receives the signals if the scheduler did not
        stray.append(signum)

    originals = {sig: signal.signal(sig, fallback) for sig in (signal.SIGINT, signal.SIGTERM)}
    seen: dict[str, bool] = {}

    def work(node: str) -> Outcome:
        if node == "a":
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + WAIT  # the handlers run in the main thread, which the scheduler owns
            while not group.interrupted and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["interrupted_after_first"] = group.interrupted
            seen["killed_after_first"] = group.killed
            os.kill(os.getpid(), signal.SIGTERM)
            while not group.killed and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["killed_after_second"] = group.killed
        return Outcome(OK)

    try:
        results = Scheduler(["a", "b"], {}, 1, group).run(work)
        after = {sig: signal.getsignal(sig) for sig in originals}
    finally:
        for sig, handler in originals.items():
            signal.signal(sig, handler)
    assert stray == []
    assert seen == {"interrupted_after_first": True, "killed_after_first": False, "killed_after_second": True}
    assert results["b"].status == SKIPPED and "interrupted" in results["b"].detail
    assert after == {signal.SIGINT: fallback, signal.SIGTERM: fallback}


# -- determinism -------------------------------------------------------------------------------------

def test_ready_nodes_start_in_sorted_order() -> None:
    recorder = Recorder()
    run_scheduler(["delta", "bravo", "alpha", "charlie"], {}, recording(recorder), parallelism=1)
    assert recorder.started() == ["alpha", "bravo", "charlie", "delta"]


def test_newly_ready_nodes_are_sorted_together_with_waiting_ones() -> None:
    # After "a" finishes, "b" (its dependent) becomes ready and sorts before the waiting "c".
    recorder = Recorder()
    edges = {"b": {"a"}, "z": {"a"}}
    run_scheduler(["z", "c", "b", "a"], edges, recording(recorder), parallelism=1)
    assert recorder.started() == ["a", "b", "c", "z"]


def test_the_same_graph_gives_the_same_order_every_time() -> None:
    edges = {f"n{i}": {f"n{j}" for j in range(i) if (i * j) % 3 == 1} for i in range(10)}
    orders = []
    for _ in range(3):
        recorder = Recorder()
        run_scheduler(sorted(edges, reverse=True), edges, recording(recorder), parallelism=1)
        orders.append(recorder.started())
    assert orders[0] == orders[1] == orders[2]


def test_on_start_is_called_before_the_work_of_each_started_node() -> None:
    order: list[str] = []
    lock = threading.Lock()

    def on_start(node: str) -> None:
        with lock:
            order.append(f"on_start:{node}")

    def work(node: str) -> Outcome:
        with lock:
            order.append(f"work:{node}")
        return Outcome(OK)

    run_scheduler(["a", "b"], {"b": {"a"}}, work, on_start=on_start, parallelism=1)
    assert order == ["on_start:a", "work:a", "on_start:b", "work:b"]


def test_outcome_succeeded() -> None:
    assert Outcome(OK).succeeded and Outcome(CHANGES).succeeded
    assert not any(Outcome(s).succeeded for s in (FAILED, SKIPPED, INTERRUPTED))


def test_a_cycle_does_not_hang_and_its_nodes_are_not_started() -> None:
    # validate rejects cycles before a run; the scheduler must still end if one slips through
    recorder = Recorder()
    results = run_scheduler(["a", "b", "c"], {"a": {"b"}, "b": {"a"}}, recording(recorder))
    assert recorder.started() == ["c"]
    assert results["c"].status == OK
    assert results["a"].status == SKIPPED and results["b"].status == SKIPPED
