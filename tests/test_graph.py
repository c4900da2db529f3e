"""Unit tests of strata.model.graph: edges, cycles, run order and closures."""

from __future__ import annotations

import itertools

from strata.errors import Source
from strata.model.graph import StackGraph
from strata.model.stack import Dependency, Stack


def graph(edges: dict[str, list[str]]) -> StackGraph:
    stacks = {
        path: Stack(path=path, name=path.rsplit("/", 1)[-1], config_file=f"{path}/strata.hcl", source=Source(),
                    dependencies=[Dependency(None, dep, Source()) for dep in deps])
        for path, deps in edges.items()
    }
    return StackGraph(stacks)


LAYERED = {
    "prod/01-foundation": [],
    "prod/02-platform": ["prod/01-foundation"],
    "prod/03-databases": ["prod/01-foundation", "prod/02-platform"],
    "prod/04-applications": ["prod/03-databases"],
    "prod/clients/ezra": ["prod/02-platform", "prod/03-databases"],
    "staging/01-foundation": [],
    "orphan": ["not/a/stack"],
}


def test_edges_in_both_directions_and_unknown_targets_left_out() -> None:
    g = graph(LAYERED)
    assert g.depends_on["prod/03-databases"] == {"prod/01-foundation", "prod/02-platform"}
    assert g.dependents["prod/02-platform"] == {"prod/03-databases", "prod/clients/ezra"}
    assert g.depends_on["orphan"] == set()
    assert "not/a/stack" not in g.dependents


def test_run_order_puts_dependencies_first_and_breaks_ties_by_path() -> None:
    order = graph(LAYERED).run_order()
    assert order == [
        "orphan", "prod/01-foundation", "staging/01-foundation",
        "prod/02-platform",
        "prod/03-databases",
        "prod/04-applications", "prod/clients/ezra",
    ]
    for path, deps in LAYERED.items():
        for dep in deps:
            if dep in order:
                assert order.index(dep) < order.index(path)


def test_run_order_of_a_selection_keeps_only_the_selection() -> None:
    g = graph(LAYERED)
    assert g.run_order(["prod/clients/ezra", "prod/01-foundation", "prod/04-applications"]) == [
        "prod/01-foundation", "prod/04-applications", "prod/clients/ezra"]
    assert g.run_order([]) == []


def test_no_cycles_in_a_layered_graph() -> None:
    assert graph(LAYERED).cycles() == []


def test_cycles_are_found_as_closed_paths() -> None:
    g = graph({"a": ["c"], "b": ["a"], "c": ["b"], "d": ["d"], "e": ["a"], "f": []})
    assert g.cycles() == [["a", "c", "b", "a"], ["d", "d"]]


def test_one_cycle_per_strongly_connected_group() -> None:
    g = graph({"a": ["b", "c"], "b": ["a"], "c": ["a"]})
    cycles = g.cycles()
    assert len(cycles) == 1
    cycle = cycles[0]
    assert cycle[0] == cycle[-1] == "a"
    for here, there in itertools.pairwise(cycle):
        assert there in g.depends_on[here]


def test_a_cycle_not_through_the_first_node() -> None:
    g = graph({"a": ["b"], "b": ["c"], "c": ["b"]})
    assert g.cycles() == [["b", "c", "b"]]


def test_run_order_leaves_out_the_stacks_of_cycles() -> None:
    g = graph({"p/x": ["p/y"], "p/y": ["p/z"], "p/z": ["p/x", "q"], "q": [], "r": []})
    assert g.cycles() == [["p/x", "p/y", "p/z", "p/x"]]
    order = g.run_order()
    assert order == ["q", "r"]


def test_closure_along_dependencies_and_dependents() -> None:
    g = graph(LAYERED)
    assert g.closure(["prod/03-databases"], dependencies=True) == {
        "prod/03-databases", "prod/02-platform", "prod/01-foundation"}
    assert g.closure(["prod/02-platform"], dependents=True) == {
        "prod/02-platform", "prod/03-databases", "prod/04-applications", "prod/clients/ezra"}
    assert g.closure(["prod/02-platform"], dependencies=True, dependents=True) == {
        "prod/01-foundation", "prod/02-platform", "prod/03-databases", "prod/04-applications", "prod/clients/ezra"}
    assert g.closure(["prod/02-platform"]) == {"prod/02-platform"}
    assert g.closure(["orphan"], dependencies=True) == {"orphan"}


def test_closure_terminates_on_cycles() -> None:
    g = graph({"a": ["b"], "b": ["a"], "c": ["a"]})
    assert g.closure(["c"], dependencies=True) == {"a", "b", "c"}
    assert g.closure(["a"], dependents=True) == {"a", "b", "c"}


def test_closure_both_ways_does_not_pull_in_the_dependencies_of_dependents() -> None:
    # b and c share the vpc a; d runs on b. Widening b both ways is a, b and d: c is b's sibling, not asked for.
    g = graph({"a": [], "b": ["a"], "c": ["a"], "d": ["b"]})
    assert g.closure(["b"], dependencies=True, dependents=True) == {"a", "b", "d"}
    assert g.closure(iter(["b"]), dependencies=True, dependents=True) == {"a", "b", "d"}
