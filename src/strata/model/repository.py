"""A loaded repository: its settings, its stacks and the problems found while loading."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from strata.config.settings import Settings
from strata.errors import Diagnostic, ProblemsFound, UsageError, did_you_mean
from strata.model.graph import StackGraph
from strata.model.stack import Stack


@dataclass
class Repository:
    root: Path
    cwd: Path  # paths in messages are relative to it
    settings: Settings
    stacks: dict[str, Stack] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # folders whose strata.hcl could not be read or parsed, and stacks below them that were not evaluated:
    # what depends on them is not reported again as "not a stack"
    unreadable: set[str] = field(default_factory=set)
    _seen: set[tuple[str, str, int, str]] = field(default_factory=set, repr=False)

    def add(self, diagnostic: Diagnostic) -> None:
        """Record a problem once (a mistake in a shared file is reported once, not once per stack)."""
        key = (diagnostic.severity, diagnostic.source.file, diagnostic.source.line, diagnostic.message)
        if key not in self._seen:
            self._seen.add(key)
            self.diagnostics.append(diagnostic)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def require_valid(self) -> None:
        """Stop a command that needs a repository without configuration errors."""
        if self.errors:
            raise ProblemsFound(self.diagnostics)

    @cached_property
    def graph(self) -> StackGraph:
        return StackGraph(self.stacks)

    def display(self, rel: str) -> str:
        """A repository-relative path as shown to the user: relative to the working directory."""
        return display_path(self.root, self.cwd, rel)

    def resolve_stack(self, arg: str, cwd: Path) -> Stack:
        """The stack named by ``arg``: a folder relative to the working directory or to the root."""
        for candidate in _path_candidates(arg, self.root, cwd):
            if candidate in self.stacks:
                return self.stacks[candidate]
        nearest = did_you_mean(_path_candidates(arg, self.root, cwd)[-1], self.stacks)
        raise UsageError(f"no stack at {arg!r}{nearest} (run `strata ls` to see the stacks)")


def display_path(root: Path, cwd: Path, rel: str) -> str:
    if cwd == root:
        return rel or "."
    return os.path.relpath(os.path.join(root, rel), cwd).replace(os.sep, "/")


def _path_candidates(arg: str, root: Path, cwd: Path) -> list[str]:
    out: list[str] = []
    absolute = (cwd / arg).resolve()
    try:
        rel = absolute.relative_to(root).as_posix()
        out.append("" if rel == "." else rel)
    except ValueError:
        pass
    cleaned = arg.strip("/")
    out.append("" if cleaned in ("", ".") else cleaned)
    return out
