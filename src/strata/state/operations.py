"""The rules every state write follows, whatever the backend.

1. Take the state's lock (Terraform's own lock for the backend type), retrying up to ``lock_timeout``;
   an interrupt or SIGTERM releases it.
2. Read the current state under the lock and refuse a stale write (the state moved on since the
   caller read it).
3. Back it up to ``.strata/backups/<stack>/`` (and into strata's history) before anything changes.
4. Keep the lineage, raise the serial by one, write, read back and compare.

Stores (:mod:`strata.backends`) only move bytes; this module is the one place these rules live.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from strata.atomic import SECRET, private_dir, write_atomic
from strata.backends import get_backend
from strata.backends.base import BackendError, LockInfo, StateLocked, StateStore
from strata.errors import StrataError, UsageError
from strata.model.stack import Stack
from strata.state.document import StateDocument, StateFormatError


class StateError(StrataError):
    """A state operation failed; the message names the stack and the backend."""


def open_store(root: Path, stack: Stack, values: dict[str, Any] | None = None) -> StateStore:
    """The stack's state store (``values`` overrides its backend settings, e.g. a DR copy)."""
    if stack.backend is None:
        raise StateError(f"{stack.path}: its backend configuration has errors (see `strata validate`)")
    backend = get_backend(stack.backend.type)
    try:
        if backend is None:
            raise NotImplementedError
        return backend.store(values if values is not None else stack.backend.values(), root / stack.path, root)
    except NotImplementedError:
        raise StateError(f"{stack.path}: strata cannot work with {stack.backend.type} state yet "
                         "(supported: local, s3, pg)") from None


def failure(stack: Stack, store: StateStore | None, exc: Exception) -> StateError:
    """A backend problem as a message naming the stack and where its state lives."""
    where = f" ({store.backend} backend, {store.where})" if store is not None else ""
    return StateError(f"{stack.path}{where}: {exc}")


def parse(stack: Stack, store: StateStore, raw: bytes) -> StateDocument:
    try:
        return StateDocument.parse(raw)
    except StateFormatError as exc:
        raise StateError(f"{stack.path} ({store.backend} backend, {store.where}): the state is not usable: "
                         f"{exc}") from None


def sound(raw: bytes) -> bool:
    """Whether ``raw`` is a state worth keeping in strata's history (parses, version 4, has a lineage)."""
    try:
        return not StateDocument.parse(raw).problems()
    except StateFormatError:
        return False


# -- locks -------------------------------------------------------------------------------------------------


def duration_seconds(text: str) -> float:
    """Terraform-style durations: "0s", "30s", "5m", "1m30s", "2h"."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"invalid duration {text!r} (examples: 0s, 30s, 5m)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


class _TerminateAsInterrupt:
    """While a lock is held, SIGTERM and SIGHUP unwind like Ctrl-C so ``finally`` releases the lock."""

    def __enter__(self) -> None:
        self.previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self.previous[sig] = signal.signal(sig, self._raise)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def holding_lock(stack: Stack, store: StateStore, operation: str, lock_timeout: float = 0.0) -> Iterator[LockInfo]:
    """Hold the state's lock for the block, waiting up to ``lock_timeout`` seconds for it."""
    info = LockInfo.new(operation)
    deadline = time.monotonic() + lock_timeout
    delay = 0.5
    with _TerminateAsInterrupt():
        while True:
            try:
                store.lock(info)
                break
            except StateLocked as exc:
                if time.monotonic() + delay > deadline:
                    raise StateError(f"{stack.path} ({store.backend} backend, {store.where}): the state is locked "
                                     f"by {exc.holder.describe() if exc.holder else 'an unknown holder'}; "
                                     "wait, pass --lock-timeout, or see `strata locks`") from None
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
            except BackendError as exc:
                raise failure(stack, store, exc) from None
        try:
            yield info
        finally:
            try:
                store.unlock(info)
            except BackendError as exc:
                raise failure(stack, store, BackendError(f"could not release the lock {info.id}: {exc}; "
                                                         "release it with `strata unlock`")) from None


# -- writes ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WriteResult:
    stack: str
    where: str
    serial: int
    lineage: str
    sha256: str
    previous_serial: int | None
    backup: Path | None

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "location": self.where, "serial": self.serial, "lineage": self.lineage,
                "sha256": self.sha256, "previous_serial": self.previous_serial,
                "backup": str(self.backup) if self.backup else None}


def backup_dir(root: Path, stack: Stack) -> Path:
    return root / ".strata" / "backups" / stack.path


def keep_backup(root: Path, stack: Stack, raw: bytes, operation: str, serial: int) -> Path:
    """Write ``raw`` to the stack's backup folder (fsynced) and return the file."""
    folder = private_dir(backup_dir(root, stack))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"{stamp}-{re.sub(r'[^a-z0-9]+', '-', operation.lower())}-serial{serial}.tfstate"
    write_atomic(target, raw, mode=SECRET)
    return target


def write_state(root: Path, stack: Stack, store: StateStore, contents: bytes, *, operation: str,
                lock_timeout: float = 0.0, expected_serial: int | None = None, exact: bool = False) -> WriteResult:
    """Replace the stack's state with ``contents`` under the rules above.

    The written state keeps the current lineage and gets the current serial + 1. ``expected_serial``
    refuses the write when the state has moved on since the caller read it. ``exact`` writes the bytes
    unchanged (a replica): allowed only over no state, an empty state, or an older serial of the same
    lineage.
    """
    new = parse(stack, store, contents)
    problems = new.problems() if exact else [p for p in new.problems() if "lineage" not in p and "serial" not in p]
    if problems:
        raise StateError(f"{stack.path}: refusing to write a state that is not sound: {'; '.join(problems)}")
    with holding_lock(stack, store, operation, lock_timeout):
        try:
            raw = store.read()
        except BackendError as exc:
            raise failure(stack, store, exc) from None
        current = parse(stack, store, raw) if raw is not None else None
        if expected_serial is not None and current is not None and current.serial != expected_serial:
            raise StateError(f"{stack.path} ({store.where}): the state changed since it was read (serial "
                             f"{expected_serial} → {current.serial}); nothing was written, run the command again")
        backup = None
        if current is not None and raw is not None:
            backup = keep_backup(root, stack, raw, operation, current.serial)
            try:
                store.remember(raw, f"before {operation}")
            except BackendError as exc:
                raise failure(stack, store, exc) from None
        if exact:
            if current is not None and not current.is_empty():
                if current.lineage and new.lineage != current.lineage:
                    raise StateError(f"{stack.path} ({store.where}): refusing to overwrite a state of lineage "
                                     f"{current.lineage} with one of lineage {new.lineage}")
                if current.serial > new.serial:
                    raise StateError(f"{stack.path} ({store.where}): refusing to replace serial {current.serial} "
                                     f"with the older serial {new.serial}")
            data = contents
        else:
            lineage = (current.lineage if current is not None and current.lineage
                       else new.lineage or str(uuid.uuid4()))
            serial = current.serial + 1 if current is not None else max(new.serial, 0) + 1
            data = new.with_identity(serial, lineage)
        try:
            store.write(data)
            written = store.read()
        except BackendError as exc:
            raise failure(stack, store, exc) from None
        if written != data:
            kept = f"; the previous state is kept in {backup}" if backup else ""
            raise StateError(f"{stack.path} ({store.where}): the state read back differs from what was "
                             f"written{kept}")
        try:
            store.remember(data, operation)
        except BackendError as exc:
            written_serial = StateDocument.parse(data).serial
            raise failure(stack, store, BackendError(f"the state was written (serial {written_serial}), but keeping "
                                                     f"it in strata's history failed: {exc}")) from None
    done = StateDocument.parse(data)
    return WriteResult(stack.path, store.where, done.serial, done.lineage, done.sha256,
                       current.serial if current is not None else None, backup)


def restore(root: Path, stack: Stack, store: StateStore, version_id: str, *, lock_timeout: float = 0.0) -> WriteResult:
    """Make version ``version_id`` the current state again (keeping lineage, serial above the current)."""
    try:
        lock = store.current_lock()
    except BackendError as exc:
        raise failure(stack, store, exc) from None
    if lock is not None and lock.holder.get("live", True) is not False:
        raise StateError(f"{stack.path} ({store.where}): refusing to restore while the state is locked by "
                         f"{lock.describe()}")
    try:
        raw = store.read_version(version_id)
    except BackendError as exc:
        raise failure(stack, store, exc) from None
    old = parse(stack, store, raw)
    problems = old.problems()
    if problems:
        raise StateError(f"{stack.path}: version {version_id} is not a sound state: {'; '.join(problems)}")
    return write_state(root, stack, store, raw, operation="state-restore", lock_timeout=lock_timeout)


# -- who holds a lock ----------------------------------------------------------------------------------------


def live_local_holder(holder: LockInfo, stack_dir: Path) -> str | None:
    """Why the holder is a live process on this machine (so its lock must not be removed), or None."""
    if holder.holder.get("live") is True:
        return "a running process on this machine holds it"
    pid = holder.strata_pid()
    if pid is not None and _alive(pid) and pid != os.getpid():
        return f"strata process {pid} on this machine is still running"
    host = socket.gethostname()
    if holder.who.endswith(f"@{host}"):
        for tf_pid in _terraform_processes_in(stack_dir):
            return f"terraform process {tf_pid} is still running in {stack_dir}"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terraform_processes_in(folder: Path) -> Iterator[int]:
    proc = Path("/proc")
    if not proc.is_dir():
        return
    target = os.path.realpath(folder)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            cmd = (entry / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        name = os.path.basename(cmd)
        if cwd == target and name in (b"terraform", b"tofu"):  # not its provider plugins
            yield int(entry.name)
