"""The rules every state write follows, whatever the backend.

1. Take the state's lock (Terraform's own lock for the backend type), retrying up to ``lock_timeout``;
   an interrupt or SIGTERM releases it.
2. Read the current state under the lock and refuse a stale write (the state moved on since the
   caller read it).
3. Back it up to ``.strata/backups/<stack>/`` (and into strata's history) before anything changes.
4. Keep the lineage; the new serial is one above every serial known (the current state's, every
   version's in the history or S3 object versions), so it never goes back; write, read back, compare.

A current state that is damaged (not JSON, not version 4, a negative or absurd serial...) refuses every
write except the two that repair it, ``state restore`` and ``state push``: those back up the damaged
bytes as they are, then write. :func:`usable_state` is the check that runs before anything relies on a
state (a plan, a dependent's inputs).

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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
from strata.run.running import process_alive
from strata.state.document import MAX_SERIAL, StateDocument, StateFormatError


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
    damaged: str | None = None  # what was wrong with the state this write replaced (restore, push)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "location": self.where, "serial": self.serial, "lineage": self.lineage,
                "sha256": self.sha256, "previous_serial": self.previous_serial,
                "backup": str(self.backup) if self.backup else None, "replaced_damaged_state": self.damaged}


def backup_dir(root: Path, stack: Stack) -> Path:
    return root / ".strata" / "backups" / stack.path


def keep_backup(root: Path, stack: Stack, raw: bytes, operation: str, serial: int | None) -> Path:
    """Write ``raw`` to the stack's backup folder (fsynced) and return the file (``serial`` None: the
    bytes are not a usable state, and are kept as they are)."""
    folder = private_dir(backup_dir(root, stack))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    label = f"serial{serial}" if serial is not None else "damaged"
    target = folder / f"{stamp}-{re.sub(r'[^a-z0-9]+', '-', operation.lower())}-{label}.tfstate"
    write_atomic(target, raw, mode=SECRET)
    return target


@dataclass(frozen=True, slots=True)
class Known:
    """What a stack's versions (S3 object versions, strata's history) say about its state."""

    serials: tuple[int, ...] = ()  # every valid serial found in a version
    lineage: str = ""  # of the newest sound version
    had_state: tuple[str, int, int] | None = None  # (version, serial, resources) of the newest non-empty one


def known_from(versions: list[tuple[str, bytes]]) -> Known:
    """:class:`Known` from ``(version id, bytes)`` pairs, newest first; damaged versions are skipped."""
    serials: list[int] = []
    lineage = ""
    had_state = None
    for version_id, data in versions:
        try:
            doc = StateDocument.parse(data)
        except StateFormatError:
            continue
        if doc.serial_problem() is None:
            serials.append(doc.serial)
        if doc.problems():
            continue
        lineage = lineage or doc.lineage
        if had_state is None and not doc.is_empty():
            had_state = (version_id, doc.serial, doc.resource_count)
    return Known(tuple(serials), lineage, had_state)


def known(store: StateStore) -> Known:
    """What the store's versions say. It reads every version (a write is rare, and its serial must not
    go back), a few at once: S3 object versions are one request each."""
    ids = [v.id for v in store.versions()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return known_from(list(zip(ids, pool.map(store.read_version, ids), strict=True)))


def next_serial(known: Known, *docs: StateDocument | None) -> int:
    """One above every valid serial known: the versions', and those of ``docs`` (current, new)."""
    found = [*known.serials, *(d.serial for d in docs if d is not None and d.serial_problem() is None)]
    serial = max(found, default=0) + 1
    if serial > MAX_SERIAL:
        raise StateError(f"the next serial would be {serial}, above {MAX_SERIAL}")
    return serial


def _damage(raw: bytes) -> tuple[StateDocument | None, str | None]:
    """(the state, None) when ``raw`` is a sound state, else (None, what is wrong with it)."""
    try:
        doc = StateDocument.parse(raw)
    except StateFormatError as exc:
        return None, str(exc)
    problems = doc.problems()
    return (None, "; ".join(problems)) if problems else (doc, None)


def _repair_hint(stack: Stack) -> str:
    return (f"repair it with `strata state restore {stack.path} --version ID` (see `strata state versions "
            f"{stack.path}`) or `strata state push {stack.path} FILE`")


def usable_state(stack: Stack, store: StateStore) -> StateDocument | None:
    """The stack's current state, checked before anything relies on it (its plan, a dependent's inputs).

    None when the stack has never had state: mock outputs are for such stacks only. A StateError when the
    state is damaged or of an unsupported format version, or when it is missing or empty while its
    versions show it had resources or outputs (it was emptied or deleted: a plan would recreate
    everything, and its dependents would plan with mock outputs).
    """
    try:
        raw = store.read()
        history = known(store) if raw is None else Known()
    except BackendError as exc:
        raise failure(stack, store, exc) from None
    return _judge(stack, store, raw, history)


def _judge(stack: Stack, store: StateStore, raw: bytes | None, history: Known) -> StateDocument | None:
    where = f"{stack.path} ({store.backend} backend, {store.where})"
    if raw is None:
        if history.had_state is None:
            return None
        version, serial, count = history.had_state
        raise StateError(f"{where}: the state is missing or empty, but version {version} (serial {serial}, "
                         f"{count} resource(s)) shows it had one: it was emptied or deleted. Restore it with "
                         f"`strata state restore {stack.path} --version {version}`; if it was removed on "
                         f"purpose, push an empty state with `strata state push {stack.path} FILE`")
    doc, damage = _damage(raw)
    if doc is None:
        raise StateError(f"{where}: the state is not usable: {damage}; {_repair_hint(stack)}")
    return doc


def check_usable(root: Path, stack: Stack) -> None:
    """:func:`usable_state` for a stack about to run terraform.

    Only what strata actually read is judged: where it cannot read the state (a backend it cannot open,
    no boto3/psycopg, credentials only terraform has, an unreachable endpoint), terraform decides.
    """
    if stack.backend is None:
        return
    backend = get_backend(stack.backend.type)
    if backend is None:
        return
    try:
        store = backend.store(stack.backend.values(), root / stack.path, root)
    except (NotImplementedError, StrataError):
        return
    with store:
        try:
            raw = store.read()
            history = known(store) if raw is None else Known()
        except StrataError:
            return
        _judge(stack, store, raw, history)


Build = Callable[[StateDocument | None, bool, Known], bytes]


def _write(root: Path, stack: Stack, store: StateStore, operation: str, build: Build, *, lock_timeout: float,
           expected_serial: int | None = None, repair: bool = False, history: bool = True) -> WriteResult:
    """The rules above, once: lock, read, back up, ``build(current, damaged, known)``, write, compare."""
    with holding_lock(stack, store, operation, lock_timeout):
        try:
            raw = store.read()
            versions = known(store) if history else Known()
        except BackendError as exc:
            raise failure(stack, store, exc) from None
        current, damage = _damage(raw) if raw is not None else (None, None)
        if damage is not None and not repair:
            raise StateError(f"{stack.path} ({store.where}): the state is not usable: {damage}; nothing was "
                             f"written; {_repair_hint(stack)}")
        if expected_serial is not None and current is not None and current.serial != expected_serial:
            raise StateError(f"{stack.path} ({store.where}): the state changed since it was read (serial "
                             f"{expected_serial} → {current.serial}); nothing was written, run the command again")
        data = build(current, damage is not None, versions)  # may refuse: before anything is written
        backup = None
        if raw is not None:  # damaged bytes too, as they are: they may be all that is left
            backup = keep_backup(root, stack, raw, operation, current.serial if current is not None else None)
            if current is not None:
                try:
                    store.remember(raw, f"before {operation}")
                except BackendError as exc:
                    raise failure(stack, store, exc) from None
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
                       current.serial if current is not None else None, backup, damage)


def write_state(root: Path, stack: Stack, store: StateStore, contents: bytes, *, operation: str,
                lock_timeout: float = 0.0, expected_serial: int | None = None, exact: bool = False,
                repair: bool = False) -> WriteResult:
    """Replace the stack's state with ``contents`` under the rules above.

    The written state keeps the current lineage and gets a serial above every known one.
    ``expected_serial`` refuses the write when the state has moved on since the caller read it. ``exact``
    writes the bytes unchanged (a replica): allowed only over no state, an empty state, or an older serial
    of the same lineage. ``repair`` replaces a damaged current state (kept as a backup) instead of refusing.
    """
    new = parse(stack, store, contents)
    problems = new.problems() if exact else new.content_problems()
    if problems:
        raise StateError(f"{stack.path}: refusing to write a state that is not sound: {'; '.join(problems)}")

    def build(current: StateDocument | None, damaged: bool, history: Known) -> bytes:
        if exact:
            if current is not None and not current.is_empty():
                if current.lineage and new.lineage != current.lineage:
                    raise StateError(f"{stack.path} ({store.where}): refusing to overwrite a state of lineage "
                                     f"{current.lineage} with one of lineage {new.lineage}")
                if current.serial > new.serial:
                    raise StateError(f"{stack.path} ({store.where}): refusing to replace serial {current.serial} "
                                     f"with the older serial {new.serial}")
                _refuse_same_serial(stack, store, current, new, f"a copy of serial {new.serial}")
            return contents
        lineage = (current.lineage if current is not None and current.lineage
                   else new.lineage or history.lineage or str(uuid.uuid4()))
        # the new contents' serial counts only where no current state tells the next one (as before)
        return new.with_identity(next_serial(history, current, new if current is None else None), lineage)

    return _write(root, stack, store, operation, build, lock_timeout=lock_timeout, expected_serial=expected_serial,
                  repair=repair, history=not exact)


def restore(root: Path, stack: Stack, store: StateStore, version_id: str, *, lock_timeout: float = 0.0) -> WriteResult:
    """Make version ``version_id`` the current state again (keeping lineage, serial above every known one).

    A damaged current state is no obstacle: restoring is how it is repaired (its bytes are backed up first).
    """
    _refuse_while_locked(stack, store, "restore")
    try:
        raw = store.read_version(version_id)
    except BackendError as exc:
        raise failure(stack, store, exc) from None
    try:
        problems = StateDocument.parse(raw).problems()
    except StateFormatError as exc:
        problems = [str(exc)]
    if problems:
        raise StateError(f"{stack.path}: version {version_id} is not a sound state: {'; '.join(problems)}")
    return write_state(root, stack, store, raw, operation="state-restore", lock_timeout=lock_timeout, repair=True)


def push(root: Path, stack: Stack, store: StateStore, contents: bytes, source: str, *, force_lineage: bool = False,
         force: bool = False, lock_timeout: float = 0.0, errored_state: bool = False) -> WriteResult:
    """Write the state in ``contents`` (from ``source``, e.g. terraform's ``errored.tfstate``) as the stack's.

    It must be a sound version-4 state (an empty lineage takes the stack's). Its lineage must be the current
    state's, unless the current state is absent or empty (no resources, no outputs), or ``force_lineage``
    (Terraform's ``state push -force``); over a damaged state, the newest sound version's lineage counts.
    Within the current state's lineage, its serial must not be below the current one, and at the current
    serial its contents must be the current state's (Terraform's rules): else it was made from an older
    read, and writing it would undo what was written since (another apply). The stack's ``errored_state``
    may have the current serial with other contents (terraform made it from the current state and could
    not save it, so it still has the serial it read); ``force`` overrides both (Terraform's ``-force``).
    The serial is one above every known one, the pushed file's included.
    """
    try:
        new = StateDocument.parse(contents)
    except StateFormatError as exc:
        raise StateError(f"{source} is not a state strata can push: {exc}") from None
    problems = [*new.content_problems(), *filter(None, [new.serial_problem()])]
    if problems:
        raise StateError(f"{source} is not a sound version-4 state: {'; '.join(problems)}; nothing was written")
    _refuse_while_locked(stack, store, "push")

    def build(current: StateDocument | None, damaged: bool, history: Known) -> bytes:
        if current is not None:
            theirs, what = ("", "") if current.is_empty() else (current.lineage, "the current state")
        else:
            theirs, what = (history.lineage, "the newest sound version") if damaged else ("", "")
        if new.lineage and theirs and new.lineage != theirs and not force_lineage:
            raise StateError(f"{stack.path} ({store.where}): refusing to push {source}: its lineage {new.lineage} "
                             f"is not the lineage {theirs} of {what}, so it is another state; nothing was written "
                             "(pass --force-lineage to replace it anyway, like `terraform state push -force`)")
        if current is not None and not current.is_empty() and not force:
            _refuse_older_serial(stack, store, current, new, source)
            if not errored_state:
                _refuse_same_serial(stack, store, current, new, source)
        lineage = (new.lineage or (current.lineage if current is not None else "") or history.lineage
                   or str(uuid.uuid4()))
        return new.with_identity(next_serial(history, current, new), lineage)

    return _write(root, stack, store, "state-push", build, lock_timeout=lock_timeout, repair=True)


def _refuse_same_serial(stack: Stack, store: StateStore, current: StateDocument, new: StateDocument,
                        what: str) -> None:
    """Terraform's rule: one lineage and serial, one content. The same serial with other contents was read
    before the current state was written (its update would be lost) or edited by hand without a new serial."""
    if new.conflicts_with(current):
        raise StateError(f"{stack.path} ({store.where}): refusing to write {what}: it has the current state's "
                         f"lineage and serial ({new.serial}) but other contents, so it was made from an older read "
                         "of the state or edited by hand; nothing was written. Compare it with `strata state pull "
                         f"{stack.path}`; if its contents are the ones to keep, set its serial to {current.serial + 1} "
                         "(as `terraform state push` asks)")


def _refuse_older_serial(stack: Stack, store: StateStore, current: StateDocument, new: StateDocument,
                         source: str) -> None:
    """A lower serial of the current lineage was pulled before the current state was written: pushing it
    would silently drop what was written since (typically another apply between pull, edit and push)."""
    if new.lineage in ("", current.lineage) and new.serial < current.serial:
        raise StateError(f"{stack.path} ({store.where}): refusing to push {source}: its serial {new.serial} is "
                         f"below the current state's serial {current.serial} (lineage {current.lineage}), so it "
                         "was made from an older read of the state and pushing it would undo what was written "
                         "since (another apply, for instance); nothing was written. Pull the state again "
                         f"(`strata state pull {stack.path}`) and redo the edit on it; to go back to an older "
                         f"version on purpose, use `strata state restore {stack.path} --version ID` (see "
                         f"`strata state versions {stack.path}`); to overwrite the newer state knowingly, pass "
                         "--force (it is backed up first)")


def _refuse_while_locked(stack: Stack, store: StateStore, what: str) -> None:
    try:
        lock = store.current_lock()
    except BackendError as exc:
        raise failure(stack, store, exc) from None
    if lock is not None and lock.holder.get("live", True) is not False:
        raise StateError(f"{stack.path} ({store.where}): refusing to {what} while the state is locked by "
                         f"{lock.describe()}")


# -- who holds a lock ----------------------------------------------------------------------------------------


def live_local_holder(holder: LockInfo, stack_dir: Path) -> str | None:
    """Why the holder is a live process on this machine (so its lock must not be removed), or None."""
    if holder.holder.get("live") is True:
        held_by = holder.holder.get("pid")  # the local backend reads it from /proc/locks
        return "a running process on this machine holds it" + (f" (pid {held_by})" if held_by else "")
    pid = holder.strata_pid()
    if pid is not None and process_alive(pid) and pid != os.getpid():
        return f"strata process {pid} on this machine is still running"
    host = socket.gethostname()
    if holder.who.endswith(f"@{host}"):
        for tf_pid in _terraform_processes_in(stack_dir):
            return f"terraform process {tf_pid} is still running in {stack_dir}"
    return None


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
