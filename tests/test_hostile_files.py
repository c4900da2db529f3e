"""Files and folders a hostile repository plants where strata reads code or state, or writes secrets.

In CI the repository comes from an untrusted pull request. Each case below ends in a message naming
the file and an exit code, never a hang, an exhausted machine or a secret written out of place:
- Terraform code (``*.tf``, a module's code, the generated backend file) that is a FIFO or /dev/zero;
- a local-backend state that is a FIFO or /dev/zero;
- a ``.strata`` folder, or a folder inside it, that is a symbolic link leading elsewhere;
- a local state folder of the user's choosing: its states are 0600 and git ignores it;
- a number literal too small for a double (it used to become 0 in silence);
- a local lock held by a process strata did not start: the message names its pid.

A hang shows as the ``timeout`` of the CLI call, not as a wrong answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.atomic import SECRET, private_dir, write_atomic
from strata.config.parse import parse_text
from strata.errors import ConfigError, StrataError
from strata.run.engine import INIT_STAMP

Strata = Callable[..., Result]

ROOT = "strata {}\n"
STACK = "stack {}\n"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
WORDS = {"fifo": "it is a named pipe (FIFO), not a regular file", "dev-zero": "it is a device, not a regular file"}


def plant(path: Path, kind: str) -> None:
    """Replace ``path`` with a FIFO (a read blocks for ever) or a link to /dev/zero (a read never ends)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
                          check=True, timeout=60).stdout


def committed(repo: Path) -> Path:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


# -- H2: Terraform code is read from regular files only ------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_tf_file_that_is_not_a_regular_file_is_an_error_not_a_hang(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = committed(write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK,
                                           "app/main.tf": 'module "net" {\n  source = "../modules/net"\n}\n',
                                           "modules/net/main.tf": "# a module\n"}))
    plant(repo / "app" / "main.tf", kind)
    validated = strata("validate", cwd=repo, timeout=60)
    assert validated.code == 1
    assert f"app/main.tf: error: cannot read: {WORDS[kind]}" in validated.output
    changed = strata("ls", "--changed", cwd=repo, timeout=60)
    assert changed.code == 1
    assert f"app/main.tf: cannot read: {WORDS[kind]}" in changed.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_module_file_that_is_not_a_regular_file_fails_the_stack_not_the_run(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    # once a stack was initialised, the engine hashes its code and its modules' code to decide whether
    # terraform init must run again: that hash is what reads the planted file here, before terraform runs
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK,
                                 "app/main.tf": 'module "net" {\n  source = "../modules/net"\n}\n',
                                 "modules/net/main.tf": "# a module\n",
                                 f"app/.terraform/{INIT_STAMP}": "0" * 64 + "\n"})
    plant(repo / "modules" / "net" / "main.tf", kind)
    result = strata("init", "app", cwd=repo, timeout=120)
    assert result.code == 1, result.output
    assert f"modules/net/main.tf: cannot read: {WORDS[kind]}" in result.output


def processes_in(folder: Path) -> list[int]:
    """The processes whose working directory is ``folder`` (terraform runs in the stack's folder)."""
    target = os.path.realpath(folder)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == target:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.terraform
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_tf_file_that_is_not_a_regular_file_fails_a_stacks_first_init_before_terraform_runs(
        tmp_path: Path, strata: Strata, tf_111: str, provider_mirror: dict[str, str], kind: str) -> None:
    """Never initialised, so no init stamp to compare: terraform itself would block reading the FIFO (or read
    /dev/zero for ever), in its own session, outliving strata. The engine reads the code first. (The stack's
    own main.tf is refused earlier, by the repository's checks: a module's file gets as far as the engine.)"""
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK,
                                 "app/main.tf": 'module "net" {\n  source = "../modules/net"\n}\n',
                                 "modules/net/main.tf": "# a module\n"})
    plant(repo / "modules" / "net" / "main.tf", kind)
    try:
        result = strata("plan", "app", cwd=repo, env={**provider_mirror, "STRATA_TERRAFORM": tf_111}, timeout=120)
        assert result.code == 1, result.output
        assert f"modules/net/main.tf: cannot read: {WORDS[kind]}" in result.output, result.output
        assert processes_in(repo / "app") == [], "no terraform started in the stack's folder"
        assert not (repo / "app" / ".terraform").exists()
    finally:
        for pid in processes_in(repo / "app"):  # a terraform this test started, left blocked on the file
            os.kill(pid, 9)


@pytest.mark.terraform
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_init_stamp_that_is_not_a_regular_file_fails_the_stack(
        tmp_path: Path, strata: Strata, tf_111: str, kind: str) -> None:
    """``.terraform`` can be committed, with a link to /dev/zero as strata's init stamp."""
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK, "app/main.tf": "# code\n",
                                 f"app/.terraform/{INIT_STAMP}": ""})
    plant(repo / "app" / ".terraform" / INIT_STAMP, kind)
    result = strata("init", "app", cwd=repo, env={"STRATA_TERRAFORM": tf_111}, timeout=120)
    assert result.code == 1, result.output
    assert f"app/.terraform/{INIT_STAMP}: cannot read: {WORDS[kind]}" in result.output, result.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_generated_backend_file_that_is_not_a_regular_file_is_an_error(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK,
                                 "app/main.tf": "# code\n", "app/strata_backend.tf": ""})
    plant(repo / "app" / "strata_backend.tf", kind)
    result = strata("generate", cwd=repo, timeout=60)
    assert result.code == 1
    assert f"app/strata_backend.tf: error: cannot read: {WORDS[kind]}" in result.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "not-utf-8"])
def test_generate_check_reads_the_generated_file_through_the_safe_reader(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    """A FIFO or /dev/zero is named, never read; a generated file edited into bytes that are not UTF-8 is out of
    date (it crashed `generate --check` with a UnicodeDecodeError)."""
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK,
                                 "app/main.tf": "# code\n"})
    backend_file = repo / "app" / "strata_backend.tf"
    if kind == "not-utf-8":
        backend_file.write_bytes(b"# Generated by strata\n\xff\xfe\n")
    else:
        backend_file.touch()
        plant(backend_file, kind)
    result = strata("generate", "--check", cwd=repo, timeout=60)
    assert result.code == 1, result.output
    if kind == "not-utf-8":
        assert "out of date: app/strata_backend.tf" in result.output, result.output
        assert backend_file.read_bytes() == b"# Generated by strata\n\xff\xfe\n"
    else:
        assert f"app/strata_backend.tf: error: cannot read: {WORDS[kind]}" in result.output, result.output


def test_a_folder_named_like_a_tf_file_is_skipped_as_terraform_skips_it(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK, "app/main.tf": "# code\n",
                                 "app/notes.tf/readme": "not code\n"})
    result = strata("validate", cwd=repo, timeout=60)
    assert "notes.tf" not in result.output, result.output


# -- H3: a dependency's local state is read from a regular file only ----------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_dependency_state_that_is_not_a_regular_file_fails_its_dependent(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "vpc/strata.hcl": STACK,
                                 "vpc/main.tf": 'output "id" {\n  value = "a"\n}\n',
                                 "app/strata.hcl": 'stack {}\ndependency "vpc" {\n  path = "../vpc"\n}\n'
                                                   "inputs = { id = dependency.vpc.outputs.id }\n",
                                 "app/main.tf": 'variable "id" {}\n'})
    state = repo / ".strata" / "state" / "vpc" / "terraform.tfstate"
    state.parent.mkdir(parents=True)
    plant(state, kind)
    result = strata("plan", "app", cwd=repo, timeout=120)
    assert result.code == 1, result.output
    assert f"cannot read .strata/state/vpc/terraform.tfstate: {WORDS[kind]}" in result.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_history_file_that_is_not_a_regular_file_is_an_error_not_a_hang(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK,
                                 ".strata/state/app/terraform.tfstate": json.dumps(SOUND_STATE)})
    history = repo / ".strata" / "history" / "local" / ".strata" / "state" / "app" / "terraform.tfstate"
    history.mkdir(parents=True)
    planted = history / "20261201T000000000000Z-0123456789abcdef.tfstate"
    planted.touch()
    plant(planted, kind)
    result = strata("state", "versions", "app", cwd=repo, timeout=60)
    assert result.code == 1, result.output
    assert f"{planted}: cannot read: {WORDS[kind]}" in result.output, result.output


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_backup_file_that_is_not_a_regular_file_is_an_error_not_a_hang(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = write_tree(tmp_path / "repo", {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK})
    manifest = tmp_path / "backup" / "manifest.json"
    manifest.parent.mkdir()
    manifest.touch()
    plant(manifest, kind)
    result = strata("state", "verify", "--from", str(manifest.parent), cwd=repo, timeout=60)
    assert result.code == 1, result.output
    assert f"{manifest}: cannot read: {WORDS[kind]}" in result.output, result.output


@pytest.mark.terraform
@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_running_record_that_is_not_a_regular_file_is_no_record(
        tmp_path: Path, strata: Strata, tf_111: str, kind: str) -> None:
    """``.strata/running`` is read before every stack starts: a planted FIFO there blocked every run."""
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK, "app/main.tf": "# code\n"})
    folder = repo / ".strata" / "running" / "app"
    folder.mkdir(parents=True)
    planted = folder / "4242.json"
    planted.touch()
    plant(planted, kind)
    result = strata("init", "app", cwd=repo, env={"STRATA_TERRAFORM": tf_111}, timeout=120)
    assert result.code == 0, result.output
    assert not os.path.lexists(planted), "not a record strata writes: removed"


# -- S3: .strata is never a symbolic link -----------------------------------------------------------------


def test_a_strata_folder_that_is_a_symbolic_link_is_refused(tmp_path: Path, strata: Strata) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    repo = write_tree(tmp_path / "repo", {"strata.hcl": ROOT, "app/strata.hcl": STACK})
    (repo / ".strata").symlink_to(elsewhere)
    result = strata("ls", cwd=repo, timeout=60)
    assert result.code == 1
    assert f"{repo / '.strata'} is a symbolic link (to {str(elsewhere)!r})" in result.output
    assert list(elsewhere.iterdir()) == [], "nothing written where the link leads"


def test_a_folder_inside_strata_that_is_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "repo" / ".strata").mkdir(parents=True)
    (tmp_path / "repo" / ".strata" / "logs").symlink_to(elsewhere)
    with pytest.raises(StrataError, match=r"logs is a symbolic link"):
        private_dir(tmp_path / "repo" / ".strata" / "logs" / "run-1")
    with pytest.raises(StrataError, match=r"logs is a symbolic link"):
        write_atomic(tmp_path / "repo" / ".strata" / "logs" / "x.log", b"secret", mode=SECRET)
    assert list(elsewhere.iterdir()) == []
    # a link above the repository (e.g. /tmp -> /private/tmp) is the user's own, and followed
    (tmp_path / "linked").symlink_to(tmp_path / "repo")
    assert private_dir(tmp_path / "linked" / ".strata" / "cache").is_dir()


# -- S4: a local state folder of the user's choosing holds secrets ------------------------------------------


SOUND_STATE = {"version": 4, "terraform_version": "1.11.4", "serial": 1,
               "lineage": "6f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
               "outputs": {"password": {"value": "hunter2", "type": "string", "sensitive": True}}, "resources": []}


def test_a_state_strata_writes_to_a_custom_local_path_is_private_and_ignored_by_git(
        tmp_path: Path, strata: Strata) -> None:
    repo = committed(write_tree(tmp_path / "repo", {
        "strata.hcl": ROOT, "app/main.tf": "# code\n",
        "app/strata.hcl": 'stack {}\nbackend "local" {\n  path = "../states/app/terraform.tfstate"\n}\n'}))
    pushed_file = tmp_path / "state.json"
    pushed_file.write_text(json.dumps(SOUND_STATE))
    result = strata("state", "push", "app", str(pushed_file), "--yes", cwd=repo, timeout=60)
    assert result.code == 0, result.output
    state = repo / "states" / "app" / "terraform.tfstate"
    assert json.loads(state.read_bytes())["outputs"]["password"]["value"] == "hunter2"
    assert state.stat().st_mode & 0o777 == SECRET
    assert (repo / "states").stat().st_mode & 0o777 == 0o700
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


# -- N1: numbers out of range ---------------------------------------------------------------------------


@pytest.mark.terraform
def test_a_state_terraform_writes_to_a_custom_local_path_is_private_and_ignored_by_git(
        tmp_path: Path, strata: Strata, tf_111: str, provider_mirror: dict[str, str]) -> None:
    """terraform makes a local state's folder 0755 and the state and its .backup 0644: strata makes the folder
    first (0700, ignored by git) and the files 0600 once terraform ran."""
    null = 'resource "null_resource" "a" {\n  triggers = { v = "%s" }\n}\n'
    repo = committed(write_tree(tmp_path / "repo", {
        "strata.hcl": ROOT, "app/main.tf": null % 1,
        "app/strata.hcl": 'stack {}\nbackend "local" {\n  path = "../states/app/terraform.tfstate"\n}\n'}))
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    (repo / "app" / "main.tf").write_text(null % 2)  # a second apply: terraform keeps the first in .backup
    applied = strata("apply", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    state = repo / "states" / "app" / "terraform.tfstate"
    backup = state.with_name("terraform.tfstate.backup")
    assert json.loads(state.read_bytes())["resources"] and json.loads(backup.read_bytes())["resources"]
    assert (state.stat().st_mode & 0o777, backup.stat().st_mode & 0o777) == (SECRET, SECRET)
    assert (repo / "states").stat().st_mode & 0o777 == 0o700
    assert (repo / "states" / "app").stat().st_mode & 0o777 == 0o700
    assert "states/" not in git(repo, "status", "--porcelain", "--untracked-files=all")


@pytest.mark.parametrize("literal", ["1e-400", "2.5e-320", "0.000000001e-330"])
def test_a_number_too_small_for_a_double_is_an_error_at_its_line(literal: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(f"a = 1\nb = {literal}\n", "t.hcl")
    assert str(caught.value).startswith(f"t.hcl:2: the number {literal} is too small")


def test_zero_and_small_numbers_a_double_holds_are_kept() -> None:
    body = parse_text("a = 0e-999\nb = 0.0\nc = 1e-300\nd = 2.5e-3\n", "t.hcl")
    assert [getattr(a.expr, "value", None) for a in body.attributes] == [0.0, 0, 1e-300, 2.5e-3]


def test_a_number_too_large_for_a_double_is_still_an_error(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": "stack {}\ninputs = {\n  x = 1e400\n}\n"})
    result = strata("validate", cwd=repo)
    assert result.code == 1
    assert "app/strata.hcl:3: error: the number 1e400 is too large" in result.output


# -- U2: a local lock held by a process strata did not start ---------------------------------------------


HOLDER = r"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
sys.stdin.read()  # holds the lock until the test closes standard input
"""


def test_a_local_lock_held_by_another_process_names_its_pid(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK})
    state = repo / ".strata" / "state" / "app" / "terraform.tfstate"
    state.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        listed = strata("locks", "--json", cwd=repo)
        [row] = json.loads(listed.stdout)["locks"]
        assert row["lock"]["pid"] == holder.pid and row["lock"]["live"] is True
        refused = strata("unlock", "app", "--yes", cwd=repo)
        assert refused.code == 1
        assert ("refusing to remove the lock: a running process on this machine holds it "
                f"(pid {holder.pid})") in refused.output
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_a_lock_info_file_that_is_not_a_regular_file_is_no_lock_info_not_a_hang(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK,
                                 ".strata/state/app/terraform.tfstate": json.dumps(SOUND_STATE)})
    info = repo / ".strata" / "state" / "app" / ".terraform.tfstate.lock.info"
    info.touch()
    plant(info, kind)
    result = strata("locks", cwd=repo, timeout=60)  # nobody holds the state's fcntl lock
    assert result.code == 0 and "no locks held" in result.output, result.output


def test_a_dangling_link_in_the_history_is_listed_and_named_when_read(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT + 'backend "local" {}\n', "app/strata.hcl": STACK,
                                 ".strata/state/app/terraform.tfstate": json.dumps(SOUND_STATE)})
    history = repo / ".strata" / "history" / "local" / ".strata" / "state" / "app" / "terraform.tfstate"
    history.mkdir(parents=True)
    dangling = history / "20261201T000000000000Z-0123456789abcdef.tfstate"
    dangling.symlink_to(tmp_path / "gone")
    listed = strata("state", "versions", "app", cwd=repo, timeout=60)
    assert "internal error" not in listed.output and "Traceback" not in listed.output, listed.output
