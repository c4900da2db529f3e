"""strata output: the outputs of the selected stacks, read from their state (no terraform run)."""

from __future__ import annotations

import json
from typing import Any

from strata.errors import StrataError
from strata.model.selection import Selection, select
from strata.output import out, print_json
from strata.run.outputs import OutputReader
from strata.run.redact import Secrets
from strata.workspace import Workspace


def run(ws: Workspace, selection: Selection, *, as_json: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd)
    secrets = Secrets()
    reader = OutputReader(repo.root, secrets=secrets)
    result: dict[str, dict[str, Any] | None] = {}
    for stack in stacks:
        result[stack.path] = reader.outputs(stack)  # a backend strata cannot read raises a clear error
    if as_json:
        print_json({path: outputs for path, outputs in result.items()})
        return 0
    # A dependency's sensitive output reaches a stack's outputs in clear when its variable is not marked
    # sensitive: read the dependencies too (best effort: one strata cannot read hides nothing more).
    for stack in stacks:
        for dep in stack.dependencies:
            if dep.name and dep.path in repo.stacks:
                try:
                    reader.outputs(repo.stacks[dep.path])
                except StrataError:
                    continue
    for path, outputs in result.items():
        if outputs is None:
            out(f"{path}: (no state)")
            continue
        for name, entry in sorted(outputs.items()):
            value = "(sensitive)" if entry.get("sensitive") else json.dumps(entry.get("value"))
            out(f"{path}: {name} = {secrets.redact(value)}")
    return 0
