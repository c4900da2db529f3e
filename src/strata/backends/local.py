"""The local backend: a state file on disk, laid out like the remote keys under the state folder.

This is strata's embedded default: with no cloud at all, every stack still gets its own state at
``<state_dir>/<env>/<region>/<layer>/terraform.tfstate`` (relative paths keep the repository movable).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from strata.backends.base import Backend, Problem
from strata.terraform.version import Version


class LocalBackend(Backend):
    name = "local"
    attributes = frozenset({"path", "workspace_dir"})
    key_attribute = "path"

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        return {"path": posixpath.relpath(f"{state_dir}/{state_key}", stack_path or ".")}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        problems = super().check(values, version)
        path = values.get("path")
        if not isinstance(path, str) or not path:
            problems.append(Problem("path must be a file path", "path"))
        return problems

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        path = str(values.get("path", "terraform.tfstate"))
        if path.startswith("/"):
            return ("local", posixpath.normpath(path))
        return ("local", posixpath.normpath(posixpath.join(stack_path or ".", path)))

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        return "local state files are not encrypted"

    def read_state(self, values: dict[str, Any], stack_dir: Path) -> bytes | None:
        path = stack_dir / str(values.get("path", "terraform.tfstate"))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return data or None


BACKEND = LocalBackend()
