"""strata generate: write the backend and inputs files of the selected stacks."""

from __future__ import annotations

from strata import generate as gen
from strata.errors import ProblemsFound, StrataError
from strata.model.selection import Selection
from strata.output import err, out, print_json
from strata.terraform.modules import read_code
from strata.terraform.version import LATEST_KNOWN, format_version
from strata.validate import validate
from strata.workspace import Workspace


def run(ws: Workspace, selection: Selection, *, check: bool, as_json: bool) -> int:
    repo = ws.repository()
    stacks = selection.apply(repo, ws.cwd)
    needs_version = any(s.backend and s.backend.type == "s3" for s in stacks)
    version = None
    if needs_version:
        try:
            version = ws.terraform().version
        except StrataError as exc:
            version = LATEST_KNOWN
            err(f"warning: {exc}; writing s3 backend settings for Terraform {format_version(version)}")
    # Never write files from a configuration that validate would reject.
    errors = [d for d in validate(repo, version) if d.severity == "error"]
    if errors:
        raise ProblemsFound(errors)
    files = gen.plan_files(repo, stacks, version)
    conflicts = gen.conflicts(files)
    if conflicts:
        raise ProblemsFound(conflicts)
    if check:
        # bytes through the safe reader, as write_files compares them: a FIFO, a device or bytes that are not
        # UTF-8 (a hand-edited file) are an error or simply out of date, never a hang or a crash
        stale = [f for f in files if read_code(f.path) != f.content.encode("utf-8")]
        if as_json:
            print_json({"stale": [f.display for f in stale], "files": len(files)})
        else:
            for f in stale:
                out(f"out of date: {f.display}")
            err(f"{len(files)} files checked, {len(stale)} out of date")
        return 1 if stale else 0
    written, unchanged = gen.write_files(files)
    if as_json:
        print_json({"written": [f.display for f in written], "unchanged": [f.display for f in unchanged]})
        return 0
    for f in written:
        out(f"wrote {f.display}")
    err(f"{len(stacks)} stacks: {len(written)} files written, {len(unchanged)} unchanged")
    return 0
