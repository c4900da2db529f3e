"""GitLab Terraform reports (``artifacts:reports:terraform``), one per stack: what a plan creates, updates and
deletes, as counts only (``{"create": n, "update": n, "delete": n}``), so a merge request widget shows them.

The counts follow GitLab's own recipe for the report (every resource change's ``actions`` flattened and
counted), so a replacement counts as one create and one delete, as terraform's "to add"/"to destroy" do.
No address, no value: the file is meant to be attached to a merge request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strata.atomic import PUBLIC, write_atomic

ACTIONS = ("create", "update", "delete")


def counts(plan_json: Mapping[str, Any]) -> dict[str, int]:
    """The report of one plan (``terraform show -json``)."""
    found = dict.fromkeys(ACTIONS, 0)
    for change in plan_json.get("resource_changes") or []:
        actions = (change.get("change") or {}).get("actions") if isinstance(change, dict) else None
        for action in actions if isinstance(actions, list) else []:
            if action in found:
                found[action] += 1
    return found


def file_name(stack: str) -> str:
    """A file name for a stack's report: its path with ``/`` as ``__``; a short hash of the path is added
    whenever that is not reversible (other characters replaced, ``__`` in the path, very long paths)."""
    if not stack:
        return "_root.json"
    plain = stack.replace("/", "__")
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", plain).lstrip(".") or "_"
    if safe != plain or "__" in stack or len(safe) > 180:
        safe = safe[:180] + "-" + hashlib.sha256(stack.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{safe}.json"


def write(plans: Mapping[str, Mapping[str, Any]], folder: Path) -> list[Path]:
    """One report per stack (stack path -> plan JSON) in ``folder``; the files written, by stack path."""
    written = []
    for stack in sorted(plans):
        path = folder / file_name(stack)
        data = json.dumps(counts(plans[stack]), sort_keys=True) + "\n"
        write_atomic(path, data.encode(), mode=PUBLIC)
        written.append(path)
    return written
