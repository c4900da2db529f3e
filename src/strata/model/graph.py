"""The stack dependency graph: edges, cycles, run order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from strata.model.stack import Stack


class StackGraph:
    """Edges point from a stack to the stacks it depends on. Unknown targets are left out."""

    def __init__(self, stacks: Mapping[str, Stack]) -> None:
        self.stacks = stacks
        self.depends_on: dict[str, set[str]] = {}
        self.dependents: dict[str, set[str]] = {path: set() for path in stacks}
        for path, stack in stacks.items():
            targets = {d.path for d in stack.dependencies if d.path in stacks}
            self.depends_on[path] = targets
            for target in targets:
                self.dependents[target].add(path)

    def cycles(self) -> list[list[str]]:
        """One cycle (as a closed path a -> b -> a) for every strongly connected group of stacks."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        groups: list[list[str]] = []
        counter = 0
        for start in sorted(self.depends_on):
            if start in index:
                continue
            # iterative Tarjan: (node, iterator over its targets)
            work: list[tuple[str, list[str]]] = [(start, sorted(self.depends_on[start]))]
            index[start] = low[start] = counter
            counter += 1
            stack.append(start)
            on_stack.add(start)
            while work:
                node, targets = work[-1]
                if targets:
                    target = targets.pop(0)
                    if target not in index:
                        index[target] = low[target] = counter
                        counter += 1
                        stack.append(target)
                        on_stack.add(target)
                        work.append((target, sorted(self.depends_on[target])))
                    elif target in on_stack:
                        low[node] = min(low[node], index[target])
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1 or node in self.depends_on[node]:
                        groups.append(sorted(group))
        return [self._cycle_in(group) for group in sorted(groups)]

    def _cycle_in(self, group: list[str]) -> list[str]:
        members = set(group)
        start = group[0]
        path = [start]
        seen = {start}
        node = start
        while True:
            nxt = sorted(t for t in self.depends_on[node] if t in members)
            closing = [t for t in nxt if t == start]
            if closing:
                return [*path, start]
            unseen = [t for t in nxt if t not in seen]
            if not unseen:
                # fall back to the first member that closes a loop
                target = nxt[0]
                return [*path[path.index(target):], target]
            node = unseen[0]
            path.append(node)
            seen.add(node)

    def run_order(self, selected: Iterable[str] | None = None) -> list[str]:
        """Stacks in dependency order (dependencies first), ties broken by path; cycles are excluded."""
        import graphlib

        chosen = set(self.depends_on if selected is None else selected)
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for path in sorted(chosen):
            sorter.add(path, *sorted(self.depends_on[path] & chosen))
        order: list[str] = []
        try:
            sorter.prepare()
        except graphlib.CycleError:
            cyclic = {p for cycle in self.cycles() for p in cycle}
            return self.run_order(chosen - cyclic)
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        return order

    def closure(self, paths: Iterable[str], *, dependencies: bool = False, dependents: bool = False) -> set[str]:
        """``paths`` widened along the graph: with their dependencies and/or their dependents.

        Both at once is the union of the two walks, not the connected part of the graph: the dependencies of a
        dependent (a sibling sharing a VPC) are not asked for, and would pull in a whole environment.
        """
        start = set(paths)
        result = set(start)
        if dependencies:
            result |= self._reachable(start, self.depends_on)
        if dependents:
            result |= self._reachable(start, self.dependents)
        return result

    @staticmethod
    def _reachable(start: set[str], edges: Mapping[str, set[str]]) -> set[str]:
        """``start`` and every stack reached from it along ``edges``."""
        seen = set(start)
        frontier = list(start)
        while frontier:
            for n in edges.get(frontier.pop(), set()) - seen:
                seen.add(n)
                frontier.append(n)
        return seen
