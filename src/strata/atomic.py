"""The one way strata writes a file, and the one way it makes its private ``.strata`` folder.

Every file strata writes goes through :func:`write_atomic`: a temporary file in the same folder, written
and fsynced, renamed over the target, then the folder fsynced, so a crash leaves either the old bytes or
the new ones, never a mix, and no temporary file behind. The mode is always given: logs, saved plans,
history and backups hold secrets (0600), generated code is meant to be read by everyone (0644).

Everything strata keeps for itself lives under ``<root>/.strata``, made with :func:`private_dir`: the
folders are 0700 and ``.strata/.gitignore`` holds ``*`` so that ``git add -A`` never commits caches, logs,
plans, history or backups.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

SECRET = 0o600  # logs, plans, states, history, backups, journals
PUBLIC = 0o644  # generated code and pipelines the user commits
PRIVATE_DIR = 0o700


def write_atomic(path: Path, data: bytes, *, mode: int, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once.

    ``durable`` fsyncs the file and its folder (every state, backup and journal); caches pass False
    because losing one costs only a re-parse.
    """
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


def private_dir(path: Path) -> Path:
    """Make ``path`` (and its missing parents) with mode 0700; under a ``.strata`` folder, make sure that
    folder ignores itself in git. Returns ``path``."""
    missing = [p for p in (path, *path.parents) if not p.is_dir()]
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR)
        with contextlib.suppress(OSError):
            os.chmod(folder, PRIVATE_DIR)  # mkdir's mode is masked by the umask
    strata_dir = _strata_dir_of(path)
    if strata_dir is not None:
        ignore_in_git(strata_dir)
    return path


def ignore_in_git(strata_dir: Path) -> None:
    """``.strata/.gitignore`` with ``*``: nothing strata keeps for itself is ever committed."""
    marker = strata_dir / ".gitignore"
    if marker.exists():
        return
    with contextlib.suppress(OSError):
        if strata_dir.is_dir():
            os.chmod(strata_dir, PRIVATE_DIR)
        write_atomic(marker, b"# Written by strata: caches, logs, plans, history and backups stay out of git.\n*\n",
                     mode=PUBLIC, durable=False)


def _strata_dir_of(path: Path) -> Path | None:
    # the outermost one: history mirrors state paths, and the example keeps its state under .strata too
    found = None
    for candidate in (path, *path.parents):
        if candidate.name == ".strata":
            found = candidate
    return found
