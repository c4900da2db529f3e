"""The end of a run (strata.run.report): exit code rules, the summary table, the JSON report.

Unit tests on RunReport values, then one real run (Terraform 1.11, offline mirror) whose --json
report and summary are checked as a user would read them.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, write_tree
from strata.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from strata.output import FORMAT_VERSION, send_json_to
from strata.run import report as reporting
from strata.run.engine import RunReport, StackResult

STARTED = calendar.timegm((2026, 3, 4, 5, 6, 7, 0, 0, 0)) + 0.25


def make_report(*results: StackResult, interrupted: bool = False, command: str = "plan") -> RunReport:
    return RunReport(command, STARTED, 12.34567, list(results), ".strata/logs/run-1", interrupted)


def result(path: str, status: str, **kw: Any) -> StackResult:
    return StackResult(path, status, kw.pop("duration", 1.0), **kw)


# -- exit codes --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("statuses", "interrupted", "detailed", "expected"), [
    ([], False, False, EXIT_OK),
    ([], False, True, EXIT_OK),
    (["ok", "ok"], False, True, EXIT_OK),
    (["ok", "changes"], False, False, EXIT_OK),
    (["ok", "changes"], False, True, EXIT_CHANGES),
    (["ok", "skipped"], False, True, EXIT_OK),
    (["changes", "failed", "skipped"], False, True, EXIT_ERROR),
    (["failed"], False, False, EXIT_ERROR),
    (["changes", "failed", "interrupted"], False, True, EXIT_INTERRUPTED),
    (["ok", "skipped"], True, True, EXIT_INTERRUPTED),  # the run was interrupted, even if no stack reports it
    (["failed", "changes"], True, False, EXIT_INTERRUPTED),
])
def test_exit_code_rules(statuses: list[str], interrupted: bool, detailed: bool, expected: int) -> None:
    report = make_report(*(result(f"s{i}", s) for i, s in enumerate(statuses)), interrupted=interrupted)
    assert reporting.exit_code(report, detailed) == expected


def test_exit_code_values() -> None:
    assert (EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_INTERRUPTED) == (0, 1, 2, 130)


# -- summary table -----------------------------------------------------------------------------------

def test_summary_table_columns_and_cells() -> None:
    report = make_report(
        result("prod/01-foundation", "changes", duration=3.21, add=2, change=0, destroy=1),
        result("prod/02-platform", "failed", duration=0.04, detail="Invalid reference"),
        result("prod/03-databases", "skipped", duration=0.0, detail="prod/02-platform failed"),
        result("", "ok", duration=10.0, add=0, change=0, destroy=0),
    )
    lines = reporting.summary_table(report).splitlines()
    assert lines[0].split() == ["STACK", "STATUS", "TIME", "ADD", "CHANGE", "DESTROY", "DETAIL"]
    assert lines[1].split() == ["prod/01-foundation", "changes", "3.2s", "2", "0", "1"]
    assert lines[2].split() == ["prod/02-platform", "failed", "0.0s", "-", "-", "-", "Invalid", "reference"]
    assert lines[3].split() == ["prod/03-databases", "skipped", "0.0s", "-", "-", "-", "prod/02-platform", "failed"]
    assert lines[4].split() == [".", "ok", "10.0s", "0", "0", "0"]  # the root stack shows as "."
    # columns are aligned: every cell starts where its header starts
    for header in ("STATUS", "TIME", "ADD", "CHANGE", "DESTROY", "DETAIL"):
        column = lines[0].index(header)
        assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:5]
                   if len(line) > column), header
    assert lines[2].index("Invalid reference") == lines[0].index("DETAIL")
    assert all(line == line.rstrip() for line in lines)


def test_summary_table_of_no_stacks_is_the_header() -> None:
    assert reporting.summary_table(make_report()).split() == [
        "STACK", "STATUS", "TIME", "ADD", "CHANGE", "DESTROY", "DETAIL"]


def test_print_summary(capsys: pytest.CaptureFixture[str]) -> None:
    report = make_report(result("a", "ok"), result("b", "failed"), result("c", "skipped"), result("d", "ok"))
    reporting.print_summary(report)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("STACK")
    assert lines[-1] == "plan: 2 ok, 1 failed, 1 skipped in 12.3s; logs in .strata/logs/run-1"


def test_print_summary_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    reporting.print_summary(make_report(command="apply"))
    assert capsys.readouterr().out.splitlines()[-1].startswith("apply: nothing to do in ")


# -- JSON report -------------------------------------------------------------------------------------

def test_to_json_shape() -> None:
    report = make_report(
        result("prod/app", "changes", duration=1.23456, add=1, change=2, destroy=3,
               log=".strata/logs/run-1/prod__app/terraform.log", mocked=["db"],
               plan_file=".strata/plans/prod/app/plan.tfplan"),
        result("prod/db", "skipped", duration=0, detail="prod/net failed"),
        interrupted=False)
    data = reporting.to_json(report, 2)
    assert list(data) == ["command", "started", "duration", "exit_code", "interrupted", "counts", "log_dir",
                          "stacks"]
    assert data["command"] == "plan"
    assert data["started"] == "2026-03-04T05:06:07Z"
    assert data["duration"] == 12.346
    assert data["exit_code"] == 2
    assert data["interrupted"] is False
    assert data["counts"] == {"changes": 1, "skipped": 1}
    assert data["log_dir"] == ".strata/logs/run-1"
    assert data["stacks"] == [
        {"path": "prod/app", "status": "changes", "duration": 1.235, "detail": "", "add": 1, "change": 2,
         "destroy": 3, "log": ".strata/logs/run-1/prod__app/terraform.log", "mocked_dependencies": ["db"],
         "plan_file": ".strata/plans/prod/app/plan.tfplan", "errored_state": None, "policy": None},
        {"path": "prod/db", "status": "skipped", "duration": 0, "detail": "prod/net failed", "add": None,
         "change": None, "destroy": None, "log": "", "mocked_dependencies": [], "plan_file": None,
         "errored_state": None, "policy": None},
    ]
    assert json.loads(json.dumps(data)) == data


def test_the_json_report_file_creates_folders_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "deep" / "run.json"
    report = make_report(result("a", "ok"), interrupted=True)
    send_json_to(str(path))
    try:
        reporting.print_report(report, 130)
    finally:
        send_json_to(None)
    data = json.loads(path.read_text())
    assert data["format_version"] == FORMAT_VERSION and next(iter(data)) == "format_version"
    assert path.stat().st_mode & 0o777 == 0o600, "a report can name secrets' stacks and logs: the owner's only"
    assert data["exit_code"] == 130 and data["interrupted"] is True
    assert data["stacks"][0]["path"] == "a"
    assert path.read_text().endswith("\n")


def test_counts() -> None:
    report = make_report(result("a", "ok"), result("b", "ok"), result("c", "interrupted"))
    assert report.counts() == {"ok": 2, "interrupted": 1}


# -- a real run --------------------------------------------------------------------------------------

@pytest.mark.terraform
def test_the_json_report_and_summary_of_a_real_run(strata: Any, tf_111: str, provider_mirror: dict[str, str],
                                                   tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "dev/01-network/strata.hcl": "stack {}\n",
        "dev/01-network/main.tf": 'resource "null_resource" "a" {}\nresource "null_resource" "b" {}\n',
        "dev/02-broken/strata.hcl": 'stack {}\ndependencies = ["../01-network"]\n',
        "dev/02-broken/main.tf": 'output "x" {\n  value = null_resource.missing.id\n}\n',
        "dev/03-app/strata.hcl": 'stack {}\ndependencies = ["../02-broken"]\n',
        "dev/03-app/main.tf": 'resource "null_resource" "c" {}\n',
        "dev/04-other/strata.hcl": "stack {}\n",
        "dev/04-other/main.tf": "",
    })
    env = {**provider_mirror, "HOME": str(home), "STRATA_TERRAFORM": tf_111}
    before = time.time()
    run: Result = strata("plan", "--detailed-exitcode", "-q", "--json", "out/report.json", cwd=root, env=env)
    assert run.code == 1, run.output
    data = json.loads((root / "out" / "report.json").read_text())
    assert data["command"] == "plan" and data["exit_code"] == 1 and data["interrupted"] is False
    assert data["counts"] == {"changes": 1, "failed": 1, "skipped": 1, "ok": 1}
    stacks = {s["path"]: s for s in data["stacks"]}
    assert list(stacks) == ["dev/01-network", "dev/02-broken", "dev/03-app", "dev/04-other"]
    assert stacks["dev/01-network"]["status"] == "changes"
    assert (stacks["dev/01-network"]["add"], stacks["dev/01-network"]["change"],
            stacks["dev/01-network"]["destroy"]) == (2, 0, 0)
    assert stacks["dev/02-broken"]["status"] == "failed"
    assert "undeclared resource" in stacks["dev/02-broken"]["detail"]
    assert stacks["dev/03-app"]["status"] == "skipped" and "dev/02-broken" in stacks["dev/03-app"]["detail"]
    assert stacks["dev/04-other"]["status"] == "ok"
    assert (stacks["dev/04-other"]["add"], stacks["dev/04-other"]["destroy"]) == (0, 0)
    for path in ("dev/01-network", "dev/02-broken", "dev/04-other"):
        log = root / stacks[path]["log"]
        assert log.is_file() and log.read_text().startswith("$ "), path
    assert (root / data["log_dir"]).is_dir()
    started = calendar.timegm(time.strptime(data["started"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before - 2 <= started <= time.time() + 1
    assert 0 < data["duration"] < 300
    summary = [line.split() for line in run.stdout.splitlines()  # table rows, not "dev/x: strata: ..." lines
               if line.startswith("dev/") and not re.match(r"^\S+: ", line)]
    assert [row[:2] for row in summary] == [["dev/01-network", "changes"], ["dev/02-broken", "failed"],
                                            ["dev/03-app", "skipped"], ["dev/04-other", "ok"]]
    assert summary[0][3:6] == ["2", "0", "0"]
    assert "plan: 1 ok, 1 changes, 1 failed, 1 skipped in " in run.stdout
