"""Policy as code on every plan (issue 12, item 10): checkov on each stack's saved plan, with the repository's own
checks, a severity threshold and skips with a reason; a failed check shows on the terminal, in the JSON report and
the PR summary, and blocks `apply --plan` unless `--override-policy REASON`, which is recorded.

Real terraform (terraform_data: no provider needed) and the real checkov, installed by scripts/test in its own
venv (.venv-checkov) and found through STRATA_CHECKOV, as the docs tell users to do: strata's own environment
does not have it. Only the "checkov crashes / prints garbage" tests use stand-in executables, since the real
checkov does not crash on demand.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import REPO, Result, write_tree
from test_terminal import Terminal

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]
SECRET = "tok-7Hq9-never-printed"
STACK = """
variable "size" {
  type = string
}
variable "token" {
  type      = string
  sensitive = true
  default   = "SECRET"
}
resource "terraform_data" "vm" {
  input = { instance_type = var.size, name = "web", token = var.token }
}
""".replace("SECRET", SECRET)
FORBID_BIG = """
metadata:
  id: "CKV2_STRATA_1"
  name: "Instances must not be m5.24xlarge"
  category: "GENERAL_SECURITY"
  severity: "HIGH"
definition:
  cond_type: "attribute"
  resource_types: ["terraform_data"]
  attribute: "input.instance_type"
  operator: "not_equals"
  value: "m5.24xlarge"
"""
# A Python check (checkov's other kind of custom policy). It prints the resource's configuration, the sensitive
# token included, as a careless check would: strata must not copy that anywhere in clear.
NAME_CHECK = """
from checkov.common.bridgecrew.severities import BcSeverities, Severities
from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck


class NoWebName(BaseResourceCheck):
    def __init__(self):
        super().__init__(name="Names must not be web", id="CKV_STRATA_2",
                         categories=[CheckCategories.GENERAL_SECURITY], supported_resources=["terraform_data"])
        SEVERITY

    def scan_resource_conf(self, conf):
        print("checking", conf)
        return CheckResult.FAILED if conf.get("input", [{}])[0].get("name") == ["web"] else CheckResult.PASSED


check = NoWebName()
"""


@pytest.fixture(scope="session")
def checkov_bin() -> str:
    """The real checkov, in its own venv (scripts/test makes REPO/.venv-checkov), or STRATA_CHECKOV."""
    configured = os.environ.get("STRATA_CHECKOV") or str(REPO / ".venv-checkov" / "bin" / "checkov")
    if not os.access(configured, os.X_OK):
        pytest.skip(f"checkov missing at {configured}: scripts/test installs it in .venv-checkov")
    return configured


@pytest.fixture
def env(tf_111: str, checkov_bin: str, tmp_path: Path) -> dict[str, str]:
    # PATH without checkov: strata finds it through STRATA_CHECKOV only
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not os.path.isfile(f"{p}/checkov"))
    return {"STRATA_TERRAFORM": tf_111, "STRATA_CHECKOV": checkov_bin, "PATH": path, "HOME": str(tmp_path),
            "USER": "alice", "GITHUB_ACTOR": "", "GITLAB_USER_LOGIN": ""}


def make_repo(root: Path, policy: str, *, python_check: str | None = None) -> Path:
    """Two stacks of one configuration; dev/r/web uses the size the YAML policy forbids, dev/r/db does not."""
    files = {
        "strata.hcl": 'strata {}\nbackend "local" {}\n' + policy,
        "policies/forbid_big.yaml": FORBID_BIG,
        "dev/r/web/strata.hcl": 'stack {}\ninputs = {\n  size = "m5.24xlarge"\n}\n',
        "dev/r/web/main.tf": STACK,
        "dev/r/db/strata.hcl": 'stack {}\ninputs = {\n  size = "t3.small"\n}\n',
        "dev/r/db/main.tf": STACK.replace('"web"', '"db"'),
    }
    if python_check is not None:
        files["policies/__init__.py"] = ""
        files["policies/name_check.py"] = NAME_CHECK.replace("SEVERITY", python_check)
    return write_tree(root, files)


def run_report(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    schema = json.loads((REPO / "docs" / "schemas" / "run-report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(document)
    return document


def policy_of(report: dict[str, Any]) -> dict[str, Any]:
    return {s["path"]: s["policy"] for s in report["stacks"]}


def everything_written(root: Path, *results: Result) -> str:
    """Every file strata wrote (logs, plans' records, reports, summaries, the audit file) and every output."""
    texts = [r.output for r in results]
    written = [*root.glob("*.json"), *root.glob("*.md"), *(root / ".strata").rglob("*")]
    for path in written:  # states, plans and the parse cache hold it as terraform or the code has it
        if path.is_file() and not {"state", "history", "cache"} & set(path.parts) and path.suffix != ".tfplan":
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


# -- the acceptance line --------------------------------------------------------------------------------------

def test_a_forbidden_value_fails_its_stack_only_blocks_apply_and_an_override_is_recorded(
        strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  directory = "policies"\n}\n')
    planned = strata("plan", "--policy", "--out", "-q", "--summary-md", "summary.md", "--json", "plan.json",
                     cwd=root, env=env)
    assert planned.code == 3, planned.output  # plans made, a policy check failed
    assert "  dev/r/web: failed\n    CKV2_STRATA_1 Instances must not be m5.24xlarge: terraform_data.vm [HIGH]" \
        in planned.stdout
    assert "dev/r/db: failed" not in planned.stdout
    report = run_report(root / "plan.json")
    assert report["exit_code"] == 3
    web, db = policy_of(report)["dev/r/web"], policy_of(report)["dev/r/db"]
    assert web["status"] == "failed" and db["status"] == "passed"
    assert web["failed"] == [{"id": "CKV2_STRATA_1", "name": "Instances must not be m5.24xlarge",
                              "resource": "terraform_data.vm", "severity": "HIGH"}]
    summary = (root / "summary.md").read_text()
    assert "| `dev/r/web` | 1 | 0 | 0 | 0 | ❌ 1 failed |" in summary and "| `dev/r/db` | 1 | 0 | 0 | 0 | ✅ passed |" \
        in summary
    assert "- `CKV2_STRATA_1` Instances must not be m5.24xlarge — `terraform_data.vm` (HIGH)" in summary
    assert "checkov" not in summary  # the plan text is terraform's: the check's own log is apart
    record = json.loads((root / ".strata/plans/dev/r/web/plan.json").read_text())
    assert record["policy"]["status"] == "failed"

    refused = strata("apply", "--plan", "--yes", "-q", "--json", "refused.json", cwd=root, env=env)
    assert refused.code == 1, refused.output
    assert ("the saved plan of dev/r/web failed 1 check(s): CKV2_STRATA_1; fix them and plan again, or apply anyway "
            'with --override-policy "REASON"') in refused.stdout
    assert {s["path"]: s["status"] for s in run_report(root / "refused.json")["stacks"]} == {
        "dev/r/db": "ok", "dev/r/web": "failed"}
    assert strata("state", "pull", "dev/r/web", cwd=root, env=env).code != 0  # nothing applied there
    assert not (root / ".strata/audit/policy-overrides.jsonl").exists()

    applied = strata("apply", "dev/r/web", "--plan", "--yes", "-q", "--json", "applied.json",
                     "--override-policy", "capacity team approved the big box (TICKET-42)",
                     cwd=root, env={**env, "GITHUB_ACTOR": "octocat"})
    assert applied.code == 0, applied.output
    assert "dev/r/web: overridden: capacity team approved the big box (TICKET-42)" in applied.stdout
    overridden = policy_of(run_report(root / "applied.json"))["dev/r/web"]
    assert overridden["status"] == "overridden" and overridden["reason"].endswith("(TICKET-42)")
    assert [f["id"] for f in overridden["failed"]] == ["CKV2_STRATA_1"]
    audit = [json.loads(line) for line in (root / ".strata/audit/policy-overrides.jsonl").read_text().splitlines()]
    assert len(audit) == 1 and audit[0]["stack"] == "dev/r/web" and audit[0]["checks"] == ["CKV2_STRATA_1"]
    assert audit[0]["user"] == "alice" and audit[0]["ci_actor"] == "GITHUB_ACTOR=octocat"
    assert audit[0]["reason"] == "capacity team approved the big box (TICKET-42)" and audit[0]["time"].endswith("Z")
    assert audit[0]["plan_sha256"] == record["sha256"]
    assert oct((root / ".strata/audit/policy-overrides.jsonl").stat().st_mode & 0o777) == "0o600"
    assert strata("state", "pull", "dev/r/web", cwd=root, env=env).code == 0  # applied
    assert SECRET not in everything_written(root, planned, refused, applied)


def test_policy_enabled_checks_every_plan_and_apply_without_a_saved_plan(
        strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  enabled   = true\n  directory = "policies"\n}\n')
    planned = strata("plan", "-q", cwd=root, env=env)  # no --policy, no --out: the block says every plan
    assert planned.code == 3 and "dev/r/web: failed" in planned.stdout, planned.output
    # apply --yes (no saved plan) plans, checks, and applies nothing while a check fails
    refused = strata("apply", "--yes", "-q", cwd=root, env=env)
    assert refused.code == 3, refused.output
    assert "nothing applied: a policy check did not pass" in refused.stderr
    assert strata("state", "pull", "dev/r/db", cwd=root, env=env).code != 0
    applied = strata("apply", "--yes", "-q", "--override-policy", "accepted for the demo", cwd=root, env=env)
    assert applied.code == 0, applied.output
    assert strata("state", "pull", "dev/r/web", cwd=root, env=env).code == 0
    audit = (root / ".strata/audit/policy-overrides.jsonl").read_text()
    assert '"reason": "accepted for the demo"' in audit
    # a saved plan made before the checks (or by a strata without them) is not applied unchecked
    (root / "dev/r/db/strata.hcl").write_text('stack {}\ninputs = {\n  size = "t3.medium"\n}\n')
    assert strata("plan", "dev/r/db", "--out", "-q", cwd=root, env=env).code == 0
    record = root / ".strata/plans/dev/r/db/plan.json"
    meta = json.loads(record.read_text())
    del meta["policy"]
    record.write_text(json.dumps(meta))
    unchecked = strata("apply", "dev/r/db", "--plan", "--yes", "-q", cwd=root, env=env)
    assert unchecked.code == 1 and "was not checked by the policy" in unchecked.output, unchecked.output


def test_interactive_apply_shows_the_failed_check_and_applies_only_with_an_override(
        tmp_path: Path, env: dict[str, str]) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  enabled   = true\n  directory = "policies"\n}\n')
    term = Terminal(["apply"], root, env)
    assert term.finish() == 3, term.text  # nothing asked, nothing applied
    assert "CKV2_STRATA_1 Instances must not be m5.24xlarge: terraform_data.vm [HIGH]" in term.text
    assert "nothing applied: a policy check did not pass" in term.text and "Type 'yes'" not in term.text
    term = Terminal(["apply", "--override-policy", "reviewed at the terminal"], root, env)
    term.wait_for("Type 'yes'")
    term.send("yes\n")
    assert term.finish() == 0, term.text
    assert "dev/r/web: overridden: reviewed at the terminal" in term.text
    audit = [json.loads(line) for line in (root / ".strata/audit/policy-overrides.jsonl").read_text().splitlines()]
    assert [(a["stack"], a["reason"]) for a in audit] == [("dev/r/web", "reviewed at the terminal")]


# -- custom Python checks, severities, skips --------------------------------------------------------------------

def test_a_python_check_and_the_severity_threshold(strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    block = 'policy {\n  directory = "policies"\n  severity  = "HIGH"\n}\n'
    root = make_repo(tmp_path / "repo", block, python_check="self.severity = Severities[BcSeverities.MEDIUM]")
    (root / "policies/forbid_big.yaml").unlink()
    below = strata("plan", "--policy", "-q", "--json", "below.json", cwd=root, env=env)
    assert below.code == 0, below.output  # MEDIUM < HIGH: reported, not failing
    assert ("    CKV_STRATA_2 Names must not be web: terraform_data.vm [MEDIUM] (below HIGH: not failing)"
            in below.stdout), below.stdout
    web = policy_of(run_report(root / "below.json"))["dev/r/web"]
    assert web["status"] == "passed" and [f["id"] for f in web["below_threshold"]] == ["CKV_STRATA_2"]
    assert policy_of(run_report(root / "below.json"))["dev/r/db"]["below_threshold"] == []

    (root / "strata.hcl").write_text((root / "strata.hcl").read_text().replace('"HIGH"', '"medium"'))
    failing = strata("plan", "--policy", "-q", cwd=root, env=env)
    assert failing.code == 3 and "CKV_STRATA_2 Names must not be web: terraform_data.vm [MEDIUM]\n" \
        in failing.stdout, failing.output
    assert SECRET not in everything_written(root, below, failing)  # the check printed the token: redacted


def test_a_check_without_severity_counts_as_unrated_severity(strata: Strata, tmp_path: Path,
                                                             env: dict[str, str]) -> None:
    block = 'policy {\n  directory = "policies"\n  severity  = "CRITICAL"\n}\n'
    root = make_repo(tmp_path / "repo", block, python_check="pass")
    (root / "policies/forbid_big.yaml").unlink()
    unrated = strata("plan", "dev/r/web", "--policy", "-q", cwd=root, env=env)
    assert unrated.code == 3, unrated.output  # by default a check without severity fails whatever the threshold
    assert "CKV_STRATA_2 Names must not be web: terraform_data.vm [no severity]" in unrated.stdout
    (root / "strata.hcl").write_text((root / "strata.hcl").read_text().replace(
        '  severity', '  unrated_severity = "LOW"\n  severity'))
    reported = strata("plan", "dev/r/web", "--policy", "-q", cwd=root, env=env)
    assert reported.code == 0 and "(below CRITICAL: not failing)" in reported.stdout, reported.output


def test_skips_with_their_reasons(strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    block = '''policy {
  directory = "policies"
  skip "CKV2_STRATA_*" {
    stacks = ["dev/*/web"]
    reason = "the web tier needs the big box until the rewrite"
  }
  skip "*" {
    stacks = ["dev/r/db"]
    reason = "a scratch database"
  }
}
'''
    root = make_repo(tmp_path / "repo", block)
    planned = strata("plan", "--policy", "-q", "--json", "plan.json", "--summary-md", "summary.md", cwd=root, env=env)
    assert planned.code == 0, planned.output
    assert ("    CKV2_STRATA_1 Instances must not be m5.24xlarge: terraform_data.vm [HIGH] (skipped: the web tier "
            "needs the big box until the rewrite)") in planned.stdout
    assert "  dev/r/db: skipped: a scratch database" in planned.stdout
    policies = policy_of(run_report(root / "plan.json"))
    assert policies["dev/r/web"]["status"] == "passed" and policies["dev/r/web"]["failed"] == []
    assert policies["dev/r/web"]["skipped"][0]["reason"] == "the web tier needs the big box until the rewrite"
    assert policies["dev/r/db"] == {**policies["dev/r/db"], "status": "skipped", "reason": "a scratch database"}
    assert "| ⏭️ skipped: a scratch database |" in (root / "summary.md").read_text()


# -- checkov missing, crashing, lying ---------------------------------------------------------------------------

def test_checkov_missing_is_a_clear_message_before_anything_is_planned(strata: Strata, tmp_path: Path,
                                                                       env: dict[str, str]) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  directory = "policies"\n}\n')
    without = {**env, "STRATA_CHECKOV": ""}
    missing = strata("plan", "--policy", cwd=root, env=without)
    assert missing.code == 1
    assert "policy checks need checkov, which is not on PATH (and STRATA_CHECKOV is not set)" in missing.stderr
    assert "pipx install 'checkov>=3.2'" in missing.stderr
    wrong = strata("plan", "--policy", cwd=root, env={**env, "STRATA_CHECKOV": str(tmp_path / "nope/checkov")})
    assert wrong.code == 1 and f"STRATA_CHECKOV='{tmp_path}/nope/checkov' is not an executable checkov" \
        in wrong.stderr, wrong.output
    assert not (root / ".strata/plans").exists()
    assert strata("plan", "-q", cwd=root, env=without).code == 0  # without --policy nothing needs checkov
    # where the generated pipelines install it, strata looks last
    (tmp_path / ".strata-checkov/bin").mkdir(parents=True)
    (tmp_path / ".strata-checkov/bin/checkov").symlink_to(env["STRATA_CHECKOV"])
    found = strata("plan", "dev/r/web", "--policy", "-q", cwd=root, env=without)  # HOME is tmp_path
    assert found.code == 3 and "CKV2_STRATA_1" in found.stdout, found.output


def fake_checkov(folder: Path, body: str) -> str:
    """A stand-in executable: the real checkov does not crash or lie on demand."""
    path = folder / "checkov"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


REPORT_ARG = 'for a; do case "$prev" in --output-file-path) report="${a%%,*}";; esac; prev="$a"; done\n'


@pytest.mark.parametrize(("name", "body", "why"), [
    ("crash", "echo 'Traceback (most recent call last):' >&2; echo 'KeyError: x' >&2; exit 2\n",
     "checkov exited with code 2: Traceback (most recent call last):"),
    ("garbage", REPORT_ARG + 'echo "<html>not json" > "$report"; exit 0\n', "checkov's report is not JSON"),
    ("silent", "exit 0\n", "checkov wrote no report"),
    ("liar", REPORT_ARG + 'echo \'{"summary": {"passed": 0, "failed": 2}, "results": {"failed_checks": []}}\' '
     '> "$report"; exit 1\n', "another number of failed checks"),
    ("too old", REPORT_ARG + 'echo \'{"passed": 0, "failed": 0, "checkov_version": "2.5.1"}\' > "$report"\n',
     "checkov 2.5.1 is older than 3.2"),
])
def test_checkov_failing_is_an_error_never_a_pass(strata: Strata, tmp_path: Path, env: dict[str, str], name: str,
                                                  body: str, why: str) -> None:
    root = make_repo(tmp_path / "repo", "")
    broken = fake_checkov(tmp_path, body)
    planned = strata("plan", "dev/r/db", "--policy", "--out", "-q", "--json", "plan.json", cwd=root,
                     env={**env, "STRATA_CHECKOV": broken})
    assert planned.code == 3, planned.output
    assert "  dev/r/db: error: " in planned.stdout and why in planned.stdout, planned.stdout
    assert policy_of(run_report(root / "plan.json"))["dev/r/db"]["status"] == "error"
    refused = strata("apply", "dev/r/db", "--plan", "--yes", "-q", cwd=root, env=env)
    assert refused.code == 1 and "could not be checked" in refused.stdout, refused.output


def test_what_a_check_names_is_printed_on_one_line(strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    # a check's name comes from whoever wrote the check: a line of its own in a CI log could be read as a command
    report = {"summary": {"passed": 0, "failed": 1, "checkov_version": "3.3.30"}, "results": {"failed_checks": [
        {"check_id": "CKV_X_1", "check_name": "Big\n::error::injected\u001b[2J", "resource": "terraform_data.vm",
         "severity": "OFF"}]}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    liar = fake_checkov(tmp_path, REPORT_ARG + f'cp {tmp_path}/report.json "$report"; exit 1\n')
    root = make_repo(tmp_path / "repo", "")
    planned = strata("plan", "dev/r/db", "--policy", "-q", cwd=root, env={**env, "STRATA_CHECKOV": liar})
    assert planned.code == 3, planned.output
    assert "    CKV_X_1 Big ::error::injected [2J: terraform_data.vm [no severity]" in planned.stdout
    assert not any(line.startswith("::") for line in planned.output.splitlines())
    assert "\x1b" not in planned.output


def test_a_custom_check_checkov_cannot_load_is_an_error(strata: Strata, tmp_path: Path, env: dict[str, str]) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  directory = "policies"\n}\n', python_check="pass")
    (root / "policies/name_check.py").write_text("import no_such_module\n")
    planned = strata("plan", "dev/r/db", "--policy", "-q", cwd=root, env=env)
    assert planned.code == 3, planned.output
    assert "dev/r/db: error: checkov reported an error: Cannot load external check" in planned.stdout
    (root / "policies/__init__.py").unlink()  # checkov would skip the folder's Python checks without a word
    ignored = strata("plan", "dev/r/db", "--policy", "-q", cwd=root, env=env)
    assert ignored.code == 1 and "strata.hcl:4: policies/name_check.py is a Python check in a folder without " \
        "__init__.py" in ignored.stderr, ignored.output


# -- the policy block -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("block", "message"), [
    ('policy {\n  skip "CKV_AWS_1" {\n    stacks = ["*"]\n  }\n}\n',
     "strata.hcl:4: error: skip 'CKV_AWS_1' needs a reason"),
    ('policy {\n  skip "CKV_AWS_1" {\n    reason = "  "\n  }\n}\n',
     "strata.hcl:5: error: skip 'CKV_AWS_1' needs a reason"),
    ('policy {\n  severity = "SEVERE"\n}\n', "strata.hcl:4: error: severity must be one of INFO, LOW, MEDIUM, HIGH, "
     "CRITICAL; not 'SEVERE'"),
    ('policy {\n  enabled = "yes"\n}\n', "strata.hcl:4: error: enabled must be true or false"),
    ('policy {\n  directroy = "policies"\n}\n', "strata.hcl:4: error: unknown attribute 'directroy' in the policy "
     "block; did you mean 'directory'?"),
    ('policy {\n  directory = "missing"\n}\n', "strata.hcl:4: error: directory 'missing' does not exist"),
    ('policy {\n  directory = "../elsewhere"\n}\n', "strata.hcl:4: error: directory must be a folder inside"),
    ('policy {\n  directory = "."\n}\n', "strata.hcl:4: error: directory must be a folder inside the repository, of "
     "its own"),
    ('policy {\n  skip {\n    reason = "x"\n  }\n}\n', "strata.hcl:4: error: a skip block needs one label"),
    ('policy {\n  skip "A" {\n    reason = "x"\n    stacks = "dev"\n  }\n}\n',
     "strata.hcl:6: error: stacks of skip 'A' must be a list"),
    ('policy {\n  except "A" {}\n}\n', "strata.hcl:4: error: unknown block 'except' in the policy block"),
    ('policy {\n  enabled = local.x\n}\n', "strata.hcl:4: error: settings in the policy block must be constant"),
    ('policy {}\npolicy {}\n', "strata.hcl:4: error: a second policy block in this file (the first is at line 3)"),
    ('polcy {}\n', "strata.hcl:3: error: unknown block 'polcy' in strata.hcl; did you mean 'policy'?"),
])
def test_a_bad_policy_block_is_an_error_at_its_line(strata: Strata, tmp_path: Path, block: str,
                                                    message: str) -> None:
    root = make_repo(tmp_path / "repo", block)
    result = strata("validate", cwd=root)
    assert result.code == 1 and message in result.output, result.output


def test_a_skip_whose_stacks_match_nothing_is_a_warning(strata: Strata, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", 'policy {\n  skip "CKV_AWS_1" {\n    stacks = ["dev/*/wbe"]\n'
                                        '    reason = "typo"\n  }\n}\n')
    result = strata("validate", cwd=root)
    assert "strata.hcl:4: warning: skip 'CKV_AWS_1': 'dev/*/wbe' matches no stack" in result.output, result.output


def test_the_policy_block_belongs_in_the_root_file(strata: Strata, tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", "")
    (root / "dev/r/web/strata.hcl").write_text('stack {}\npolicy {\n  enabled = true\n}\n')
    result = strata("ls", cwd=root)
    assert result.code == 1
    assert "dev/r/web/strata.hcl:2: error: the policy {} block belongs in the repository root strata.hcl only" \
        in result.output, result.output


# -- isolation ----------------------------------------------------------------------------------------------------

def test_checkov_installed_into_stratas_environment_is_named_not_a_crash(strata: Strata, tmp_path: Path) -> None:
    """checkov's bc-python-hcl2 installs the module hcl2 over python-hcl2 when both share an environment (pip
    check sees nothing; strata crashed with an IndexError). A stand-in module of its version shows the message;
    the real mix-up was reproduced by hand (docs/policy.md)."""
    fake = write_tree(tmp_path / "site", {"hcl2/__init__.py": '__version__ = "0.4.3"\n', "hcl2/parser.py": "",
                                          "hcl2/postlexer.py": "class PostLexer:\n    pass\n"})
    root = make_repo(tmp_path / "repo", "")
    path = os.pathsep.join([str(fake), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = strata("ls", cwd=root, env={"PYTHONPATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.code == 1, result.output
    assert "this environment's hcl2 module is version 0.4.3, not python-hcl2 8 (checkov's bc-python-hcl2" \
        in result.stderr


def test_strata_never_imports_checkov_and_its_environment_does_not_need_it(checkov_bin: str) -> None:
    importing = re.compile(r"^\s*(import|from) checkov\b|import_module\(.checkov", re.M)
    for path in (REPO / "src" / "strata").rglob("*.py"):
        assert not importing.search(path.read_text()), path
    # the policy tests above pass with strata's interpreter unable to import checkov: it runs as a program
    assert importlib.util.find_spec("checkov") is None, f"{sys.executable} has checkov: the tests would not show " \
        "that strata runs without it"
    assert not Path(checkov_bin).resolve().is_relative_to(Path(sys.prefix).resolve())
