"""strata output: the outputs of the selected stacks, read from their state (no terraform run)."""

from __future__ import annotations

import json
from typing import Any

from strata.errors import StrataError
from strata.model.selection import Selection, select
from strata.output import err, out, print_json
from strata.run.outputs import OutputReader, errored_state
from strata.run.redact import Secrets
from strata.workspace import Workspace


def run(ws: Workspace, selection: Selection, *, as_json: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd)
    secrets = Secrets()
    reader = OutputReader(repo.root, secrets=secrets, ignore_errored_state=True)  # shows the state as saved
    result: dict[str, dict[str, Any] | None] = {}
    for stack in stacks:
        errored = errored_state(repo.root, stack)
        if errored:
            err(f"strata: warning: {errored} holds a state terraform could not save: the outputs of "
                f"{stack.path or '.'} shown are those saved before; push it with "
                f"`strata state push {stack.path or '.'} {errored}`")
        result[stack.path] = reader.outputs(stack)  # a backend strata cannot read raises a clear error
    if as_json:
        print_json({"stacks": result})
        return 0
    # A dependency's sensitive output reaches a stack's outputs in clear when its variable is not marked
    # sensitive: read the dependencies too. One that cannot be read hides secrets strata does not know:
    # refuse rather than print them (--json is the explicit way to see every value).
    for stack in stacks:
        for dep in stack.dependencies:
            if dep.name and dep.path in repo.stacks:
                try:
                    reader.outputs(repo.stacks[dep.path])
                except StrataError as exc:
                    raise StrataError(f"cannot show the outputs of {stack.path or '.'} safely: its dependency "
                                      f'"{dep.name}" ({dep.path}) cannot be read, so its secrets, which may '
                                      f"appear in {stack.path or '.'}'s outputs, are unknown: {exc}. Repair it, "
                                      "or use --json (values not redacted)") from None
    for path, outputs in result.items():
        if outputs is None:
            out(f"{path}: (no state)")
            continue
        for name, entry in sorted(outputs.items()):
            value = "(sensitive)" if entry.get("sensitive") else json.dumps(entry.get("value"))
            out(f"{path}: {name} = {secrets.redact(value)}")
    return 0
