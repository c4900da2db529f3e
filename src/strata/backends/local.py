"""The local backend: a state file on disk, laid out like the remote keys under the state folder.

This is strata's embedded default: with no cloud at all, every stack still gets its own state at
``<state_dir>/<env>/<region>/<layer>/terraform.tfstate`` (relative paths keep the repository movable).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.atomic import SECRET, private_dir, write_atomic
from strata.backends.base import (
    STRING,
    Backend,
    BackendError,
    LockInfo,
    Problem,
    StateLocked,
    StateObject,
    StateStore,
    StateVersion,
)
from strata.config.discover import read_config
from strata.config.limits import MAX_STATE_SIZE, describe_size
from strata.errors import ConfigError
from strata.terraform.version import Version

LOCK_INFO_LIMIT = 64 * 1024  # terraform's lock info is a few hundred bytes

# POSIX record locks belong to the process: a second lock from this process would succeed, and closing
# any descriptor of the file drops the lock. So strata keeps one descriptor per locked file, here.
_held: dict[str, int] = {}
_held_guard = threading.Lock()


class LocalBackend(Backend):
    name = "local"
    schema = {"path": STRING, "workspace_dir": STRING}  # internal/backend/local/backend.go
    key_attribute = "path"

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        return {"path": posixpath.relpath(f"{state_dir}/{state_key}", stack_path or ".")}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        problems = super().check(values, version)
        path = values.get("path")
        if path is None or path == "":  # another type is reported by the schema
            problems.append(Problem("path must be a file path", "path"))
        return problems

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        path = str(values.get("path", "terraform.tfstate"))
        if path.startswith("/"):
            return ("local", posixpath.normpath(path))
        return ("local", posixpath.normpath(posixpath.join(stack_path or ".", path)))

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        return "local state files are not encrypted"

    def store(self, values: dict[str, Any], stack_dir: Path, root: Path) -> LocalStore:
        path = Path(os.path.normpath(stack_dir / str(values.get("path", "terraform.tfstate"))))
        return LocalStore(path, root)


class LocalStore(StateStore):
    """A state file, locked the way Terraform's local backend locks it: an fcntl write lock on the file
    itself plus ``.<name>.lock.info`` beside it (statemgr/filesystem.go). strata's own history of the
    file's versions is kept under ``.strata/history/``.
    """

    backend = "local"

    def __init__(self, path: Path, root: Path) -> None:
        self.path = path
        self.root = root
        try:
            self.where = str(path.relative_to(Path.cwd()))
        except ValueError:
            self.where = str(path)
        try:
            rel = path.relative_to(root)
            self.history_dir = root / ".strata" / "history" / "local" / rel
        except ValueError:
            self.history_dir = root / ".strata" / "history" / "local" / "_outside" / path.as_posix().lstrip("/")

    @property
    def info_path(self) -> Path:
        return self.path.parent / f".{self.path.name}.lock.info"

    # -- state ---------------------------------------------------------------------------------------

    def read(self) -> bytes | None:
        with _held_guard:
            fd = _held.get(str(self.path))
        if fd is not None:  # read through the locked descriptor: opening another would drop the lock
            if not self.path.exists():
                return None  # deleted while locked (delete()): the descriptor still sees the old bytes
            size = os.fstat(fd).st_size
            if size > MAX_STATE_SIZE:
                raise BackendError(f"cannot read {self.where}: {describe_size(size)}, more than a state can be "
                                   f"({describe_size(MAX_STATE_SIZE)})")
            data = os.pread(fd, size, 0)
        else:
            if not os.path.lexists(self.path):
                return None
            try:  # a regular file only: a FIFO would block for ever, /dev/zero would fill the memory
                data = read_config(self.path, self.where, MAX_STATE_SIZE)
            except ConfigError as exc:
                raise BackendError(f"cannot read {self.where}: {exc.message.removeprefix('cannot read: ')}") from None
        return data or None

    def stat(self) -> StateObject | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        if st.st_size == 0:
            return None
        return StateObject(st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def write(self, data: bytes) -> None:
        with _held_guard:
            fd = _held.get(str(self.path))
        if fd is None:
            raise BackendError(f"internal error: writing {self.where} without its lock")
        os.fchmod(fd, SECRET)  # terraform makes its states 0644; strata's writes are 0600
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)

    def delete(self) -> None:
        with _held_guard:
            held = str(self.path) in _held
        if not held:
            raise BackendError(f"internal error: deleting {self.where} without its lock")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # the locked descriptor stays valid until unlock closes it

    # -- locks ---------------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> None:
        key = str(self.path)
        with _held_guard:
            if key in _held:
                raise StateLocked(self._read_info(), self.where)
            try:
                private_dir(self.path.parent, repository=self.root)  # states hold secrets
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC, SECRET)
            except OSError as exc:
                raise BackendError(f"cannot open {self.where}: {exc.strerror}") from None
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                raise BackendError(f"cannot use {self.where} as a state: it is not a regular file")
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise StateLocked(self._read_info(), self.where) from None
            _held[key] = fd
        info.path = key
        try:
            self.info_path.write_text(info.to_json())
        except OSError as exc:
            self.unlock(info)
            raise BackendError(f"cannot write the lock info {self.info_path}: {exc.strerror}") from None

    def unlock(self, info: LockInfo) -> None:
        with _held_guard:
            fd = _held.pop(str(self.path), None)
        with contextlib.suppress(FileNotFoundError):
            self.info_path.unlink()
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.lockf(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read_info(self) -> LockInfo | None:
        """Terraform's lock info file, when it is one (a planted FIFO or device is no lock info, not a hang)."""
        if not self.info_path.exists():
            return None
        try:
            return LockInfo.from_json(read_config(self.info_path, str(self.info_path), LOCK_INFO_LIMIT))
        except (ConfigError, ValueError):
            return None

    def _held_elsewhere(self) -> bool:
        """Whether another process holds the fcntl lock on the state file right now."""
        with _held_guard:
            if str(self.path) in _held:
                return True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return False
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            finally:
                os.close(fd)  # closing drops the probe lock
            return False

    def current_lock(self) -> LockInfo | None:
        info = self._read_info()
        live = self._held_elsewhere()
        if info is None and not live:
            return None
        if info is None:
            info = LockInfo("", "", "unknown (no lock info file)", "", "")
        info.holder["state"] = "held" if live else "stale: no process holds the file lock"
        info.holder["live"] = live
        pid = lock_holder_pid(self.path) if live else None
        if pid is not None:
            info.holder["pid"] = pid
        return info

    def force_unlock(self, holder: LockInfo) -> None:
        if self._held_elsewhere():
            raise BackendError(f"{self.where} is locked by a running process; it releases the lock when it ends")
        with contextlib.suppress(FileNotFoundError):
            self.info_path.unlink()

    # -- history -------------------------------------------------------------------------------------

    def remember(self, data: bytes, operation: str) -> None:
        remember_file(self.history_dir, data, operation)

    def versions(self) -> list[StateVersion]:
        current = self.read()
        return file_versions(self.history_dir, current)

    def read_version(self, version_id: str) -> bytes:
        return read_file_version(self.history_dir, version_id, self.where)


def lock_holder_pid(path: Path) -> int | None:
    """The process holding the POSIX (fcntl) lock on ``path``, from /proc/locks (Linux); None when unknown.

    Terraform's lock info file names a user and a host, not a process: this names the one to stop.
    """
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read(1 << 22).splitlines()
    except OSError:
        return None
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 8037 fe:00:2433074 0 EOF"; waiters are shown as "1: -> POSIX ..."
        if len(fields) < 6 or fields[1] != "POSIX":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == wanted:
                return int(fields[4])
        except ValueError:
            continue
    return None


# strata's history of a state kept as files: <dir>/<UTC time>-<sha256 prefix>.tfstate (newest sorts last)


def remember_file(history_dir: Path, data: bytes, operation: str) -> None:
    """Keep ``data`` as a version unless the newest kept version has the same bytes."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    existing = sorted(history_dir.glob("*.tfstate")) if history_dir.is_dir() else []
    if existing and existing[-1].stem.endswith(digest):
        return  # an older copy written back is a new version: verify must see the serial go down
    private_dir(history_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    write_atomic(history_dir / f"{stamp}-{digest}.tfstate", data, mode=SECRET)


def file_versions(history_dir: Path, current: bytes | None) -> list[StateVersion]:
    if not history_dir.is_dir():
        return []
    digest = hashlib.sha256(current).hexdigest()[:16] if current else None
    out = []
    for n, p in enumerate(sorted(history_dir.glob("*.tfstate"), reverse=True)):
        stamp = p.stem.split("-", 1)[0]
        try:
            when = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            when = None
        try:
            size = p.stat().st_size
        except OSError:  # a dangling link: listed, its reading will say what is wrong
            size = 0
        out.append(StateVersion(p.stem, when, size, current=n == 0 and digest is not None and
                                p.stem.endswith(digest), kind="history"))
    return out


def read_file_version(history_dir: Path, version_id: str, where: str) -> bytes:
    if "/" in version_id or version_id.startswith("."):
        raise BackendError(f"no version {version_id!r} of {where}")
    path = history_dir / f"{version_id}.tfstate"
    if not os.path.lexists(path):
        raise BackendError(f"no version {version_id!r} of {where} (see `strata state versions`)")
    try:  # a regular file of bounded size: a FIFO or a link to /dev/zero planted there must not hang strata
        return read_config(path, str(path), MAX_STATE_SIZE)
    except ConfigError as exc:
        raise BackendError(f"version {version_id} of {where} in strata's history: {exc}") from None


BACKEND = LocalBackend()
