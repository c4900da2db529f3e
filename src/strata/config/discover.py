"""Find the repository root and every strata.hcl below it."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from strata.config.limits import describe_size, max_file_size
from strata.errors import ConfigError, Source, UsageError

CONFIG_NAME = "strata.hcl"
_ROOT_BLOCK = re.compile(r"(?m)^[ \t]*strata[ \t]*\{")
# Folders never searched: hidden ones (.git, .terraform, .strata) and module libraries.
SKIPPED_DIRS = frozenset({"modules", "node_modules"})


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` whose strata.hcl has a ``strata {}`` block.

    A strata.hcl on the way up that cannot be read (a folder, a dangling link, a device) is not
    skipped in silence: when no root is found, the first such problem is the error.
    """
    start = start.resolve()
    problem: ConfigError | None = None
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_NAME
        if not os.path.lexists(candidate):
            continue
        try:
            text = read_config(candidate, str(candidate)).decode("utf-8", errors="replace")
        except ConfigError as exc:
            problem = problem or exc
            continue
        if _ROOT_BLOCK.search(text):
            return folder
    if problem is not None:
        raise problem
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
        # a strata.hcl that is a folder (or a link to one) is listed too: reading it reports the mistake
        named = CONFIG_NAME in filenames or CONFIG_NAME in dirnames
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and d not in SKIPPED_DIRS and d != CONFIG_NAME)
        if named:
            rel = dirpath[prefix_len:] if len(dirpath) > len(root_str) else ""
            found.append(rel.replace(os.sep, "/"))
    found.sort()
    return found


def read_config(path: Path | str, display: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (default: the configured maximum).

    Anything else is a :class:`ConfigError` naming ``display``: a folder, a FIFO (which would block
    for ever), a device such as /dev/zero (which would fill the memory), a dangling link, a file
    that is too big or cannot be read. The file is opened without blocking and checked again once
    open, so it cannot be swapped for a FIFO in between.
    """
    limit = max_file_size() if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError(_cannot_read(path, exc), Source(display)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"cannot read: it is {_kind(info.st_mode)}, not a regular file", Source(display))
        if info.st_size > limit:
            raise ConfigError(_too_big(info.st_size, limit), Source(display))
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew after the size was checked
            raise ConfigError(_too_big(size, limit), Source(display))
        return b"".join(chunks)
    except OSError as exc:
        raise ConfigError(_cannot_read(path, exc), Source(display)) from None
    finally:
        os.close(fd)


def _too_big(size: int, limit: int) -> str:
    # the setting is named only where it is the limit (not for a state's or a Terraform file's fixed one)
    hint = ", set STRATA_MAX_FILE_SIZE to change it" if limit == max_file_size() else ""
    return f"the file is too big ({describe_size(size)}; the limit is {describe_size(limit)}{hint})"


def _cannot_read(path: Path | str, exc: OSError) -> str:
    if os.path.islink(path) and not os.path.exists(path):
        return f"cannot read: it is a symbolic link to {os.readlink(path)!r}, which does not exist"
    if isinstance(exc, IsADirectoryError):
        return "cannot read: it is a folder, not a file"
    return f"cannot read: {exc.strerror or exc}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def ancestors(directory: str) -> list[str]:
    """``"a/b/c"`` -> ``["", "a", "a/b", "a/b/c"]``: the folders from the root down to ``directory``."""
    if not directory:
        return [""]
    parts = directory.split("/")
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]
