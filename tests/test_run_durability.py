"""What survives when things die mid-apply: strata itself (kill -9), terraform (a signal), the state backend.

Real strata processes, real terraform (1.0.3 and 1.11), real signals. The slow step is a `local-exec`
that announces itself (touches STARTED) and then waits for the test to create GO, so every kill lands at a
known point; every wait is for an event (a file, a process ending) with a generous bound, never a sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]
BOUND = 180.0  # seconds: only ever reached when something is broken


def wait_for(ready: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Any:
    """Whatever a test leaves behind (it failed before opening its gate, or it killed a terraform whose
    provider plugin and provisioner shell live on) is ended, so nothing outlives the test."""
    yield
    flags = tmp_path / "flags"
    if flags.is_dir():
        (flags / "GO").touch()
    here = str(tmp_path.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            argv = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cwd == here or cwd.startswith(here + os.sep) or here in argv:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def gated(flags: Path) -> str:
    """A local-exec command that touches STARTED, waits for GO, then touches CREATED."""
    return (f"touch {flags}/STARTED && while [ ! -f {flags}/GO ]; do sleep 0.1; done && touch {flags}/CREATED")


def make_repo(root: Path, main_tf: str) -> Path:
    return write_tree(root, {"strata.hcl": 'strata {}\nbackend "local" {}\n', "s/strata.hcl": "stack {}\n",
                             "s/main.tf": main_tf})


def provisioned(command: str) -> str:
    return ('resource "null_resource" "slow" {\n'
            f'  provisioner "local-exec" {{\n    command = {json.dumps(command)}\n  }}\n}}\n')


def start(args: list[str], repo: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, "NO_COLOR": "1", **env}
    full.pop("STRATA_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "strata", *args], cwd=repo, env=full, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def terraform_in(folder: Path) -> list[int]:
    """The terraform processes strata started in ``folder``: not their providers, provisioner commands, or
    the copy of itself Terraform 1.0.3 runs under a watchdog parent (panicwrap), which is the one found."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (cwd == str(folder.resolve()) and os.path.basename(argv[0]) == b"terraform"
                and not ended(int(entry.name))):
            stat = (entry / "stat").read_text()
            found[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return [pid for pid, parent in found.items() if parent not in found]


def ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (the orphan's new parent may be an init that does not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2:].startswith("Z")


def state_of(repo: Path) -> dict[str, Any]:
    return dict(json.loads((repo / ".strata" / "state" / "s" / "terraform.tfstate").read_text(encoding="utf-8")))


def resources(state: dict[str, Any]) -> set[str]:
    return {f"{r['type']}.{r['name']}" for r in state.get("resources", [])}


def stack_report(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8"))["stacks"][0])


# -- kill -9 of strata mid-apply -----------------------------------------------------------------------

def test_terraform_outlives_a_killed_strata_saves_its_state_and_the_next_run_waits_for_it(
        strata: Strata, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    repo = make_repo(tmp_path / "repo", provisioned(gated(flags)))
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    victim = start(["apply", "--yes", "s"], repo, env)
    try:
        wait_for(lambda: (flags / "STARTED").exists() or victim.poll() is not None, "the provisioner to start")
        assert victim.poll() is None, victim.communicate()
        [tf_pid] = terraform_in(repo / "s")
        victim.kill()  # SIGKILL: no handler, no cleanup
        victim.communicate()
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.communicate()

    # terraform goes on without strata; meanwhile the next run neither runs terraform nor forces the lock
    lock_file = repo / ".strata" / "state" / "s" / ".terraform.tfstate.lock.info"
    assert lock_file.exists()
    again = strata("plan", "s", cwd=repo, env=env)
    assert again.code == 1, again.output
    assert re.search(rf"terraform apply \(pid {tf_pid}, running since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) from an "
                     r"earlier strata run still holds the lock on s; wait for it", again.output), again.output
    assert lock_file.exists() and terraform_in(repo / "s") == [tf_pid]
    # without strata's record (terraform started by hand, say), the lock's holder is still named as live
    [record] = (repo / ".strata" / "running" / "s").glob("*.json")
    record.rename(tmp_path / "record.json")
    unrecorded = strata("plan", "s", cwd=repo, env=env)
    assert unrecorded.code == 1, unrecorded.output
    named = re.search(r"^s\s+failed .* the state is locked by .*\(a running process on this machine holds it "
                      r"\(pid (\d+)\)\)", unrecorded.stderr, re.M)  # one stack: strata's summary on stderr
    assert named, unrecorded.output
    holder = Path(f"/proc/{named.group(1)}/stat").read_text()  # terraform, or the copy 1.0.3's watchdog runs
    assert tf_pid in (int(named.group(1)), int(holder[holder.rindex(")") + 2:].split()[1])), unrecorded.output
    record.parent.mkdir(exist_ok=True)  # an empty record folder goes with its last record
    (tmp_path / "record.json").rename(record)

    (flags / "GO").touch()
    wait_for(lambda: ended(tf_pid), f"the orphaned terraform {tf_pid} to exit")
    assert (flags / "CREATED").exists()
    assert resources(state_of(repo)) == {"null_resource.slow"}  # what happened in the world is in the state
    assert not lock_file.exists()
    # what it printed after strata died was kept
    [output] = (repo / ".strata" / "logs").rglob("apply-*.out")
    assert "Apply complete! Resources: 1 added" in output.read_text(encoding="utf-8")
    assert output.stat().st_mode & 0o777 == 0o600

    settled = strata("plan", "--detailed-exitcode", "s", cwd=repo, env=env)
    assert settled.code == 0, settled.output  # nothing to create again
    assert not list((repo / ".strata" / "running").rglob("*.json"))  # the orphan's record went with it


def test_a_normal_run_leaves_no_record_and_no_raw_output(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                         tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", provisioned("echo hello-from-provisioner"))
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    done = strata("apply", "--yes", "s", cwd=repo, env=env)
    assert done.code == 0, done.output
    assert "hello-from-provisioner" in done.stdout  # followed from the file, line by line, as before
    [log] = (repo / ".strata" / "logs").rglob("terraform.log")
    assert "hello-from-provisioner" in log.read_text(encoding="utf-8")
    assert not list((repo / ".strata" / "logs").rglob("*.out"))
    assert not list((repo / ".strata" / "running").rglob("*.json"))


# -- terraform killed by a signal ----------------------------------------------------------------------

def test_terraform_killed_by_a_signal_is_reported_so_and_counts_nothing(
        terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    repo = make_repo(tmp_path / "repo", provisioned(gated(flags)))
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    report = tmp_path / "report.json"
    proc = start(["apply", "--yes", "s", "--json", str(report)], repo, env)
    try:
        wait_for(lambda: (flags / "STARTED").exists() or proc.poll() is not None, "the provisioner to start")
        [tf_pid] = terraform_in(repo / "s")
        os.kill(tf_pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=BOUND)
    finally:
        (flags / "GO").touch()  # the provisioner's shell outlives its terraform: let it end
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stdout + stderr
    assert "Traceback" not in stderr
    result = stack_report(report)
    assert result["status"] == "failed"
    assert result["detail"] == "terraform was killed by signal 9 (SIGKILL)", result
    assert (result["add"], result["change"], result["destroy"]) == (None, None, None)
    assert re.search(r"^s\s+failed\s+\S+\s+-\s+-\s+-\s+terraform was killed by signal 9", stderr, re.M), stderr


def test_a_failed_apply_counts_what_it_finished_not_what_it_planned(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", 'resource "null_resource" "a" {}\n'
                                        'resource "null_resource" "b" {\n  depends_on = [null_resource.a]\n'
                                        '  provisioner "local-exec" {\n    command = "exit 3"\n  }\n}\n')
    done = strata("apply", "--yes", "s", "--json", str(tmp_path / "r.json"), cwd=repo,
                  env={**provider_mirror, "STRATA_TERRAFORM": tf_111})
    assert done.code == 1, done.output
    result = stack_report(tmp_path / "r.json")
    assert (result["add"], result["change"], result["destroy"]) == (1, 0, 0), result  # the plan said 2


@pytest.mark.parametrize(("output", "expected"), [
    ("Plan: 2 to add, 0 to change, 0 to destroy.\na: Creation complete after 0s [id=1]\n"
     "b: Creation complete after 1s [id=2]\n\nApply complete! Resources: 2 added, 0 changed, 0 destroyed.\n",
     (2, 0, 0)),
    ("Plan: 2 to add, 0 to change, 0 to destroy.\nnull_resource.a: Creation complete after 0s [id=1]\n"
     "null_resource.b: Creating...\nError: local-exec provisioner error\n", (1, 0, 0)),
    ('Plan: 1 to add, 1 to change, 1 to destroy.\nmodule.m["a b"].x.y: Destruction complete after 0s\n'
     "\x1b[0m\x1b[1mz: Modifications complete after 2s [id=3]\x1b[0m\nError: Failed to save state\n", (0, 1, 1)),
    ("Plan: 3 to add, 0 to change, 0 to destroy.\nError: execution halted\n", (0, 0, 0)),
    ("\nNo changes. Your infrastructure matches the configuration.\n", (0, 0, 0)),
    ("Destroy complete! Resources: 4 destroyed.\n", (0, 0, 4)),
    ('Error: Reference to undeclared resource\n  on main.tf line 3\n', None),
])
def test_apply_counts_are_what_terraform_finished(output: str, expected: tuple[int, int, int] | None) -> None:
    from strata.terraform.commands import applied

    found = applied(output)
    assert (None if found is None else (found.add, found.change, found.destroy)) == expected


# -- a state terraform could not save ------------------------------------------------------------------

def test_an_unsaved_state_is_named_with_its_recovery_and_blocks_the_stack_until_overridden(
        strata: Strata, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    repo = make_repo(tmp_path / "repo", 'resource "null_resource" "a" {}\n')
    first = strata("apply", "--yes", "s", cwd=repo, env=env)
    assert first.code == 0, first.output
    # The second apply creates another resource, whose provisioner then moves the state's folder away and
    # puts a file in its place: terraform cannot write the state's backup there, so it cannot save the
    # state, and writes errored.tfstate instead.
    state_dir = repo / ".strata" / "state" / "s"
    moved = tmp_path / "moved-state"
    (repo / "s" / "main.tf").write_text(
        'resource "null_resource" "a" {}\n' + provisioned(f"mv {state_dir} {moved} && touch {state_dir}"),
        encoding="utf-8")
    report = tmp_path / "apply.json"
    broken = strata("apply", "--yes", "s", "--json", str(report), cwd=repo, env=env)
    assert broken.code == 1, broken.output
    errored = repo / "s" / "errored.tfstate"
    assert "null_resource.slow" in resources(json.loads(errored.read_text(encoding="utf-8")))
    result = stack_report(report)
    assert result["status"] == "failed" and result["errored_state"] == "s/errored.tfstate", result
    assert (result["add"], result["change"], result["destroy"]) == (None, None, None), result  # the plan said 1
    assert "state not saved" in result["detail"]
    assert "strata state push s s/errored.tfstate" in broken.stderr  # in the summary the user reads
    assert re.search(r"^s\s+failed\s+\S+\s+-\s+-\s+-\s+state not saved", broken.stderr, re.M), broken.stderr

    # the backend works again (holding the state as saved before the failed apply), but the stack is refused
    state_dir.unlink()
    moved.rename(state_dir)
    saved = (state_dir / "terraform.tfstate").read_bytes()
    for command, *rest in (["plan"], ["apply", "--yes"], ["destroy", "--yes"], ["refresh"], ["run", "--", "apply"]):
        refused = strata(command, "s", "--json", str(tmp_path / "refused.json"), *rest, cwd=repo, env=env)
        assert refused.code == 1, (command, refused.output)
        assert "strata state push s s/errored.tfstate" in refused.stderr, (command, refused.output)
        assert "--ignore-errored-state" in refused.stderr
        assert stack_report(tmp_path / "refused.json")["errored_state"] == "s/errored.tfstate"
    assert (state_dir / "terraform.tfstate").read_bytes() == saved  # nothing ran terraform
    assert strata("run", "s", "--", "version", cwd=repo, env=env).code == 0  # what does not touch state runs

    overridden = strata("plan", "--ignore-errored-state", "--detailed-exitcode", "s", cwd=repo, env=env)
    assert overridden.code == 2, overridden.output  # planned against the state as saved: slow to create
    assert re.search(r"^s\s+changes\s+\S+\s+1\s+0\s+0", overridden.stderr, re.M), overridden.output
    assert errored.exists()

    # the recovery the message names: the state terraform could not save is saved, and nothing is created twice
    pushed = strata("state", "push", "s", "s/errored.tfstate", "--yes", cwd=repo, env=env)
    assert pushed.code == 0, pushed.output
    assert not errored.exists()
    settled = strata("plan", "--detailed-exitcode", "s", cwd=repo, env=env)
    assert settled.code == 0, settled.output


# -- a planted or damaged record -----------------------------------------------------------------------

@pytest.mark.parametrize("record", [
    {"pid": "x"}, {"pid": None}, {"pid": 1.5}, {"pid": 99999999999999999999999}, {"pid": -1}, {"pid": 0},
    {"pid": True}, {"pid": 1, "start_ticks": None}, {"pid": 1, "command": "apply\u001b[2J"},
    {"pid": 1, "since": "\u001b]0;owned\u0007"}, {"extra": 1}, [], "garbage",
], ids=lambda r: json.dumps(r)[:40])
def test_a_planted_record_is_ignored_and_removed(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                  tmp_path: Path, record: Any) -> None:
    repo = make_repo(tmp_path / "repo", 'output "x" {\n  value = 1\n}\n')
    folder = repo / ".strata" / "running" / "s"
    folder.mkdir(parents=True)
    # pid 1 runs for ever: a believed record naming it would lock the stack out for good
    good = {"pid": 1, "strata_pid": 999_999, "command": "apply", "since": "2026-12-03T22:10:00Z",
            "output": "o", "start_ticks": 1}
    planted = {**good, **record} if isinstance(record, dict) else record
    (folder / "1.json").write_text(json.dumps(planted), encoding="utf-8")
    result = strata("plan", "s", cwd=repo, env={**provider_mirror, "STRATA_TERRAFORM": tf_111})
    assert result.code == 0, result.output
    assert "\u001b" not in result.output and "kill -INT" not in result.output
    assert not (folder / "1.json").exists()
