"""Interrupting a run: SIGINT/SIGTERM to the strata process while real terraform applies are under way.

The first signal starts nothing new and forwards one SIGINT to every running terraform, which stops
gracefully: it writes its state and releases its lock. A second signal kills at once. Stacks are held
mid-apply by a `local-exec` provisioner that marks that it runs, then waits for a file the test never
creates, so the signal lands mid-apply whatever the machine's speed (the provisioner's command is in
terraform's process group, so it gets the forwarded SIGINT too). A registry that never answers keeps
`terraform init` waiting through the first SIGINT (1.0.3 and 1.11): that is what the second signal is for.
(A provisioner command that ignores SIGINT does not: terraform kills it when it stops. A test of that
passed only while strata waited two seconds for a pipe the command held open.)

Nothing here waits for the clock: each step waits for an event (a line of output, a marker file, a
connection, a process gone), with generous bounds that only end a hung test.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

EVENT = re.compile(r"^(?P<path>\S+): strata: (?P<kind>started|ok|changes|failed|skipped|interrupted)\b")
SLOW = ("b1", "b2", "b3", "b4")


def stack(deps: list[str] | None = None, *, hold: Path | None = None) -> dict[str, str]:
    """A stack of one null_resource; with ``hold``, a second one whose provisioner touches
    ``hold/running-<stack>`` and then waits until ``hold/go`` exists."""
    deps = deps or []
    blocks = "".join(f'dependency "{d}" {{\n  path = "../{d}"\n  mock_outputs = {{ id = "mock-{d}" }}\n}}\n'
                     for d in deps)
    upstream = ", ".join(f"{d} = dependency.{d}.outputs.id" for d in deps)
    tf = ('variable "upstream" {\n  type = map(string)\n}\n'
          'resource "null_resource" "this" {\n  triggers = { upstream = jsonencode(var.upstream) }\n}\n'
          'output "id" {\n  value = null_resource.this.id\n}\n')
    if hold:
        command = (f"touch '{hold}'/running-$(basename \\\"$PWD\\\"); "
                   f"while [ ! -f '{hold}/go' ]; do sleep 0.1; done")
        tf += ('resource "null_resource" "slow" {\n  depends_on = [null_resource.this]\n'
               f'  provisioner "local-exec" {{\n    command = "{command}"\n  }}\n}}\n')
    return {"strata.hcl": f"stack {{}}\n{blocks}inputs = {{\n  upstream = {{ {upstream} }}\n}}\n", "main.tf": tf}


def make_repo(root: Path, stacks: dict[str, dict[str, str]]) -> Path:
    files = {"strata.hcl": 'strata {}\nbackend "local" {}\n'}
    for name, files_of in stacks.items():
        files.update({f"{name}/{rel}": text for rel, text in files_of.items()})
    return write_tree(root, files)


class Running:
    """strata started with Popen; its output lines collected as they come."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        full_env = {**os.environ, "NO_COLOR": "1", **env}
        full_env.pop("STRATA_DEBUG", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "strata", *args], cwd=cwd, env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.stderr: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.lines)):
                return
            if self.proc.poll() is not None:
                for thread in self._threads:  # the readers catch up: they end at the end of the output
                    thread.join(timeout=10)
                if predicate(list(self.lines)):
                    return
                raise AssertionError(f"strata exited ({self.proc.returncode}) first:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting:\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 60) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            for pid in processes_under(self.cwd):  # the terraform processes it started (own sessions)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"strata did not exit within {timeout}s:\n{self.output()}") from None
        for thread in self._threads:
            thread.join(timeout=10)
        assert "Traceback (most recent call last)" not in "\n".join(self.stderr), self.output()
        assert "internal error" not in "\n".join(self.stderr), self.output()
        return code

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + "\n".join(self.stderr)


def started(lines: list[str]) -> list[str]:
    return [m["path"] for m in map(EVENT.match, lines) if m and m["kind"] == "started"]


def provisioning(lines: list[str]) -> set[str]:
    """Stacks whose terraform is starting the slow provisioner's command."""
    return {line.split(":", 1)[0] for line in lines if "(local-exec): Executing:" in line}


def finished_ok(lines: list[str], name: str) -> bool:
    return any(m and m["path"] == name and m["kind"] == "ok" for m in map(EVENT.match, lines))


def processes_under(folder: Path) -> list[int]:
    """Processes (terraform, its providers, provisioner commands) whose working folder is inside ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(int(entry.name))
    return found


def assert_no_processes_left(folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while processes_under(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(folder) == [], "processes still running in the repository after strata exited"


def assert_states_sound(repo: Path, stacks: dict[str, dict[str, Any]]) -> None:
    """No lock left; every state file is JSON; the stacks that finished have their resources."""
    assert not list(repo.rglob(".terraform.tfstate.lock.info"))
    for path in (repo / ".strata" / "state").rglob("*.tfstate"):
        json.loads(path.read_text(encoding="utf-8"))
    for name, entry in stacks.items():
        if entry["status"] == "ok":
            state = json.loads((repo / ".strata" / "state" / name / "terraform.tfstate").read_text(encoding="utf-8"))
            assert state["resources"], name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_first_signal_stops_gracefully(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                       tmp_path: Path, sig: int) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    repo = make_repo(tmp_path / "repo", {
        "a-fast": stack(),
        **{name: stack(hold=hold) for name in SLOW},
        "c-after": stack(["b1"]),
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    run = Running(["apply", "--yes", "-j", "3", "--json", str(tmp_path / "r.json")], repo, env)
    # -j 3: once a-fast is done, b1-b3 run and b4 waits for one of them, which never ends by itself (hold/go
    # is never created). Signal when all three provisioner commands run: each marked it, so terraform is in
    # its apply phase (a SIGINT that reaches Terraform 1.0.3 before that may be ignored) and the command
    # that gets the forwarded SIGINT is there.
    running = {f"running-{name}" for name in ("b1", "b2", "b3")}
    run.wait_for(lambda lines: finished_ok(lines, "a-fast") and set(started(lines)) == {"a-fast", "b1", "b2", "b3"}
                 and provisioning(lines) >= {"b1", "b2", "b3"}
                 and running <= {path.name for path in hold.iterdir()}, timeout=300)
    run.signal(sig)
    code = run.finish()
    assert code == 130, run.output()

    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["interrupted"] is True and data["exit_code"] == 130
    stacks = {s["path"]: s for s in data["stacks"]}
    assert stacks["a-fast"]["status"] == "ok"
    # nothing started after the signal: only what was running then
    assert set(started(run.lines)) == {"a-fast", "b1", "b2", "b3"}
    for name in ("b1", "b2", "b3"):
        # stopped mid-apply: terraform's provisioner got the SIGINT too (it could not have finished by itself)
        assert stacks[name]["status"] == "interrupted", stacks[name]
    assert stacks["b4"]["status"] == "skipped" and "interrupt" in stacks["b4"]["detail"], stacks["b4"]
    assert stacks["c-after"]["status"] == "skipped", stacks["c-after"]
    summary = "\n".join(run.lines)
    assert re.search(r"^c-after\s+skipped\s", summary, re.M), summary

    assert_no_processes_left(repo)
    assert_states_sound(repo, stacks)

    # the next run needs no force-unlock
    again = strata("plan", "--detailed-exitcode", "--json", str(tmp_path / "plan.json"), cwd=repo, env=env)
    assert again.code in (0, 2), again.output
    assert "failed" not in {s["status"] for s in json.loads((tmp_path / "plan.json").read_text())["stacks"]}


@dataclass
class SilentServer:
    port: int
    connected: threading.Event  # set once a client (terraform) has connected


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a registry that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)  # how often the accept loop looks at `stop`
    held: list[socket.socket] = []
    stop = threading.Event()
    connected = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            connected.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield SilentServer(int(server.getsockname()[1]), connected)
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


# Stands in for terraform during `init` (any other subcommand is the real binary, exec'd): runs the real
# binary as its child, in the same process group, so a signal strata sends to the group reaches both.
# Each SIGINT it gets is noted in a file and printed (to the output strata follows); when terraform exits
# by itself, that is noted too. A SIGKILL of the group leaves no note.
NOTING_TERRAFORM = """#!{python}
import os, signal, subprocess, sys
real, notes = {real!r}, {notes!r}
if "init" not in sys.argv[1:]:
    os.execv(real, [real, *sys.argv[1:]])

def note(text):
    with open(notes, "a") as handle:
        handle.write(text + "\\n")
    os.write(1, ("noting wrapper: " + text + "\\n").encode())

signal.signal(signal.SIGINT, lambda signum, frame: note("SIGINT"))
code = subprocess.Popen([real, *sys.argv[1:]]).wait()
note(f"exited {{code}}")
sys.exit(code if code >= 0 else 128 - code)
"""


def test_second_sigint_kills_a_hanging_init(terraform_binary: str, silent_server: SilentServer,
                                            tmp_path: Path) -> None:
    """Terraform waiting on a provider registry that does not answer: the first SIGINT is not enough."""
    source = f"127.0.0.1:{silent_server.port}/acme/hang"
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "hangs/strata.hcl": "stack {}\n",
        "hangs/main.tf": f'terraform {{\n  required_providers {{\n    hang = {{ source = "{source}" }}\n  }}\n}}\n',
    })
    config = tmp_path / "terraform.rc"
    config.write_text("provider_installation {\n  direct {}\n}\ndisable_checkpoint = true\n", encoding="utf-8")
    notes = tmp_path / "notes"
    wrapper = tmp_path / "bin" / "terraform"
    wrapper.parent.mkdir()
    wrapper.write_text(NOTING_TERRAFORM.format(python=sys.executable, real=terraform_binary, notes=str(notes)),
                       encoding="utf-8")
    wrapper.chmod(0o755)
    env = {"TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1", "STRATA_TERRAFORM": str(wrapper)}
    run = Running(["apply", "--yes", "--json", str(tmp_path / "r.json")], repo, env)
    # Terraform has connected to the registry and waits for its answer. (It gives up by itself 10 s after
    # connecting, a TLS handshake timeout of its own: the steps below take a fraction of that.)
    assert silent_server.connected.wait(120), run.output()
    run.signal(signal.SIGINT)
    # strata forwarded the SIGINT (the wrapper, in terraform's process group, got it and noted it) and waits
    # for terraform instead of exiting (the init strata runs by itself is not shown unless it fails)
    deadline = time.monotonic() + 60
    while "SIGINT" not in (notes.read_text() if notes.exists() else ""):
        assert run.proc.poll() is None and time.monotonic() < deadline, run.output()
        time.sleep(0.05)
    assert run.proc.poll() is None, "terraform init does not stop at once: the first SIGINT waits for it"
    run.signal(signal.SIGINT)
    code = run.finish(timeout=60)
    assert code == 130, run.output()
    data = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    assert [s["status"] for s in data["stacks"]] == ["interrupted"]
    assert_no_processes_left(repo)
    # Terraform got one SIGINT and never exited by itself (no "exited" note, and nothing runs any more): the
    # second signal killed it, with its whole process group.
    assert notes.read_text(encoding="utf-8").splitlines() == ["SIGINT"], run.output()
