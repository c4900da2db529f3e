"""Running one child process (strata.terraform.process): real subprocesses, real signals, real pipes.

The children are small ``sh -c`` scripts that behave like terraform where it matters: they print
lines over time, trap SIGINT to stop gracefully, or ignore it.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strata.terraform.process import Completed, ProcessGroup, run

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
HANG = 20.0


class Background:
    """``run`` in a thread, with the lines it streamed and an event per awaited line."""

    def __init__(self, argv: list[str], cwd: Path, group: ProcessGroup, wait_for: str = "ready") -> None:
        self.log = io.StringIO()
        self.lines: list[str] = []
        self.seen = threading.Event()
        self.result: Completed | None = None
        self.wait_for = wait_for

        def on_line(line: str) -> None:
            self.lines.append(line)
            if line == self.wait_for:
                self.seen.set()

        def target() -> None:
            self.result = run(argv, cwd, ENV, group, self.log, on_line)

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_ready(self) -> None:
        assert self.seen.wait(HANG), f"the child never printed {self.wait_for!r}: {self.lines}"

    def join(self, timeout: float = HANG) -> Completed:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"run() did not return within {timeout}s; lines so far: {self.lines}"
        assert self.result is not None
        return self.result


@contextlib.contextmanager
def reaped(pid_file: Path) -> Iterator[None]:
    """Kill the process group whose leader wrote its pid to ``pid_file`` (left-over background jobs)."""
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def wait_for_file(path: Path, naps: int = 1200) -> str:
    """Shell: wait until ``path`` exists (the test creates it), giving up after ``naps`` naps of 0.05 s."""
    return f"i=0; while [ ! -f {path} ] && [ $i -lt {naps} ]; do sleep 0.05; i=$((i+1)); done"


def wait_for_text(path: Path, text: str, timeout: float = HANG) -> None:
    """Wait until the file ``path`` (written by a child) holds exactly ``text`` (stripped)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip() == text:
                return
        assert time.monotonic() < deadline, f"{path} never held {text!r}"
        time.sleep(0.01)


# -- output and exit codes ---------------------------------------------------------------------------

def test_output_goes_to_the_log_and_callback_line_by_line(tmp_path: Path) -> None:
    log = io.StringIO()
    lines: list[str] = []
    done = run(sh("echo one; echo two >&2; printf 'three'"), tmp_path, ENV, ProcessGroup(), log, lines.append)
    assert done.exit_code == 0
    assert lines == ["one", "two", "three"]  # stderr merged in order; a last line without newline kept
    assert done.output == "one\ntwo\nthree"
    assert log.getvalue().splitlines() == ["$ sh -c echo one; echo two >&2; printf 'three'", "one", "two", "three"]
    assert done.interrupted is False
    assert done.duration >= 0


def test_lines_are_streamed_while_the_child_runs_not_at_the_end(tmp_path: Path) -> None:
    # The child waits (up to 1200 naps of 0.05 s, a minute at least) for a file that only the callback of its
    # first line creates: it says "second" only if that line reached the callback while it ran.
    flag = tmp_path / "flag"
    script = (f"echo first; i=0; while [ ! -f {flag} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; "
              f"[ -f {flag} ] && echo second || echo never-saw-flag")

    def on_line(line: str) -> None:
        if line == "first":
            flag.touch()

    done = run(sh(script), tmp_path, ENV, ProcessGroup(), io.StringIO(), on_line)
    assert done.output.splitlines() == ["first", "second"]


def test_the_log_is_written_as_lines_arrive(tmp_path: Path) -> None:
    log_path = tmp_path / "terraform.log"
    seen_in_log: list[str] = []
    with log_path.open("w", encoding="utf-8") as log:
        def on_line(line: str) -> None:
            log.flush()
            seen_in_log.append(log_path.read_text(encoding="utf-8"))

        run(sh("echo alpha; echo beta"), tmp_path, ENV, ProcessGroup(), log, on_line)
    assert seen_in_log[0].endswith("alpha\n")
    assert log_path.read_text(encoding="utf-8").endswith("alpha\nbeta\n")


@pytest.mark.parametrize("code", [0, 1, 2, 3, 42, 255])
def test_exit_codes_are_returned_not_raised(tmp_path: Path, code: int) -> None:
    done = run(sh(f"echo x; exit {code}"), tmp_path, ENV, ProcessGroup(), io.StringIO())
    assert done.exit_code == code


def test_cwd_env_and_no_stdin(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    done = run(sh('pwd; echo "v=$STRATA_TEST_VALUE"; cat; echo end'), tmp_path / "sub",
               {**ENV, "STRATA_TEST_VALUE": "42"}, ProcessGroup(), io.StringIO())
    assert done.output.splitlines() == [str((tmp_path / "sub").resolve()), "v=42", "end"]


def test_undecodable_bytes_do_not_break_the_run(tmp_path: Path) -> None:
    done = run(sh(r"printf 'ok \377\376 bytes\n'"), tmp_path, ENV, ProcessGroup(), io.StringIO())
    assert done.exit_code == 0
    assert done.output.startswith("ok ") and done.output.endswith(" bytes")


def test_a_missing_binary_gives_exit_127_and_a_message(tmp_path: Path) -> None:
    log = io.StringIO()
    lines: list[str] = []
    group = ProcessGroup()
    done = run([str(tmp_path / "no-such-terraform"), "plan"], tmp_path, ENV, group, log, lines.append)
    assert done.exit_code == 127
    assert "no-such-terraform" in done.output and "No such file" in done.output
    assert "No such file" in log.getvalue()
    assert group.running == 0


def test_a_file_that_is_not_executable_gives_exit_127(tmp_path: Path) -> None:
    script = tmp_path / "terraform"
    script.write_text("#!/bin/sh\necho hi\n")
    done = run([str(script)], tmp_path, ENV, ProcessGroup(), io.StringIO())
    assert done.exit_code == 127
    assert "Permission denied" in done.output


# -- process groups ----------------------------------------------------------------------------------

def test_the_child_runs_in_its_own_process_group_and_session(tmp_path: Path) -> None:
    done = run(sh("echo pid=$$; ps -o pgid= -p $$; ps -o sid= -p $$"), tmp_path, ENV, ProcessGroup(),
               io.StringIO())
    lines = [ln.strip() for ln in done.output.splitlines()]
    pid = int(lines[0].removeprefix("pid="))
    assert int(lines[1]) == pid  # process group leader
    assert int(lines[2]) == pid  # session leader: a Ctrl-C on strata's terminal does not reach it
    assert pid != os.getpgid(0)


def test_the_process_group_is_visible_while_running(tmp_path: Path) -> None:
    group = ProcessGroup()
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    child = Background(sh(f"echo $$ > {pid_file}; echo ready; {wait_for_file(go)}"), tmp_path, group)
    child.wait_ready()
    try:
        pid = int(pid_file.read_text())
        assert os.getpgid(pid) == pid != os.getpgid(0)
        assert os.getsid(pid) == pid != os.getsid(0)
        assert group.running == 1
    finally:
        go.touch()
    assert child.join().exit_code == 0
    assert group.running == 0


# -- interrupts --------------------------------------------------------------------------------------

TRAPPING = 'trap "echo got-int; exit 7" INT; echo $$ > {pid}; ({wait}) & echo ready; wait'


def test_interrupt_sends_sigint_and_the_child_stops_gracefully(tmp_path: Path) -> None:
    # The background job ignores SIGINT (as asynchronous jobs of a non-interactive shell do) and keeps
    # the output file open after the shell exits, until the test creates `go` (after run() returned):
    # run() must return when the child it started has exited, not when the leftover job ends.
    group = ProcessGroup()
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    with reaped(pid_file):
        child = Background(sh(TRAPPING.format(pid=pid_file, wait=wait_for_file(go))), tmp_path, group)
        child.wait_ready()
        group.interrupt()
        try:
            done = child.join()
        finally:
            go.touch()
    assert done.exit_code == 7
    assert "got-int" in done.output.splitlines()
    assert done.interrupted is True
    assert group.interrupted and not group.killed


def test_interrupt_reaches_a_child_that_has_no_background_jobs(tmp_path: Path) -> None:
    group = ProcessGroup()
    script = f'trap "echo got-int; exit 7" INT; echo ready; {wait_for_file(tmp_path / "never")}'
    child = Background(sh(script), tmp_path, group)
    child.wait_ready()
    group.interrupt()
    done = child.join()
    assert done.exit_code == 7 and "got-int" in done.output
    assert done.interrupted is True


def test_interrupt_is_sent_once_however_often_it_is_called(tmp_path: Path) -> None:
    # The child counts SIGINTs until the test creates `go`, then exits with the count. After each
    # interrupt() the test sends the child a SIGUSR1 and waits for its acknowledgement: the shell runs
    # pending traps in signal-number order, so by then any SIGINT sent before it was counted.
    pid_file, acks, go = tmp_path / "pid", tmp_path / "acks", tmp_path / "go"
    script = (f'n=0; a=0; trap "n=\\$((n+1))" INT; trap "a=\\$((a+1)); echo \\$a > {acks}" USR1; '
              f'echo $$ > {pid_file}; echo ready; {wait_for_file(go)}; echo "count=$n"; exit $n')
    group = ProcessGroup()
    child = Background(sh(script), tmp_path, group)
    child.wait_ready()
    try:
        pid = int(pid_file.read_text())
        for sent in range(1, 4):
            group.interrupt()
            os.kill(pid, signal.SIGUSR1)
            wait_for_text(acks, str(sent))
    finally:
        go.touch()
    done = child.join()
    assert "count=1" in done.output.splitlines(), done.output
    assert done.exit_code == 1


def test_interrupt_reaches_every_running_child(tmp_path: Path) -> None:
    group = ProcessGroup()
    script = f'trap "echo got-int; exit 7" INT; echo ready; {wait_for_file(tmp_path / "never")}'
    children = [Background(sh(script), tmp_path, group) for _ in range(3)]
    for child in children:
        child.wait_ready()
    assert group.running == 3
    group.interrupt()
    for child in children:
        done = child.join()
        assert done.exit_code == 7 and "got-int" in done.output
    assert group.running == 0


def test_kill_sends_sigkill_to_the_whole_group(tmp_path: Path) -> None:
    # The child and its background job ignore SIGINT and SIGTERM and wait for a file that never comes;
    # only SIGKILL stops them. After interrupt(), a SIGUSR1 the child acknowledges shows it outlived the
    # SIGINT (which was discarded as it was sent: ignored signals are not even queued).
    group = ProcessGroup()
    pid_file, acks = tmp_path / "pid", tmp_path / "acks"
    never = wait_for_file(tmp_path / "never")
    script = (f'trap "" INT TERM; trap "echo 1 > {acks}" USR1; echo $$ > {pid_file}; ({never}) & '
              f'echo ready; {never}; echo survived')
    with reaped(pid_file):
        child = Background(sh(script), tmp_path, group)
        child.wait_ready()
        pid = int(pid_file.read_text())
        group.interrupt()
        os.kill(pid, signal.SIGUSR1)
        wait_for_text(acks, "1")
        assert child.thread.is_alive()  # SIGINT is ignored
        group.kill()
        done = child.join()
        # nothing of the group is left: the background job got the SIGKILL too
        deadline = time.monotonic() + HANG
        while group_alive(pid):
            assert time.monotonic() < deadline, "the background job survived the kill"
            time.sleep(0.01)
    assert done.exit_code == -signal.SIGKILL
    assert "survived" not in done.output
    assert group.killed and group.interrupted


def group_alive(pgid: int) -> bool:
    """Is any process of the group ``pgid`` still running (zombies waiting for their parent do not count)?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_a_process_started_after_interrupt_gets_sigint_at_once(tmp_path: Path) -> None:
    group = ProcessGroup()
    group.interrupt()
    started = time.monotonic()
    done = run(["sleep", "30"], tmp_path, ENV, group, io.StringIO())
    assert time.monotonic() - started < 10
    assert done.exit_code == -signal.SIGINT
    assert done.interrupted is True


def test_a_process_started_after_kill_gets_sigkill_at_once(tmp_path: Path) -> None:
    group = ProcessGroup()
    group.kill()
    started = time.monotonic()
    done = run(sh('trap "" INT TERM; sleep 30'), tmp_path, ENV, group, io.StringIO())
    assert time.monotonic() - started < 10
    assert done.exit_code == -signal.SIGKILL


def test_interrupt_with_nothing_running_only_sets_the_flag() -> None:
    group = ProcessGroup()
    group.interrupt()
    assert group.interrupted and not group.killed and group.running == 0


def test_a_finished_process_is_not_signalled(tmp_path: Path) -> None:
    group = ProcessGroup()
    done = run(sh("exit 0"), tmp_path, ENV, group, io.StringIO())
    assert done.exit_code == 0 and group.running == 0
    group.interrupt()
    group.kill()  # nothing left to signal: no error


def callback_raising(message: str) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        raise RuntimeError(message)

    return on_line


def test_a_failing_callback_does_not_leave_the_process_registered(tmp_path: Path) -> None:
    group = ProcessGroup()
    with pytest.raises(RuntimeError, match="display broke"):
        run(sh("echo hi"), tmp_path, ENV, group, io.StringIO(), callback_raising("display broke"))
    assert group.running == 0
