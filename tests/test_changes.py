"""Change detection against real git repositories: which stacks a change affects, and why."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EXAMPLE, write_tree
from strata.errors import StrataError
from strata.model.changes import ChangeSet, changed_files, detect
from strata.model.loader import load

US = "production/us-east-1"
FOUNDATION = f"{US}/01-foundation"
PLATFORM = f"{US}/02-platform"
DATABASES = f"{US}/03-databases"
APPS = f"{US}/04-applications"
EZRA = f"{US}/clients/ezra"
MTN = f"{US}/clients/mtn-ghana"
ENV_REGIONS = ("production/eu-central-1", "production/us-east-1", "staging/eu-central-1", "staging/us-east-1")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


def init(cwd: Path, branch: str = "main") -> None:
    git(cwd, "init", "-q", "-b", branch)
    git(cwd, "config", "commit.gpgsign", "false")


def _ignore(folder: str, names: list[str]) -> set[str]:
    skipped = {".terraform", ".strata", ".terraform.lock.hcl", "strata_backend.tf", "strata_inputs.auto.tfvars"}
    return {n for n in names if n in skipped}


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The example as a git repository: main with one commit, checked out on branch ``feature``."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root, ignore=_ignore)
    (root / ".gitignore").write_text(".strata/\n.terraform/\n", encoding="utf-8")
    init(root)
    commit_all(root, "base")
    git(root, "checkout", "-q", "-b", "feature")
    return root


def run(root: Path, base: str | None = None, dependents: bool = True) -> ChangeSet:
    return detect(load(root, cwd=root, use_cache=False), base, dependents=dependents)


def reasons(changes: ChangeSet) -> dict[str, tuple[str, ...]]:
    return {path: a.reasons for path, a in changes.affected.items()}


def append(path: Path, text: str = "\n# changed\n") -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


def dependency_reasons() -> dict[str, tuple[str, ...]]:
    """What the us-east-1 stacks above the foundation say when the foundation alone changed."""
    return {
        PLATFORM: (f"depends on affected {FOUNDATION}",),
        DATABASES: (f"depends on affected {FOUNDATION}", f"depends on affected {PLATFORM}"),
        APPS: (f"depends on affected {PLATFORM}", f"depends on affected {DATABASES}"),
        EZRA: (f"depends on affected {FOUNDATION}", f"depends on affected {PLATFORM}",
               f"depends on affected {DATABASES}"),
        MTN: (f"depends on affected {FOUNDATION}", f"depends on affected {PLATFORM}",
              f"depends on affected {DATABASES}"),
    }


# -- kinds of change ---------------------------------------------------------------------------------


def test_committed_stack_file_affects_the_stack_and_its_dependents(example: Path) -> None:
    append(example / FOUNDATION / "main.tf")
    commit_all(example, "change the foundation")
    changes = run(example)
    assert changes.files == [f"{FOUNDATION}/main.tf"]
    assert changes.base == git(example, "rev-parse", "main")
    assert reasons(changes) == {FOUNDATION: (f"changed: {FOUNDATION}/main.tf",), **dependency_reasons()}
    assert changes.deleted_stacks == []


def test_no_dependents_keeps_only_the_changed_stack(example: Path) -> None:
    append(example / FOUNDATION / "main.tf")
    commit_all(example, "change the foundation")
    changes = run(example, dependents=False)
    assert reasons(changes) == {FOUNDATION: (f"changed: {FOUNDATION}/main.tf",)}


def test_a_leaf_stack_has_no_dependents(example: Path) -> None:
    append(example / APPS / "main.tf")
    assert reasons(run(example)) == {APPS: (f"changed: {APPS}/main.tf",)}


def test_inherited_strata_hcl_affects_every_stack_below(example: Path) -> None:
    append(example / US / "strata.hcl")
    git(example, "add", f"{US}/strata.hcl")  # staged
    changes = run(example, dependents=False)
    why = (f"inherits changed strata.hcl: {US}/strata.hcl",)
    assert reasons(changes) == {s: why for s in (FOUNDATION, PLATFORM, DATABASES, APPS, EZRA, MTN)}
    # with dependents, each also names the affected stacks it depends on
    full = reasons(run(example))
    assert full == {FOUNDATION: why, **{s: why + r for s, r in dependency_reasons().items()}}


def test_intermediate_non_stack_config_affects_only_the_stacks_below(example: Path) -> None:
    append(example / US / "clients" / "strata.hcl")
    why = (f"inherits changed strata.hcl: {US}/clients/strata.hcl",)
    assert reasons(run(example)) == {EZRA: why, MTN: why}


def test_root_config_affects_every_stack(example: Path) -> None:
    append(example / "strata.hcl")
    changes = run(example, dependents=False)
    assert len(changes.affected) == 24
    assert {a.reasons for a in changes.affected.values()} == {("inherits changed strata.hcl: strata.hcl",)}


def test_own_strata_hcl_is_a_change_of_the_stack(example: Path) -> None:
    append(example / EZRA / "strata.hcl")
    assert reasons(run(example)) == {EZRA: (f"changed: {EZRA}/strata.hcl",)}


def test_changed_module_affects_the_stacks_using_it(example: Path) -> None:
    append(example / "modules" / "database" / "main.tf")  # unstaged
    changes = run(example, dependents=False)
    why = ("uses changed module: modules/database/main.tf",)
    assert reasons(changes) == {f"{er}/03-databases": why for er in ENV_REGIONS}


def test_nested_module_of_a_module_is_followed(example: Path) -> None:
    write_tree(example, {"modules/naming/main.tf": 'output "prefix" { value = "acme" }\n'})
    append(example / "modules" / "database" / "main.tf", '\nmodule "naming" {\n  source = "../naming"\n}\n')
    commit_all(example, "database uses naming")
    git(example, "branch", "-f", "main", "HEAD")  # the base has the nested module already
    append(example / "modules" / "naming" / "main.tf")
    changes = run(example, dependents=False)
    assert changes.files == ["modules/naming/main.tf"]
    why = ("uses changed module: modules/naming/main.tf",)
    assert reasons(changes) == {f"{er}/03-databases": why for er in ENV_REGIONS}


def test_file_read_through_configuration(example: Path) -> None:
    write_tree(example, {"data/owners.txt": "team-a\n"})
    append(example / APPS / "strata.hcl", '\nlocals {\n  owner = file("../../../data/owners.txt")\n}\n')
    commit_all(example, "apps read owners")
    git(example, "branch", "-f", "main", "HEAD")
    (example / "data" / "owners.txt").write_text("team-b\n", encoding="utf-8")
    changes = run(example)
    assert changes.files == ["data/owners.txt"]
    assert reasons(changes) == {APPS: ("reads changed file: data/owners.txt",)}


def test_a_file_in_a_nested_stack_belongs_to_it_alone(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/app/strata.hcl": "stack {}\n",
        "dev/app/main.tf": "",
        "dev/app/docs/notes.md": "notes\n",
        "dev/app/worker/strata.hcl": "stack {}\n",
        "dev/app/worker/main.tf": "",
    })
    init(root)
    commit_all(root, "base")
    append(root / "dev/app/worker/main.tf")
    append(root / "dev/app/docs/notes.md")
    assert reasons(run(root)) == {"dev/app": ("changed: dev/app/docs/notes.md",),
                                  "dev/app/worker": ("changed: dev/app/worker/main.tf",)}
    git(root, "checkout", "-q", "--", ".")
    append(root / "dev/app/strata.hcl")  # the parent's config is inherited by the nested stack
    assert reasons(run(root)) == {"dev/app": ("changed: dev/app/strata.hcl",),
                                  "dev/app/worker": ("inherits changed strata.hcl: dev/app/strata.hcl",)}


# -- git states --------------------------------------------------------------------------------------


def test_every_git_state_together(example: Path) -> None:
    append(example / FOUNDATION / "main.tf")
    commit_all(example, "committed")
    append(example / APPS / "main.tf")
    git(example, "add", f"{APPS}/main.tf")  # staged
    append(example / "staging/us-east-1/04-applications/main.tf")  # unstaged
    write_tree(example, {"staging/eu-central-1/04-applications/extra.tf": ""})  # untracked
    (example / "production/eu-central-1/04-applications/main.tf").unlink()  # deleted, unstaged
    changes = run(example, dependents=False)
    assert changes.files == sorted([
        f"{FOUNDATION}/main.tf", f"{APPS}/main.tf", "staging/us-east-1/04-applications/main.tf",
        "staging/eu-central-1/04-applications/extra.tf", "production/eu-central-1/04-applications/main.tf"])
    assert reasons(changes) == {
        FOUNDATION: (f"changed: {FOUNDATION}/main.tf",),
        APPS: (f"changed: {APPS}/main.tf",),
        "staging/us-east-1/04-applications": ("changed: staging/us-east-1/04-applications/main.tf",),
        "staging/eu-central-1/04-applications": ("changed: staging/eu-central-1/04-applications/extra.tf",),
        "production/eu-central-1/04-applications": ("changed: production/eu-central-1/04-applications/main.tf",),
    }


def test_committed_deletion(example: Path) -> None:
    git(example, "rm", "-q", f"{EZRA}/main.tf")
    commit_all(example, "delete")
    assert reasons(run(example)) == {EZRA: (f"changed: {EZRA}/main.tf",)}


def test_renamed_file_affects_both_folders(example: Path) -> None:
    git(example, "mv", f"{EZRA}/main.tf", f"{MTN}/ezra.tf")
    commit_all(example, "rename")
    changes = run(example)
    assert changes.files == [f"{EZRA}/main.tf", f"{MTN}/ezra.tf"]
    assert reasons(changes) == {EZRA: (f"changed: {EZRA}/main.tf",), MTN: (f"changed: {MTN}/ezra.tf",)}


def test_staged_rename_is_seen_too(example: Path) -> None:
    git(example, "mv", f"{EZRA}/main.tf", f"{EZRA}/client.tf")
    assert run(example).files == [f"{EZRA}/client.tf", f"{EZRA}/main.tf"]


def test_deleted_stack_is_reported_separately(example: Path) -> None:
    gone = "staging/us-east-1/clients/mtn-ghana"
    git(example, "rm", "-q", "-r", gone)
    commit_all(example, "remove a client")
    changes = run(example)
    assert changes.deleted_stacks == [gone]
    assert changes.affected == {}
    assert changes.files == [f"{gone}/main.tf", f"{gone}/strata.hcl"]


def test_renamed_stack_folder_is_a_deletion_and_a_new_stack(example: Path) -> None:
    old, new = "staging/us-east-1/clients/ezra", "staging/us-east-1/clients/ezra-labs"
    git(example, "mv", old, new)  # staged, not committed
    changes = run(example)
    assert changes.deleted_stacks == [old]
    assert reasons(changes) == {new: (f"changed: {new}/main.tf", f"changed: {new}/strata.hcl")}


def test_removing_a_non_stack_config_is_not_a_deleted_stack(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/strata.hcl": 'locals {\n  x = 1\n}\n',
        "dev/app/strata.hcl": "stack {}\n",
        "dev/app/main.tf": "",
    })
    init(root)
    commit_all(root, "base")
    (root / "dev/strata.hcl").unlink()
    changes = run(root)
    assert changes.deleted_stacks == []
    assert reasons(changes) == {"dev/app": ("inherits changed strata.hcl: dev/strata.hcl",)}


def test_stack_block_removed_is_a_deleted_stack(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"strata.hcl": "strata {}\n", "dev/app/strata.hcl": "stack {}\n"})
    init(root)
    commit_all(root, "base")
    (root / "dev/app/strata.hcl").write_text("# no longer a stack\n", encoding="utf-8")
    assert run(root).deleted_stacks == ["dev/app"]


def test_nothing_changed(example: Path) -> None:
    changes = run(example)
    assert (changes.files, changes.affected, changes.deleted_stacks) == ([], {}, [])


def test_tool_folders_are_not_changes(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"strata.hcl": "strata {}\n", "dev/app/strata.hcl": "stack {}\n"})
    init(root)  # no .gitignore: .terraform and .strata would show as untracked
    commit_all(root, "base")
    write_tree(root, {"dev/app/.terraform/modules/modules.json": "{}", ".strata/cache/x": "x"})
    changes = run(root)
    assert (changes.files, changes.affected) == ([], {})


# -- the base ----------------------------------------------------------------------------------------


def test_default_base_is_the_merge_base_with_main(example: Path) -> None:
    fork = git(example, "rev-parse", "HEAD")
    append(example / FOUNDATION / "main.tf")
    commit_all(example, "on the branch")
    git(example, "checkout", "-q", "main")
    append(example / APPS / "main.tf")  # main moves on: not part of the branch's change
    commit_all(example, "on main")
    git(example, "checkout", "-q", "feature")
    changes = run(example, dependents=False)
    assert changes.base == fork
    assert reasons(changes) == {FOUNDATION: (f"changed: {FOUNDATION}/main.tf",)}


def test_remote_default_branch_wins_over_main(example: Path) -> None:
    first = git(example, "rev-parse", "HEAD")
    append(example / FOUNDATION / "main.tf")
    second = commit_all(example, "second")
    append(example / APPS / "main.tf")
    commit_all(example, "third")
    git(example, "update-ref", "refs/remotes/origin/trunk", second)
    git(example, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/trunk")
    changes = run(example, dependents=False)
    assert changes.base == second != first
    assert reasons(changes) == {APPS: (f"changed: {APPS}/main.tf",)}


def test_master_when_there_is_no_main(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"strata.hcl": "strata {}\n", "dev/app/strata.hcl": "stack {}\n"})
    init(root, branch="master")
    base = commit_all(root, "base")
    git(root, "checkout", "-q", "-b", "work")
    write_tree(root, {"dev/app/main.tf": ""})
    assert changed_files(root, None) == (base, ["dev/app/main.tf"])


def test_explicit_base(example: Path) -> None:
    append(example / FOUNDATION / "main.tf")
    middle = commit_all(example, "one")
    append(example / APPS / "main.tf")
    commit_all(example, "two")
    changes = run(example, base=middle, dependents=False)
    assert changes.base == middle
    assert reasons(changes) == {APPS: (f"changed: {APPS}/main.tf",)}
    git(example, "tag", "v1", middle)
    assert run(example, base="v1", dependents=False).base == middle


def test_missing_base_ref_is_a_clear_error(example: Path) -> None:
    with pytest.raises(StrataError, match="base 'release/9' is not a branch, tag or commit"):
        run(example, base="release/9")


def test_no_default_base_is_a_clear_error(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {"strata.hcl": "strata {}\n"})
    init(root, branch="trunk")
    commit_all(root, "base")
    with pytest.raises(StrataError, match=r"no main and no master branch; pass --base REF"):
        changed_files(root, None)


def test_not_a_git_repository_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tree(tmp_path / "plain", {"strata.hcl": "strata {}\n"})
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    with pytest.raises(StrataError, match="is not inside one"):
        changed_files(root, None)


# -- the repository root below the git toplevel ------------------------------------------------------


def test_root_below_the_git_toplevel(tmp_path: Path) -> None:
    top = write_tree(tmp_path, {
        "README.md": "monorepo\n",
        "shared/vpc/main.tf": "",
        "infra/strata.hcl": "strata {}\n",
        "infra/dev/net/strata.hcl": "stack {}\n",
        "infra/dev/net/main.tf": 'module "vpc" {\n  source = "../../../shared/vpc"\n}\n',
        "infra/dev/app/strata.hcl": "stack {}\n",
        "infra/dev/app/main.tf": "",
    })
    init(top)
    commit_all(top, "base")
    git(top, "checkout", "-q", "-b", "feature")
    append(top / "README.md")  # outside the repository root: not listed
    append(top / "shared/vpc/main.tf")  # outside the root, but a module a stack uses
    write_tree(top, {"infra/dev/app/new.tf": ""})
    root = top / "infra"
    changes = run(root)
    assert changes.files == ["dev/app/new.tf"]
    assert reasons(changes) == {"dev/app": ("changed: dev/app/new.tf",),
                                "dev/net": ("uses changed module: ../shared/vpc/main.tf",)}
    assert changed_files(root, "main") == (changes.base, ["dev/app/new.tf"])
    git(top, "rm", "-q", "-r", "infra/dev/app")
    assert run(root).deleted_stacks == ["dev/app"]


def test_unrelated_history_is_a_clear_error(example: Path) -> None:
    git(example, "checkout", "-q", "--orphan", "other")
    commit_all(example, "unrelated")
    with pytest.raises(StrataError, match="no common history"):
        run(example)


def test_deleted_nested_stack_does_not_affect_the_stack_around_it(tmp_path: Path) -> None:
    root = write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/app/strata.hcl": "stack {}\n",
        "dev/app/main.tf": "",
        "dev/app/worker/strata.hcl": "stack {}\n",
        "dev/app/worker/main.tf": "",
    })
    init(root)
    commit_all(root, "base")
    shutil.rmtree(root / "dev/app/worker")
    changes = run(root)
    assert changes.deleted_stacks == ["dev/app/worker"]
    assert changes.affected == {}
