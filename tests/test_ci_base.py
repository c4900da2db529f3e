"""`strata ci base` in real git repositories with each platform's environment simulated: a multi-commit push
selects the stacks of all its commits, a pull request compares with its merge-base, and a new branch, a force
push or a commit the clone lacks gives an empty base (every stack runs) with a note saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from fake_ci_api import GITHUB_TOKEN, REPO, FakeCiApi, Reply
from test_changes import GIT_ENV, commit_all, git, init

ZEROS = "0" * 40
CLEAN = {name: "" for name in ("GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "GITHUB_EVENT_PATH",
                                "CI_MERGE_REQUEST_IID", "CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
                                "CI_MERGE_REQUEST_DIFF_BASE_SHA", "CI_COMMIT_BEFORE_SHA",
                                "SYSTEM_PULLREQUEST_PULLREQUESTID", "SYSTEM_PULLREQUEST_TARGETBRANCH")}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Three independent stacks on main, one commit."""
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/alpha/strata.hcl": "stack {}\n", "dev/alpha/main.tf": "",
        "dev/beta/strata.hcl": "stack {}\n", "dev/beta/main.tf": "",
        "dev/gamma/strata.hcl": "stack {}\n", "dev/gamma/main.tf": "",
        ".gitignore": ".strata/\n",
    })
    init(root)
    commit_all(root, "base")
    return root


def change(root: Path, stack: str, message: str) -> str:
    with (root / "dev" / stack / "main.tf").open("a", encoding="utf-8") as handle:
        handle.write(f"# {message}\n")
    return commit_all(root, message)


def github_push(tmp_path: Path, before: str) -> dict[str, str]:
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"ref": "refs/heads/main", "before": before, "after": "f" * 40}), encoding="utf-8")
    return {**CLEAN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_EVENT_PATH": str(event)}


def github_pull_request(tmp_path: Path, ref: str = "main", sha: str = "") -> dict[str, str]:
    event = tmp_path / "pull.json"
    event.write_text(json.dumps({"number": 3, "pull_request": {"number": 3, "base": {"ref": ref, "sha": sha}}}),
                     encoding="utf-8")
    return {**CLEAN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}


def changed(strata: Callable[..., Result], root: Path, base: str) -> list[str]:
    result = strata("ls", "--changed", "--base", base, "--json", cwd=root)
    assert result.code == 0, result.output
    return [s["path"] for s in json.loads(result.stdout)["stacks"]]


def pipeline(root: Path, env: dict[str, str], tmp_path: Path) -> tuple[list[str], str]:
    """The generated pipelines' idiom, run by bash with a `strata` command on PATH: the stacks it selects and
    `strata ci base`'s stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "strata"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m strata "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    script = 'BASE="$(strata ci base)" && strata ls ${BASE:+--changed --base "$BASE"} --json'
    full_env = {**os.environ, **GIT_ENV, **env, "NO_COLOR": "1", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-c", script], cwd=root, env=full_env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return [s["path"] for s in json.loads(proc.stdout)["stacks"]], proc.stderr


# -- pushes -----------------------------------------------------------------------------------------------


def test_a_multi_commit_push_selects_the_stacks_of_all_its_commits(repo: Path, tmp_path: Path,
                                                                   strata: Callable[..., Result]) -> None:
    before = git(repo, "rev-parse", "HEAD")
    change(repo, "alpha", "first commit of the push")
    change(repo, "beta", "second commit of the push")
    result = strata("ci", "base", cwd=repo, env=github_push(tmp_path, before))
    assert result.code == 0, result.output
    assert result.stdout == before + "\n" and result.stderr == ""
    assert changed(strata, repo, result.stdout.strip()) == ["dev/alpha", "dev/beta"]
    assert changed(strata, repo, "HEAD~1") == ["dev/beta"]  # what `--base HEAD~1` used to miss
    selected, _ = pipeline(repo, github_push(tmp_path, before), tmp_path)
    assert selected == ["dev/alpha", "dev/beta"]


def test_a_push_after_a_cancelled_run_compares_with_the_last_successful_one(
        repo: Path, tmp_path: Path, strata: Callable[..., Result], fake_ci_api: FakeCiApi) -> None:
    # A applied; B's run waited behind a production approval and GitHub cancelled it when C was pushed (one
    # pending run per concurrency group): C's `before` is B, so B's stack would never be applied
    applied = git(repo, "rev-parse", "HEAD")
    change(repo, "alpha", "B: its run was cancelled")
    before = change(repo, "beta", "C")
    workflow = ".github/workflows/strata-apply.yml"
    fake_ci_api.route("GET", rf"/repos/{REPO}/actions/workflows/strata-apply\.yml/runs",
                      lambda request, _m: Reply(200, {"total_count": 1, "workflow_runs": [{"head_sha": applied}]}
                                                if request.query.get("status") == "success" else {}))
    change(repo, "gamma", "D")
    env = {**github_push(tmp_path, before), "GITHUB_API_URL": fake_ci_api.url, "GITHUB_REPOSITORY": REPO,
           "GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_REF_NAME": "main",
           "GITHUB_WORKFLOW_REF": f"{REPO}/{workflow}@refs/heads/main"}
    result = strata("ci", "base", cwd=repo, env=env)
    assert result.code == 0 and result.stdout == applied + "\n", result.output
    assert "last successful run of strata-apply.yml" in result.stderr
    assert changed(strata, repo, applied) == ["dev/alpha", "dev/beta", "dev/gamma"]
    # the API unreachable or no token: the push's before, as without it
    fake_ci_api.answer("GET", rf"/repos/{REPO}/actions/workflows/.*", 500, {"message": "down"})
    assert strata("ci", "base", cwd=repo, env=env).stdout == before + "\n"
    assert strata("ci", "base", cwd=repo, env={**env, "GITHUB_TOKEN": ""}).stdout == before + "\n"


def test_gitlab_push_uses_the_commit_before(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    before = git(repo, "rev-parse", "HEAD")
    change(repo, "alpha", "one")
    change(repo, "gamma", "two")
    env = {**CLEAN, "GITLAB_CI": "true", "CI_COMMIT_BEFORE_SHA": before}
    selected, note = pipeline(repo, env, tmp_path)
    assert selected == ["dev/alpha", "dev/gamma"] and note == ""


def test_a_new_branch_runs_every_stack(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    change(repo, "alpha", "on the new branch")
    result = strata("ci", "base", cwd=repo, env=github_push(tmp_path, ZEROS))
    assert result.code == 0 and result.stdout == "\n"
    assert "all zeros: a new branch" in result.stderr and "every stack runs" in result.stderr
    selected, _ = pipeline(repo, github_push(tmp_path, ZEROS), tmp_path)
    assert selected == ["dev/alpha", "dev/beta", "dev/gamma"]
    gitlab = strata("ci", "base", cwd=repo, env={**CLEAN, "GITLAB_CI": "true", "CI_COMMIT_BEFORE_SHA": ZEROS})
    assert gitlab.code == 0 and gitlab.stdout == "\n" and "CI_COMMIT_BEFORE_SHA is all zeros" in gitlab.stderr


def test_a_force_push_runs_every_stack(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    start = git(repo, "rev-parse", "HEAD")
    replaced = change(repo, "alpha", "pushed, then rewritten")
    git(repo, "reset", "-q", "--hard", start)
    change(repo, "beta", "the force-pushed commit")
    result = strata("ci", "base", cwd=repo, env=github_push(tmp_path, replaced))
    assert result.code == 0 and result.stdout == "\n"
    assert "not an ancestor of HEAD: a force push" in result.stderr
    selected, _ = pipeline(repo, github_push(tmp_path, replaced), tmp_path)
    assert selected == ["dev/alpha", "dev/beta", "dev/gamma"]


def test_a_previous_commit_the_clone_lacks_runs_every_stack(repo: Path, tmp_path: Path,
                                                            strata: Callable[..., Result]) -> None:
    result = strata("ci", "base", cwd=repo, env=github_push(tmp_path, "ab" * 20))
    assert result.code == 0 and result.stdout == "\n"
    assert "is not in this clone" in result.stderr
    garbage = strata("ci", "base", cwd=repo, env=github_push(tmp_path, "--output=/tmp/x"))
    assert garbage.code == 0 and garbage.stdout == "\n" and "is not a commit id" in garbage.stderr


def test_a_shallow_clone_says_what_to_fetch(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    before = git(repo, "rev-parse", "HEAD")
    change(repo, "alpha", "one")
    change(repo, "beta", "two")
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    result = strata("ci", "base", cwd=clone, env=github_push(tmp_path, before))
    assert result.code == 0 and result.stdout == "\n"
    assert "not in this shallow clone" in result.stderr and "fetch-depth: 0" in result.stderr


# -- pull / merge requests ----------------------------------------------------------------------------------


def branch_with_moved_main(repo: Path) -> str:
    """feature changes alpha and beta in two commits; main moves on with gamma after the fork. The fork point."""
    fork = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    change(repo, "alpha", "feature one")
    change(repo, "beta", "feature two")
    git(repo, "checkout", "-q", "main")
    main = change(repo, "gamma", "main moves on")
    git(repo, "update-ref", "refs/remotes/origin/main", main)
    git(repo, "checkout", "-q", "feature")
    return fork


@pytest.mark.parametrize("platform", ["github", "gitlab", "azure-devops"])
def test_a_pull_request_compares_with_the_merge_base(platform: str, repo: Path, tmp_path: Path,
                                                     strata: Callable[..., Result]) -> None:
    fork = branch_with_moved_main(repo)
    env = {"github": github_pull_request(tmp_path),
           "gitlab": {**CLEAN, "GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "3",
                      "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"},
           "azure-devops": {**CLEAN, "TF_BUILD": "True", "SYSTEM_PULLREQUEST_PULLREQUESTID": "3",
                            "SYSTEM_PULLREQUEST_TARGETBRANCH": "refs/heads/main"}}[platform]
    result = strata("ci", "base", cwd=repo, env=env)
    assert result.code == 0, result.output
    assert result.stdout == fork + "\n"
    selected, _ = pipeline(repo, env, tmp_path)
    assert selected == ["dev/alpha", "dev/beta"]  # not gamma, which only main changed


def test_gitlab_diff_base_sha_is_used_first(repo: Path, strata: Callable[..., Result]) -> None:
    fork = branch_with_moved_main(repo)
    env = {**CLEAN, "GITLAB_CI": "true", "CI_MERGE_REQUEST_IID": "3", "CI_MERGE_REQUEST_DIFF_BASE_SHA": fork,
           "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "no-such-branch"}
    result = strata("ci", "base", cwd=repo, env=env)
    assert result.code == 0 and result.stdout == fork + "\n"


def test_a_target_branch_missing_from_the_clone_says_what_to_fetch(repo: Path, tmp_path: Path,
                                                                   strata: Callable[..., Result]) -> None:
    branch_with_moved_main(repo)
    result = strata("ci", "base", cwd=repo, env=github_pull_request(tmp_path, ref="release/2"))
    assert result.code == 0 and result.stdout == "\n"
    assert "the target branch release/2 is not in this clone" in result.stderr
    assert "git fetch --no-tags origin release/2" in result.stderr


# -- Azure DevOps pushes --------------------------------------------------------------------------------


def test_azure_push_of_a_completed_pull_request(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    env = {**CLEAN, "TF_BUILD": "True"}
    before = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "topic")
    change(repo, "alpha", "one")
    change(repo, "beta", "two")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merged PR 12: topic", "topic")
    result = strata("ci", "base", cwd=repo, env=env)
    assert result.code == 0 and result.stdout == before + "\n"
    assert pipeline(repo, env, tmp_path)[0] == ["dev/alpha", "dev/beta"]

    squashed = git(repo, "rev-parse", "HEAD")
    with (repo / "dev" / "gamma" / "main.tf").open("a", encoding="utf-8") as handle:
        handle.write("# squashed\n")
    commit_all(repo, "Merged PR 13: squash of a topic")
    assert strata("ci", "base", cwd=repo, env=env).stdout == squashed + "\n"

    change(repo, "alpha", "a direct push")
    direct = strata("ci", "base", cwd=repo, env=env)
    assert direct.code == 0 and direct.stdout == "\n"
    assert "Azure DevOps does not tell a pipeline the branch's previous commit" in direct.stderr


# -- usage ----------------------------------------------------------------------------------------------


def test_outside_ci_and_outside_git(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    nowhere = strata("ci", "base", cwd=repo, env=CLEAN)
    assert nowhere.code == 64 and "cannot tell which CI platform this is" in nowhere.stderr
    bare = tmp_path / "not-git"
    bare.mkdir()
    outside = strata("ci", "base", "-h", cwd=bare, env=CLEAN)
    assert outside.code == 0
    no_repo = strata("ci", "base", "--platform", "gitlab", cwd=bare,
                     env={**CLEAN, "GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert no_repo.code == 1 and "not inside a git repository" in no_repo.stderr
    no_event = strata("ci", "base", "--platform", "github", cwd=repo, env=CLEAN)
    assert no_event.code == 1 and "GITHUB_EVENT_PATH is not set" in no_event.stderr


def test_a_merge_queue_compares_with_its_base(repo: Path, tmp_path: Path, strata: Callable[..., Result]) -> None:
    fork = branch_with_moved_main(repo)
    event = tmp_path / "queue.json"
    event.write_text(json.dumps({"merge_group": {"base_sha": fork, "base_ref": "refs/heads/main",
                                                 "head_sha": git(repo, "rev-parse", "HEAD")}}), encoding="utf-8")
    env = {**CLEAN, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "merge_group", "GITHUB_EVENT_PATH": str(event)}
    result = strata("ci", "base", cwd=repo, env=env)
    assert result.code == 0 and result.stdout == fork + "\n"
    event.write_text(json.dumps({"inputs": {}}), encoding="utf-8")
    manual = strata("ci", "base", cwd=repo, env={**env, "GITHUB_EVENT_NAME": "workflow_dispatch"})
    assert manual.code == 0 and manual.stdout == "\n"
    assert "the GitHub event 'workflow_dispatch' names no previous commit" in manual.stderr
