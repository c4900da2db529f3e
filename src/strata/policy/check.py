"""One stack's policy check: its saved plan as JSON, checkov on it, the repository's threshold and skips.

The result of a stack is one of:

- ``passed``: no finding at or above the threshold (findings below it are listed, not failing);
- ``failed``: findings at or above the threshold, each with its check id, name, resource and severity;
- ``skipped``: a ``skip "*"`` rule leaves the stack unchecked (its reason is kept);
- ``error``: the check could not run (terraform show, checkov crashed, an unreadable report, a custom check
  checkov could not load). An error is a failure: never counted as a pass;
- ``overridden``: (at apply) a failed check applied anyway with ``--override-policy REASON``.

Nothing it keeps holds a value of the plan: only check ids and names, resource addresses and severities, each
redacted with the run's secrets and the plan's own sensitive values. The plan JSON (every value in clear) lives
in a private temporary folder for the time checkov reads it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from strata.atomic import SECRET
from strata.config.policy import PolicySettings
from strata.policy import checkov
from strata.run.redact import Redactor, Secrets
from strata.terraform import commands as tf
from strata.terraform.process import ProcessGroup, run

PASSED, FAILED, SKIPPED, ERROR, OVERRIDDEN = "passed", "failed", "skipped", "error", "overridden"
BLOCKING = frozenset({FAILED, ERROR})  # what apply refuses without --override-policy
_LOG_LINES = 200  # of checkov's own output, kept in the stack's policy.log


@dataclass(frozen=True, slots=True)
class PolicyRun:
    """How this run checks plans: the repository's settings and the checkov found."""

    settings: PolicySettings
    checkov: str
    checks_dir: Path | None  # the repository's own checks (absolute), if any


@dataclass(slots=True)
class PolicyResult:
    status: str
    failed: list[checkov.Finding] = field(default_factory=list)
    below_threshold: list[checkov.Finding] = field(default_factory=list)  # reported, not failing
    skipped: list[tuple[checkov.Finding, str]] = field(default_factory=list)  # (finding, the skip's reason)
    passed: int = 0
    reason: str | None = None  # why skipped / what went wrong / the override's reason
    threshold: str = "LOW"
    checkov_version: str | None = None
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The record kept with the saved plan and put in the run report (docs/schemas/run-report)."""
        return {"status": self.status, "failed": [f.to_json() for f in self.failed],
                "below_threshold": [f.to_json() for f in self.below_threshold],
                "skipped": [{**f.to_json(), "reason": why} for f, why in self.skipped],
                "passed": self.passed, "reason": self.reason, "threshold": self.threshold,
                "checkov_version": self.checkov_version, "duration": round(self.duration, 3)}


def summary_of(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The shape the PR summary reads (StackPlan.policy): status, failed checks, reason."""
    if not isinstance(record, dict):
        return None
    return {"status": record.get("status"), "failed": list(record.get("failed") or []),
            "reason": record.get("reason")}


def check_plan(policy: PolicyRun, stack: str, plan_file: Path, cwd: Path, env: dict[str, str], terraform: str,
               group: ProcessGroup, secrets: Secrets, log: IO[str], work_dir: Path) -> PolicyResult:
    """Check one saved plan; every problem is a result (``error``), never an exception."""
    started = time.monotonic()
    settings = policy.settings
    rule = settings.stack_skipped(stack)
    if rule is not None:
        log.write(f"strata: policy: not checked ({rule.source}): {rule.reason}\n")
        return PolicyResult(SKIPPED, reason=rule.reason, threshold=settings.severity)
    folder = Path(tempfile.mkdtemp(prefix="policy-", dir=work_dir))  # 0700: the plan JSON holds every value
    try:
        result = _check(policy, stack, plan_file, cwd, env, terraform, group, secrets, log, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result.threshold = settings.severity
    result.duration = time.monotonic() - started
    log.write(f"strata: policy: {result.status}" + (f" ({result.reason})" if result.reason else "") + "\n")
    return result


def _check(policy: PolicyRun, stack: str, plan_file: Path, cwd: Path, env: dict[str, str], terraform: str,
           group: ProcessGroup, secrets: Secrets, log: IO[str], folder: Path) -> PolicyResult:
    from strata.run.summary import sensitive_values

    shown = run(tf.show_plan(terraform, str(plan_file)), cwd, env, group, io.StringIO())  # never logged: values
    log.write(f"$ {' '.join(tf.show_plan(terraform, str(plan_file)))}\n")
    if group.interrupted:
        return PolicyResult(ERROR, reason="interrupted before the policy check")
    plan_json = _plan_json(shown.output) if shown.exit_code == 0 else None
    if not isinstance(plan_json, dict):
        why = tf.first_error(shown.output, stack) if shown.exit_code else "it printed no JSON"
        return PolicyResult(ERROR, reason=secrets.redact(f"terraform show -json failed: {why}"))
    redact = Redactor(secrets.values | sensitive_values(plan_json))
    plan_path = folder / "plan.json"
    fd = os.open(plan_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(shown.output)
    printed = io.StringIO()  # checkov's own output: a custom check may print resource values
    done = run(checkov.argv(policy.checkov, plan_path, folder, policy.checks_dir), folder,
               checkov.environment(os.environ.copy()), group, printed)
    lines = printed.getvalue().splitlines()
    for line in lines[:1] + lines[1:][-_LOG_LINES:]:
        log.write(redact(line) + "\n")
    if done.interrupted or group.interrupted:
        return PolicyResult(ERROR, reason="interrupted during the policy check")
    problems = checkov.logged_errors(done.output)
    if done.exit_code not in (0, 1):
        what = "could not start" if done.exit_code == 127 else f"exited with code {done.exit_code}"
        return PolicyResult(ERROR, reason=redact(f"checkov {what}" + (f": {problems[0]}" if problems else "")
                                                 + f" (see the stack's policy.log; checkov: {policy.checkov})"))
    if problems:
        return PolicyResult(ERROR, reason=redact(f"checkov reported an error: {problems[0]} (see the stack's "
                                                 "policy.log)"))
    try:
        report = checkov.read_report(folder)
    except checkov.ReportError as exc:
        return PolicyResult(ERROR, reason=redact(f"{exc} (checkov exited with {done.exit_code}; "
                                                 "see the stack's policy.log)"))
    if checkov.too_old(report.version):
        return PolicyResult(ERROR, reason=f"checkov {report.version} is older than 3.2; {checkov.INSTALL}")
    if done.exit_code == 1 and not report.failed:
        return PolicyResult(ERROR, reason="checkov failed without reporting a failed check (see the stack's "
                                          "policy.log)")
    return _judge(policy.settings, stack, report, redact)


def _plan_json(output: str) -> Any:
    """The plan JSON in what ``terraform show -json`` printed: its one line starting with ``{`` (a warning terraform
    writes to stderr, such as an unreadable CLI configuration, arrives on other lines)."""
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _judge(settings: PolicySettings, stack: str, report: checkov.Report, redact: Redactor) -> PolicyResult:
    result = PolicyResult(PASSED, passed=report.passed, checkov_version=report.version)
    for found in report.failed:
        finding = checkov.Finding(redact(found.id), redact(found.name), redact(found.resource), found.severity)
        rule = settings.skip_for(found.id, stack)
        if rule is not None:
            result.skipped.append((finding, rule.reason))
        elif settings.fails(found.severity):
            result.failed.append(finding)
        else:
            result.below_threshold.append(finding)
    if result.failed:
        result.status = FAILED
    return result


def prepare(root: Path, settings: PolicySettings) -> PolicyRun:
    """This run's policy checks: checkov found, the repository's folder of checks usable. Raises before anything
    is planned when checkov is missing or a folder of Python checks would be silently ignored."""
    from strata.errors import ConfigError

    executable = checkov.locate()
    if settings.directory is None:
        return PolicyRun(settings, executable, None)
    folder = root / settings.directory
    where = settings.sources.get("directory", settings.source)
    if not folder.is_dir():
        raise ConfigError(f"the policy directory {settings.directory!r} does not exist", where)
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        python = sorted(f for f in files if f.endswith(".py") and f != "__init__.py")
        if python and "__init__.py" not in files:
            shown = os.path.relpath(os.path.join(current, python[0]), root)
            raise ConfigError(f"{shown} is a Python check in a folder without __init__.py: checkov would load none "
                              f"of its checks; add an empty {os.path.relpath(current, root)}/__init__.py", where)
    return PolicyRun(settings, executable, folder)
