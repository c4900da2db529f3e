"""The end of a run: a summary table, a JSON report, and the exit code."""

from __future__ import annotations

import time
from typing import Any

from strata.errors import EXIT_CHANGES, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_POLICY
from strata.output import err, out, print_json, table
from strata.run.engine import RunReport


def summary_table(report: RunReport) -> str:
    rows = []
    for r in report.results:
        counts = ["-" if n is None else str(n) for n in (r.add, r.change, r.destroy)]
        detail = f"{r.detail}; log: {r.log}" if r.status == "failed" and r.log else r.detail
        rows.append([r.path or ".", r.status, f"{r.duration:.1f}s", *counts, detail])
    return table(["STACK", "STATUS", "TIME", "ADD", "CHANGE", "DESTROY", "DETAIL"], rows)


def print_summary(report: RunReport, *, to_stderr: bool = False) -> None:
    """The table, the policy results (if checked) and the closing line; on stderr when stdout carries
    terraform's own output (one stack)."""
    from strata.policy.report import lines as policy_lines

    write = err if to_stderr else out
    write(summary_table(report))
    for line in policy_lines([(r.path, r.policy) for r in report.results if r.policy is not None]):
        write(line)
    counts = report.counts()
    parts = [f"{counts[s]} {s}" for s in ("ok", "changes", "failed", "skipped", "interrupted") if s in counts]
    write(f"{report.command}: {', '.join(parts) or 'nothing to do'} in {report.duration:.1f}s; "
          f"logs in {report.log_dir}")


def to_json(report: RunReport, exit_code: int) -> dict[str, Any]:
    return {
        "command": report.command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(report.started)),
        "duration": round(report.duration, 3),
        "exit_code": exit_code,
        "interrupted": report.interrupted,
        "counts": report.counts(),
        "log_dir": report.log_dir,
        "stacks": [r.to_json() for r in report.results],
    }


def print_report(report: RunReport, exit_code: int) -> None:
    """The run report where --json said: stdout or FILE (docs/schemas/run-report.schema.json)."""
    print_json(to_json(report, exit_code))


def exit_code(report: RunReport, detailed: bool) -> int:
    """130 interrupted; 1 any stack failed; 3 a policy check failed or could not run; 2 changes (with
    --detailed-exitcode); else 0."""
    statuses = {r.status for r in report.results}
    if report.interrupted or "interrupted" in statuses:
        return EXIT_INTERRUPTED
    if "failed" in statuses:
        return EXIT_ERROR
    if any(r.policy is not None and r.policy.get("status") in ("failed", "error") for r in report.results):
        return EXIT_POLICY
    if detailed and "changes" in statuses:
        return EXIT_CHANGES
    return EXIT_OK
