"""Issue 10 ("Trust"), the state side: states that are damaged, emptied or of the wrong format never crash
strata, never reach a plan, and can always be repaired (``state restore``, ``state push``) under the write
rules; serials only go up; a stalled S3 endpoint is bounded and noted.

Real terraform (1.11.4, and 1.0.3 where it matters), a real moto server and a real PostgreSQL server; the
stalled endpoint is a real TCP server on 127.0.0.1 that accepts and never answers. Nothing is mocked.
Repositories here: ``strata.hcl`` with ``backend "local" {}`` (or s3/pg) and stacks ``app`` (and ``db``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import Result, write_tree
from strata.backends.base import LockInfo
from strata.errors import StrataError
from strata.state.document import MAX_SERIAL, StateDocument, StateFormatError
from strata.state.operations import Known, StateError, known_from, next_serial, open_store, write_state
from strata.workspace import Workspace

if TYPE_CHECKING:
    from servers import MotoServer, PostgresServer

pytest_plugins = ["servers"]

Strata = Callable[..., Result]

LINEAGE = "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
OTHER_LINEAGE = "00000000-1111-2222-3333-444444444444"
NULL_A = 'resource "null_resource" "a" {\n  triggers = { name = "a" }\n}\n'
DB_TF = ('resource "null_resource" "db" {\n  triggers = { name = "db" }\n}\n'
         'output "id" {\n  value = null_resource.db.id\n}\n')
APP_TF = ('variable "db_id" {\n  type = string\n}\n'
          'resource "null_resource" "app" {\n  triggers = { db = var.db_id }\n}\n')
APP_HCL = ('stack {}\ndependency "db" {\n  path = "../db"\n  mock_outputs = { id = "mock-db-id" }\n}\n'
           "inputs = {\n  db_id = dependency.db.outputs.id\n}\n")


def state_bytes(serial: Any, lineage: str = LINEAGE, resources: int = 1, version: Any = 4,
                outputs: bool = False) -> bytes:
    data: dict[str, Any] = {
        "version": version, "terraform_version": "1.11.4", "serial": serial, "lineage": lineage,
        "outputs": {"id": {"value": "x", "type": "string"}} if outputs else {},
        "resources": [{"mode": "managed", "type": "null_resource", "name": f"r{i}",
                       "provider": 'provider["registry.terraform.io/hashicorp/null"]',
                       "instances": [{"schema_version": 0, "attributes": {"id": str(i), "triggers": None}}]}
                      for i in range(resources)],
    }
    return (json.dumps(data, indent=2) + "\n").encode()


def with_resource(change: Callable[[dict[str, Any]], Any]) -> bytes:
    """A state of serial 5 whose one resource ``change`` has damaged."""
    data = json.loads(state_bytes(5))
    data["resources"][0] = change(data["resources"][0]) or data["resources"][0]
    return (json.dumps(data, indent=2) + "\n").encode()


# Every kind of damage a current state can have. The first group is not a state at all; the second is
# JSON that terraform cannot read (or would silently upgrade).
DAMAGED: dict[str, bytes] = {
    "not-json": b"this is not a terraform state\n",
    "whitespace": b"  \n\t \n",
    "null": b"null",
    "array": b"[]",
    "truncated": state_bytes(5)[:57],
    "binary": b"\x89PNG\r\n\x1a\n\xff\xd8\xff\xe0 binary \xfe\xfd",
    "nuls": b'{"version": 4, "serial": 5\x00\x00\x00\x00}',
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep-in-outputs": (b'{"version": 4, "serial": 5, "lineage": "x", "outputs": {"id": {"value": '
                        + b"[" * 5_000 + b"]" * 5_000 + b"}}}"),
    "negative-serial": state_bytes(-3),
    "huge-serial": state_bytes(10**30),
    "string-serial": state_bytes("5"),
    "float-serial": state_bytes(5.5),
    "version-3": state_bytes(5, version=3),
    "resource-without-fields": with_resource(lambda r: {"foo": 1}),
    "instances-not-a-list": with_resource(lambda r: r.update(instances={"0": r["instances"][0]})),
    "attributes-not-an-object": with_resource(lambda r: r["instances"][0].update(attributes="x")),
}
NOT_A_STATE = {"not-json", "whitespace", "null", "array", "truncated", "binary", "nuls", "deep-array",
               "deep-object", "deep-in-outputs"}


def make_repo(root: Path, files: dict[str, str] | None = None, root_hcl: str = 'strata {}\nbackend "local" {}\n'
              ) -> Path:
    return write_tree(root, {"strata.hcl": root_hcl, **(files or {"app/strata.hcl": "stack {}\n",
                                                                "app/main.tf": NULL_A})})


def state_file(repo: Path, stack: str = "app") -> Path:
    return repo / ".strata" / "state" / stack / "terraform.tfstate"


def put_state(repo: Path, data: bytes, stack: str = "app") -> Path:
    path = state_file(repo, stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def remember(repo: Path, *states: bytes, stack: str = "app") -> None:
    """Put ``states`` into the stack's history, oldest first (as `strata apply` would have)."""
    st = Workspace(cwd=repo).repository().stacks[stack]
    with open_store(repo, st) as store:
        for data in states:
            store.remember(data, "apply")


def versions(strata: Strata, repo: Path, stack: str = "app", env: dict[str, str] | None = None
             ) -> list[dict[str, Any]]:
    result = strata("state", "versions", stack, "--json", cwd=repo, env=env)
    assert result.code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)["versions"]
    return rows


def version_with_serial(rows: list[dict[str, Any]], serial: int) -> str:
    return str(next(r["id"] for r in rows if r["serial"] == serial))


def backups(repo: Path, stack: str = "app") -> list[Path]:
    folder = repo / ".strata" / "backups" / stack
    return sorted(folder.glob("*.tfstate")) if folder.is_dir() else []


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL,
        timeout: float = 120) -> Result:
    """The CLI with no terminal on stdin (a confirmation cannot be answered)."""
    proc = subprocess.run([sys.executable, "-m", "strata", *args], cwd=cwd, stdin=stdin, capture_output=True,
                          text=True, timeout=timeout, check=False, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tf_env(provider_mirror: dict[str, str], binary: str) -> dict[str, str]:
    return {**provider_mirror, "STRATA_TERRAFORM": binary, "STRATA_NO_LIVE": "1"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the document: every kind of damage is a StateFormatError or a problem, never another exception ----------

@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_every_damaged_state_is_refused_with_a_reason(kind: str) -> None:
    raw = DAMAGED[kind]
    if kind in NOT_A_STATE:
        with pytest.raises(StateFormatError) as caught:
            StateDocument.parse(raw)
        assert str(caught.value)
    else:
        problems = StateDocument.parse(raw).problems()
        assert problems, kind
        word = "format version" if kind == "version-3" else "resources[0]" if "serial" not in kind else "serial"
        assert any(word in p for p in problems), problems


def test_serial_rules() -> None:
    assert StateDocument.parse(state_bytes(MAX_SERIAL)).problems() == []
    assert "absurd" in StateDocument.parse(state_bytes(MAX_SERIAL + 1)).problems()[0]
    assert "negative" in StateDocument.parse(state_bytes(-1)).problems()[0]
    assert "not a whole number" in StateDocument.parse(state_bytes(True)).problems()[0]
    for bad in (-3, 10**30, "5", 5.5, None):
        assert StateDocument.parse(state_bytes(bad)).serial == -1
    # the next serial is above every valid one known, whatever the current state claims
    history = known_from([("v3", state_bytes(7)), ("v2", state_bytes(5)), ("v1", DAMAGED["not-json"])])
    assert history.serials == (7, 5) and history.lineage == LINEAGE and history.had_state == ("v3", 7, 1)
    assert next_serial(history, StateDocument.parse(state_bytes(2))) == 8
    for bad in (-3, 10**30, "5"):
        assert next_serial(history, StateDocument.parse(state_bytes(bad))) == 8
    assert next_serial(Known(), None) == 1
    with pytest.raises(StateError, match="above"):
        next_serial(Known((MAX_SERIAL,)))


# -- item 9: no command crashes on any damage ----------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_state_commands_report_damage_without_a_traceback(strata: Strata, tmp_path: Path, kind: str) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(5))
    put_state(repo, DAMAGED[kind])

    listed = strata("state", "ls", "--json", cwd=repo)
    assert listed.code == 1 if kind in NOT_A_STATE else listed.code == 0, listed.output
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 1, verified.output
    [finding] = json.loads(verified.stdout)["findings"]
    assert not finding["ok"] and "current state" in finding["message"]
    pulled = strata("state", "pull", "app", cwd=repo)
    if kind in NOT_A_STATE:
        assert pulled.code == 1 and "the state is not usable" in pulled.stderr, pulled.output
    listed_versions = strata("state", "versions", "app", "--json", cwd=repo)
    assert listed_versions.code == 0, listed_versions.output
    output = strata("output", "app", "--json", cwd=repo)
    assert output.code == 1 and "the state is not usable" in output.stderr, output.output
    assert "repair it with `strata state restore app --version ID`" in output.stderr


# -- item 3 and 4: restore repairs any damage, with a serial above every known one ---------------------------

@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_restore_backs_up_the_damaged_bytes_and_writes_above_every_serial(strata: Strata, tmp_path: Path,
                                                                         kind: str) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(3), state_bytes(7, resources=2))
    put_state(repo, DAMAGED[kind])
    target = version_with_serial(versions(strata, repo), 3)

    done = strata("state", "restore", "app", "--version", target, "--yes", "--json", cwd=repo)
    assert done.code == 0, done.output
    result = json.loads(done.stdout)
    assert result["serial"] == 8, "one above every serial known (7 in the history), not the current + 1"
    assert result["lineage"] == LINEAGE and result["previous_serial"] is None
    assert result["replaced_damaged_state"]
    current = StateDocument.parse(state_file(repo).read_bytes())
    assert current.serial == 8 and current.lineage == LINEAGE and current.resource_count == 1
    assert current.problems() == []
    [kept] = backups(repo)
    assert kept.read_bytes() == DAMAGED[kind], "the damaged bytes are kept exactly as they were"
    assert "damaged" in kept.name and mode(kept) == 0o600 and mode(kept.parent) == 0o700
    assert strata("state", "verify", cwd=repo).code == 0


@pytest.mark.parametrize("current", [2, -3, 10**30, "5"], ids=["went-backwards", "negative", "huge", "string"])
def test_restore_serial_never_goes_below_history(strata: Strata, tmp_path: Path, current: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(2), state_bytes(5))
    put_state(repo, state_bytes(current))
    target = version_with_serial(versions(strata, repo), 2)
    done = strata("state", "restore", "app", "--version", target, "--yes", "--json", cwd=repo)
    assert done.code == 0, done.output
    assert json.loads(done.stdout)["serial"] == 6  # was 3 (2 + 1 below 5), -2, 10**30 + 1 and 1


@pytest.mark.terraform
def test_terraform_plans_clean_after_every_repair(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                  tmp_path: Path) -> None:
    """The repaired state is one terraform reads as its own: a plan shows no changes after each restore."""
    repo = make_repo(tmp_path / "repo")
    env = tf_env(provider_mirror, tf_111)
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    good = StateDocument.parse(state_file(repo).read_bytes())
    for kind in sorted(DAMAGED):
        rows = versions(strata, repo, env=env)
        known = [r["serial"] for r in rows if r["serial"] is not None]
        target = next(r["id"] for r in rows if r["resources"] == 1)
        put_state(repo, DAMAGED[kind])
        refused = strata("plan", "-q", cwd=repo, env=env)
        assert refused.code == 1 and "the state is not usable" in refused.output, (kind, refused.output)
        done = strata("state", "restore", "app", "--version", target, "--yes", "--json", cwd=repo, env=env)
        assert done.code == 0, (kind, done.output)
        assert json.loads(done.stdout)["serial"] == max(known) + 1
        plan = strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env)
        assert plan.code == 0, (kind, plan.output)
        assert StateDocument.parse(state_file(repo).read_bytes()).lineage == good.lineage


# -- item 5: an emptied state is an error for verify, its own plan and every dependent -----------------------

@pytest.mark.parametrize("how", ["emptied", "deleted"])
def test_verify_fails_when_the_state_was_emptied_but_history_had_one(strata: Strata, tmp_path: Path,
                                                                     how: str) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(5))
    path = put_state(repo, state_bytes(5))
    if how == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 1, verified.output
    [finding] = json.loads(verified.stdout)["findings"]
    assert not finding["ok"] and "emptied or deleted" in finding["message"]
    assert "strata state restore app --version" in finding["message"]


def test_verify_accepts_a_stack_that_never_had_state(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(1, resources=0))  # an empty state (terraform's first write) is not "had state"
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 0, verified.output
    assert json.loads(verified.stdout)["findings"][0]["message"] == "no state"


@pytest.mark.terraform
def test_dependents_refuse_mock_outputs_for_an_emptied_dependency(strata: Strata, tf_111: str,
                                                                  provider_mirror: dict[str, str],
                                                                  tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"db/strata.hcl": "stack {}\n", "db/main.tf": DB_TF,
                                         "app/strata.hcl": APP_HCL, "app/main.tf": APP_TF})
    env = tf_env(provider_mirror, tf_111)
    # never applied: plan uses the mock outputs, as it should
    mocked = strata("plan", "app", "-q", cwd=repo, env=env)
    assert mocked.code == 0, mocked.output
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env).code == 0

    state_file(repo, "db").write_bytes(b"")  # emptied: history holds the applied state
    dependent = strata("plan", "app", "-q", cwd=repo, env=env)
    assert dependent.code == 1, dependent.output
    assert "db" in dependent.output and "emptied or deleted" in dependent.output
    assert "mock-db-id" not in dependent.output
    own = strata("plan", "db", "-q", cwd=repo, env=env)
    assert own.code == 1 and "emptied or deleted" in own.output, own.output
    output = strata("output", "db", "--json", cwd=repo, env=env)
    assert output.code == 1 and "emptied or deleted" in output.output

    # the message's remedy works, and everything plans clean again
    rows = versions(strata, repo, "db", env=env)
    target = next(r["id"] for r in rows if r["resources"] == 1)
    assert strata("state", "restore", "db", "--version", target, "--yes", cwd=repo, env=env).code == 0
    assert strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env).code == 0


@pytest.mark.terraform
@pytest.mark.parametrize("kind", ["version-3", "negative-serial", "deep-in-outputs", "instances-not-a-list"])
def test_plan_stops_before_terraform_on_an_unusable_state(strata: Strata, tf_111: str,
                                                          provider_mirror: dict[str, str], tmp_path: Path,
                                                          kind: str) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, DAMAGED[kind])
    result = strata("plan", "-q", cwd=repo, env=tf_env(provider_mirror, tf_111))
    assert result.code == 1, result.output
    assert "the state is not usable" in result.output
    assert not (repo / "app" / ".terraform").exists(), "stopped before terraform ran (no init)"


# -- item 2: state push ---------------------------------------------------------------------------------------

@pytest.mark.terraform
@pytest.mark.parametrize("version", ["1.0.3", "1.11"])
def test_push_saves_an_errored_state(strata: Strata, version: str, provider_mirror: dict[str, str],
                                     request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """terraform's errored.tfstate (a state it could not save) is pushed: backed up first, lineage kept,
    serial above every known one, the file moved aside; terraform then plans clean."""
    binary = str(request.getfixturevalue("tf_103" if version == "1.0.3" else "tf_111"))
    repo = make_repo(tmp_path / "repo", {"app/strata.hcl": "stack {}\n", "app/main.tf": NULL_A})
    env = tf_env(provider_mirror, binary)
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    saved = state_file(repo).read_bytes()
    doc = StateDocument.parse(saved)
    # what terraform holds after an apply whose save failed: the new resources, in the same lineage (made
    # in a copy, so the backend and history here still have only the old state)
    elsewhere = tmp_path / "copy"
    shutil.copytree(repo, elsewhere)
    for folder in (repo, elsewhere):
        (folder / "app" / "main.tf").write_text(NULL_A + NULL_A.replace('"a"', '"b"'))
    assert strata("apply", "--yes", "-q", cwd=elsewhere, env=env).code == 0
    errored = state_file(elsewhere).read_bytes()
    (repo / "app" / "errored.tfstate").write_bytes(errored)
    known = max(r["serial"] for r in versions(strata, repo, env=env) if r["serial"] is not None)

    asked = cli("state", "push", "app", "app/errored.tfstate", cwd=repo, env=env)
    assert asked.code == 64 and "pass --yes" in asked.stderr, asked.output
    assert state_file(repo).read_bytes() == saved

    pushed = strata("state", "push", "app", "app/errored.tfstate", "--yes", "--json", cwd=repo, env=env)
    assert pushed.code == 0, pushed.output
    result = json.loads(pushed.stdout)
    assert result["serial"] == max(known, StateDocument.parse(errored).serial) + 1
    assert result["lineage"] == doc.lineage and result["previous_serial"] == doc.serial
    assert Path(result["backup"]).read_bytes() == saved and mode(Path(result["backup"])) == 0o600
    assert not (repo / "app" / "errored.tfstate").exists()
    moved = Path(result["errored_state_moved_to"])
    assert moved.read_bytes() == errored and mode(moved) == 0o600
    now = StateDocument.parse(state_file(repo).read_bytes())
    assert now.resource_count == 2 and now.lineage == doc.lineage
    assert strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env).code == 0
    assert strata("state", "verify", cwd=repo).code == 0


def test_push_refuses_another_lineage_unless_forced(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    current = state_bytes(4)
    put_state(repo, current)
    other = tmp_path / "other.tfstate"
    other.write_bytes(state_bytes(9, lineage=OTHER_LINEAGE, resources=3))

    refused = strata("state", "push", "app", str(other), "--yes", cwd=repo)
    assert refused.code == 1 and "--force-lineage" in refused.stderr and OTHER_LINEAGE in refused.stderr
    assert state_file(repo).read_bytes() == current and backups(repo) == []

    forced = strata("state", "push", "app", str(other), "--yes", "--force-lineage", "--json", cwd=repo)
    assert forced.code == 0, forced.output
    result = json.loads(forced.stdout)
    assert result["lineage"] == OTHER_LINEAGE and result["serial"] == 10
    [kept] = backups(repo)
    assert kept.read_bytes() == current


@pytest.mark.parametrize("current", ["absent", "empty-state", "damaged"])
def test_push_over_an_absent_empty_or_damaged_state(strata: Strata, tmp_path: Path, current: str) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(6))
    if current == "empty-state":  # no resources, no outputs: terraform lets any lineage replace it
        put_state(repo, state_bytes(7, resources=0))
    elif current == "damaged":
        put_state(repo, DAMAGED["huge-serial"])
    other = tmp_path / "other.tfstate"
    other.write_bytes(state_bytes(2, lineage=OTHER_LINEAGE))
    pushed = strata("state", "push", "app", str(other), "--yes", "--json", cwd=repo)
    if current == "damaged":  # the newest sound version's lineage counts
        assert pushed.code == 1 and "newest sound version" in pushed.stderr, pushed.output
        assert state_file(repo).read_bytes() == DAMAGED["huge-serial"]
        other.write_bytes(state_bytes(2))
        pushed = strata("state", "push", "app", str(other), "--yes", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    result = json.loads(pushed.stdout)
    assert result["serial"] == (8 if current == "empty-state" else 7)
    assert result["lineage"] == (LINEAGE if current == "damaged" else OTHER_LINEAGE)


def test_push_without_a_lineage_takes_the_stacks(strata: Strata, tmp_path: Path) -> None:
    """An empty state with no lineage: how a stack whose state was removed on purpose starts over."""
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(5))
    empty = tmp_path / "empty.tfstate"
    empty.write_text('{"version": 4, "serial": 0, "lineage": "", "resources": [], "outputs": {}}')
    assert strata("state", "verify", cwd=repo).code == 1  # emptied (deleted) with history
    pushed = strata("state", "push", "app", str(empty), "--yes", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    assert json.loads(pushed.stdout)["lineage"] == LINEAGE and json.loads(pushed.stdout)["serial"] == 6
    assert strata("state", "verify", cwd=repo).code == 0


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_push_refuses_a_file_that_is_not_a_sound_state(strata: Strata, tmp_path: Path, kind: str) -> None:
    repo = make_repo(tmp_path / "repo")
    current = put_state(repo, state_bytes(4)).read_bytes()
    bad = tmp_path / "bad.tfstate"
    bad.write_bytes(DAMAGED[kind])
    refused = strata("state", "push", "app", str(bad), "--yes", cwd=repo)
    assert refused.code == 1 and str(bad) in refused.stderr, refused.output
    assert state_file(repo).read_bytes() == current and backups(repo) == []
    missing = strata("state", "push", "app", str(tmp_path / "nope.tfstate"), "--yes", cwd=repo)
    assert missing.code == 1 and "cannot read" in missing.stderr


def test_push_reads_stdin_and_takes_the_lock(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(4))
    stack = Workspace(cwd=repo).repository().stacks["app"]
    source = tmp_path / "in.tfstate"
    source.write_bytes(state_bytes(5, resources=2))
    with open_store(repo, stack) as store:
        holder = LockInfo.new("OperationTypeApply")
        store.lock(holder)
        try:
            with source.open("rb") as stdin:  # the lock is this test process's: strata, another process, waits
                refused = cli("state", "push", "app", "-", "--yes", cwd=repo, stdin=stdin.fileno())
        finally:
            store.unlock(holder)
    assert refused.code == 1 and "locked by" in refused.stderr, refused.output
    assert StateDocument.parse(state_file(repo).read_bytes()).serial == 4
    with source.open("rb") as stdin:
        done = cli("state", "push", "app", "-", "--yes", cwd=repo, stdin=stdin.fileno())
    assert done.code == 0, done.output
    assert StateDocument.parse(state_file(repo).read_bytes()).resource_count == 2


# -- one lineage and serial, one content (Terraform's rule): a lost update is reported and never written -----

@pytest.mark.parametrize("where", ["current", "history"])
def test_verify_names_both_versions_of_one_serial_with_other_contents(strata: Strata, tmp_path: Path,
                                                                      where: str) -> None:
    """The state rewritten with ``resources = []`` at the serial and lineage it had: one of the two is a lost
    update, whether the rewrite is the current state or an older version."""
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(4), state_bytes(5, resources=2))
    if where == "current":
        put_state(repo, state_bytes(5, resources=0))
    else:
        remember(repo, state_bytes(5, resources=0), state_bytes(6))
        put_state(repo, state_bytes(6))
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 1, verified.output
    [finding] = json.loads(verified.stdout)["findings"]
    rows = versions(strata, repo)
    kept = next(r["id"] for r in rows if r["serial"] == 5 and r["resources"] == 2)
    rewrite = "the current state" if where == "current" else \
        "version " + next(r["id"] for r in rows if r["serial"] == 5 and r["resources"] == 0)
    assert finding["message"].startswith(f"version {kept} and {rewrite} both have serial 5 (lineage {LINEAGE}) "
                                         "but other contents"), finding


def test_verify_accepts_the_same_serial_rewritten_by_a_newer_terraform(strata: Strata, tmp_path: Path) -> None:
    """Terraform compares states without their header: a rewrite by another version with nothing else
    changed keeps its serial, and is no lost update."""
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(5, resources=2))
    data = json.loads(state_bytes(5, resources=2))
    put_state(repo, json.dumps({**data, "terraform_version": "1.12.0"}).encode())
    verified = strata("state", "verify", cwd=repo)
    assert verified.code == 0, verified.output


def test_push_refuses_other_contents_at_the_current_serial(strata: Strata, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    current = put_state(repo, state_bytes(5, resources=2)).read_bytes()
    stale = tmp_path / "stale.tfstate"
    stale.write_bytes(state_bytes(5, resources=0))  # made from serial 4, or edited by hand without a new serial
    refused = strata("state", "push", "app", str(stale), "--yes", cwd=repo)
    assert refused.code == 1, refused.output
    assert (f"refusing to write {stale}: it has the current state's lineage and serial (5) but other contents"
            in refused.stderr), refused.output
    assert "nothing was written" in refused.stderr and "set its serial to 6" in refused.stderr
    assert state_file(repo).read_bytes() == current and backups(repo) == []

    stale.write_bytes(state_bytes(6, resources=0))  # what the message asks for
    pushed = strata("state", "push", "app", str(stale), "--yes", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    assert json.loads(pushed.stdout)["serial"] == 7


def test_push_refuses_a_file_pulled_before_another_apply_unless_forced(strata: Strata, tmp_path: Path) -> None:
    """pull, edit, push while another apply landed in between: the push would silently drop that apply, so it
    is refused (terraform's `state push` too) naming both serials, unless --force, which backs up first."""
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(5, resources=2))
    pulled = strata("state", "pull", "app", cwd=repo)
    assert pulled.code == 0, pulled.output
    edited = json.loads(pulled.stdout)
    edited["resources"] = edited["resources"][:1]  # the edit: a resource removed by hand
    file = tmp_path / "edited.tfstate"
    file.write_text(json.dumps(edited))
    applied = put_state(repo, state_bytes(6, resources=3)).read_bytes()  # another apply lands meanwhile

    refused = strata("state", "push", "app", str(file), "--yes", cwd=repo)
    assert refused.code == 1, refused.output
    assert (f"refusing to push {file}: its serial 5 is below the current state's serial 6 (lineage {LINEAGE})"
            in refused.stderr), refused.output
    for hint in ("nothing was written", "strata state pull app", "strata state restore app", "--force"):
        assert hint in refused.stderr, (hint, refused.output)
    assert "Traceback" not in refused.stderr
    assert state_file(repo).read_bytes() == applied and backups(repo) == []

    forced = strata("state", "push", "app", str(file), "--yes", "--force", "--json", cwd=repo)
    assert forced.code == 0, forced.output
    result = json.loads(forced.stdout)
    assert result["serial"] == 7 and result["previous_serial"] == 6 and result["lineage"] == LINEAGE
    assert Path(result["backup"]).read_bytes() == applied
    assert StateDocument.parse(state_file(repo).read_bytes()).resource_count == 1
    assert "--force" in strata("state", "push", "--help", cwd=repo).stdout


def test_push_refuses_an_errored_state_older_than_the_current_one(strata: Strata, tmp_path: Path) -> None:
    """terraform's errored.tfstate may keep the current serial, never a lower one: another write came after it."""
    repo = make_repo(tmp_path / "repo")
    current = put_state(repo, state_bytes(6, resources=2)).read_bytes()
    errored = repo / "app" / "errored.tfstate"
    errored.write_bytes(state_bytes(5, resources=3))
    refused = strata("state", "push", "app", "app/errored.tfstate", "--yes", cwd=repo)
    assert refused.code == 1 and "its serial 5 is below the current state's serial 6" in refused.stderr, \
        refused.output
    assert state_file(repo).read_bytes() == current and errored.exists()


def test_push_takes_the_same_serial_from_the_same_contents_and_from_terraforms_errored_state(
        strata: Strata, tmp_path: Path) -> None:
    """A newer terraform's rewrite of the same state, and terraform's errored.tfstate, which it made from the
    current state and could not save (so it still has the serial it read)."""
    repo = make_repo(tmp_path / "repo")
    put_state(repo, state_bytes(5, resources=2))
    same = tmp_path / "same.tfstate"
    same.write_bytes(state_bytes(5, resources=2).replace(b'"1.11.4"', b'"1.12.0"'))
    pushed = strata("state", "push", "app", str(same), "--yes", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    assert json.loads(pushed.stdout)["serial"] == 6
    errored = repo / "app" / "errored.tfstate"
    errored.write_bytes(state_bytes(6, resources=3))
    pushed = strata("state", "push", "app", "app/errored.tfstate", "--yes", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    assert json.loads(pushed.stdout)["serial"] == 7 and not errored.exists()
    assert StateDocument.parse(state_file(repo).read_bytes()).resource_count == 3


def test_an_exact_copy_never_replaces_other_contents_at_the_same_serial(tmp_path: Path) -> None:
    """The write a DR replica makes (the bytes unchanged): a copy that diverged at one serial is not overwritten."""
    repo = make_repo(tmp_path / "repo")
    current = put_state(repo, state_bytes(5, resources=2)).read_bytes()
    stack = Workspace(cwd=repo).repository().stacks["app"]
    with open_store(repo, stack) as store:
        with pytest.raises(StateError, match=r"lineage and serial \(5\) but other contents"):
            write_state(repo, stack, store, state_bytes(5, resources=1), operation="state-replicate", exact=True)
        assert state_file(repo).read_bytes() == current and backups(repo) == []
        written = write_state(repo, stack, store, state_bytes(6, resources=1), operation="state-replicate",
                              exact=True)
    assert written.serial == 6 and state_file(repo).read_bytes() == state_bytes(6, resources=1)


@pytest.mark.parametrize("kind", ["resource-without-fields", "instances-not-a-list", "attributes-not-an-object"])
def test_push_and_verify_name_a_malformed_resource_at_its_json_path(strata: Strata, tmp_path: Path,
                                                                   kind: str) -> None:
    repo = make_repo(tmp_path / "repo")
    current = put_state(repo, state_bytes(4)).read_bytes()
    where = {"resource-without-fields": "resources[0].mode is missing",
             "instances-not-a-list": "resources[0].instances is an object, not a list",
             "attributes-not-an-object": 'resources[0].instances[0].attributes is "x", not an object'}[kind]
    bad = tmp_path / "bad.tfstate"
    bad.write_bytes(DAMAGED[kind])
    refused = strata("state", "push", "app", str(bad), "--yes", cwd=repo)
    assert refused.code == 1 and where in refused.stderr and "nothing was written" in refused.stderr, refused.output
    assert state_file(repo).read_bytes() == current and backups(repo) == []
    put_state(repo, DAMAGED[kind])
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 1, verified.output
    [finding] = json.loads(verified.stdout)["findings"]
    assert finding["message"].startswith("current state (local backend") and where in finding["message"], finding


@pytest.mark.parametrize("serial", ["3", 3.5, None, 10**30], ids=["string", "float", "null", "huge"])
def test_verify_names_a_version_whose_serial_is_not_a_whole_number(strata: Strata, tmp_path: Path,
                                                                   serial: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    remember(repo, state_bytes(4), state_bytes(serial), state_bytes(5))
    put_state(repo, state_bytes(5))
    verified = strata("state", "verify", "--json", cwd=repo)
    assert verified.code == 1, verified.output
    [finding] = json.loads(verified.stdout)["findings"]
    rows = versions(strata, repo)
    [bad] = [r["id"] for r in rows if r["serial"] is None]  # versions shows no serial for it, not -1
    what = "is absurd" if serial == 10**30 else "is not a whole number"
    assert finding["message"].startswith(f"version {bad}: its serial {json.dumps(serial)}"), finding
    assert what in finding["message"] and "-1" not in finding["message"], finding


@pytest.mark.parametrize("pid", [10**30, 2**31, 0, -1])
def test_unlock_removes_a_stale_lock_whatever_pid_it_names(strata: Strata, tmp_path: Path, pid: int) -> None:
    """A lock's info is a file anyone may have written: a pid no process can have is no live holder (it
    crashed `strata unlock`, or named every process of a group, so the lock could never be removed)."""
    repo = make_repo(tmp_path / "repo")
    path = put_state(repo, state_bytes(5))
    host = socket.gethostname()
    info = {"ID": "f00d", "Operation": "OperationTypeApply", "Info": json.dumps({"host": host, "pid": pid}),
            "Who": f"someone@{host}", "Version": "1.11.4", "Created": "2026-12-03T10:00:00Z", "Path": str(path)}
    (path.parent / f".{path.name}.lock.info").write_text(json.dumps(info))
    listed = strata("locks", cwd=repo)
    assert listed.code == 0 and "f00d" in listed.stdout, listed.output
    removed = strata("unlock", "app", "--yes", cwd=repo)
    assert removed.code == 0 and "lock removed" in removed.stdout, removed.output
    assert not (path.parent / f".{path.name}.lock.info").exists()


# -- the same rules on S3 (object versions) and PostgreSQL (strata's history) --------------------------------

def s3_root_hcl(moto: MotoServer, bucket: str, table: str) -> str:
    ep = moto.endpoint
    return f"""strata {{}}
backend "s3" {{
  bucket         = "{bucket}"
  region         = "{moto.region}"
  dynamodb_table = "{table}"
  endpoints      = {{ s3 = "{ep}", dynamodb = "{ep}" }}
  use_path_style = true
  access_key     = "{moto.access_key}"
  secret_key     = "{moto.secret_key}"
}}
"""


def test_s3_restore_and_push_count_every_object_version(strata: Strata, moto_server: MotoServer,
                                                        tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    s3 = moto_server.client("s3")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    repo = make_repo(tmp_path / "repo", root_hcl=s3_root_hcl(moto_server, bucket, table))
    key = "app/terraform.tfstate"
    for data in (state_bytes(3), state_bytes(9, resources=2), state_bytes(2), DAMAGED["null"]):
        s3.put_object(Bucket=bucket, Key=key, Body=data)  # serial went backwards, then the object was damaged
    assert strata("state", "verify", cwd=repo).code == 1
    target = version_with_serial(versions(strata, repo), 3)
    done = strata("state", "restore", "app", "--version", target, "--yes", "--json", cwd=repo)
    assert done.code == 0, done.output
    assert json.loads(done.stdout)["serial"] == 10, "one above serial 9 in the object versions"
    assert moto_server.table_items(table)[f"{bucket}/{key}-md5"]["Digest"]  # terraform's digest kept in step
    pushed_file = tmp_path / "in.tfstate"
    pushed_file.write_bytes(state_bytes(1, resources=3))  # older than the current serial 10: on purpose
    pushed = strata("state", "push", "app", str(pushed_file), "--yes", "--force", "--json", cwd=repo)
    assert pushed.code == 0, pushed.output
    assert json.loads(pushed.stdout)["serial"] == 11
    current = StateDocument.parse(moto_server.get_object(bucket, key))
    assert current.serial == 11 and current.resource_count == 3 and current.lineage == LINEAGE
    [damaged] = [p for p in backups(repo) if "damaged" in p.name]
    assert damaged.read_bytes() == DAMAGED["null"]


def test_pg_restore_repairs_a_damaged_row(strata: Strata, postgres_server: PostgresServer, tmp_path: Path) -> None:
    database = postgres_server.create_database()
    url = postgres_server.url(database)
    repo = make_repo(tmp_path / "repo", root_hcl=f'strata {{}}\nbackend "pg" {{\n  conn_str = "{url}"\n}}\n')
    stack = Workspace(cwd=repo).repository().stacks["app"]
    with open_store(repo, stack) as store:
        for data in (state_bytes(4), state_bytes(8)):
            info = LockInfo.new("apply")
            store.lock(info)
            try:
                store.write(data)
            finally:
                store.unlock(info)
            store.remember(data, "apply")
        schema = store.where.rsplit(" ", 1)[-1]
    postgres_server.query(database, f"UPDATE \"{schema}\".states SET data = '  [1, 2' WHERE name = 'default'")
    assert "not usable" in strata("state", "ls", cwd=repo).stderr
    target = version_with_serial(versions(strata, repo), 4)
    done = strata("state", "restore", "app", "--version", target, "--yes", "--json", cwd=repo)
    assert done.code == 0, done.output
    assert json.loads(done.stdout)["serial"] == 9
    [kept] = backups(repo)
    assert kept.read_bytes() == b"  [1, 2"
    assert strata("state", "verify", cwd=repo).code == 0


# -- item 13: a stalled S3 endpoint is bounded, retried a known number of times, and noted -------------------

class StalledServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (an S3 stall)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections: list[socket.socket] = []
        self.peers: list[Any] = []  # each connection's address, recorded when it is accepted
        self.accepted = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with self.accepted:
                self.connections.append(conn)
                self.peers.append(peer)
                self.accepted.notify_all()

    def wait_for(self, count: int, timeout: float = 60) -> bool:
        with self.accepted:
            return self.accepted.wait_for(lambda: len(self.connections) >= count, timeout)

    def settled_count(self) -> int:
        """Connections made so far, once every one of them was accepted: a last connection of our own is
        accepted after all those queued before it (the listen queue is first in, first out)."""
        with socket.create_connection(("127.0.0.1", self.port)) as sentinel:
            mine = sentinel.getsockname()
            with self.accepted:
                assert self.accepted.wait_for(lambda: mine in self.peers, 60)
                return len(self.connections) - 1

    def hang_up(self) -> None:
        with self.accepted:
            for conn in self.connections:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        self.hang_up()


@pytest.fixture
def stalled() -> Iterator[StalledServer]:
    server = StalledServer()
    try:
        yield server
    finally:
        server.close()


def stalled_repo(tmp_path: Path, server: StalledServer) -> Path:
    ep = f"http://127.0.0.1:{server.port}"
    root = (f'strata {{}}\nbackend "s3" {{\n  bucket = "stalled"\n  region = "us-east-1"\n'
            f'  endpoints = {{ s3 = "{ep}", dynamodb = "{ep}" }}\n  use_path_style = true\n'
            '  access_key = "a"\n  secret_key = "b"\n}\n')
    return make_repo(tmp_path / "repo", root_hcl=root)


def test_stalled_s3_read_is_bounded_by_the_configured_timeout_and_retries(strata: Strata, tmp_path: Path,
                                                                         stalled: StalledServer) -> None:
    repo = stalled_repo(tmp_path, stalled)
    # the old fixed 30 s x 4 attempts (121 s) would overrun this test's 60 s
    result = strata("state", "ls", "--json", cwd=repo, timeout=60,
                    env={"STRATA_S3_READ_TIMEOUT": "1", "STRATA_S3_RETRIES": "1"})
    assert result.code == 1, result.output
    assert f"the S3 endpoint http://127.0.0.1:{stalled.port} did not answer in time" in result.stderr
    assert stalled.settled_count() == 2, "the first attempt and exactly one retry"


def test_stalled_s3_read_gets_a_progress_note(tmp_path: Path, stalled: StalledServer) -> None:
    repo = stalled_repo(tmp_path, stalled)
    proc = subprocess.Popen([sys.executable, "-m", "strata", "state", "ls"], cwd=repo, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NO_COLOR": "1", "STRATA_S3_READ_TIMEOUT": "120",
                                 "STRATA_S3_RETRIES": "0"})
    try:
        assert stalled.wait_for(1), "strata never connected"
        assert proc.stderr is not None
        note = proc.stderr.readline()  # waits for the note: the read is stalled until we hang up
        assert note.startswith("app: reading its state (s3 backend, s3://stalled/app/terraform.tfstate)"), note
        assert "still waiting" in note
        stalled.hang_up()
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, rest
    assert "Traceback" not in rest and "internal error" not in rest and "app" in rest


def test_s3_timeouts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from strata.backends.s3 import timeouts

    assert timeouts({}) == (5.0, 10.0, 2)
    assert timeouts({"max_retries": 5}) == (5.0, 10.0, 5)
    monkeypatch.setenv("STRATA_S3_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("STRATA_S3_READ_TIMEOUT", "4")
    monkeypatch.setenv("STRATA_S3_RETRIES", "0")
    assert timeouts({"max_retries": 5}) == (2.5, 4.0, 0)
    for name, value in (("STRATA_S3_READ_TIMEOUT", "0"), ("STRATA_S3_READ_TIMEOUT", "soon"),
                        ("STRATA_S3_RETRIES", "-1"), ("STRATA_S3_RETRIES", "1.5")):
        monkeypatch.setenv(name, value)
        with pytest.raises(StrataError, match=name):
            timeouts({})
        monkeypatch.setenv(name, "1")


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "folder", "stdin-zero"])
def test_push_reads_only_a_regular_file_of_bounded_size(kind: str, strata: Any, tmp_path: Path) -> None:
    """A FIFO would block for ever and /dev/zero would fill the memory: both are refused at once."""
    repo = write_tree(tmp_path / "repo", {"strata.hcl": 'strata {}\nbackend "local" {}\n',
                                          "s/strata.hcl": "stack {}\n"})
    source = tmp_path / "source"
    if kind == "fifo":
        os.mkfifo(source)
    elif kind == "dev-zero":
        source.symlink_to("/dev/zero")
    elif kind == "folder":
        source.mkdir()
    if kind == "stdin-zero":
        with open("/dev/zero", "rb") as zero:
            proc = subprocess.run([sys.executable, "-m", "strata", "state", "push", "s", "-", "--yes"], cwd=repo,
                                  stdin=zero, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "NO_COLOR": "1"}, check=False)
        assert proc.returncode == 1 and "more than 512 MiB" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        result = strata("state", "push", "s", str(source), "--yes", cwd=repo, timeout=60)
        assert result.code == 1 and "not a regular file" in result.stderr, result.output
    assert not (repo / ".strata" / "state" / "s" / "terraform.tfstate").exists()
