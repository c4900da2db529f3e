"""The pull-request workflow through the CLI: ls/plan --changed, plan --summary-md, ci generate, ci matrix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import EXAMPLE, Result, write_tree

Strata = Callable[..., Result]


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True,
                          check=True).stdout


def example_in_git(tmp_path: Path) -> Path:
    repo = tmp_path / "layered"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".strata", ".terraform", "strata_backend.tf",
                                                                 "strata_inputs.auto.tfvars"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    return repo


def test_ls_changed_explains_and_reports_deleted_stacks(strata: Strata, tmp_path: Path) -> None:
    repo = example_in_git(tmp_path)
    region = repo / "staging" / "eu-central-1" / "strata.hcl"
    region.write_text(region.read_text() + "\n# a reviewed change\n")
    shutil.rmtree(repo / "production" / "us-east-1" / "clients" / "ezra")
    result = strata("ls", "--changed", "--json", cwd=repo)
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    staging = sorted(s["path"] for s in report["stacks"])
    assert [p for p in staging if p.startswith("staging/")] == sorted(
        f"staging/eu-central-1/{s}" for s in ("01-foundation", "02-platform", "03-databases", "04-applications",
                                              "clients/ezra", "clients/mtn-ghana"))
    assert report["deleted_stacks"] == ["production/us-east-1/clients/ezra"]
    by_path = {s["path"]: s["reasons"] for s in report["stacks"]}
    assert "inherits changed strata.hcl: staging/eu-central-1/strata.hcl" in by_path[
        "staging/eu-central-1/01-foundation"]
    explained = strata("ls", "--changed", "--explain", cwd=repo)
    assert "inherits changed strata.hcl: staging/eu-central-1/strata.hcl" in explained.stdout
    assert "deleted by the change (review for destroy): production/us-east-1/clients/ezra" in explained.stderr
    only = strata("ls", "--changed", "--no-dependents", "--json", cwd=repo)
    assert {s["path"] for s in json.loads(only.stdout)["stacks"]} == set(staging)
    bad = strata("ls", "--changed", "--base", "no-such-branch", cwd=repo)
    assert bad.code == 1 and "no-such-branch" in bad.stderr
    usage = strata("ls", "--explain", cwd=repo)
    assert usage.code == 64


NOT_IN_CI = {"GITHUB_ACTIONS": "", "GITLAB_CI": "", "TF_BUILD": ""}  # the commit comes from git here


def test_plan_changed_writes_a_summary_for_a_pull_request(strata: Strata, tf_111: str,
                                                          provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "dev/us-east-1/01-network/strata.hcl": "stack {}\n",
        "dev/us-east-1/01-network/main.tf": 'resource "null_resource" "vpc" {}\n',
        "dev/us-east-1/02-app/strata.hcl": 'stack {}\ndependency "network" {\n  path = "../01-network"\n}\n',
        "dev/us-east-1/02-app/main.tf": 'resource "null_resource" "app" {}\n',
        "staging/us-east-1/02-app/strata.hcl": "stack {}\n",
        "staging/us-east-1/02-app/main.tf": 'resource "null_resource" "app" {\n  triggers = { v = "1" }\n}\n',
    })
    env = {**provider_mirror, **NOT_IN_CI, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text(".strata/\n.terraform/\n*.tfstate\nstrata_*\n.terraform.lock.hcl\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "dev/us-east-1/02-app/main.tf").write_text('resource "null_resource" "app" {}\n'
                                                       'resource "null_resource" "worker" {}\n')
    (repo / "staging/us-east-1/02-app/main.tf").write_text(
        'resource "null_resource" "app" {\n  triggers = { v = "2" }\n}\n')
    summary = tmp_path / "plan.md"
    reports = tmp_path / "reports"
    result = strata("plan", "--changed", "--detailed-exitcode", "-q", "--summary-md", str(summary),
                    "--terraform-report", str(reports), cwd=repo, env=env)
    assert result.code == 2, result.output
    assert "dev/us-east-1/01-network" not in result.stdout  # not affected by the change
    text = summary.read_text()
    assert f"Commit `{head[:7]}`" in text
    assert "**Next step:** Merge to apply.\n" in text  # nothing protected here (see the next test)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "Stack" not in line]
    assert rows == ["| ⚠️ `staging/us-east-1/02-app` | 1 | 0 | 1 | 1 | — | changed: main.tf |",
                    "| `dev/us-east-1/02-app` | 1 | 0 | 0 | 0 | — | changed: main.tf |"]
    assert "**replace** (1): `null_resource.app`" in text and "**Create** (1): `null_resource.worker`" in text
    # no runner paths: not the checkout, not the temporary folders, not terraform's command line
    for path in (str(repo), str(tmp_path), "/tmp", "-out=", tf_111, "$ "):
        assert path not in text, path
    assert {p.name: json.loads(p.read_text()) for p in reports.iterdir()} == {
        "dev__us-east-1__02-app.json": {"create": 1, "update": 0, "delete": 0},
        "staging__us-east-1__02-app.json": {"create": 1, "update": 0, "delete": 1}}

    azure = tmp_path / "azure.md"
    result = strata("plan", "--changed", "-q", "--summary-md", str(azure), "--summary-format", "azure",
                    "--include-dependencies", cwd=repo, env=env)
    assert result.code == 0, result.output
    text = azure.read_text()
    assert "[!CAUTION]" not in text and "> ⚠️ **1 resource will be destroyed or replaced**" in text
    assert ("| `dev/us-east-1/01-network` | 0 | 0 | 0 | 0 | — | a selected stack depends on it "
            "(--include-dependencies) |") in text
    bad = strata("plan", "--summary-md", str(azure), "--summary-format", "bitbucket", cwd=repo, env=env)
    assert bad.code != 0 and "bitbucket" in bad.stderr
    (tmp_path / "a-file").write_text("")
    bad = strata("plan", "--terraform-report", str(tmp_path / "a-file"), cwd=repo, env=env)
    assert bad.code != 0 and "a-file" in bad.stderr
    # refused before anything is planned, not after
    for option, target in (("--terraform-report", "/dev/null/reports"), ("--summary-md", "/dev/null/x/plan.md")):
        bad = strata("plan", option, target, cwd=repo, env=env)
        assert bad.code == 1 and f"{option}: cannot write into /dev/null" in bad.stderr, bad.output
        assert "strata: started" not in bad.output


def test_summary_next_step_names_the_protected_environments(tmp_path: Path) -> None:
    """Protected environments as strata.ci.settings tells them (a real repository's settings), named in the
    next step when they have changes. (A plan of a protected environment needs an encrypted backend, so this
    reads the repository and renders, without terraform.)"""
    from strata.commands.run import protected_environments
    from strata.run.summary import StackPlan, render
    from strata.workspace import Workspace

    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {\n  production_environments = ["production", "staging"]\n}\n',
        **{f"{env}/us-east-1/app/strata.hcl": "stack {}\n" for env in ("dev", "staging", "production")}})
    repo = Workspace(cwd=root).repository()
    protected = protected_environments(repo)
    assert protected == {"production", "staging"}
    change = {"resource_changes": [{"address": "x.y", "change": {"actions": ["create"]}}]}
    plans = [StackPlan(path, "changes", change, "", environment=repo.stacks[path].environment)
             for path in sorted(repo.stacks)]
    [comment] = render(plans, protected=protected)
    assert "**Next step:** Merge to apply. `production` and `staging` wait for an approval." in comment


def test_summary_names_the_commit_under_review(tmp_path: Path) -> None:
    """A pull request's head commit, not the merge commit CI checks out; git's HEAD outside CI."""
    from strata.ci.commit import reviewed_commit

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "one")
    head = git(repo, "rev-parse", "HEAD").strip()
    merge, pr_head = "a" * 40, "b" * 40
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"sha": pr_head}}}))
    assert reviewed_commit(repo, {}) == head
    github = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": merge}
    assert reviewed_commit(repo, {**github, "GITHUB_EVENT_PATH": str(event)}) == pr_head
    event.write_text("{not json")
    assert reviewed_commit(repo, {**github, "GITHUB_EVENT_PATH": str(event)}) == merge  # a push: GITHUB_SHA
    assert reviewed_commit(repo, {**github, "GITHUB_EVENT_PATH": str(tmp_path / "missing")}) == merge
    gitlab = {"GITLAB_CI": "true", "CI_COMMIT_SHA": merge}
    assert reviewed_commit(repo, gitlab) == merge
    assert reviewed_commit(repo, {**gitlab, "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": pr_head}) == pr_head
    azure = {"TF_BUILD": "True", "BUILD_SOURCEVERSION": merge}
    assert reviewed_commit(repo, azure) == merge
    assert reviewed_commit(repo, {**azure, "SYSTEM_PULLREQUEST_SOURCECOMMITID": pr_head.upper()}) == pr_head
    assert reviewed_commit(repo, {"GITHUB_ACTIONS": "true", "GITHUB_SHA": "$(rm -rf /)"}) == head  # not a SHA
    assert reviewed_commit(tmp_path / "not-a-repo-at-all", {}) is None


def test_ci_generate_writes_marked_files_and_refuses_hand_written_ones(strata: Strata, tmp_path: Path) -> None:
    repo = example_in_git(tmp_path)
    first = strata("ci", "generate", "github", cwd=repo)
    assert first.code == 0, first.output
    written = sorted(p for p in (repo / ".github").rglob("*.yml"))
    assert written and all("# Generated by strata" in p.read_text() for p in written)
    before = {p: p.read_bytes() for p in written}
    assert strata("ci", "generate", "github", cwd=repo).code == 0
    assert {p: p.read_bytes() for p in written} == before  # deterministic
    written[0].write_text("name: hand-written\n")
    refused = strata("ci", "generate", "github", cwd=repo)
    assert refused.code == 1 and "not generated by strata" in refused.output
    assert written[0].read_text() == "name: hand-written\n"
    out_dir = tmp_path / "out"
    for system in ("gitlab", "azure-devops"):
        result = strata("ci", "generate", system, "--out", str(out_dir), cwd=repo)
        assert result.code == 0, result.output
    assert any(out_dir.rglob("*.yml"))


@pytest.mark.parametrize("changed", [False, True])
def test_ci_matrix_follows_the_dependency_order(strata: Strata, tmp_path: Path, changed: bool) -> None:
    repo = example_in_git(tmp_path)
    args = ["ci", "matrix", "--env", "production", "--region", "us-east-1"]
    if changed:
        foundation = repo / "production/us-east-1/01-foundation/main.tf"
        foundation.write_text(foundation.read_text() + "\n")
        args.append("--changed")
    result = strata(*args, cwd=repo)
    assert result.code == 0, result.output
    matrix = json.loads(result.stdout)
    wave_of = {entry["stack"]: entry["wave"] for entry in matrix["include"]}
    assert "production/us-east-1/01-foundation" in wave_of
    for entry in matrix["include"]:
        for need in entry["needs"]:
            assert wave_of[need] < entry["wave"], entry
    assert sorted(matrix["groups"][0]) == ["production/us-east-1/01-foundation"]


def test_files_strata_generates_are_not_changes(strata: Strata, tmp_path: Path) -> None:
    repo = example_in_git(tmp_path)
    (repo / ".gitignore").unlink(missing_ok=True)  # a repository that does not ignore them
    assert strata("generate", cwd=repo).code == 0
    assert any(repo.rglob("strata_backend.tf"))
    result = strata("ls", "--changed", "--json", cwd=repo)
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["stacks"] == []
