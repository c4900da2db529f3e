"""Change detection: the stacks affected by the difference between a base branch and the working tree.

The difference is taken between the merge-base of ``HEAD`` and the base ref and the **working tree**:
committed, staged, unstaged and untracked files (deletions and both sides of a rename included).
A stack is affected when

- a file in its folder changed (files in a nested stack's folder belong to that stack only);
- a ``strata.hcl`` it inherits (any folder above it) changed;
- a local module it uses changed (module sources from its ``.tf`` files, followed recursively);
- a file it reads through ``file()``/``fileexists()`` changed;
- a stack it depends on is affected (with ``dependents``).

Stacks whose ``strata.hcl`` (with a ``stack {}`` block at the base) is gone are reported separately.
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strata.config.discover import CONFIG_NAME, SKIPPED_DIRS, ancestors
from strata.errors import StrataError
from strata.model.repository import Repository
from strata.terraform.modules import code_files, module_sources, read_code

_STACK_BLOCK = re.compile(r"(?m)^[ \t]*stack[ \t]*\{")
# tool-local folders: never configuration, even when a repository forgot to git-ignore them
_IGNORED_PARTS = frozenset({".terraform", ".strata"})


@dataclass(frozen=True)
class Affected:
    """A stack the change affects, and why (each reason one line for ``--explain``)."""

    stack: str
    reasons: tuple[str, ...]


@dataclass
class ChangeSet:
    base: str  # the merge-base commit used
    files: list[str]  # changed files under the repository root, repository-relative POSIX paths, sorted
    affected: dict[str, Affected] = field(default_factory=dict)  # stack path -> why, sorted by path
    deleted_stacks: list[str] = field(default_factory=list)  # stacks at the base that are gone, sorted


# -- git ---------------------------------------------------------------------------------------------


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise StrataError("change detection needs git, and no `git` command was found on PATH") from None
    if check and proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise StrataError(f"git {' '.join(args)} failed in {cwd}: {detail[-1] if detail else 'no message'}")
    return proc


def _verify(root: Path, ref: str) -> str | None:
    proc = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def _default_base(root: Path) -> str:
    proc = _git(root, "symbolic-ref", "--quiet", "refs/remotes/origin/HEAD", check=False)
    if proc.returncode == 0:
        ref = proc.stdout.decode().strip()
        if ref and _verify(root, ref):
            return ref
    for ref in ("main", "origin/main", "master", "origin/master"):
        if _verify(root, ref):
            return ref
    raise StrataError("cannot find the base branch to compare with: no remote default branch (origin/HEAD), "
                      "no main and no master branch; pass --base REF")


def _toplevel(root: Path) -> Path:
    proc = _git(root, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise StrataError(f"change detection needs a git repository, and {root} is not inside one")
    return Path(proc.stdout.decode().strip()).resolve()


def _merge_base(root: Path, base_ref: str | None) -> str:
    if _verify(root, "HEAD") is None:
        raise StrataError(f"the git repository at {root} has no commit yet: nothing to compare with")
    ref = base_ref if base_ref is not None else _default_base(root)
    if _verify(root, ref) is None:
        raise StrataError(f"base {ref!r} is not a branch, tag or commit of the git repository at {root} "
                          "(fetch it first, e.g. with enough history, or pass another --base)")
    proc = _git(root, "merge-base", "HEAD", ref, check=False)
    if proc.returncode != 0:
        raise StrataError(f"HEAD and {ref!r} have no common history (no merge-base), so what changed cannot be "
                          "told; in a shallow clone, fetch more history (e.g. fetch-depth: 0)")
    return proc.stdout.decode().strip()


def _split(out: bytes) -> list[str]:
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _all_changed(root: Path, base_ref: str | None) -> tuple[str, Path, list[str]]:
    """(merge-base, git toplevel, changed paths relative to the toplevel)."""
    top = _toplevel(root)
    base = _merge_base(root, base_ref)
    # --no-renames: a rename is its deletion and its addition, so both folders see the change
    diff = _git(top, "-c", "core.quotePath=false", "diff", "--name-only", "--no-renames", "-z", base, "--")
    untracked = _git(top, "ls-files", "--others", "--exclude-standard", "-z")
    return base, top, sorted(set(_split(diff.stdout)) | set(_split(untracked.stdout)))


def _relative(paths: Sequence[str], top: Path, root: Path) -> list[str]:
    """Toplevel-relative paths as root-relative ones (``../`` for files outside the root), tool folders left out."""
    prefix = root.relative_to(top).as_posix() if root != top else ""
    out: list[str] = []
    for path in paths:
        if prefix:
            rel = path[len(prefix) + 1:] if path.startswith(prefix + "/") else posixpath.relpath(path, prefix)
        else:
            rel = path
        if _IGNORED_PARTS.isdisjoint(rel.split("/")):
            out.append(rel)
    return out


def changed_files(root: Path, base_ref: str | None) -> tuple[str, list[str]]:
    """The merge-base of HEAD and ``base_ref`` (default: the remote default branch, else main, else master)
    and the files changed since then in the working tree, relative to ``root`` (files outside it left out)."""
    root = root.resolve()
    base, top, paths = _all_changed(root, base_ref)
    return base, [p for p in _relative(paths, top, root) if not p.startswith("../")]


# -- detection ---------------------------------------------------------------------------------------


def _parents(rel: str) -> list[str]:
    """``a/b/c.tf`` -> ``["a/b", "a", ""]``; ``../x/y.tf`` -> ``["../x", ".."]``."""
    out: list[str] = []
    current = posixpath.dirname(rel)
    while True:
        out.append(current)
        if current in ("", ".."):
            return out
        current = posixpath.dirname(current)


class _Modules:
    """Local module sources per folder, and the changed files each folder's code reaches (memoized)."""

    def __init__(self, root: Path, under: dict[str, list[str]]) -> None:
        self.root = str(root)
        self.under = under  # root-relative folder -> changed files at any depth below it
        self.sources: dict[str, list[str]] = {}
        self.reached: dict[str, frozenset[str]] = {}
        self.active: set[str] = set()

    def _sources(self, rel: str) -> list[str]:
        found = self.sources.get(rel)
        if found is None:
            absdir = os.path.join(self.root, rel) if rel else self.root
            targets: set[str] = set()
            for path in code_files(Path(absdir)):
                for source in module_sources(path):
                    target = os.path.normpath(os.path.join(absdir, source.split("//")[0]))
                    target_rel = os.path.relpath(target, self.root).replace(os.sep, "/")
                    targets.add("" if target_rel == "." else target_rel)
            targets.discard(rel)
            found = self.sources[rel] = sorted(targets)
        return found

    def changed_in(self, module: str) -> frozenset[str]:
        """Changed files in ``module`` and in every local module its code uses."""
        done = self.reached.get(module)
        if done is not None:
            return done
        if module in self.active:  # a cycle of modules: what is reached is counted where it started
            return frozenset()
        self.active.add(module)
        result = set(self.under.get(module, ()))
        for target in self._sources(module):
            result |= self.changed_in(target)
        self.active.discard(module)
        self.reached[module] = frozenset(result)
        return self.reached[module]

    def used_by(self, stack: str) -> frozenset[str]:
        """Changed files in the local modules the stack's own code uses, directly or not."""
        result: set[str] = set()
        for target in self._sources(stack):
            result |= self.changed_in(target)
        return frozenset(result)


def _deleted_stacks(root: Path, base: str, candidates: list[str], repo: Repository) -> list[str]:
    """Folders among ``candidates`` (changed strata.hcl files) that held a stack at the base and do not now."""
    todo = [c for c in candidates
            if posixpath.dirname(c) not in repo.stacks and posixpath.dirname(c) not in repo.unreadable
            and not any(part.startswith(".") or part in SKIPPED_DIRS for part in c.split("/")[:-1])]
    if not todo:
        return []
    request = "".join(f"{base}:./{c}\n" for c in todo).encode("utf-8", "surrogateescape")
    try:
        proc = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"], input=request,
                              capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StrataError(f"git cat-file failed in {root}: {exc}") from None
    out = proc.stdout
    deleted: list[str] = []
    pos = 0
    for candidate in todo:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) < 3 or header[1] != b"blob":
            continue  # "missing": the file did not exist at the base
        size = int(header[2])
        text = out[pos:pos + size].decode("utf-8", "replace")
        pos += size + 1
        if _STACK_BLOCK.search(text):
            deleted.append(posixpath.dirname(candidate))
    return sorted(deleted)


def detect(repo: Repository, base_ref: str | None = None, *, dependents: bool = True) -> ChangeSet:
    """The stacks of ``repo`` affected by the change between the merge-base with ``base_ref`` and the
    working tree. Raises StrataError when git or the base ref is missing."""
    root = repo.root.resolve()
    base, top, paths = _all_changed(root, base_ref)
    every = _relative(paths, top, root)  # including files outside the root (modules or files read there)
    every = [p for p in every if not _generated(root, p, repo)]
    files = [p for p in every if not p.startswith("../")]
    changes = ChangeSet(base=base, files=files)
    if not every:
        return changes

    hcl_changed = [p for p in files if posixpath.basename(p) == CONFIG_NAME]
    changes.deleted_stacks = _deleted_stacks(root, base, hcl_changed, repo)
    gone = set(changes.deleted_stacks)
    hcl_dirs = {posixpath.dirname(p) for p in hcl_changed}

    reasons: dict[str, list[str]] = {}
    under: dict[str, list[str]] = {}
    for path in every:
        owner_found = path.startswith("../")
        for folder in _parents(path):
            under.setdefault(folder, []).append(path)
            if owner_found:
                continue
            if folder in gone:
                owner_found = True
            elif folder in repo.stacks:
                reasons.setdefault(folder, []).append(f"changed: {path}")
                owner_found = True

    modules = _Modules(root, under)
    changed = set(every)
    for path, stack in repo.stacks.items():
        found = reasons.get(path, [])
        if hcl_dirs:
            for folder in ancestors(path)[:-1]:
                if folder in hcl_dirs:
                    found.append(f"inherits changed strata.hcl: {posixpath.join(folder, CONFIG_NAME)}")
        found.extend(f"uses changed module: {p}" for p in sorted(modules.used_by(path)))
        if stack.read_files:
            read = {os.path.relpath(f, root).replace(os.sep, "/") for f in stack.read_files}
            found.extend(f"reads changed file: {p}" for p in sorted(read & changed))
        if found:
            reasons[path] = found

    affected = set(reasons)
    if dependents:
        affected = repo.graph.closure(affected, dependents=True)
    for path in sorted(affected):
        found = reasons.get(path, [])
        if dependents:
            found = found + [f"depends on affected {d}" for d in sorted(repo.graph.depends_on.get(path, set()))
                             if d in affected]
        changes.affected[path] = Affected(path, tuple(found))
    return changes


def _generated(root: Path, path: str, repo: Repository) -> bool:
    """strata's own generated backend/inputs file: it follows the configuration, which is what counts."""
    if posixpath.basename(path) not in (repo.settings.backend_file, repo.settings.inputs_file):
        return False
    from strata.generate import MARKER

    data = read_code(root / path)
    return data is not None and data.startswith(MARKER.encode())  # None: deleted, a real change to review
