"""apply --plan applies a saved plan only if the plan file carries this checkout's code and the inputs strata
computes here (a hostile review of issue 12: a plan packed in a pull request's job, whose code the pull request
controls, came with a record copied from a benign plan and ran a local-exec on main). Also: the variable files
terraform loads by itself are part of what a plan was made from, and strata's own CI secrets never reach
terraform."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]
STACK = "dev/r/a"
CODE = ('variable "word" {\n  type = string\n}\nresource "null_resource" "x" {\n  triggers = { word = var.word }\n}\n')
EVIL = CODE + ('resource "null_resource" "evil" {\n  provisioner "local-exec" {\n'
               '    command = "touch ${path.root}/PWNED"\n  }\n}\n')


def make(root: Path, code: str = CODE, word: str = "one") -> Path:
    return write_tree(root, {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        f"{STACK}/strata.hcl": f'stack {{}}\ninputs = {{\n  word = "{word}"\n}}\n',
        f"{STACK}/main.tf": code,
    })


@pytest.fixture
def env(provider_mirror: dict[str, str], tf_111: str) -> dict[str, str]:
    return {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}


def forge(strata: Strata, main: Path, other: Path, env: dict[str, str]) -> None:
    """Plan in ``other`` and put that plan in ``main``'s saved plans with the record of ``main``'s own plan but
    for the plan's checksum: what a pull request's job holding the bundle key can pack."""
    assert strata("plan", "--out", "-q", cwd=main, env=env).code == 0
    assert strata("plan", "--out", "-q", cwd=other, env=env).code == 0
    ours = main / ".strata/plans" / STACK
    theirs = other / ".strata/plans" / STACK
    record = json.loads((ours / "plan.json").read_text())
    record["sha256"] = json.loads((theirs / "plan.json").read_text())["sha256"]
    shutil.copy2(theirs / "plan.tfplan", ours / "plan.tfplan")
    (ours / "plan.json").write_text(json.dumps(record))


def test_a_plan_carrying_other_code_is_refused(strata: Strata, env: dict[str, str], tmp_path: Path) -> None:
    main, evil = make(tmp_path / "main"), make(tmp_path / "evil", code=EVIL)
    forge(strata, main, evil, env)
    refused = strata("apply", "--plan", "--yes", "-q", cwd=main, env=env)
    assert refused.code == 1, refused.output
    assert "does not carry this checkout's code: ./main.tf differs" in refused.output, refused.output
    assert not list(tmp_path.rglob("PWNED"))
    assert strata("state", "pull", STACK, cwd=main, env=env).code != 0  # nothing applied


def test_a_plan_made_with_other_inputs_is_refused(strata: Strata, env: dict[str, str], tmp_path: Path) -> None:
    main, other = make(tmp_path / "main"), make(tmp_path / "other", word="two")
    forge(strata, main, other, env)
    refused = strata("apply", "--plan", "--yes", "-q", cwd=main, env=env)
    assert refused.code == 1 and "was made with other inputs than strata passes here (variable 'word')" in \
        refused.output, refused.output
    assert strata("apply", "--plan", "--yes", "-q", cwd=other, env=env).code == 0  # its own plan applies


def test_terraform_tfvars_is_part_of_what_a_plan_was_made_from(strata: Strata, env: dict[str, str],
                                                               tmp_path: Path) -> None:
    code = CODE + ('variable "size" {\n  type = string\n}\n'
                   'resource "null_resource" "y" {\n  triggers = { s = var.size }\n}\n')
    main = make(tmp_path / "main", code=code)
    tfvars = main / STACK / "terraform.tfvars"
    tfvars.write_text('size = "small"\n')
    assert strata("plan", "--out", "-q", cwd=main, env=env).code == 0
    tfvars.write_text('size = "huge"\n')
    kept = strata("plan", "--keep-valid", cwd=main, env=env)
    assert kept.code == 1 and "its code changed since the plan was made" in kept.output, kept.output
    stale = strata("apply", "--plan", "--yes", "-q", cwd=main, env=env)
    assert stale.code == 1 and "stale" in stale.output, stale.output


def test_strata_secrets_never_reach_terraform(strata: Strata, env: dict[str, str], tmp_path: Path) -> None:
    code = CODE + ('resource "null_resource" "env" {\n  provisioner "local-exec" {\n'
                   '    command = "env > ${path.root}/seen.env"\n  }\n}\n')
    main = make(tmp_path / "main", code=code)
    secrets = {"STRATA_PLAN_KEY": "plan-key-secret", "STRATA_GITLAB_TOKEN": "glpat-secret",
               "SYSTEM_ACCESSTOKEN": "azure-secret"}
    assert strata("apply", "--yes", "-q", cwd=main, env={**env, **secrets}).code == 0
    seen = (main / STACK / "seen.env").read_text()
    assert "TF_IN_AUTOMATION=1" in seen  # the provisioner saw terraform's environment
    assert not [v for v in secrets.values() if v in seen], seen
