"""plan --out --keep-valid: a saved plan (one reviewed in a pull request) is kept while it is still what applying
would do; a dependent whose dependency's outputs changed since is planned again; a plan whose code or state
changed is refused, as apply --plan would refuse it (issue 12: apply the reviewed plan in a layered repository,
where the dependents of a changed layer were planned with its old outputs)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

LAYER = ('resource "null_resource" "x" {\n  triggers = { word = var.word }\n}\nvariable "word" {\n  type = string\n}\n'
         'output "word" {\n  value = var.word\n}\n')


@pytest.fixture
def repo(tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> tuple[Path, dict[str, str]]:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/01-net/strata.hcl": 'stack {}\ninputs = {\n  word = "one"\n}\n',
        "dev/r/01-net/main.tf": LAYER,
        "dev/r/02-app/strata.hcl": 'stack {}\ndependency "net" {\n  path = "../01-net"\n}\n'
                                   'inputs = {\n  word = dependency.net.outputs.word\n}\n',
        "dev/r/02-app/main.tf": LAYER,
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    return root, env


def report(result: Result) -> dict[str, dict[str, object]]:
    return {s["path"]: s for s in json.loads(result.stdout)["stacks"]}


def test_a_valid_saved_plan_is_kept_without_running_terraform(strata: Strata,
                                                              repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    assert strata("apply", "--yes", "-q", cwd=root, env=env).code == 0
    net = root / "dev/r/01-net/strata.hcl"
    net.write_text(net.read_text().replace('"one"', '"two"'))
    assert strata("plan", "--out", "-q", "dev/r/01-net", cwd=root, env=env).code == 0
    plan = root / ".strata/plans/dev/r/01-net/plan.tfplan"
    before = plan.read_bytes()
    kept = strata("plan", "--keep-valid", "--json", "dev/r/01-net", cwd=root, env=env)
    assert kept.code == 0, kept.output
    stack = report(kept)["dev/r/01-net"]
    assert stack["status"] == "changes" and stack["detail"] == "saved plan kept: still valid", stack
    assert (stack["add"], stack["destroy"]) == (1, 1)
    assert plan.read_bytes() == before  # the very plan that was reviewed
    assert strata("apply", "--plan", "--yes", "-q", "dev/r/01-net", cwd=root, env=env).code == 0


def test_a_dependent_is_planned_again_once_its_dependency_changed_its_outputs(
        strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    assert strata("apply", "--yes", "-q", cwd=root, env=env).code == 0
    net = root / "dev/r/01-net/strata.hcl"
    net.write_text(net.read_text().replace('"one"', '"two"'))
    # the pull request: both planned, the app with the network's current (old) output
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 0
    # main, wave 1: the network applies its reviewed plan, and its output changes
    assert strata("apply", "--plan", "--yes", "-q", "dev/r/01-net", cwd=root, env=env).code == 0
    stale = strata("apply", "--plan", "--yes", "-q", "dev/r/02-app", cwd=root, env=env)
    assert stale.code == 1 and "stale" in stale.output  # without --keep-valid: refused
    # wave 2: the app's reviewed plan saw "one"; --keep-valid plans it again with "two"
    again = strata("plan", "--keep-valid", "--json", "dev/r/02-app", cwd=root, env=env)
    assert again.code == 0, again.output
    stack = report(again)["dev/r/02-app"]
    assert stack["detail"] == "planned again: the outputs of its dependencies changed since the saved plan", stack
    applied = strata("apply", "--plan", "--yes", "-q", "dev/r/02-app", cwd=root, env=env)
    assert applied.code == 0, applied.output
    outputs = strata("output", "--json", "dev/r/02-app", cwd=root, env=env)
    assert '"two"' in outputs.stdout, outputs.output


def test_a_plan_whose_code_or_state_changed_is_refused(strata: Strata, repo: tuple[Path, dict[str, str]],
                                                       tmp_path: Path) -> None:
    root, env = repo
    assert strata("apply", "--yes", "-q", cwd=root, env=env).code == 0
    net = root / "dev/r/01-net/strata.hcl"
    net.write_text(net.read_text().replace('"one"', '"two"'))
    assert strata("plan", "--out", "-q", "dev/r/01-net", cwd=root, env=env).code == 0
    code = root / "dev/r/01-net/main.tf"
    code.write_text(LAYER + 'output "extra" {\n  value = 1\n}\n')
    refused = strata("plan", "--keep-valid", "dev/r/01-net", cwd=root, env=env)
    assert refused.code == 1 and "its code changed since the plan was made" in refused.output, refused.output
    assert (root / ".strata/plans/dev/r/01-net/plan.tfplan").is_file()  # the reviewed plan is not replaced

    code.write_text(LAYER)
    assert strata("plan", "--out", "-q", "dev/r/01-net", cwd=root, env=env).code == 0
    # someone applies the stack from elsewhere after the review: its state moves on
    assert strata("apply", "--yes", "-q", "dev/r/01-net", "--", "-replace=null_resource.x", cwd=root,
                  env=env).code == 0
    moved = strata("plan", "--keep-valid", "dev/r/01-net", cwd=root, env=env)
    assert moved.code == 1 and "its state changed since the plan was made" in moved.output, moved.output
