"""Local module sources of a Terraform root module, followed recursively.

``module "x" { source = "../modules/network" }`` makes the stack depend on that folder's code: a change
there must re-run ``terraform init`` (a new nested module or provider) and makes a saved plan stale.
Registry and git sources are fetched by init itself and are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path

SOURCE_PATTERN = re.compile(r'(?m)^\s*source\s*=\s*"(\.{1,2}/[^"]*)"')


def code_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.tf"), *folder.glob("*.tf.json")])


def local_modules(folder: Path) -> list[Path]:
    """Every local module folder the code in ``folder`` uses, directly or through other modules."""
    seen: set[Path] = set()
    todo = [folder.resolve()]
    while todo:
        current = todo.pop()
        for path in code_files(current):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for source in SOURCE_PATTERN.findall(text):
                target = (current / source.split("//")[0]).resolve()
                if target.is_dir() and target not in seen and target != folder.resolve():
                    seen.add(target)
                    todo.append(target)
    return sorted(seen)
