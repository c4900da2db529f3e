"""The selected stacks as a CI job matrix in dependency order.

The CI system is the distributed engine: strata only says which stacks may run side by side. Stacks are
put in waves: a stack's wave is one more than the latest wave of a selected stack it depends on, so every
stack of a wave depends only on stacks of earlier waves. Dependencies outside the selection are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from strata.errors import StrataError
from strata.model.repository import Repository
from strata.model.stack import Stack


def matrix(repo: Repository, stacks: Iterable[Stack]) -> dict[str, Any]:
    """``{"groups": [[path, ...], ...], "include": [{"stack": path, "wave": n, "needs": [path, ...]}, ...]}``.

    ``groups[n]`` lists the stacks of wave ``n`` (sorted); ``include`` has one entry per stack, ordered by
    wave then path, ``needs`` being the selected stacks it depends on directly. Raises :class:`StrataError`
    when the selected stacks depend on each other in a cycle.
    """
    chosen = {s.path for s in stacks}
    graph = repo.graph
    order = graph.run_order(chosen)
    if len(order) != len(chosen):
        cyclic = sorted(chosen - set(order))
        raise StrataError(f"these stacks depend on each other in a cycle and cannot be ordered: {', '.join(cyclic)} "
                          "(run `strata validate` to see the cycle)")
    wave: dict[str, int] = {}
    needs: dict[str, list[str]] = {}
    for path in order:  # dependencies come first
        deps = sorted(graph.depends_on.get(path, set()) & chosen)
        needs[path] = deps
        wave[path] = 1 + max((wave[d] for d in deps), default=-1)
    count = 1 + max(wave.values(), default=-1)
    groups: list[list[str]] = [[] for _ in range(count)]
    for path in sorted(order):
        groups[wave[path]].append(path)
    include = [{"stack": path, "wave": n, "needs": needs[path]} for n, group in enumerate(groups) for path in group]
    return {"groups": groups, "include": include}
