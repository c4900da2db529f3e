"""State commands on the local backend: LocalStore, the write rules, and the CLI with real terraform.

Nothing is mocked. Locks are taken by real processes: a small Python process that locks the state file
the way Terraform's local backend does (fcntl write lock + ``.terraform.tfstate.lock.info``), or a real
``terraform apply`` held open by a ``sleep`` provisioner. POSIX record locks belong to a process, so
"is the lock free?" is always asked from another process (:func:`lock_is_free`).

Layout of every repository here: ``strata.hcl`` with ``strata {}`` and ``backend "local" {}`` at the
root, one stack ``app`` (and ``db`` where two are needed); the state of ``app`` is then
``.strata/state/app/terraform.tfstate``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, snapshot, write_tree
from strata.backends.base import BackendError, LockInfo, StateLocked
from strata.backends.local import LocalStore
from strata.model.stack import Stack
from strata.state.document import StateDocument
from strata.state.operations import StateError, open_store, write_state
from strata.workspace import Workspace

Strata = Callable[..., Result]

LINEAGE = "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
OTHER_LINEAGE = "00000000-1111-2222-3333-444444444444"
GO_KEYS = {"ID", "Operation", "Info", "Who", "Version", "Created", "Path"}
PAUSE = "STRATA_TEST_PAUSE"  # seconds the provisioner of the slow stack sleeps (0 when unset)

ROOT_HCL = 'strata {}\nbackend "local" {}\n'
NULL_A = 'resource "null_resource" "a" {\n  triggers = { name = "a" }\n}\n'
NULL_B = 'resource "null_resource" "b" {\n  triggers = { name = "b" }\n}\n'
# Replaced on every apply (a new uuid(); timestamp() repeats within a second), then its provisioner holds
# terraform (and the lock) open.
SLOW = (
    'resource "null_resource" "slow" {\n'
    "  triggers = { run = uuid() }\n"
    '  provisioner "local-exec" {\n'
    f'    command = "sleep $${{{PAUSE}:-0}}"\n'
    "  }\n"
    "}\n"
)

# The stack of test_concurrent_applies_serialise_on_terraforms_lock: replaced by every apply, as each passes
# its own TF_VAR_run; with STRATA_TEST_GATE set, its provisioner then holds terraform (and the lock) open
# until that file exists.
GATED = (
    'variable "run" {\n  type = string\n}\n'
    'resource "null_resource" "slow" {\n'
    "  triggers = { run = var.run }\n"
    '  provisioner "local-exec" {\n'
    '    command = "[ -z \\"$STRATA_TEST_GATE\\" ] || while [ ! -f \\"$STRATA_TEST_GATE\\" ]; do sleep 0.1; done"\n'
    "  }\n"
    "}\n"
)

# Locks a state file as Terraform's local backend does (statemgr/filesystem.go), then waits: argv is
# path, Who, seconds to hold and, optionally, a file whose creation releases the lock sooner. Prints
# "locked" once it holds the lock.
HOLDER = r"""
import fcntl, json, os, sys, time
path, who, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
release = sys.argv[4] if len(sys.argv) > 4 else None
os.makedirs(os.path.dirname(path), exist_ok=True)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
info = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".lock.info")
with open(info, "w") as handle:
    json.dump({"ID": "0b4c2a1e-held-by-test", "Operation": "OperationTypeApply", "Info": "", "Who": who,
               "Version": "1.11.4", "Created": "2026-01-02T03:04:05.000000006Z", "Path": path}, handle)
print("locked", flush=True)
if release:
    deadline = time.monotonic() + seconds
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
else:
    time.sleep(seconds)
os.remove(info)
"""

# Takes the lock with strata's own LocalStore (as `strata state restore` would), then waits.
STRATA_HOLDER = r"""
import sys, time
from pathlib import Path
from strata.backends.base import LockInfo
from strata.backends.local import LocalStore
store = LocalStore(Path(sys.argv[1]), Path(sys.argv[2]))
store.lock(LockInfo.new("state-restore"))
print("locked", flush=True)
time.sleep(float(sys.argv[3]))
"""

# Exit 0 when the file's fcntl lock can be taken (then released), 1 when someone holds it.
PROBE = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except OSError:
    sys.exit(1)
sys.exit(0)
"""


# -- helpers ------------------------------------------------------------------------------------------------

def state_bytes(serial: int, lineage: str = LINEAGE, resources: int = 1, outputs: bool = False,
                terraform_version: str = "1.11.4") -> bytes:
    data: dict[str, Any] = {
        "version": 4, "terraform_version": terraform_version, "serial": serial, "lineage": lineage,
        "outputs": {"id": {"value": "x", "type": "string"}} if outputs else {},
        "resources": [{"mode": "managed", "type": "null_resource", "name": f"r{i}",
                       "provider": 'provider["registry.terraform.io/hashicorp/null"]',
                       "instances": [{"schema_version": 0, "attributes": {"id": str(i), "triggers": None}}]}
                      for i in range(resources)],
        "check_results": None,
    }
    return (json.dumps(data, indent=2) + "\n").encode()


def make_repo(root: Path, stacks: dict[str, str] | None = None) -> Path:
    """A repository with the local backend and one stack per entry (name -> main.tf)."""
    files = {"strata.hcl": ROOT_HCL}
    for name, main_tf in (stacks or {"app": NULL_A}).items():
        files[f"{name}/strata.hcl"] = "stack {}\n"
        files[f"{name}/main.tf"] = main_tf
    return write_tree(root, files)


def state_file(repo: Path, stack: str = "app") -> Path:
    return repo / ".strata" / "state" / stack / "terraform.tfstate"


def info_file(repo: Path, stack: str = "app") -> Path:
    return state_file(repo, stack).parent / ".terraform.tfstate.lock.info"


def put_state(repo: Path, data: bytes, stack: str = "app") -> Path:
    path = state_file(repo, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def load_stack(repo: Path, name: str = "app") -> Stack:
    return Workspace(cwd=repo).repository().stacks[name]


def lock_is_free(path: Path) -> bool:
    """Asked from another process: a process's own POSIX locks never conflict with itself."""
    proc = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """The CLI with no terminal on stdin (confirmation prompts cannot be answered)."""
    proc = subprocess.run([sys.executable, "-m", "strata", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "NO_COLOR": "1", **(env or {})})
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tf_env(provider_mirror: dict[str, str], binary: str, pause: int = 0) -> dict[str, str]:
    return {**provider_mirror, "STRATA_TERRAFORM": binary, PAUSE: str(pause)}


def ls_json(strata: Strata, repo: Path) -> dict[str, dict[str, Any]]:
    result = strata("state", "ls", "--json", cwd=repo)
    assert result.code == 0, result.output
    return {row["stack"]: row for row in json.loads(result.stdout)["stacks"]}


def serial_of(repo: Path, stack: str = "app") -> int:
    return StateDocument.parse(state_file(repo, stack).read_bytes()).serial


class Processes:
    """Processes a test starts; whatever is still running at the end is killed (by pid)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []
        self.extra: list[int] = []

    def holder(self, script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "locked\n", (line, proc.stderr.read() if proc.stderr else "")
        return proc

    def strata(self, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "strata", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "NO_COLOR": "1", **env})
        self.started.append(proc)
        return proc

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
        for pid in self.extra:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.cleanup()


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    assert "Traceback (most recent call last)" not in out, out
    return proc.returncode, out


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren...)."""
    parents = {int(p.name): _ppid(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()}
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.append(child)
                frontier.append(child)
    return found


def terraform_apply_pid(stack_dir: Path, parent: int) -> int | None:
    """The `terraform apply` the strata process ``parent`` started in ``stack_dir``."""
    target = os.path.realpath(stack_dir)
    for child in descendants(parent):
        try:
            cwd = os.readlink(f"/proc/{child}/cwd")
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cwd == target and os.path.basename(argv[0]) == b"terraform" and b"apply" in argv:
            return child
    return None


def wait_for_terraform_lock(proc: subprocess.Popen[str], repo: Path, timeout: float = 90) -> int:
    """Wait until the background `strata apply` has a terraform apply holding the state lock; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the background apply ended before it took the lock:\n{finish(proc)[1]}")
        pid = terraform_apply_pid(repo / "app", proc.pid)
        if pid is not None and info_file(repo).is_file() and not lock_is_free(state_file(repo)):
            try:
                info = json.loads(info_file(repo).read_text())
            except ValueError:  # being written
                info = {}
            if info.get("Operation") == "OperationTypeApply":
                return pid
        time.sleep(0.1)
    pytest.fail("terraform did not take the state lock in time")


# -- 2. LocalStore: Terraform's lock ---------------------------------------------------------------------------

def test_lock_writes_terraforms_lock_info_and_releases_it(tmp_path: Path) -> None:
    path = tmp_path / "states" / "terraform.tfstate"
    store = LocalStore(path, tmp_path)
    info = LockInfo.new("state-restore")
    store.lock(info)
    try:
        lock_info = tmp_path / "states" / ".terraform.tfstate.lock.info"
        assert lock_info.is_file()
        written = json.loads(lock_info.read_text())
        assert set(written) == GO_KEYS
        assert written["ID"] == info.id and written["Operation"] == "state-restore"
        assert written["Who"] == info.who and written["Who"].endswith(f"@{socket.gethostname()}")
        assert written["Path"] == str(path)
        datetime.strptime(written["Created"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert json.loads(written["Info"])["pid"] == os.getpid()
        assert not lock_is_free(path), "the state file itself carries the fcntl lock, as Terraform's does"
        mine = store.current_lock()
        assert mine is not None and mine.id == info.id and mine.holder["live"] is True
    finally:
        store.unlock(info)
    assert not lock_info.exists()
    assert lock_is_free(path)
    assert store.current_lock() is None


def test_second_lock_in_the_same_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terraform.tfstate"
    first, second = LocalStore(path, tmp_path), LocalStore(path, tmp_path)
    info = LockInfo.new("first")
    first.lock(info)
    try:
        for store in (first, second):
            with pytest.raises(StateLocked) as caught:
                store.lock(LockInfo.new("second"))
            assert caught.value.holder is not None and caught.value.holder.id == info.id
            assert "locked by" in str(caught.value) and info.who in str(caught.value)
        # the refused attempts did not drop the lock (closing any descriptor of the file would)
        assert not lock_is_free(path)
        assert json.loads((tmp_path / ".terraform.tfstate.lock.info").read_text())["ID"] == info.id
    finally:
        first.unlock(info)
    second.lock(info2 := LockInfo.new("again"))
    second.unlock(info2)


def test_read_while_locked_keeps_the_lock(tmp_path: Path) -> None:
    """POSIX locks drop when ANY descriptor of the file is closed: reads go through the locked one."""
    path = tmp_path / "terraform.tfstate"
    path.write_bytes(state_bytes(3))
    store = LocalStore(path, tmp_path)
    info = LockInfo.new("read")
    store.lock(info)
    try:
        assert store.read() == state_bytes(3)
        stat = store.stat()
        assert stat is not None and stat.size == len(state_bytes(3))
        store.versions()  # reads the current state too
        assert store.read() == state_bytes(3)
        assert not lock_is_free(path), "reading the locked state released its lock"
        store.write(state_bytes(4))
        assert store.read() == state_bytes(4)
        assert not lock_is_free(path), "writing the locked state released its lock"
    finally:
        store.unlock(info)
    assert path.read_bytes() == state_bytes(4)


def test_write_without_the_lock_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "terraform.tfstate"
    path.write_bytes(state_bytes(1))
    with pytest.raises(BackendError, match="without its lock"):
        LocalStore(path, tmp_path).write(state_bytes(2))
    assert path.read_bytes() == state_bytes(1)


def test_empty_state_file_reads_as_no_state(tmp_path: Path) -> None:
    path = tmp_path / "terraform.tfstate"
    store = LocalStore(path, tmp_path)
    assert store.read() is None and store.stat() is None and store.current_lock() is None
    path.write_bytes(b"")
    assert store.read() is None and store.stat() is None


def test_lock_held_by_another_process_then_left_stale(strata: Strata, tmp_path: Path,
                                                      processes: Processes) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    who = f"alice@{socket.gethostname()}"
    holder = processes.holder(HOLDER, str(path), who, "300")
    store = LocalStore(path, repo)

    with pytest.raises(StateLocked) as caught:
        store.lock(LockInfo.new("test"))
    assert caught.value.holder is not None and caught.value.holder.who == who
    assert who in str(caught.value) and "0b4c2a1e-held-by-test" in str(caught.value)
    lock = store.current_lock()
    assert lock is not None and lock.who == who and lock.operation == "OperationTypeApply"
    assert lock.holder["live"] is True and lock.holder["state"] == "held"
    with pytest.raises(BackendError, match="running process"):
        store.force_unlock(lock)
    assert info_file(repo).is_file()
    assert store.read() == state_bytes(5), "a locked state can still be read"
    assert not lock_is_free(path), "reading it did not disturb the holder's lock"

    listed = strata("locks", "--json", cwd=repo)
    assert listed.code == 0, listed.output
    [row] = json.loads(listed.stdout)["locks"]
    assert row["stack"] == "app" and row["backend"] == "local"
    assert row["lock"]["who"] == who and row["lock"]["live"] is True
    assert row["lock"]["id"] == "0b4c2a1e-held-by-test"
    assert strata("state", "ls", "--json", cwd=repo).stdout.count(who) == 1
    refused = cli("unlock", "app", "--yes", cwd=repo)
    assert refused.code == 1, refused.output
    assert "refusing" in refused.stderr and info_file(repo).is_file()

    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert lock_is_free(path)
    stale = store.current_lock()
    assert stale is not None and stale.who == who
    assert stale.holder["live"] is False and stale.holder["state"].startswith("stale")
    table = strata("locks", cwd=repo)
    assert table.code == 0 and who in table.stdout and "stale" in table.stdout, table.output

    unconfirmed = cli("unlock", "app", cwd=repo)
    assert unconfirmed.code == 64, unconfirmed.output
    assert "--yes" in unconfirmed.stderr and info_file(repo).is_file()
    removed = cli("unlock", "app", "--yes", cwd=repo)
    assert removed.code == 0, removed.output
    assert "lock removed" in removed.stdout
    assert not info_file(repo).exists()
    assert path.read_bytes() == state_bytes(5), "unlock never touches the state"
    assert store.current_lock() is None
    assert cli("locks", cwd=repo).stdout.startswith("no locks held")
    again = cli("unlock", "app", "--yes", cwd=repo)
    assert again.code == 0 and "not locked" in again.stdout


def test_unlock_with_the_wrong_lock_id_removes_nothing(tmp_path: Path, processes: Processes) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    holder = processes.holder(HOLDER, str(path), "bob@elsewhere", "300")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    wrong = cli("unlock", "app", "--yes", "--lock-id", "not-that-one", cwd=repo)
    assert wrong.code == 1 and "0b4c2a1e-held-by-test" in wrong.stderr, wrong.output
    assert info_file(repo).is_file()
    right = cli("unlock", "app", "--yes", "--lock-id", "0b4c2a1e-held-by-test", cwd=repo)
    assert right.code == 0, right.output
    assert not info_file(repo).exists()


# -- 3. operations.write_state ---------------------------------------------------------------------------------

def test_write_state_raises_the_serial_keeps_lineage_backs_up_and_remembers(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    old = state_bytes(5, resources=2)
    path = put_state(repo, old)
    stack = load_stack(repo)
    with open_store(repo, stack) as store:
        result = write_state(repo, stack, store, state_bytes(2, OTHER_LINEAGE, resources=1), operation="state-test")
        assert (result.serial, result.lineage, result.previous_serial) == (6, LINEAGE, 5)
        written = path.read_bytes()
        doc = StateDocument.parse(written)
        assert (doc.serial, doc.lineage, doc.resource_count) == (6, LINEAGE, 1)
        assert result.sha256 == hashlib.sha256(written).hexdigest()
        assert list(json.loads(written))[:4] == ["version", "terraform_version", "serial", "lineage"]

        assert result.backup is not None
        assert result.backup.parent == repo / ".strata" / "backups" / "app"
        assert result.backup.read_bytes() == old
        assert "serial5" in result.backup.name and not list(result.backup.parent.glob("*.partial"))

        versions = store.versions()
        kept = {store.read_version(v.id) for v in versions}
        assert {old, written} <= kept
        current = [v for v in versions if v.current]
        assert len(current) == 1 and store.read_version(current[0].id) == written
        assert versions[0].current, "newest first"

    assert not info_file(repo).exists(), "the lock was released"
    assert lock_is_free(path)


def test_write_state_over_no_state(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    stack = load_stack(repo)
    with open_store(repo, stack) as store:
        result = write_state(repo, stack, store, state_bytes(4), operation="first")
    assert (result.serial, result.lineage, result.previous_serial, result.backup) == (5, LINEAGE, None, None)
    assert StateDocument.parse(state_file(repo).read_bytes()).serial == 5
    assert not (repo / ".strata" / "backups").exists()


def test_write_state_refuses_when_the_state_moved_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    stack = load_stack(repo)
    with open_store(repo, stack) as store, pytest.raises(StateError, match=r"changed since it was read.*4 → 5"):
        write_state(repo, stack, store, state_bytes(9), operation="stale", expected_serial=4)
    assert path.read_bytes() == state_bytes(5)
    assert not (repo / ".strata" / "backups").exists()
    assert not info_file(repo).exists() and lock_is_free(path), "the lock is released after a refusal"
    with open_store(repo, stack) as store:
        ok = write_state(repo, stack, store, state_bytes(9), operation="fresh", expected_serial=5)
    assert ok.serial == 6


@pytest.mark.parametrize(("contents", "message"), [
    (b"not json{", "not usable"),
    (b"[1, 2]", "not usable"),
    (json.dumps({"version": 3, "serial": 1, "lineage": LINEAGE}).encode(), "not sound"),
    (json.dumps({"version": 4, "serial": 1, "lineage": LINEAGE, "resources": {}}).encode(), "not sound"),
])
def test_write_state_refuses_what_is_not_a_sound_state(tmp_path: Path, contents: bytes, message: str) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    stack = load_stack(repo)
    with open_store(repo, stack) as store, pytest.raises(StateError, match=message) as caught:
        write_state(repo, stack, store, contents, operation="bad")
    assert "app" in caught.value.message
    assert path.read_bytes() == state_bytes(5)
    assert not (repo / ".strata" / "backups").exists() and not info_file(repo).exists()
    assert lock_is_free(path)


@pytest.mark.parametrize(("replica", "message"), [
    (state_bytes(3, resources=3), "older serial"),
    (state_bytes(9, OTHER_LINEAGE), "lineage"),
])
def test_exact_write_refuses_a_lower_serial_or_another_lineage(tmp_path: Path, replica: bytes, message: str) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    stack = load_stack(repo)
    with open_store(repo, stack) as store, pytest.raises(StateError, match=message):
        write_state(repo, stack, store, replica, operation="replicate", exact=True)
    assert path.read_bytes() == state_bytes(5), "nothing written"
    assert not info_file(repo).exists() and lock_is_free(path), "the lock is released after an exception inside"
    with open_store(repo, stack) as store:  # and strata itself can take it again
        store.lock(info := LockInfo.new("again"))
        store.unlock(info)


def test_exact_write_needs_a_complete_identity(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    stack = load_stack(repo)
    no_lineage = json.dumps({"version": 4, "serial": 3, "resources": []}).encode()
    with open_store(repo, stack) as store, pytest.raises(StateError, match="lineage"):
        write_state(repo, stack, store, no_lineage, operation="replicate", exact=True)
    assert not state_file(repo).exists(), "refused before the lock was taken"


@pytest.mark.parametrize("current", [None, state_bytes(50, OTHER_LINEAGE, resources=0), state_bytes(6)])
def test_exact_write_keeps_the_bytes(tmp_path: Path, current: bytes | None) -> None:
    """Over no state, an empty state (any lineage, any serial) or an older serial of the same lineage."""
    repo = make_repo(tmp_path / "repo")
    if current is not None:
        put_state(repo, current)
    stack = load_stack(repo)
    replica = state_bytes(7, resources=2)
    with open_store(repo, stack) as store:
        result = write_state(repo, stack, store, replica, operation="replicate", exact=True)
    assert state_file(repo).read_bytes() == replica
    assert (result.serial, result.lineage) == (7, LINEAGE)
    assert (result.backup is None) == (current is None)
    if result.backup is not None:
        assert result.backup.read_bytes() == current
    assert not info_file(repo).exists()


def test_exact_write_over_a_state_with_outputs_is_not_over_an_empty_one(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(9, OTHER_LINEAGE, resources=0, outputs=True))
    stack = load_stack(repo)
    with open_store(repo, stack) as store, pytest.raises(StateError, match="lineage"):
        write_state(repo, stack, store, state_bytes(10), operation="replicate", exact=True)


def test_write_state_waits_for_a_lock_up_to_the_timeout(tmp_path: Path, processes: Processes,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    stack = load_stack(repo)
    first = processes.holder(HOLDER, str(path), "carol@build-7", "300")
    with open_store(repo, stack) as store, pytest.raises(StateError, match="locked by carol@build-7") as caught:
        write_state(repo, stack, store, state_bytes(1), operation="blocked")
    assert "--lock-timeout" in caught.value.message and "local backend" in caught.value.message
    assert path.read_bytes() == state_bytes(5)

    first.kill()
    first.wait(timeout=30)
    # The holder lets go once write_state has been refused the lock (then it has to wait for it).
    release = tmp_path / "release"
    second = processes.holder(HOLDER, str(path), "dave@build-8", "300", str(release))
    refused = threading.Event()
    with open_store(repo, stack) as store:
        lock = store.lock

        def lock_then_release(info: LockInfo) -> None:
            try:
                lock(info)
            except StateLocked:
                if not refused.is_set():
                    refused.set()
                    release.touch()
                raise

        monkeypatch.setattr(store, "lock", lock_then_release)
        result = write_state(repo, stack, store, state_bytes(1), operation="waited", lock_timeout=120)
    assert refused.is_set(), "it waited for the holder"
    assert second.wait(timeout=30) == 0, "the holder let go"
    assert result.serial == 6 and serial_of(repo) == 6


# -- 4. the CLI on a real stack: ls, versions, restore, then plan shows exactly the expected diff ------------

@pytest.mark.terraform
def test_restore_an_older_version_then_plan(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                            tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    env = tf_env(provider_mirror, terraform_binary)
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    first = state_file(repo).read_bytes()
    v1_doc = StateDocument.parse(first)
    assert v1_doc.resource_count == 1

    # state ls: table and JSON
    table = strata("state", "ls", cwd=repo)
    assert table.code == 0, table.output
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["STACK", "BACKEND", "SERIAL", "RESOURCES", "SIZE", "MODIFIED", "LOCK", "LINEAGE"]
    cells = row.split()
    assert cells[:4] == ["app", "local", str(v1_doc.serial), "1"] and cells[-1] == v1_doc.lineage, row
    assert cells[-2] == "-", "no lock"
    row_json = ls_json(strata, repo)["app"]
    assert row_json["serial"] == v1_doc.serial and row_json["lineage"] == v1_doc.lineage
    assert row_json["resources"] == 1 and row_json["size"] == len(first) and row_json["lock"] is None
    assert row_json["sha256"] == hashlib.sha256(first).hexdigest()
    modified = datetime.fromisoformat(row_json["modified"])
    assert abs(modified.timestamp() - state_file(repo).stat().st_mtime) < 1
    assert row_json["location"] == ".strata/state/app/terraform.tfstate"

    # a second resource, applied
    (repo / "app" / "main.tf").write_text(NULL_A + NULL_B, encoding="utf-8")
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    second = state_file(repo).read_bytes()
    v2_doc = StateDocument.parse(second)
    assert v2_doc.resource_count == 2 and v2_doc.lineage == v1_doc.lineage and v2_doc.serial > v1_doc.serial

    listed = strata("state", "versions", "app", "--json", cwd=repo)
    assert listed.code == 0, listed.output
    versions = json.loads(listed.stdout)["versions"]
    assert len(versions) >= 2, versions
    assert versions[0]["current"] and versions[0]["serial"] == v2_doc.serial and versions[0]["resources"] == 2
    [v1] = [v for v in versions if v["serial"] == v1_doc.serial]
    assert v1["resources"] == 1 and not v1["current"] and v1["kind"] == "history"
    text = strata("state", "versions", "app", cwd=repo)
    assert text.code == 0 and v1["id"] in text.stdout and "current" in text.stdout, text.output

    # pull: the current state and one version, byte for byte
    pulled = strata("state", "pull", "app", cwd=repo)
    assert pulled.code == 0 and pulled.stdout == second.decode(), pulled.output
    pulled_v1 = strata("state", "pull", "app", "--version", v1["id"], cwd=repo)
    assert pulled_v1.code == 0 and pulled_v1.stdout == first.decode(), pulled_v1.output

    # restore the first version
    restored = strata("state", "restore", "app", "--version", v1["id"], "--yes", "--json", cwd=repo)
    assert restored.code == 0, restored.output
    report = json.loads(restored.stdout)
    now = StateDocument.parse(state_file(repo).read_bytes())
    assert report["serial"] == now.serial == v2_doc.serial + 1
    assert report["lineage"] == now.lineage == v1_doc.lineage
    assert report["previous_serial"] == v2_doc.serial
    assert now.resources == v1_doc.resources and now.resource_count == 1
    backup = repo / report["backup"] if not os.path.isabs(report["backup"]) else Path(report["backup"])
    assert backup.parent == repo / ".strata" / "backups" / "app" and backup.read_bytes() == second
    assert not info_file(repo).exists()

    # plan: exactly null_resource.b to add, nothing else
    planned = strata("plan", "--detailed-exitcode", "--json", str(tmp_path / "plan.json"), cwd=repo, env=env)
    assert planned.code == 2, planned.output
    stacks = json.loads((tmp_path / "plan.json").read_text())["stacks"]
    assert [(s["path"], s["status"], s["add"], s["change"], s["destroy"]) for s in stacks] == \
        [("app", "changes", 1, 0, 0)]
    assert "null_resource.b will be created" in planned.stdout, planned.stdout
    assert "null_resource.a will be" not in planned.stdout and "must be replaced" not in planned.stdout

    # and terraform accepts the restored state: applying brings b back, with a serial above it
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    final = StateDocument.parse(state_file(repo).read_bytes())
    assert final.resource_count == 2 and final.serial > now.serial and final.lineage == v1_doc.lineage


# -- 5. locks and concurrency with real terraform --------------------------------------------------------------

CREATED = re.compile(r"null_resource\.slow: Creation complete after \S+ \[id=(\d+)\]")
DESTROYING = re.compile(r"null_resource\.slow: Destroying\.\.\. \[id=(\d+)\]")


def slow_id(repo: Path) -> str:
    [resource] = StateDocument.parse(state_file(repo).read_bytes()).resources
    return str(resource["instances"][0]["attributes"]["id"])


def wait_until(condition: Callable[[], object], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


@pytest.mark.terraform
def test_concurrent_applies_serialise_on_terraforms_lock(strata: Strata, tf_111: str,
                                                        provider_mirror: dict[str, str], tmp_path: Path,
                                                        processes: Processes) -> None:
    """A holds the lock (its provisioner waits for a file the test creates); B fails naming A's holder; C waits
    with --lock-timeout and then builds on A's result: C replaces the very resource A created, so no update
    was lost.

    (Terraform writes intermediate states during an apply, more or fewer depending on how long it runs, so
    the serial grows by at least one per apply, not by a fixed number. Each apply tags the resource with its
    own name: the null provider's ids need not differ, as it seeds them with the time in seconds.)"""
    repo = make_repo(tmp_path / "repo", {"app": GATED})
    gate = tmp_path / "gate"

    def env_of(run: str, *, held: bool = False) -> dict[str, str]:
        env = {**tf_env(provider_mirror, tf_111), "TF_VAR_run": run}
        return {**env, "STRATA_TEST_GATE": str(gate)} if held else env

    assert strata("apply", "--yes", "-q", cwd=repo, env=env_of("start")).code == 0
    start_serial, start_id = serial_of(repo), slow_id(repo)
    lineage = StateDocument.parse(state_file(repo).read_bytes()).lineage

    holder = processes.strata("apply", "--yes", cwd=repo, env=env_of("a", held=True))
    tf_pid = wait_for_terraform_lock(holder, repo)
    who = json.loads(info_file(repo).read_text())["Who"]
    assert who

    waiter = processes.strata("apply", "--yes", "--lock-timeout", "300s", cwd=repo, env=env_of("c"))

    listed = strata("locks", cwd=repo)
    assert listed.code == 0, listed.output
    assert "app" in listed.stdout and who in listed.stdout and "held" in listed.stdout, listed.stdout
    as_json = strata("locks", "--json", cwd=repo)
    assert as_json.code == 0, as_json.output
    [row] = json.loads(as_json.stdout)["locks"]
    assert row["stack"] == "app" and row["lock"]["who"] == who and row["lock"]["live"] is True
    assert row["lock"]["operation"] == "OperationTypeApply"
    assert row["lock"]["version"] == "1.11.4"

    blocked = strata("apply", "--yes", "-q", cwd=repo, env=env_of("b"))
    assert blocked.code == 1, blocked.output
    assert "locked by" in blocked.output and who in blocked.output, blocked.output

    refused = cli("unlock", "app", "--yes", cwd=repo)
    assert refused.code == 1 and "refusing" in refused.stderr, refused.output
    assert info_file(repo).is_file()
    restore = strata("state", "restore", "app", "--version", "whatever", "--yes", cwd=repo)
    assert restore.code == 1 and "locked by" in restore.stderr, restore.output

    assert holder.poll() is None and Path(f"/proc/{tf_pid}").exists(), "the held apply waits for the gate"
    wait_until(lambda: waiter.poll() is not None or terraform_apply_pid(repo / "app", waiter.pid) is not None,
               "the waiting apply to start terraform")
    assert waiter.poll() is None, finish(waiter)[1]
    gate.touch()
    code, first = finish(holder)
    assert code == 0, first
    code, second = finish(waiter)
    assert code == 0, second

    # A replaced the starting resource; C replaced A's; the state holds C's
    assert DESTROYING.findall(first) == [start_id], first
    assert re.search(r'"run"\s*=\s*"start"\s*->\s*"a"', first), first
    [a_id] = CREATED.findall(first)
    assert DESTROYING.findall(second) == [a_id], second
    assert re.search(r'"run"\s*=\s*"a"\s*->\s*"c"', second), second
    [c_id] = CREATED.findall(second)
    [resource] = StateDocument.parse(state_file(repo).read_bytes()).resources
    assert slow_id(repo) == c_id and resource["instances"][0]["attributes"]["triggers"] == {"run": "c"}
    final = StateDocument.parse(state_file(repo).read_bytes())
    assert final.serial >= start_serial + 2 and final.lineage == lineage
    assert not info_file(repo).exists()
    assert ls_json(strata, repo)["app"]["lock"] is None


def wait_for_provisioner(tf_pid: int, timeout: float = 60) -> None:
    """Wait until terraform is in the middle of its work: the provisioner's `sleep` runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in descendants(tf_pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"sleep":
                return
        time.sleep(0.1)
    pytest.fail("terraform did not reach the provisioner in time")


def _killed_apply(strata: Strata, repo: Path, env: dict[str, str], processes: Processes,
                  whole_tree: bool) -> str:
    """Start an apply, kill -9 its terraform (and with ``whole_tree`` everything terraform started) while it
    holds the lock; returns the lock's Who."""
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    running = processes.strata("apply", "--yes", "-q", cwd=repo, env={**env, PAUSE: "120"})
    tf_pid = wait_for_terraform_lock(running, repo)
    wait_for_provisioner(tf_pid)
    who = str(json.loads(info_file(repo).read_text())["Who"])
    below = descendants(tf_pid)  # the provider plugin and the provisioner's shell
    processes.extra.extend(below)  # killed at the end whatever happens
    os.kill(tf_pid, signal.SIGKILL)
    if whole_tree:
        for pid in below:
            os.kill(pid, signal.SIGKILL)
    code, out = finish(running)
    assert code == 1, out
    assert info_file(repo).is_file(), "terraform died holding the lock: its lock info stays"
    assert lock_is_free(state_file(repo)), "the fcntl lock died with terraform"
    listed = strata("locks", "--json", cwd=repo)
    assert listed.code == 0, listed.output
    [row] = json.loads(listed.stdout)["locks"]
    assert row["lock"]["who"] == who and row["lock"]["live"] is False
    assert row["lock"]["state"].startswith("stale")
    table = strata("locks", cwd=repo)
    assert "stale" in table.stdout and who in table.stdout, table.output
    return who


@pytest.mark.terraform
def test_unlock_after_terraform_was_killed(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                           tmp_path: Path, processes: Processes) -> None:
    """Everything terraform ran is gone too (a killed process group, a restarted machine)."""
    repo = make_repo(tmp_path / "repo", {"app": SLOW})
    env = tf_env(provider_mirror, tf_111)
    _killed_apply(strata, repo, env, processes, whole_tree=True)

    unconfirmed = cli("unlock", "app", cwd=repo)
    assert unconfirmed.code == 64 and "--yes" in unconfirmed.stderr, unconfirmed.output
    assert info_file(repo).is_file()
    removed = cli("unlock", "app", "--yes", cwd=repo)
    assert removed.code == 0, removed.output
    assert not info_file(repo).exists()
    assert cli("locks", cwd=repo).stdout.startswith("no locks held")
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert ls_json(strata, repo)["app"]["resources"] == 1


@pytest.mark.terraform
def test_unlock_after_only_terraform_was_killed(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                tmp_path: Path, processes: Processes) -> None:
    """kill -9 of terraform alone leaves its provider plugin running (go-plugin does not notice): the plugin
    never holds the state lock, so it must not stop `strata unlock`."""
    repo = make_repo(tmp_path / "repo", {"app": SLOW})
    env = tf_env(provider_mirror, tf_111)
    _killed_apply(strata, repo, env, processes, whole_tree=False)

    removed = cli("unlock", "app", "--yes", cwd=repo)
    assert removed.code == 0, removed.output
    assert not info_file(repo).exists()
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output


@pytest.mark.terraform
def test_a_lock_strata_holds_stops_terraform(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                             tmp_path: Path, processes: Processes) -> None:
    repo = make_repo(tmp_path / "repo")
    env = tf_env(provider_mirror, tf_111)
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    before = state_file(repo).read_bytes()
    holder = processes.holder(STRATA_HOLDER, str(state_file(repo)), str(repo), "300")
    who = json.loads(info_file(repo).read_text())["Who"]
    (repo / "app" / "main.tf").write_text(NULL_A + NULL_B, encoding="utf-8")
    blocked = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert blocked.code == 1, blocked.output
    assert "locked by" in blocked.output and who in blocked.output and "state-restore" in blocked.output
    assert state_file(repo).read_bytes() == before
    refused = cli("unlock", "app", "--yes", cwd=repo)
    assert refused.code == 1 and "refusing" in refused.stderr, refused.output
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert cli("unlock", "app", "--yes", cwd=repo).code == 0
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert StateDocument.parse(state_file(repo).read_bytes()).resource_count == 2


# -- 6. backup and verify ----------------------------------------------------------------------------------------

def test_backup_and_verify(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app": NULL_A, "db": NULL_A, "empty": NULL_A})
    states = {"app": state_bytes(3, resources=2), "db": state_bytes(8, OTHER_LINEAGE, resources=1)}
    for stack, data in states.items():
        put_state(repo, data, stack)
    assert strata("state", "ls", cwd=repo).code == 0  # strata has now seen them: they have a version
    current = {}
    for stack in states:
        listed = json.loads(strata("state", "versions", stack, "--json", cwd=repo).stdout)["versions"]
        current[stack] = next(v["id"] for v in listed if v["current"])

    target = tmp_path / "backup"
    made = strata("state", "backup", "--to", str(target), "--json", cwd=repo)
    assert made.code == 0, made.output
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = {e["stack"]: e for e in manifest["stacks"]}
    assert set(entries) == {"app", "db"} and manifest["without_state"] == ["empty"]
    for stack, data in states.items():
        entry = entries[stack]
        doc = StateDocument.parse(data)
        assert entry["key"] == f"{stack}/terraform.tfstate"
        assert entry["version"] == current[stack]
        assert (entry["serial"], entry["lineage"]) == (doc.serial, doc.lineage)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        copy = target / stack / "terraform.tfstate"
        assert copy.read_bytes() == data
        assert manifest_path.stat().st_mtime_ns >= copy.stat().st_mtime_ns, "the manifest is written last"
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert files == ["app/terraform.tfstate", "db/terraform.tfstate", "manifest.json"]

    verified = strata("state", "verify", "--from", str(target), cwd=repo)
    assert verified.code == 0, verified.output
    assert "2 ok, 0 failed" in verified.stdout
    live = strata("state", "verify", cwd=repo)
    assert live.code == 0, live.output
    assert "0 failed" in live.stdout

    with open(target / "db" / "terraform.tfstate", "ab") as handle:
        handle.write(b" ")
    damaged = strata("state", "verify", "--from", str(target), cwd=repo)
    assert damaged.code == 1, damaged.output
    failed = [line for line in damaged.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "db" in failed[0] and "checksum" in failed[0], damaged.stdout
    as_json = strata("state", "verify", "--from", str(target), "--json", cwd=repo)
    assert as_json.code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and {f["stack"]: f["ok"] for f in report["findings"]} == {"app": True, "db": False}

    (target / "db" / "terraform.tfstate").unlink()
    missing = strata("state", "verify", "--from", str(target), cwd=repo)
    assert missing.code == 1 and "missing" in missing.stdout, missing.output

    empty = tmp_path / "not-a-backup"
    empty.mkdir()
    no_manifest = strata("state", "verify", "--from", str(empty), cwd=repo)
    assert no_manifest.code == 1, no_manifest.output
    assert "manifest.json" in no_manifest.stdout


def test_backup_interrupted_before_its_manifest_fails_verification(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(3))
    target = tmp_path / "backup"
    assert strata("state", "backup", "--to", str(target), cwd=repo).code == 0
    (target / "manifest.json").unlink()  # what an interrupted backup leaves: the states, no manifest
    result = strata("state", "verify", "--from", str(target), cwd=repo)
    assert result.code == 1 and "interrupted" in result.stdout, result.output
    (target / "manifest.json").write_text("{not json", encoding="utf-8")
    result = strata("state", "verify", "--from", str(target), cwd=repo)
    assert result.code == 1 and "damaged" in result.stdout, result.output


def test_verify_finds_a_serial_that_went_down(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app": NULL_A, "db": NULL_A})
    put_state(repo, state_bytes(5, resources=2))
    put_state(repo, state_bytes(2), "db")
    assert strata("state", "ls", cwd=repo).code == 0  # seen: serial 5 is in the history
    assert strata("state", "verify", cwd=repo).code == 0
    put_state(repo, state_bytes(3, resources=1))  # a stale copy written over the newer state
    assert strata("state", "ls", cwd=repo).code == 0
    result = strata("state", "verify", cwd=repo)
    assert result.code == 1, result.output
    lines = {line.split()[1].rstrip(":"): line for line in result.stdout.splitlines()
             if line.startswith(("ok", "FAILED"))}
    assert lines["app"].startswith("FAILED") and "serial 3" in lines["app"] and "lower" in lines["app"], lines
    assert lines["db"].startswith("ok"), lines


def test_verify_finds_an_old_copy_written_back(strata: Strata, tmp_path: Path) -> None:
    """The usual stale write: an old state file copied back byte for byte over a newer one."""
    repo = make_repo(tmp_path / "repo")
    old, new = state_bytes(5), state_bytes(6, resources=2)
    put_state(repo, old)
    assert strata("state", "ls", cwd=repo).code == 0
    put_state(repo, new)
    assert strata("state", "ls", cwd=repo).code == 0
    assert strata("state", "verify", cwd=repo).code == 0
    put_state(repo, old)
    assert strata("state", "ls", cwd=repo).code == 0
    versions = json.loads(strata("state", "versions", "app", "--json", cwd=repo).stdout)["versions"]
    assert versions[0]["current"] and versions[0]["serial"] == 5, "the newest version is the current state"
    result = strata("state", "verify", cwd=repo)
    assert result.code == 1, result.output
    assert "FAILED" in result.stdout and "app" in result.stdout, result.output


def test_verify_of_a_state_that_is_not_version_4(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, json.dumps({"version": 3, "serial": 1, "lineage": LINEAGE}).encode())
    result = strata("state", "verify", cwd=repo)
    assert result.code == 1 and "FAILED" in result.stdout and "format version" in result.stdout, result.output


# -- 7. bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("state", "ls"), ("state", "ls", "--json"), ("state", "pull", "app"),
                                     ("output",), ("output", "--json"), ("state", "backup", "--to", "{tmp}/b")])
def test_a_state_that_is_not_json(strata: Strata, tmp_path: Path, command: tuple[str, ...]) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, b"this is {not a terraform state")
    before = snapshot(repo)
    state = state_file(repo).read_bytes()
    result = strata(*(part.replace("{tmp}", str(tmp_path)) for part in command), cwd=repo)
    assert result.code == 1, result.output
    assert "app" in result.stderr and "local backend" in result.stderr, result.stderr
    assert "JSON" in result.stderr
    assert snapshot(repo) == before and state_file(repo).read_bytes() == state
    assert not (repo / ".strata" / "history").exists(), "a damaged state is not kept as a version"
    assert not (repo / ".strata" / "backups").exists()
    assert not (tmp_path / "b" / "manifest.json").exists()


def test_listing_versions_of_a_damaged_state_keeps_no_damaged_version(strata: Strata, tmp_path: Path) -> None:
    """Only states go into the history: once the file is repaired, nothing damaged is left to fail verify."""
    repo = make_repo(tmp_path / "repo")
    put_state(repo, b"this is {not a terraform state")
    strata("state", "versions", "app", cwd=repo)
    assert not (repo / ".strata" / "history").exists() or not list((repo / ".strata" / "history").rglob("*.tfstate"))
    put_state(repo, state_bytes(4))
    assert strata("state", "ls", cwd=repo).code == 0
    result = strata("state", "verify", cwd=repo)
    assert result.code == 0, result.output


def test_restore_of_an_unknown_version(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(4))
    for version in ("20990101T000000000000Z-0123456789abcdef", "../../../etc/passwd", ".hidden"):
        result = strata("state", "restore", "app", "--version", version, "--yes", cwd=repo)
        assert result.code == 1, result.output
        assert "no version" in result.stderr and "app" in result.stderr, result.stderr
    assert state_file(repo).read_bytes() == state_bytes(4)
    assert not (repo / ".strata" / "backups").exists()


def test_restore_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(4))
    result = cli("state", "restore", "app", "--version", "whatever", cwd=repo)
    assert result.code == 64 and "--yes" in result.stderr, result.output
    assert state_file(repo).read_bytes() == state_bytes(4)


def test_restore_of_a_version_that_is_not_a_sound_state(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, json.dumps({"version": 3, "serial": 1, "lineage": LINEAGE}).encode())
    assert strata("state", "ls", cwd=repo).code == 0  # kept in the history as seen
    put_state(repo, state_bytes(4))
    assert strata("state", "ls", cwd=repo).code == 0
    versions = json.loads(strata("state", "versions", "app", "--json", cwd=repo).stdout)["versions"]
    [old] = [v for v in versions if not v["current"]]
    result = strata("state", "restore", "app", "--version", old["id"], "--yes", cwd=repo)
    assert result.code == 1 and "not a sound state" in result.stderr, result.output
    assert state_file(repo).read_bytes() == state_bytes(4)


def test_bad_lock_timeout_is_a_usage_error(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(4))
    for value in ("banana", "10", "5x", ""):
        result = strata("state", "restore", "app", "--version", "v", "--yes", "--lock-timeout", value, cwd=repo)
        assert result.code == 64, (value, result.output)
        assert "duration" in result.stderr
    assert not (repo / ".strata" / "backups").exists()


@pytest.mark.terraform
def test_bad_lock_timeout_of_apply_is_a_usage_error(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                    tmp_path: Path) -> None:
    """Refused before anything runs, like every other usage mistake (not a per-stack terraform failure)."""
    repo = make_repo(tmp_path / "repo")
    result = strata("apply", "--yes", "--lock-timeout", "banana", cwd=repo, env=tf_env(provider_mirror, tf_111))
    assert result.code == 64, result.output
    assert "banana" in result.stderr
    assert not state_file(repo).exists()


HOLD_UNTIL_SIGNALLED = """
import signal, sys, time
from pathlib import Path
# Ctrl-C as in a terminal, even when the tests run as a background job (started with SIGINT ignored)
signal.signal(signal.SIGINT, signal.default_int_handler)
from strata.state.operations import holding_lock, open_store
from strata.workspace import Workspace
repo = Path(sys.argv[1])
stack = Workspace(cwd=repo).repository().stacks["app"]
store = open_store(repo, stack)
try:
    with holding_lock(stack, store, "state-restore"):
        print("locked", flush=True)
        time.sleep(60)
except KeyboardInterrupt:
    print("released", flush=True)
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupt_releases_a_lock_strata_holds(tmp_path: Path, sig: signal.Signals) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(3))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_SIGNALLED, str(repo)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert info_file(repo).is_file() and not lock_is_free(state_file(repo))
        holder.send_signal(sig)
        out, _ = holder.communicate(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 130 and "released" in out
    assert not info_file(repo).exists() and lock_is_free(state_file(repo))
    assert state_file(repo).read_bytes() == state_bytes(3)
