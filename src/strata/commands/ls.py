"""strata ls: the selected stacks and their dimensions."""

from __future__ import annotations

from strata.model.selection import Selection
from strata.output import out, print_json, table
from strata.workspace import Workspace

COLUMNS = ("environment", "region", "layer", "client", "account_id", "cloud")


def run(ws: Workspace, selection: Selection, *, as_json: bool, run_order: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = selection.apply(repo, ws.cwd)
    if run_order:
        by_path = {s.path: s for s in stacks}
        stacks = [by_path[p] for p in repo.graph.run_order(by_path)]
    if as_json:
        print_json([s.to_json() for s in stacks])
        return 0
    if not stacks:
        out("no stacks selected")
        return 0
    columns = [c for c in COLUMNS if any(s.dimension(c) for s in stacks)]
    rows = [[repo.display(s.path), *(s.dimension(c) or "-" for c in columns)] for s in stacks]
    out(table(["STACK", *(c.upper().replace("_ID", "") for c in columns)], rows))
    return 0
