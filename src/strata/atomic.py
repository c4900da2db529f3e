"""The one way strata writes a file, and the one way it makes its private ``.strata`` folder.

Every file strata writes goes through :func:`write_atomic`: a temporary file in the same folder, written
and fsynced, renamed over the target, then the folder fsynced, so a crash leaves either the old bytes or
the new ones, never a mix, and no temporary file behind. The mode is always given: logs, saved plans,
history and backups hold secrets (0600), generated code is meant to be read by everyone (0644).

Everything strata keeps for itself lives under ``<root>/.strata``, made with :func:`private_dir`: the
folders are 0700 and ``.strata/.gitignore`` holds ``*`` so that ``git add -A`` never commits caches, logs,
plans, history or backups. A ``.strata`` that is a symbolic link (committed to a repository, say to
/tmp or to another checkout) is refused, and so is a link inside it: strata would write its secrets
wherever the link leads.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from strata.errors import StrataError

SECRET = 0o600  # logs, plans, states, history, backups, journals
PUBLIC = 0o644  # generated code and pipelines the user commits
PRIVATE_DIR = 0o700


def write_atomic(path: Path, data: bytes, *, mode: int, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once.

    ``durable`` fsyncs the file and its folder (every state, backup and journal); caches pass False
    because losing one costs only a re-parse.
    """
    refuse_links(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        sync_dir(path.parent)


def write_text_atomic(path: Path, text: str, *, mode: int, durable: bool = True) -> None:
    write_atomic(path, text.encode("utf-8"), mode=mode, durable=durable)


def sync_dir(folder: Path) -> None:
    """fsync a folder so a rename in it survives a crash (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def private_dir(path: Path, *, repository: Path | None = None) -> Path:
    """Make ``path`` (and its missing parents) with mode 0700; under a ``.strata`` folder, make sure that
    folder ignores itself in git. Returns ``path``.

    With ``repository``, the outermost folder made inside it ignores itself in git too (a local state
    folder of the user's choosing holds secrets as much as ``.strata`` does).
    """
    refuse_links(path)
    missing = [p for p in (path, *path.parents) if not p.is_dir()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR)
        with contextlib.suppress(OSError):
            os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    strata_dir = _strata_dir_of(path)
    if strata_dir is not None:
        ignore_in_git(strata_dir)
    elif repository is not None:
        made = [p for p in missing if p.is_relative_to(repository) and p != repository]
        if made:
            ignore_in_git(made[-1])
    return path


def ignore_in_git(folder: Path) -> None:
    """``<folder>/.gitignore`` with ``*``: nothing strata keeps for itself is ever committed."""
    marker = folder / ".gitignore"
    if marker.exists():
        return
    with contextlib.suppress(OSError):
        if folder.is_dir():
            os.chmod(folder, PRIVATE_DIR)
        write_atomic(marker, b"# Written by strata: caches, logs, plans, states, history and backups stay out of "
                     b"git.\n*\n", mode=PUBLIC, durable=False)


def refuse_links(path: Path) -> None:
    """Refuse a ``.strata`` folder, or a folder inside it, that is a symbolic link (committed to the
    repository, it would lead strata's logs, plans and states out of it, e.g. into /tmp)."""
    strata_dir = _strata_dir_of(path)
    if strata_dir is None:
        return
    for folder in (path, *path.parents):
        if os.path.islink(folder):
            raise StrataError(
                f"{folder} is a symbolic link (to {os.readlink(folder)!r}): strata keeps logs, plans and states "
                f"there and does not write them wherever a link leads; remove the link (strata makes the folder "
                f"again)")
        if folder == strata_dir:
            return


def _strata_dir_of(path: Path) -> Path | None:
    # the outermost one: history mirrors state paths, and the example keeps its state under .strata too
    found = None
    for candidate in (path, *path.parents):
        if candidate.name == ".strata":
            found = candidate
    return found
