"""A saved plan is the plan that was shown (issue 11, attack on apply-as-shown): a plan file that is not the one
strata's plan wrote is refused, and planning again never leaves an older plan to pass for the new one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

STACK = 'resource "null_resource" "x" {\n  triggers = { word = var.word }\n}\nvariable "word" {\n  type = string\n}\n'


@pytest.fixture
def repo(tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> tuple[Path, dict[str, str]]:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/a/strata.hcl": 'stack {}\ninputs = {\n  word = "one"\n}\n',
        "dev/r/a/main.tf": STACK,
    })
    return root, {**provider_mirror, "STRATA_TERRAFORM": tf_111}


def test_a_plan_file_swapped_for_another_is_refused(strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    plan = root / ".strata" / "plans" / "dev/r/a" / "plan.tfplan"
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 0
    declined = root.parent / "declined.tfplan"
    shutil.copy2(plan, declined)
    stack = root / "dev/r/a/strata.hcl"
    stack.write_text(stack.read_text().replace('"one"', '"two"'))
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 0
    shutil.copy2(declined, plan)  # the plan shown now is "two"; the file is the older "one"
    applied = strata("apply", "--plan", "--yes", "-q", cwd=root, env=env)
    assert applied.code == 1 and "is not the one `strata plan --out` made" in applied.output, applied.output
    assert strata("state", "pull", "dev/r/a", cwd=root, env=env).code != 0  # nothing applied


def test_a_failed_plan_leaves_no_older_plan_behind(strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    plan = root / ".strata" / "plans" / "dev/r/a" / "plan.tfplan"
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 0 and plan.is_file()
    code = root / "dev/r/a/main.tf"
    code.write_text(code.read_text() + 'output "broken" {\n  value = local.nope\n}\n')
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 1
    assert not plan.exists() and not plan.with_suffix(".json").exists()
    code.write_text(STACK)  # the code is as it was when the older plan was made: still nothing to apply
    refused = strata("apply", "--plan", "--yes", "-q", cwd=root, env=env)
    assert refused.code == 1 and "no saved plan" in refused.output, refused.output
