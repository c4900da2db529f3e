"""Select stacks the way every command does: path prefixes, globs and dimension filters."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import UsageError, did_you_mean
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
    allow_empty: bool = False  # a selection that matches nothing is a typo (exit 64) unless this is set

    def apply(self, repo: Repository, cwd: Path) -> list[Stack]:
        """The selected stacks, sorted by path.

        A typo must not look like success: a dimension value, tag or glob that matches no stack of the
        repository, or a selection that matches nothing, is a usage error with the nearest names, unless
        ``allow_empty``. With ``changed``, an empty result is an answer (the change affects nothing there).
        """
        self._check_known(repo)
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
        if not out and not self.allow_empty and not self.changed and self._asked():
            raise UsageError(f"no stack matches {self._describe()} (run `strata ls` to see the stacks; "
                             "--allow-empty to accept an empty selection)")
        return out

    def _asked(self) -> bool:
        return bool(self.paths or self.environments or self.regions or self.layers or self.clients
                    or self.clouds or self.accounts or self.tags)

    def _describe(self) -> str:
        parts = [" ".join(self.paths)] if self.paths else []
        for flag, values in (("--env", self.environments), ("--region", self.regions), ("--layer", self.layers),
                             ("--client", self.clients), ("--cloud", self.clouds), ("--account", self.accounts),
                             ("--tag", self.tags)):
            parts.extend(f"{flag} {v}" for v in values)
        return " ".join(parts)

    def _check_known(self, repo: Repository) -> None:
        """Every dimension value and tag asked for names something in the repository."""
        if self.allow_empty:
            return
        stacks = list(repo.stacks.values())
        checks: list[tuple[str, str, list[str], Callable[[Stack], Iterable[str | None]]]] = [
            ("environment", "--env", self.environments, lambda s: [s.environment]),
            ("region", "--region", self.regions, lambda s: [s.region]),
            ("layer", "--layer", self.layers, lambda s: _layer_names(s.layer)),
            ("client", "--client", self.clients, lambda s: [s.client]),
            ("cloud", "--cloud", self.clouds, lambda s: [s.dimension("cloud")]),
            ("account", "--account", self.accounts, lambda s: [s.dimension("account_id")]),
            ("tag", "--tag", self.tags, lambda s: s.tags),
        ]
        for what, flag, wanted, values_of in checks:
            if not wanted:
                continue
            known = {v for s in stacks for v in values_of(s) if v}
            for value in wanted:
                if value not in known:
                    shown = sorted({v for s in stacks for v in list(values_of(s))[:1] if v})  # layers: full names
                    listed = ", ".join(shown[:12]) + (", ..." if len(shown) > 12 else "") if shown else "none"
                    nearest = did_you_mean(value, known)
                    raise UsageError(f"{flag} {value}: no {what} {value!r} in this repository{nearest}; "
                                     f"{what}s here: {listed}")

    def _paths(self, repo: Repository, cwd: Path) -> tuple[list[str], list[str]]:
        prefixes: list[str] = []
        globs: list[str] = []
        for arg in self.paths:
            if _GLOB_CHARS & set(arg):
                glob = arg.strip("/")
                if not self.allow_empty and not any(fnmatch.fnmatchcase(p, glob) for p in repo.stacks):
                    raise UsageError(f"no stack matches the pattern {arg!r}"
                                     f"{did_you_mean(glob.replace('*', '').replace('?', ''), list(repo.stacks))} "
                                     "(run `strata ls` to see the stacks)")
                globs.append(glob)
                continue
            prefix = _as_repo_path(arg, repo.root, cwd)
            if prefix is None:
                raise UsageError(f"{arg!r} is outside the repository at {repo.root}")
            if not self.allow_empty and not any(_under(p, prefix) for p in repo.stacks):
                raise UsageError(f"no stacks under {arg!r}{did_you_mean(prefix, stack_folders(repo.stacks))} "
                                 "(run `strata ls` to see the stacks)")
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


def _layer_names(layer: str | None) -> list[str | None]:
    """A layer by its folder name and without its number (``02-platform``, ``platform``)."""
    if layer is None:
        return []
    head, sep, tail = layer.partition("-")
    return [layer, tail] if sep and head.isdigit() else [layer]


def stack_folders(paths: Iterable[str]) -> set[str]:
    """Every stack path and every folder above one (what a path prefix may name)."""
    folders: set[str] = set()
    for path in paths:
        parts = path.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return folders


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
