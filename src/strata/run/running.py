"""The terraform processes strata has started, recorded so that a later run finds one that outlived its strata.

terraform writes to a file and runs in its own session, so when strata dies abruptly (kill -9, the
out-of-memory killer) terraform goes on: it finishes, saves its state and releases its lock. Until it has,
the next strata run must not start terraform in that stack, nor remove the lock, nor be silent about it:
it finds the record written here (``.strata/running/<stack>/<pid>.json``), sees the process still running
and its strata gone, and says so. Records of processes that have ended are removed on the way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from strata.atomic import SECRET, private_dir, write_atomic
from strata.config.discover import read_config
from strata.errors import ConfigError

# terraform subcommands that take no state lock (for the words of the message only)
LOCK_FREE = frozenset({"init", "validate", "output", "version", "fmt", "providers", "show", "graph", "get"})


@dataclass(frozen=True, slots=True)
class Running:
    pid: int
    strata_pid: int
    command: str  # the terraform subcommand: apply, plan, init...
    since: str  # UTC, ISO 8601 to the second
    output: str  # the file it writes to, relative to the repository root
    start_ticks: int | None  # when the process started, in clock ticks since boot: a reused pid is not it

    def describe(self) -> str:
        return f"terraform {self.command} (pid {self.pid}, running since {self.since})"


def _folder(root: Path, stack_path: str) -> Path:
    return root / ".strata" / "running" / (stack_path.replace("/", "__") or "root")


def record(root: Path, stack_path: str, pid: int, command: str, output: Path) -> Path:
    """Note that terraform ``pid`` runs in the stack for this strata; returns the record to :func:`forget`."""
    entry = Running(pid, os.getpid(), command, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    os.path.relpath(output, root), _start_ticks(pid))
    path = private_dir(_folder(root, stack_path)) / f"{pid}.json"
    write_atomic(path, (json.dumps(asdict(entry)) + "\n").encode(), mode=SECRET, durable=False)
    return path


def forget(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only when empty: another run's record in the same stack keeps it


def orphan(root: Path, stack_path: str) -> Running | None:
    """A terraform still running in the stack whose strata has died (records of ended processes removed)."""
    folder = _folder(root, stack_path)
    if not folder.is_dir():
        return None
    found = None
    for path in sorted(folder.glob("*.json")):
        entry = _read(path)
        if entry is None:
            forget(path)  # unreadable, or not a record strata writes (cut short, or planted)
            continue
        if not _runs(entry):
            forget(path)
        elif not process_alive(entry.strata_pid) and found is None:
            found = entry
    return found


_PID_MAX = 1 << 22  # the kernel's largest pid_max
_RECORD_LIMIT = 4096  # bytes: a record strata writes is far smaller
_COMMAND = re.compile(r"[a-z][a-z0-9-]{0,31}")
_SINCE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _read(path: Path) -> Running | None:
    """The record, when it is exactly what :func:`record` writes: a record is only ever believed (and its
    words echoed) when every field has its type and shape, so a planted one cannot crash strata, lock a stack
    for good (pid 1), advise signalling every process (pid 0 or -1) or write escape codes to the terminal."""
    try:
        data = json.loads(read_config(path, str(path), _RECORD_LIMIT))  # a FIFO or /dev/zero: no record
    except (ConfigError, ValueError):
        return None
    if not isinstance(data, dict) or set(data) != {f.name for f in fields(Running)}:
        return None
    pid, strata_pid, ticks = data["pid"], data["strata_pid"], data["start_ticks"]
    whole = all(type(n) is int and 1 < n < _PID_MAX for n in (pid, strata_pid))
    if not whole or type(ticks) is not int or ticks < 0:
        return None
    command, since, output = data["command"], data["since"], data["output"]
    if not (isinstance(command, str) and _COMMAND.fullmatch(command) and isinstance(since, str)
            and _SINCE.fullmatch(since) and isinstance(output, str) and output.isprintable() and len(output) < 1024):
        return None
    return Running(pid, strata_pid, command, since, output, ticks)


def _runs(entry: Running) -> bool:
    if not process_alive(entry.pid):
        return False
    return _start_ticks(entry.pid) == entry.start_ticks  # the same process, not a reused pid


def process_alive(pid: int) -> bool:
    """A running process (an exited one not yet reaped, a zombie, does not count). Any pid may come from a
    file (a lock's holder): 0 and negative ones name process groups and too large ones no process."""
    if not 0 < pid < _PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _state(pid) != "Z"


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None  # field 22 of stat(5)
