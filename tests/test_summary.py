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
from strata.run.summary import LIMIT, REDACTED, Redactor, StackPlan, render, sensitive_values

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


def test_counts_addresses_and_destructive_first(real_plan: RealPlan) -> None:
    [comment] = render([_changes("dev/b-app", real_plan), StackPlan("dev/a-quiet", "ok", None, "No changes."),
                        StackPlan("dev/c-skip", "skipped", None, "", "dependency failed")])
    # terraform's own count agrees: replacements count as add and destroy
    assert "Plan: 5 to add, 0 to change, 2 to destroy." in real_plan.text
    assert "**5 to add, 0 to change, 2 to destroy**" in comment
    assert "### ⚠️ `dev/b-app`: 5 to add, 0 to change, 2 to destroy" in comment
    warning = comment.index("[!CAUTION]")
    destroy = comment.index("- **destroy** `null_resource.gone[0]` in `dev/b-app`")
    replace = comment.index("- **replace** `null_resource.swap` in `dev/b-app`")
    section = comment.index("### ⚠️ `dev/b-app`")
    assert warning < destroy < section and warning < replace < section
    assert comment.index("**Destroy** (1):") < comment.index("**Replace** (1):") < comment.index("**Create** (4):")
    creates = comment[comment.index("**Create** (4):"):comment.index("<details>")]
    assert re.findall(r"`(null_resource\.\w+)`", creates) == [
        "null_resource.attr", "null_resource.attr_copy", "null_resource.leaky", "null_resource.token_copy"]
    assert "null_resource.keep" not in comment.split("<details>")[0]  # no-op resources are not listed
    assert "<details>\n<summary>Plan output for dev/b-app</summary>" in comment
    assert "### No changes\n\n- `dev/a-quiet`" in comment
    assert "### Skipped\n\n- `dev/c-skip (dependency failed)`" in comment
    assert "**3 stacks**: 1 with changes, 1 without changes, 1 skipped" in comment
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
        assert everything.count(f"- `staging/quiet-{i:03d}`") == 1
    assert comments[0].count("[!CAUTION]") == 1 and all("[!CAUTION]" not in c for c in comments[1:])


def test_giant_single_stack_truncated(real_plan: RealPlan) -> None:
    giant = f"first line {SECRET_VAR}\n" + real_plan.text * 150
    assert len(giant) > 2 * LIMIT
    [comment] = render([_changes("dev/giant", real_plan, giant)])
    assert len(comment) <= LIMIT
    assert "<summary>Plan output for dev/giant (truncated)</summary>" in comment
    assert re.search(r"Plan output truncated to fit the comment: \d+ of \d+ lines shown", comment)
    assert "**Destroy** (1):" in comment and "null_resource.swap" in comment
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
