"""Run one terraform process: its own session, its output in a file strata follows, signals forwarded.

terraform runs in a new session so that a Ctrl-C in the terminal (or the terminal's hangup) reaches strata
only. strata then forwards exactly one SIGINT, which terraform answers by stopping gracefully: it writes its
state and releases its lock. (Two SIGINTs make terraform exit at once, which can lose state; that is what a
second Ctrl-C to strata is for.)

terraform writes its output to a file, never to a pipe, and strata follows that file. Nothing ties
terraform to strata's life: if strata dies abruptly (kill -9, the out-of-memory killer), terraform runs to
its end, saves its state and releases its lock. (Through a pipe, terraform would die of SIGPIPE at its next
line of output, after the real world changed and before its state did.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

POLL = 0.05  # seconds between two looks at the output file while the process runs
SECRET = 0o600  # what terraform prints may hold secrets


@dataclass(slots=True)
class Completed:
    exit_code: int
    output: str
    duration: float
    interrupted: bool

    @property
    def signal(self) -> int | None:
        """The signal that killed the process, when one did."""
        return -self.exit_code if self.exit_code < 0 else None


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
        on_line: Callable[[str], None] | None = None, *, output: Path | None = None,
        on_start: Callable[[int], None] | None = None) -> Completed:
    """Run ``argv`` in ``cwd``; every output line goes to ``log`` and ``on_line``; never raises on exit code.

    The process writes to ``output`` (created 0600, removed once every line is copied to ``log``), or to an
    anonymous temporary file; if strata dies first, a named ``output`` keeps what it printed since.
    ``on_start`` gets the process id as soon as the process runs.
    """
    started = time.monotonic()
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    with _output_file(output) as sink:
        try:
            proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            message = f"cannot start {argv[0]}: {exc.strerror}"
            log.write(message + "\n")
            return Completed(127, message, time.monotonic() - started, False)
        group.add(proc)
        lines: list[str] = []
        failures: list[BaseException] = []

        def take(raw: bytes) -> None:
            line = raw.decode("utf-8", errors="replace")
            lines.append(line)
            with contextlib.suppress(ValueError):  # the log was closed: the run ended while a straggler wrote
                log.write(line + "\n")
            if on_line is not None and not failures:
                try:
                    on_line(line)
                except Exception as exc:  # handed to the caller once the process has exited
                    failures.append(exc)

        follower = _Follower(sink.fileno(), take)
        try:
            if on_start is not None:
                on_start(proc.pid)
            # Until the process exits, not until its output ends: something it started (a provisioner's
            # background job) may write to the file long after.
            while proc.poll() is None:
                follower.read()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=POLL)
            follower.read(final=True)
        finally:
            group.remove(proc)
            if proc.poll() is None:  # only when the loop itself was interrupted by an exception
                _signal(proc, signal.SIGKILL)
                proc.wait()
            log.flush()
    if failures:
        raise failures[0]
    return Completed(proc.returncode, "\n".join(lines), time.monotonic() - started, group.interrupted)


class _Follower:
    """Reads what was appended to a file since the last look, and hands over every whole line."""

    def __init__(self, fd: int, take: Callable[[bytes], None]) -> None:
        self.fd = fd
        self.take = take
        self.offset = 0
        self.pending = b""

    def read(self, final: bool = False) -> None:
        while chunk := os.pread(self.fd, 1 << 16, self.offset):  # pread: the writer's offset is not ours
            self.offset += len(chunk)
            *whole, self.pending = (self.pending + chunk).split(b"\n")
            for raw in whole:
                self.take(raw)
        if final and self.pending:  # a last line without a newline
            self.take(self.pending)
            self.pending = b""


@contextlib.contextmanager
def _output_file(path: Path | None) -> Iterator[IO[bytes]]:
    """The file the process writes to, open for reading too; ``path`` is removed afterwards."""
    if path is None:
        with tempfile.TemporaryFile() as anonymous:
            yield anonymous
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, SECRET)
    with os.fdopen(fd, "w+b") as named:
        yield named
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
