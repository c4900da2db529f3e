"""Run one terraform process: its own process group, output streamed line by line, signals forwarded.

terraform runs in a new session so that a Ctrl-C in the terminal reaches strata only. strata then
forwards exactly one SIGINT, which terraform answers by stopping gracefully: it writes its state and
releases its lock. (Two SIGINTs make terraform exit at once, which can lose state; that is what a
second Ctrl-C to strata is for.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PIPE_GRACE = 2.0  # seconds to finish reading output after the process has exited


@dataclass(slots=True)
class Completed:
    exit_code: int
    output: str
    duration: float
    interrupted: bool


class ProcessGroup:
    """The terraform processes running now, so that an interrupt can reach all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.interrupted = False
        self.killed = False

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.add(proc)
            if self.killed:
                _signal(proc, signal.SIGKILL)
            elif self.interrupted:
                _signal(proc, signal.SIGINT)

    def remove(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    def interrupt(self) -> None:
        """First interrupt: ask every running terraform to stop gracefully (once)."""
        with self._lock:
            if self.interrupted:
                return
            self.interrupted = True
            for proc in self._running:
                _signal(proc, signal.SIGINT)

    def kill(self) -> None:
        """Second interrupt: stop everything now."""
        with self._lock:
            self.interrupted = self.killed = True
            for proc in self._running:
                _signal(proc, signal.SIGKILL)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._running)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # it has just exited
        os.killpg(proc.pid, sig)


def run(argv: Sequence[str], cwd: Path, env: dict[str, str], group: ProcessGroup, log: IO[str],
        on_line: Callable[[str], None] | None = None) -> Completed:
    """Run ``argv`` in ``cwd``; every output line goes to ``log`` and ``on_line``; never raises on exit code."""
    started = time.monotonic()
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        message = f"cannot start {argv[0]}: {exc.strerror}"
        log.write(message + "\n")
        return Completed(127, message, time.monotonic() - started, False)
    group.add(proc)
    lines: list[str] = []
    failures: list[BaseException] = []
    stream = proc.stdout
    assert stream is not None

    def pump() -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                lines.append(line)
                try:
                    log.write(line + "\n")
                except ValueError:  # the log was closed: the run ended while a straggler still wrote
                    return
                if on_line is not None:
                    on_line(line)
        except Exception as exc:  # handed to the caller below
            failures.append(exc)

    # The output is read in a thread so that strata returns when terraform exits, even if something it
    # started (a provisioner's background job) still holds the pipe open.
    reader = threading.Thread(target=pump, name="strata-output", daemon=True)
    reader.start()
    try:
        proc.wait()
        reader.join(timeout=PIPE_GRACE)
    finally:
        group.remove(proc)
        if proc.poll() is None:  # only when wait() itself was interrupted by an exception
            _signal(proc, signal.SIGKILL)
            proc.wait()
        log.flush()
    if failures:
        raise failures[0]
    return Completed(proc.returncode, "\n".join(lines), time.monotonic() - started, group.interrupted)
