"""Local module sources of a Terraform root module, followed recursively.

``module "x" { source = "../modules/network" }`` makes the stack depend on that folder's code: a change
there must re-run ``terraform init`` (a new nested module or provider) and makes a saved plan stale.
Registry and git sources are fetched by init itself and are not followed.

Every Terraform file strata reads or hashes goes through :func:`read_code`: the code comes from the
repository (in CI, from an untrusted pull request), where a ``main.tf`` that is a FIFO would block for
ever and one linked to /dev/zero would fill the memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from strata.config.discover import read_config
from strata.config.limits import MAX_CODE_SIZE

SOURCE_PATTERN = re.compile(r'(?m)^\s*source\s*=\s*"(\.{1,2}/[^"]*)"')


def code_files(folder: Path) -> list[Path]:
    """The Terraform files of a folder (terraform skips a folder named ``x.tf``, and so does strata)."""
    return sorted(p for p in [*folder.glob("*.tf"), *folder.glob("*.tf.json")] if not p.is_dir())


def read_code(path: Path) -> bytes | None:
    """The bytes of a Terraform file (None when there is none): a regular file of at most MAX_CODE_SIZE,
    else a ConfigError naming it (a folder, a FIFO, a device, a dangling link, a file too big)."""
    if not os.path.lexists(path):
        return None
    display = os.path.relpath(path)
    return read_config(path, str(path) if display.startswith("..") else display, MAX_CODE_SIZE)


def local_modules(folder: Path) -> list[Path]:
    """Every local module folder the code in ``folder`` uses, directly or through other modules."""
    seen: set[Path] = set()
    todo = [folder.resolve()]
    while todo:
        current = todo.pop()
        for path in code_files(current):
            for source in module_sources(path):
                target = (current / source.split("//")[0]).resolve()
                if target.is_dir() and target not in seen and target != folder.resolve():
                    seen.add(target)
                    todo.append(target)
    return sorted(seen)


def module_sources(path: Path) -> list[str]:
    """The local module sources (``./x``, ``../y//sub``) a Terraform file names."""
    data = read_code(path)
    return SOURCE_PATTERN.findall(data.decode("utf-8", errors="replace")) if data else []
