"""strata validate: every problem in the repository, as file:line: message."""

from __future__ import annotations

import sys

from strata.errors import StrataError
from strata.output import err, print_diagnostics, print_json
from strata.validate import validate
from strata.workspace import Workspace


def run(ws: Workspace, *, strict: bool, as_json: bool) -> int:
    repo = ws.repository()
    version = None
    try:
        version = ws.terraform().version
    except StrataError as exc:
        err(f"note: {exc}; version-specific backend checks are skipped")
    diagnostics = validate(repo, version)
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    failed = errors > 0 or (strict and warnings > 0)
    if as_json:
        print_json({"stacks": len(repo.stacks), "errors": errors, "warnings": warnings,
                    "diagnostics": [d.to_json() for d in diagnostics]})
        return 1 if failed else 0
    print_diagnostics(diagnostics, sys.stdout)
    summary = f"{len(repo.stacks)} stacks: {errors} error(s), {warnings} warning(s)"
    err(summary if diagnostics else f"{len(repo.stacks)} stacks: no problems")
    return 1 if failed else 0
