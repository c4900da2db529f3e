"""Plan summaries for pull-request comments (issue 6, `strata plan --summary-md`), from real Terraform plans.

One real stack is applied and then planned once per module (Terraform 1.11 + the offline null provider):
the plan creates, replaces and destroys null_resources, carries a sensitive variable, a sensitive output and
a resource attribute wrapped in ``sensitive()``. Some of those values Terraform prints in clear (through
``nonsensitive()`` or an unmarked copy of the same literal), so the tests check that the summary scrubs them.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import write_tree
from strata.run.summary import LIMIT, REDACTED, Redactor, StackPlan, render, sensitive_values, why_text

pytestmark = pytest.mark.terraform

SECRET_VAR = "s3cr3t-value-123"  # variable "secret" (sensitive = true)
SECRET_OUTPUT = "tok-literal-998877"  # only an output marks it sensitive
SECRET_ATTR = "attr-secret-4455"  # only sensitive() on a resource attribute marks it
SECRETS = (SECRET_VAR, SECRET_OUTPUT, SECRET_ATTR)

BEFORE = """
variable "secret" {
  type      = string
  sensitive = true
}
variable "gen" {
  default = "1"
}
resource "null_resource" "keep" {}
resource "null_resource" "gone" {
  count = var.gen == "1" ? 1 : 0
}
resource "null_resource" "swap" {
  triggers = { gen = var.gen }
}
resource "null_resource" "secret_trigger" {
  triggers = { s = var.secret }
}
output "token" {
  value     = "tok-literal-998877"
  sensitive = true
}
output "pw" {
  value     = "out-${var.secret}"
  sensitive = true
}
"""

AFTER = BEFORE + """
resource "null_resource" "leaky" {
  triggers = { s = nonsensitive(var.secret) }
}
resource "null_resource" "token_copy" {
  triggers = { t = "tok-literal-998877" }
}
resource "null_resource" "attr" {
  triggers = { a = sensitive("attr-secret-4455") }
}
resource "null_resource" "attr_copy" {
  triggers = { a = "attr-secret-4455" }
}
"""


@dataclass(frozen=True)
class RealPlan:
    text: str
    data: dict[str, Any]


def _tf(binary: str, env: dict[str, str], cwd: Path, *args: str) -> str:
    proc = subprocess.run([binary, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def real_plan(tf_111: str, provider_mirror: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> RealPlan:
    import os

    stack = tmp_path_factory.mktemp("stack")
    env = {**os.environ, **provider_mirror}
    variables = ["-input=false", "-no-color", f"-var=secret={SECRET_VAR}"]
    write_tree(stack, {"main.tf": BEFORE})
    _tf(tf_111, env, stack, "init", "-input=false", "-no-color")
    _tf(tf_111, env, stack, "apply", "-auto-approve", *variables, "-var=gen=1")
    write_tree(stack, {"main.tf": AFTER})
    text = _tf(tf_111, env, stack, "plan", *variables, "-var=gen=2", "-out=tfplan", "-detailed-exitcode")
    data = json.loads(_tf(tf_111, env, stack, "show", "-json", "tfplan"))
    return RealPlan(text, data)


TAGGED = """
variable "tag" {}
resource "null_resource" "tagged" {
  count    = 24
  triggers = { tag = var.tag }
}
"""


@pytest.fixture(scope="module")
def tag_plan(tf_111: str, provider_mirror: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> RealPlan:
    """24 resources, all replaced by one changed tag."""
    import os

    stack = tmp_path_factory.mktemp("tagged")
    env = {**os.environ, **provider_mirror}
    write_tree(stack, {"main.tf": TAGGED})
    _tf(tf_111, env, stack, "init", "-input=false", "-no-color")
    _tf(tf_111, env, stack, "apply", "-auto-approve", "-input=false", "-no-color", "-var=tag=blue")
    text = _tf(tf_111, env, stack, "plan", "-input=false", "-no-color", "-var=tag=green", "-out=tfplan")
    return RealPlan(text, json.loads(_tf(tf_111, env, stack, "show", "-json", "tfplan")))


def _changes(name: str, plan: RealPlan, text: str | None = None) -> StackPlan:
    return StackPlan(name, "changes", plan.data, plan.text if text is None else text)


def _balanced(comment: str) -> None:
    """Every code fence closed, every <details> closed, nothing nested across part boundaries."""
    fences = [line for line in comment.splitlines() if re.fullmatch(r"`{3,}(text)?", line)]
    assert len(fences) % 2 == 0, comment[-2000:]
    assert comment.count("<details>") == comment.count("</details>")


# -- the real plan ----------------------------------------------------------------------------------------

def test_real_plan_text_leaks_what_the_summary_must_hide(real_plan: RealPlan) -> None:
    """The premise: Terraform itself prints these values in clear (nonsensitive() and unmarked copies)."""
    for secret in SECRETS:
        assert secret in real_plan.text, secret
    assert sensitive_values(real_plan.data) >= set(SECRETS)


def test_sensitive_values_never_printed(real_plan: RealPlan) -> None:
    comments = render([_changes("prod/us-east-1/02-platform/app", real_plan),
                       StackPlan("prod/x", "failed", None, f"Error: bad value {SECRET_OUTPUT}",
                                 f"exit 1 {SECRET_ATTR}")])
    everything = "\n".join(comments)
    for secret in (*SECRETS, f"out-{SECRET_VAR}"):
        assert secret not in everything, secret
    assert REDACTED in everything
    assert 'triggers = { # forces replacement' in everything  # the plan text is there, scrubbed


def test_table_rows_then_destroys_once_then_collapsed_plans(real_plan: RealPlan) -> None:
    [comment] = render([_changes("dev/b-app", real_plan), StackPlan("dev/a-quiet", "ok", None, "No changes."),
                        StackPlan("dev/c-skip", "skipped", None, "", "dependency failed")])
    # terraform's own count agrees: replacements count as add and destroy (and once more as a replacement)
    assert "Plan: 5 to add, 0 to change, 2 to destroy." in real_plan.text
    assert "**5 to add, 0 to change, 2 to destroy**" in comment
    assert "**3 stacks**: 1 with changes, 1 without changes, 1 skipped" in comment
    table = comment.index("| Stack | Add | Change | Destroy | Replace | Policy | Why affected |")
    rows = [line for line in comment.splitlines() if line.startswith("| ") and "Stack" not in line]
    assert rows == ["| ⚠️ `dev/b-app` | 5 | 0 | 2 | 1 | — | — |",
                    "| `dev/a-quiet` | — | — | — | — | — | — |",
                    "| ⏭️ `dev/c-skip` | — | — | — | — | — | — |"]
    caution = comment.index("> [!CAUTION]")
    listed = comment.index("> - `dev/b-app` — **destroy** (1): `null_resource.gone[0]`; "
                           "**replace** (1): `null_resource.swap`")
    section = comment.index("### ⚠️ `dev/b-app`: 5 to add, 0 to change, 2 to destroy")
    assert table < caution < listed < section
    # destroys and replacements are listed once: not again in the stack's section
    assert comment.count("`null_resource.gone[0]`") == 1 and comment.count("`null_resource.swap`") == 1
    details = comment.index("<details>\n<summary>Plan output for dev/b-app</summary>")
    creates = comment.index("**Create** (4): `null_resource.attr`, `null_resource.attr_copy`, "
                            "`null_resource.leaky`, `null_resource.token_copy`")
    assert section < details < creates < comment.index("```text")
    assert "null_resource.keep" not in comment.split("<details>")[0]  # no-op resources are not listed
    assert "### Skipped\n\n- `dev/c-skip (dependency failed)`" in comment
    assert "**Next step:** Fix" not in comment and "**Next step:** Merge to apply." in comment
    _balanced(comment)


def test_many_replacements_are_listed_once(tag_plan: RealPlan) -> None:
    """One tag change replacing 24 resources: one line in one caution, not 24 bullets repeated below."""
    [comment] = render([_changes("prod/app", tag_plan)])
    assert "Plan: 24 to add, 0 to change, 24 to destroy." in tag_plan.text
    assert "| ⚠️ `prod/app` | 24 | 0 | 24 | 24 |" in comment
    assert comment.count("[!CAUTION]") == 1
    assert "**24 resources will be destroyed or replaced**" in comment
    for i in range(24):
        assert comment.count(f"`null_resource.tagged[{i}]`") == 1, i
    caution = [line for line in comment.splitlines() if line.startswith(">")]
    assert len(caution) == 4, caution  # the alert, the title, a blank quote line, one line for the stack
    _balanced(comment)


def test_failed_stack_with_detail(real_plan: RealPlan) -> None:
    [comment] = render([StackPlan("dev/broken", "failed", None, "Error: Unsupported argument\n", "exit status 1"),
                        _changes("dev/app", real_plan)])
    assert "### ❌ `dev/broken`: plan failed\n\n```text\nexit status 1\n```" in comment
    assert "Error: Unsupported argument" in comment
    assert "1 failed" in comment
    _balanced(comment)


def test_deterministic(real_plan: RealPlan) -> None:
    plans = [_changes(f"env/stack-{i:02d}", real_plan) for i in range(8)]
    plans += [StackPlan(f"env/quiet-{i}", "ok", None, "") for i in range(5)]
    shuffled = plans[:]
    random.Random(7).shuffle(shuffled)
    assert render(plans) == render(shuffled) == render(list(reversed(plans)))


# -- splitting --------------------------------------------------------------------------------------------

def test_split_at_stack_boundaries(real_plan: RealPlan) -> None:
    long_text = real_plan.text * 6  # about 10 kB of real plan text per stack
    names = [f"production/eu-central-1/04-applications/app-{i:03d}" for i in range(40)]
    plans = [_changes(n, real_plan, long_text) for n in names]
    plans += [StackPlan(f"staging/quiet-{i:03d}", "ok", None, "") for i in range(30)]
    comments = render(plans)
    assert len(comments) >= 4
    for n, comment in enumerate(comments, 1):
        assert len(comment) <= LIMIT
        assert comment.startswith(f"## strata plan (part {n} of {len(comments)})\n")
        _balanced(comment)
        assert "truncated" not in comment  # whole stacks moved, never cut
        for secret in SECRETS:
            assert secret not in comment
    everything = "\n".join(comments)
    for name in names:
        assert everything.count(f"### ⚠️ `{name}`") == 1
        assert everything.count(f"<summary>Plan output for {name}</summary>") == 1
        # the whole section (header .. </details>) sits in one comment
        holder = [c for c in comments if f"### ⚠️ `{name}`" in c]
        section = holder[0].split(f"### ⚠️ `{name}`")[1]
        assert section.split("</details>")[0].count("Plan: 5 to add, 0 to change, 2 to destroy.") == 6
    for i in range(30):
        assert everything.count(f"| `staging/quiet-{i:03d}` |") == 1
    assert comments[0].count("[!CAUTION]") == 1 and all("[!CAUTION]" not in c for c in comments[1:])


def test_giant_single_stack_truncated(real_plan: RealPlan) -> None:
    giant = f"first line {SECRET_VAR}\n" + real_plan.text * 150
    assert len(giant) > 2 * LIMIT
    [comment] = render([_changes("dev/giant", real_plan, giant)])
    assert len(comment) <= LIMIT
    assert "<summary>Plan output for dev/giant (truncated)</summary>" in comment
    assert re.search(r"Plan output truncated to fit the comment: \d+ of \d+ lines shown", comment)
    assert "**destroy** (1): `null_resource.gone[0]`" in comment and "null_resource.swap" in comment
    assert SECRET_VAR not in comment
    _balanced(comment)


# -- the redactor on its own --------------------------------------------------------------------------------

def test_redactor_forms_and_numbers() -> None:
    redact = Redactor({"a\"b-secret", 4242, "abc"})
    assert redact('x = "a\\"b-secret"') == f'x = "{REDACTED}"'
    assert redact("port = 4242, other = 142420") == f"port = {REDACTED}, other = 142420"
    assert redact("abc stays: too short to redact safely") == "abc stays: too short to redact safely"


def test_plan_text_with_backticks_keeps_fence_closed() -> None:
    [comment] = render([StackPlan("dev/x", "changes", {"resource_changes": []}, "```\ninner\n````\n")])
    assert "`````text\n```\ninner\n````\n`````" in comment


def test_each_source_of_sensitivity() -> None:
    """Masks (nested, lists, whole objects), outputs and sensitive variables are each enough on their own."""
    resource = {"resource_changes": [{"address": "x.y", "change": {
        "actions": ["update"], "before": {"a": ["keep-me", "list-secret"], "b": {"c": 12345}},
        "after": {"whole": {"k": "whole-secret"}}, "before_sensitive": {"a": [False, True], "b": {"c": True}},
        "after_sensitive": {"whole": True}}}]}
    assert sensitive_values(resource) == {"list-secret", 12345, "whole-secret"}
    output = {"output_changes": {"o": {"actions": ["create"], "before": None, "after": {"m": "out-secret"},
                                       "before_sensitive": False, "after_sensitive": True}}}
    assert sensitive_values(output) == {"out-secret"}
    variables = {"variables": {"v": {"value": "var-secret"}, "w": {"value": "plain-value"}},
                 "configuration": {"root_module": {"variables": {"v": {"sensitive": True}, "w": {}}}}}
    assert sensitive_values(variables) == {"var-secret"}
    planned = {"planned_values": {"outputs": {"p": {"sensitive": True, "value": "planned-secret"}},
                                  "root_module": {"child_modules": [{"resources": [
                                      {"values": {"z": "child-secret"}, "sensitive_values": {"z": True}}]}]}}}
    assert sensitive_values(planned) == {"planned-secret", "child-secret"}


# -- flavours, policy, next step, paths ---------------------------------------------------------------------

POLICY_FAILED = {"status": "failed", "reason": None, "failed": [
    {"id": "CKV_CUSTOM_1", "name": "Buckets are <never> public | ever", "resource": "null_resource.swap",
     "severity": "HIGH"},
    {"id": "CKV_2", "name": "Names use $team_prefix", "resource": "null_resource.attr", "severity": None}]}


def _flavoured(real_plan: RealPlan, flavour: str) -> str:
    [comment] = render([_changes("production/app", real_plan), StackPlan("dev/quiet", "ok", {}, "")],
                       flavour=flavour)
    return comment


@pytest.mark.parametrize("flavour", ["github", "gitlab", "azure"])
def test_each_flavour_renders_what_its_platform_renders(real_plan: RealPlan, flavour: str) -> None:
    comment = _flavoured(real_plan, flavour)
    # all three render tables, <details> and Unicode emoji (GitLab MR notes, Azure DevOps PR comments too)
    assert ("| Stack | Add | Change | Destroy | Replace | Policy | Why affected |\n"
            "|:--|--:|--:|--:|--:|:--|:--|") in comment
    assert "<details>" in comment and "| ⚠️ `production/app` |" in comment
    title = "**2 resources will be destroyed or replaced** — review before merging:"
    if flavour == "github":
        assert f"> [!CAUTION]\n> {title}\n>\n> - `production/app`" in comment
    else:
        # GitHub's alerts are GitHub's: Azure DevOps shows them as literal text
        assert "[!" not in comment
        assert f"> ⚠️ {title}\n>\n> - `production/app`" in comment
    _balanced(comment)


def test_flavours_differ_only_in_the_destroy_warning(real_plan: RealPlan) -> None:
    github, gitlab, azure = (_flavoured(real_plan, f) for f in ("github", "gitlab", "azure"))
    assert gitlab == azure
    assert github.replace("> [!CAUTION]\n> ", "> ⚠️ ") == gitlab
    with pytest.raises(ValueError, match="unknown summary flavour"):
        render([], flavour="bitbucket")


def test_policy_results_in_the_table_and_failed_checks_under_the_stack(real_plan: RealPlan) -> None:
    plans = [
        StackPlan("dev/a", "changes", real_plan.data, real_plan.text, policy=POLICY_FAILED),
        StackPlan("dev/b", "ok", {}, "", policy={"status": "passed", "failed": [], "reason": None}),
        StackPlan("dev/c", "ok", {}, "", policy={"status": "skipped", "failed": [], "reason": "legacy | stack"}),
        StackPlan("dev/d", "ok", {}, "", policy=None),
        StackPlan("dev/e", "ok", {}, "", policy={"status": "overridden", "failed": [], "reason": "INC-1 approved"}),
    ]
    [comment] = render(plans)
    rows = {line.split(" | ")[0]: line for line in comment.splitlines() if line.startswith("| ")}
    assert rows["| ⚠️ `dev/a`"].endswith("| ❌ 2 failed | — |")
    assert rows["| `dev/b`"].endswith("| ✅ passed | — |")
    assert rows["| `dev/c`"].endswith("| ⏭️ skipped: legacy \\| stack | — |")
    assert rows["| `dev/d`"].endswith("| — | — |")
    assert rows["| `dev/e`"].endswith("| ⚠️ overridden: INC-1 approved | — |")
    section = comment[comment.index("### ⚠️ `dev/a`"):]
    # visible (before the collapsed plan), escaped: no HTML tag, no table cell, no Azure DevOps math
    assert section.index("**Policy:** ❌ 2 failed") < section.index("<details>")
    assert ("- `CKV_CUSTOM_1` Buckets are \\<never\\> public \\| ever — `null_resource.swap` (HIGH)" in section)
    assert "- `CKV_2` Names use \\$team\\_prefix — `null_resource.attr`\n" in section
    assert "**Next step:** Fix the failed policy checks" in comment
    _balanced(comment)
    odd = [StackPlan("x", "ok", {}, "", policy={"status": "failed", "failed": 3}),
           StackPlan("y", "ok", {}, "", policy={"status": "new-kind", "failed": "abc", "reason": 5})]
    [comment] = render(odd)
    assert "| `x` | 0 | 0 | 0 | 0 | ❌ failed | — |" in comment and "| new-kind: 5 |" in comment


def test_next_step_names_the_environments_waiting_for_an_approval(real_plan: RealPlan) -> None:
    plans = [StackPlan("production/app", "changes", real_plan.data, real_plan.text, environment="production"),
             StackPlan("staging/app", "changes", real_plan.data, real_plan.text, environment="staging"),
             StackPlan("dev/app", "ok", {}, "", environment="dev")]
    [comment] = render(plans, commit="0123456789abcdef0123456789abcdef01234567", protected={"production", "dev"})
    assert comment.startswith("## strata plan\n\nCommit `0123456` · **3 stacks**")
    assert "**Next step:** Merge to apply. `production` waits for an approval.\n" in comment  # dev: no changes
    [failed] = render([*plans, StackPlan("dev/broken", "failed", None, "", "exit status 1")],
                      protected={"production"})
    assert "**Next step:** Fix the failed stack and push again." in failed and "Commit" not in failed
    [nothing] = render([StackPlan("dev/app", "ok", {}, "")])
    assert "**Next step:** Nothing to apply" in nothing


def test_machine_paths_and_why_are_shown_safely(real_plan: RealPlan) -> None:
    root = "/home/runner/work/infra/infra"
    text = (f"Error: reading {root}/dev/app/files/policy.json: denied\n"
            f"  on {root}/dev/app/main.tf line 3\nwrote /tmp/strata-x1/out.json\n")
    plans = [StackPlan("dev/app", "failed", None, text, f"see {root}/.strata/logs/1/app/terraform.log",
                       why="changed: main.tf; depends on affected dev/net"),
             StackPlan("dev/odd|name", "changes", real_plan.data, real_plan.text, why="<b>$x$</b> `tick`")]
    [comment] = render(plans, hide_paths={root: ".", "/tmp": "$TMPDIR", "/home/runner": "~"})
    assert root not in comment and "/tmp/" not in comment and "/home/runner" not in comment
    assert "reading ./dev/app/files/policy.json" in comment and "$TMPDIR/strata-x1/out.json" in comment
    assert "see ./.strata/logs/1/app/terraform.log" in comment
    assert "| ❌ `dev/app` | — | — | — | — | — | changed: main.tf; depends on affected dev/net |" in comment
    assert "| ⚠️ `dev/odd\\|name` | 5 | 0 | 2 | 1 | — | \\<b\\>\\$x\\$\\</b\\> \\`tick\\` |" in comment
    _balanced(comment)


def test_why_text_from_explain_reasons() -> None:
    reasons = ["changed: dev/app/main.tf", "changed: dev/app/variables.tf", "changed: dev/app/a.tf",
               "changed: dev/app/b.tf", "inherits changed strata.hcl: dev/strata.hcl",
               "depends on affected dev/net", "depends on affected dev/dns"]
    assert why_text("dev/app", reasons) == ("changed: main.tf, variables.tf, a.tf (+1 more); "
                                            "inherits changed strata.hcl: dev/strata.hcl; "
                                            "depends on affected dev/net, dev/dns")


# -- GitLab Terraform reports -------------------------------------------------------------------------------

def test_terraform_report_counts_as_gitlab_does(real_plan: RealPlan, tag_plan: RealPlan, tmp_path: Path) -> None:
    from strata.run import terraform_report

    # GitLab's recipe flattens the actions: a replacement is one create and one delete
    assert terraform_report.counts(real_plan.data) == {"create": 5, "update": 0, "delete": 2}
    assert terraform_report.counts(tag_plan.data) == {"create": 24, "update": 0, "delete": 24}
    written = terraform_report.write({"dev/us-east-1/app": real_plan.data, "": tag_plan.data}, tmp_path / "r")
    assert [p.name for p in written] == ["_root.json", "dev__us-east-1__app.json"]
    assert json.loads(written[1].read_text()) == {"create": 5, "delete": 2, "update": 0}
    for secret in SECRETS:  # counts only
        assert secret not in written[1].read_text()


def test_terraform_report_names_are_safe_and_distinct() -> None:
    from strata.run.terraform_report import file_name

    names = {s: file_name(s) for s in ("a/b", "a__b", "a b/c", "a_b/c", "../x", ".hidden", "x" * 300)}
    assert names["a/b"] == "a__b.json"
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.json", name) and len(name) < 255, name


def test_checks_a_skip_silenced_are_shown_with_their_reason(real_plan: RealPlan) -> None:
    # a pull request can add `skip "CKV_X" { reason = ... }` to strata.hcl: the reviewer sees what it silenced
    policy = {"status": "passed", "failed": [], "reason": None,
              "skipped": [{"id": "CKV2_CUSTOM_1", "name": "no gold tier", "resource": "null_resource.x",
                           "severity": None, "reason": "ok"}]}
    (comment,) = render([StackPlan("dev/a", "changes", real_plan.data, real_plan.text, policy=policy)])
    assert "✅ passed, 1 skipped" in comment
    assert "skipped `CKV2_CUSTOM_1` no gold tier — `null_resource.x`: ok" in comment
