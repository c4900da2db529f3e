"""strata ls: the selected stacks and their dimensions."""

from __future__ import annotations

from strata.errors import UsageError
from strata.model.selection import Selection
from strata.output import err, out, print_json, table
from strata.workspace import Workspace

COLUMNS = ("environment", "region", "layer", "client", "account_id", "cloud")


def run(ws: Workspace, selection: Selection, *, as_json: bool, run_order: bool, explain: bool = False) -> int:
    repo = ws.repository()
    repo.require_valid()
    if explain and not selection.changed:
        raise UsageError("--explain goes with --changed")
    stacks = selection.apply(repo, ws.cwd)
    if run_order:
        by_path = {s.path: s for s in stacks}
        stacks = [by_path[p] for p in repo.graph.run_order(by_path)]
    changes = selection.change_set
    if as_json:
        listed = [s.to_json() for s in stacks]
        if changes is not None:
            for row in listed:
                row["reasons"] = list(changes.affected[row["path"]].reasons)
            print_json({"base": changes.base, "stacks": listed, "deleted_stacks": changes.deleted_stacks})
        else:
            print_json({"stacks": listed})
        return 0
    if not stacks:
        out("no stacks selected")
    else:
        columns = [c for c in COLUMNS if any(s.dimension(c) for s in stacks)]
        rows = [[repo.display(s.path), *(s.dimension(c) or "-" for c in columns)] for s in stacks]
        out(table(["STACK", *(c.upper().replace("_ID", "") for c in columns)], rows))
    if changes is not None:
        if explain:
            for s in stacks:
                out(f"{repo.display(s.path)}:")
                for reason in changes.affected[s.path].reasons:
                    out(f"  {reason}")
        for path in changes.deleted_stacks:
            err(f"deleted by the change (review for destroy): {path}")
    return 0
