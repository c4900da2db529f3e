"""Flags through to terraform (issue 11): what follows `--` reaches terraform as it is; terraform's spellings of
strata's own flags are refused with strata's name for them; run options come from the environment too."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

TWO = """\
resource "null_resource" "a" {
  triggers = { size = var.size }
}
resource "null_resource" "b" {
  triggers = { size = var.size }
}
variable "size" {
  type    = string
  default = "small"
}
output "size" {
  value = null_resource.a.triggers.size
}
"""


@pytest.fixture
def repo(tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> tuple[Path, dict[str, str]]:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/eu-west-1/app/strata.hcl": "stack {}\n",
        "dev/eu-west-1/app/main.tf": TWO,
    })
    return root, {**provider_mirror, "STRATA_TERRAFORM": tf_111}


def test_flags_after_dashes_reach_terraform(strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    stack = "dev/eu-west-1/app"
    targeted = strata("plan", stack, "--", "-target=null_resource.a", cwd=root, env=env)
    assert targeted.code == 0, targeted.output
    assert "Plan: 1 to add, 0 to change, 0 to destroy." in targeted.stdout, targeted.output
    assert "-target option" in targeted.stdout  # terraform's own warning: the flag reached it

    applied = strata("apply", "--yes", stack, "--", "-var", "size=large", cwd=root, env=env)
    assert applied.code == 0, applied.output
    shown = strata("run", stack, "--", "output", "-raw", "size", cwd=root, env=env)
    assert shown.stdout == "large\n", shown.output  # whole lines: a last line without newline gets one

    replaced = strata("apply", "--auto-approve", stack, "--", "-var", "size=large", "-replace=null_resource.b",
                      cwd=root, env=env)
    assert replaced.code == 0, replaced.output
    assert "Resources: 1 added, 0 changed, 1 destroyed." in replaced.stdout, replaced.output

    upgraded = strata("init", stack, "--", "-upgrade", cwd=root, env=env)
    assert upgraded.code == 0, upgraded.output
    logs = "".join(p.read_text() for p in (root / ".strata" / "logs").rglob("terraform.log"))
    assert re.search(r"^\$ \S*terraform init .*-upgrade$", logs, re.MULTILINE), logs


@pytest.mark.parametrize(("args", "message"), [
    (["apply", "-auto-approve"], "-auto-approve is terraform's spelling: strata's is --yes"),
    (["-chdir=elsewhere", "ls"], "-chdir=elsewhere is terraform's spelling: strata's is -C DIR"),
    (["plan", "-lock-timeout=5m"], "strata's is --lock-timeout"),
    (["plan", "-target=null_resource.a"],
     "-target=null_resource.a is a terraform flag: give terraform's flags after --, e.g. strata plan STACK -- "
     "-target=null_resource.a"),
    (["destroy", "-var", "x=1"], "-var is a terraform flag"),
    (["state", "ls", "-json"], "-json is terraform's spelling: strata's is --json"),
])
def test_terraform_spellings_name_strata_spelling(strata: Strata, tmp_path: Path, args: list[str],
                                                  message: str) -> None:
    write_tree(tmp_path, {"strata.hcl": "strata {}\n", "dev/r/app/strata.hcl": "stack {}\n"})
    result = strata(*args, cwd=tmp_path)
    assert result.code == 64, result.output
    assert message in result.stderr, result.stderr


def test_run_options_come_from_the_environment(strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    bad = strata("plan", cwd=root, env={**env, "STRATA_LOCK_TIMEOUT": "soon"})
    assert bad.code == 64 and "invalid duration 'soon'" in bad.stderr, bad.output
    bad = strata("plan", cwd=root, env={**env, "STRATA_PARALLELISM": "0"})
    assert bad.code == 64 and "STRATA_PARALLELISM" not in bad.stdout, bad.output
    refused = strata("apply", cwd=root, env={**env, "STRATA_NON_INTERACTIVE": "1"})
    assert refused.code == 64 and "--non-interactive never asks" in refused.stderr, refused.output
    ok = strata("plan", "-q", cwd=root, env={**env, "STRATA_PARALLELISM": "1", "STRATA_LOCK_TIMEOUT": "5s"})
    assert ok.code == 0, ok.output
    assert "-lock-timeout=5s" in "".join(p.read_text() for p in (root / ".strata" / "logs").rglob("*.log"))


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "dev/eu-west-1/app", "--", "-out=x.tfplan"], "-out=x.tfplan after --: strata sets it itself; use --out"),
    (["apply", "--yes", "--", "-auto-approve"], "use --yes"),
    (["plan", "--", "-json"], "use --json"),
    (["apply", "--plan", "--yes", "--", "-target=null_resource.a"], "--plan applies the saved plans as they are"),
    (["render", "dev/eu-west-1/app", "-legacy"], "no such option: -legacy"),
])
def test_flags_that_would_override_strata_are_refused(strata: Strata, repo: tuple[Path, dict[str, str]],
                                                      args: list[str], message: str) -> None:
    root, env = repo
    result = strata(*args, cwd=root, env=env)
    assert result.code == 64 and message in result.stderr, result.output
    assert not (root / "x.tfplan").exists() and not (root / ".strata" / "logs").exists()


def test_a_var_after_dashes_sets_a_required_variable(strata: Strata, tmp_path: Path,
                                                     provider_mirror: dict[str, str], tf_111: str) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/app/strata.hcl": "stack {}\n",
        "dev/r/app/main.tf": 'variable "size" {\n  type = string\n}\noutput "size" {\n  value = var.size\n}\n',
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    missing = strata("plan", cwd=root, env=env)
    assert missing.code == 1 and "variable 'size'" in missing.output, missing.output
    assert strata("plan", "--", "-var", "size=large", cwd=root, env=env).code == 0
    assert strata("plan", "--", "-var=size=large", cwd=root, env=env).code == 0
