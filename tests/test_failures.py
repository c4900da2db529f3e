"""Failures say why (issue 11): a failed stack's DETAIL is terraform's first error with its file:line, how many
more there are, and the stack's log, with real terraform (init, plan and apply errors)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.terraform.commands import errors, first_error

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]


def failed_detail(result: Result, stack: str) -> str:
    row = re.search(rf"^{re.escape(stack)}\s+failed\s+\S+\s+\S+\s+\S+\s+\S+\s+(.*)$", result.output, re.M)
    assert row, result.output
    return row[1]


@pytest.mark.parametrize(("code", "expected"), [
    ('resourc "null_resource" "x" {}\n',
     'dev/r/app/main.tf:1: Unsupported block type: Blocks of type "resourc" are not expected here. Did you mean '
     '"resource"?'),
    ('resource "null_resource" "x" {\n  triggers = { a = var.nope }\n}\n',
     "dev/r/app/main.tf:2: Reference to undeclared input variable"),
    ('resource "null_resource" "x" {\n  triggers = { a = var.nope }\n}\noutput "o" {\n  value = local.missing\n}\n',
     "(and 1 more error(s))"),
    ('resource "null_resource" "x" {\n  provisioner "local-exec" {\n    command = "exit 3"\n  }\n}\n',
     "dev/r/app/main.tf:2: local-exec provisioner error: Error running command 'exit 3': exit status 3."),
])
def test_the_detail_is_terraforms_first_error_at_its_file_and_line(
        strata: Strata, tmp_path: Path, provider_mirror: dict[str, str], tf_111: str, code: str,
        expected: str) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/app/strata.hcl": "stack {}\n",
        "dev/r/app/main.tf": code,
    })
    result = strata("apply", "--yes", "-q", cwd=root, env={**provider_mirror, "STRATA_TERRAFORM": tf_111})
    assert result.code == 1, result.output
    detail = failed_detail(result, "dev/r/app")
    assert expected in detail, detail
    assert "Terraform encountered problems" not in detail
    assert re.search(r"; log: \.strata/logs/\S+/dev__r__app/terraform\.log$", detail), detail


def test_errors_reads_wrapped_summaries_boxes_and_colours() -> None:
    output = ("\x1b[31m╷\x1b[0m\n\x1b[31m│\x1b[0m \x1b[1m\x1b[31mError: \x1b[0m\x1b[0m\x1b[1mInvalid value for input "
              "variable\x1b[0m\n│ \n│   on main.tf line 7, in module \"vpc\":\n│    7:   cidr = 42\n│ \n"
              "│ The given value is not suitable.\n╵\n")
    [found] = errors(output)
    assert (found.summary, found.file, found.line) == ("Invalid value for input variable", "main.tf", 7)
    assert found.detail == "The given value is not suitable."
    assert first_error("no diagnostics here\nlast words\n") == "last words"
    assert first_error("") == "terraform failed"
