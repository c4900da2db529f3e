"""Select stacks the way every command does: path prefixes, globs and dimension filters."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import UsageError
from strata.model.repository import Repository
from strata.model.stack import Stack

_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True)
class Selection:
    """What the user asked for. Empty filters select everything (under the working directory)."""

    paths: list[str] = field(default_factory=list)  # prefixes (folders) or globs
    environments: list[str] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)
    clouds: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    all: bool = False
    changed: bool = False  # only stacks affected by the change against --base (git)
    base: str | None = None
    dependents: bool = True  # with changed: stacks depending on an affected stack are affected too
    change_set: Any = field(default=None, repr=False)  # the ChangeSet once computed (reasons for --explain)

    def apply(self, repo: Repository, cwd: Path) -> list[Stack]:
        """The selected stacks, sorted by path."""
        prefixes, globs = self._paths(repo, cwd)
        affected: set[str] | None = None
        if self.changed:
            if self.change_set is None:
                from strata.model.changes import detect

                self.change_set = detect(repo, self.base, dependents=self.dependents)
            affected = set(self.change_set.affected)
        out: list[Stack] = []
        for path in sorted(repo.stacks):
            if affected is not None and path not in affected:
                continue
            stack = repo.stacks[path]
            if (prefixes or globs) and not (any(_under(path, p) for p in prefixes)
                                            or any(fnmatch.fnmatchcase(path, g) for g in globs)):
                continue
            if not self._dimensions_match(stack):
                continue
            out.append(stack)
        return out

    def _paths(self, repo: Repository, cwd: Path) -> tuple[list[str], list[str]]:
        prefixes: list[str] = []
        globs: list[str] = []
        for arg in self.paths:
            if _GLOB_CHARS & set(arg):
                globs.append(arg.strip("/"))
                continue
            prefix = _as_repo_path(arg, repo.root, cwd)
            if prefix is None:
                raise UsageError(f"{arg!r} is outside the repository at {repo.root}")
            if not any(_under(p, prefix) for p in repo.stacks):
                raise UsageError(f"no stacks under {arg!r} (run `strata ls` to see the stacks)")
            prefixes.append(prefix)
        if not self.paths and not self.all:
            here = _as_repo_path(".", repo.root, cwd)
            if here:  # inside a sub-folder: default to the stacks below it, like git and terramate
                prefixes.append(here)
        return prefixes, globs

    def _dimensions_match(self, stack: Stack) -> bool:
        checks = (
            (self.environments, stack.environment, False),
            (self.regions, stack.region, False),
            (self.layers, stack.layer, True),
            (self.clients, stack.client, False),
            (self.clouds, stack.dimension("cloud"), False),
            (self.accounts, stack.dimension("account_id"), False),
        )
        for wanted, value, loose in checks:
            if wanted and not any(_dimension_equal(w, value, loose) for w in wanted):
                return False
        return not (self.tags and not set(self.tags) & set(stack.tags))


def _dimension_equal(wanted: str, value: str | None, loose: bool) -> bool:
    if value is None:
        return False
    if wanted == value:
        return True
    # a layer may be named without its number: --layer platform matches 02-platform
    if loose:
        head, sep, tail = value.partition("-")
        return bool(sep) and head.isdigit() and tail == wanted
    return False


def _under(path: str, prefix: str) -> bool:
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def _as_repo_path(arg: str, root: Path, cwd: Path) -> str | None:
    candidate = (cwd / arg).resolve()
    if not candidate.exists():
        candidate = (root / arg).resolve()  # a repository-relative prefix such as production/us-east-1
    try:
        rel = candidate.relative_to(root).as_posix()
    except ValueError:
        return None
    return "" if rel == "." else rel


def select(repo: Repository, selection: Selection, cwd: Path, *, dependencies: bool = False,
           dependents: bool = False) -> list[Stack]:
    """The selected stacks by path, with what they depend on and/or what depends on them when asked."""
    chosen = {s.path for s in selection.apply(repo, cwd)}
    if dependencies or dependents:
        chosen = repo.graph.closure(chosen, dependencies=dependencies, dependents=dependents)
    return [repo.stacks[p] for p in sorted(chosen)]
