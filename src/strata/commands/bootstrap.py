"""strata bootstrap: create (or check, or emit as Terraform) what the selected stacks' backends need."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from strata.backends.base import BackendError
from strata.bootstrap.targets import Change, PgTarget, S3Target, Targets, plan_targets
from strata.errors import StrataError
from strata.model.selection import Selection, select
from strata.model.stack import Stack
from strata.output import err, out, print_json, style, table
from strata.workspace import Workspace


def targets_for(ws: Workspace, stacks: list[Stack]) -> Targets:
    return plan_targets(stacks, ws.repository().settings.production_environments)


def bootstrap(targets: Targets, *, dry_run: bool, progress: bool = True) -> list[Change]:
    """Create or repair every target; one Change per resource."""
    work: list[tuple[S3Target | PgTarget, Callable[..., list[Change]]]] = []
    if targets.s3:
        from strata.bootstrap.aws import bootstrap_s3

        work += [(t, bootstrap_s3) for t in targets.s3]
    if targets.pg:
        from strata.bootstrap.pg import bootstrap_pg

        work += [(t, bootstrap_pg) for t in targets.pg]
    changes: list[Change] = []
    for target, create in work:
        if progress:
            err(f"{'checking' if dry_run else 'bootstrapping'} {target.description}")
        try:
            changes.extend(create(target, dry_run=dry_run))
        except BackendError as exc:
            stacks = target.stacks
            raise StrataError(f"{target.description} (backend of {', '.join(stacks[:3])}"
                              f"{' …' if len(stacks) > 3 else ''}): {exc}") from None
    return changes


def run(ws: Workspace, selection: Selection, *, dry_run: bool, emit_terraform: Path | None, as_json: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd)
    targets = targets_for(ws, stacks)
    for path, kind in targets.unsupported:
        err(f"warning: {path}: strata cannot bootstrap {kind} backends yet; create its storage yourself")
    if emit_terraform is not None:
        from strata.bootstrap.emit import emit_terraform as emit

        if not targets.s3:
            raise StrataError("no selected stack keeps its state in S3: nothing to write as Terraform")
        written = emit(targets.s3, emit_terraform)
        if as_json:
            print_json({"files": [str(p) for p in written]})
        else:
            out(f"wrote {len(written)} file(s) to {emit_terraform} for {len(targets.s3)} backend(s)")
        return 0
    changes = bootstrap(targets, dry_run=dry_run, progress=not as_json)
    if as_json:
        print_json({"dry_run": dry_run, "changes": [c.to_json() for c in changes],
                    "local_stacks": targets.nothing_needed})
        return 0
    if targets.nothing_needed and not changes:
        out(f"{len(targets.nothing_needed)} stack(s) keep local state: nothing to create")
    if changes:
        colours = {"created": "green", "changed": "yellow", "would create": "green", "would change": "yellow"}
        rows = [[c.target, c.resource, c.name, style(c.action, colours.get(c.action, "dim"), sys.stdout),
                 c.detail] for c in changes]
        out(table(["BACKEND", "RESOURCE", "NAME", "ACTION", "DETAIL"], rows))
    counts = {a: sum(1 for c in changes if c.action == a) for a in
              ("created", "changed", "unchanged", "would create", "would change")}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    out(summary or "nothing to do")
    return 0
