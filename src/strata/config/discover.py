"""Find the repository root and every strata.hcl below it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from strata.errors import UsageError

CONFIG_NAME = "strata.hcl"
_ROOT_BLOCK = re.compile(r"(?m)^[ \t]*strata[ \t]*\{")
# Folders never searched: hidden ones (.git, .terraform, .strata) and module libraries.
SKIPPED_DIRS = frozenset({"modules", "node_modules"})


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` whose strata.hcl has a ``strata {}`` block."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            try:
                text = candidate.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if _ROOT_BLOCK.search(text):
                return folder
    raise UsageError(
        f"not inside a strata repository: no {CONFIG_NAME} with a `strata {{}}` block in {start} or above it. "
        f"Create one at the repository root (an empty `strata {{}}` block is enough), or pass -C DIR."
    )


def config_dirs(root: Path) -> list[str]:
    """Repository-relative POSIX paths ("" for the root) of the folders holding a strata.hcl, sorted."""
    found: list[str] = []
    root_str = str(root)
    prefix_len = len(root_str) + 1
    for dirpath, dirnames, filenames in os.walk(root_str):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS)
        if CONFIG_NAME in filenames:
            rel = dirpath[prefix_len:] if len(dirpath) > len(root_str) else ""
            found.append(rel.replace(os.sep, "/"))
    found.sort()
    return found


def ancestors(directory: str) -> list[str]:
    """``"a/b/c"`` -> ``["", "a", "a/b", "a/b/c"]``: the folders from the root down to ``directory``."""
    if not directory:
        return [""]
    parts = directory.split("/")
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]
