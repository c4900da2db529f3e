"""checkov, run as a program: found, called on one plan JSON, its report read.

strata never imports checkov: checkov pins many libraries (boto3, pydantic, networkx...) and its bc-python-hcl2
installs the module ``hcl2`` over the python-hcl2 strata parses with, so it lives in its own environment (pipx, a
venv) and strata runs its executable. Found from STRATA_CHECKOV, else on PATH, else in ~/.strata-checkov (where
the generated pipelines put it).

It runs offline (``--skip-download``: no plan, code or check id leaves the machine; offline, checkov's built-in
checks carry no severity) and writes its JSON report to a file, not to stdout, where a custom Python check's own
``print`` would break the JSON: ``--output json --output junitxml --output-file-path JSON,XML``, checkov's
documented way to send each format to its own file (with one format and one folder it prints the report to
stdout as well, resource values included). A report that cannot be read, an exit code other
than 0 (passed) or 1 (failed checks), or an error checkov only logs (a custom check it could not load, a YAML
policy it skipped) make the check an error: never a pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.config.limits import one_line
from strata.config.policy import SEVERITIES
from strata.errors import StrataError

MIN_VERSION = (3, 2)
# where strata looks last: the venv the generated pipelines install checkov into (strata.ci.generate)
DEFAULT_VENV_CHECKOV = "~/.strata-checkov/bin/checkov"
REPORT = "checkov-report.json"  # --output-file-path writes the JSON report here, in the check's folder
INSTALL = ("install it in its own environment, so that its dependencies cannot clash with strata's: "
           "`pipx install 'checkov>=3.2'`, or `python3 -m venv ~/.venvs/checkov && ~/.venvs/checkov/bin/pip install "
           "'checkov>=3.2'` and `export STRATA_CHECKOV=~/.venvs/checkov/bin/checkov`")
# What checkov logs instead of failing: a custom check it could not load, a YAML policy it ignored, a crash.
_LOGGED_ERROR = re.compile(r"\[ERROR\]|Traceback \(most recent call last\)|is missing required fields|"
                           r"Cannot load|Failed to load")
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ \[[^]]*\] \[[A-Z]+\]\s*")
_SYNONYMS = {"MODERATE": "MEDIUM", "IMPORTANT": "HIGH"}  # checkov's own aliases


class CheckovMissing(StrataError):
    """checkov is not installed where strata looks for it."""


class ReportError(ValueError):
    """checkov's report is not what checkov writes: the check failed to run."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One failed check on one resource."""

    id: str
    name: str
    resource: str
    severity: str | None  # None: the check has none (checkov's built-in checks, offline)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "resource": self.resource, "severity": self.severity}


@dataclass(slots=True)
class Report:
    """What one checkov run found in one plan."""

    failed: list[Finding] = field(default_factory=list)
    passed: int = 0
    version: str | None = None


def locate() -> str:
    """The checkov executable: STRATA_CHECKOV (a path or a command name), else ``checkov`` on PATH, else
    ``~/.strata-checkov/bin/checkov``, where the generated pipelines install it."""
    configured = os.environ.get("STRATA_CHECKOV", "").strip()
    if configured:
        found = shutil.which(os.path.expanduser(configured))
        if found is None:
            raise CheckovMissing(f"STRATA_CHECKOV={configured!r} is not an executable checkov; {INSTALL}")
        return found
    found = shutil.which("checkov") or shutil.which(os.path.expanduser(DEFAULT_VENV_CHECKOV))
    if found is None:
        raise CheckovMissing(f"policy checks need checkov, which is not on PATH (and STRATA_CHECKOV is not set); "
                             f"{INSTALL}")
    return found


def argv(checkov: str, plan_json: Path, folder: Path, checks_dir: Path | None) -> list[str]:
    """checkov on one plan JSON: built-in checks, plus the repository's own when it has a folder of them; its
    reports go to ``folder``."""
    reports = f"{folder / REPORT},{folder / 'checkov-report.xml'}"
    args = [checkov, "--file", str(plan_json), "--framework", "terraform_plan", "--output", "json",
            "--output", "junitxml", "--output-file-path", reports, "--skip-download"]
    if checks_dir is not None:
        args += ["--external-checks-dir", str(checks_dir)]
    return args


def environment(base: dict[str, str]) -> dict[str, str]:
    """checkov's environment: no TF_VAR_* (secrets it has no use for); its log level fixed at WARNING, so that
    the errors it only logs are seen and a LOG_LEVEL=DEBUG of the user's does not print resource values."""
    from strata.run.engine import STRATA_SECRETS  # the plan bundles' key, the comment tokens: not checkov's

    env = {k: v for k, v in base.items() if not k.startswith("TF_VAR_") and k not in STRATA_SECRETS}
    env.update({"LOG_LEVEL": "WARNING", "BC_SKIP_MAPPING": "TRUE"})
    return env


def logged_errors(output: str) -> list[str]:
    """The errors checkov logged instead of failing (without their timestamps)."""
    return [one_line(_LOG_PREFIX.sub("", line)) for line in output.splitlines() if _LOGGED_ERROR.search(line)]


def read_report(folder: Path) -> Report:
    """checkov's JSON report: one framework's object, a list of them, or the bare summary it writes when no
    check applied to any resource."""
    path = folder / REPORT
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("checkov wrote no report") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"checkov's report is not JSON ({exc})") from None
    parts = document if isinstance(document, list) else [document]
    report = Report()
    for part in parts:
        if not isinstance(part, dict):
            raise ReportError("checkov's report is not a JSON object")
        summary = part.get("summary", part)
        if not isinstance(summary, dict) or not isinstance(summary.get("passed"), int):
            raise ReportError("checkov's report has no summary")
        if summary.get("parsing_errors"):
            raise ReportError(f"checkov could not parse the plan JSON ({summary['parsing_errors']} parsing errors)")
        report.version = str(summary.get("checkov_version") or report.version or "") or None
        results = part.get("results", {"failed_checks": [], "passed_checks": []}) if "summary" in part else {}
        if not isinstance(results, dict) or not isinstance(results.get("failed_checks", []), list):
            raise ReportError("checkov's report has no list of failed checks")
        report.passed += summary["passed"]
        report.failed += [_finding(item) for item in results.get("failed_checks", [])]
        if len(results.get("failed_checks", [])) != summary.get("failed", 0):
            raise ReportError("checkov's report lists another number of failed checks than its summary counts")
    report.failed.sort(key=lambda f: (f.id, f.resource))
    return report


def _finding(item: Any) -> Finding:
    if not isinstance(item, dict) or not isinstance(item.get("check_id"), str):
        raise ReportError("a failed check in checkov's report has no check_id")
    severity = item.get("severity")
    if isinstance(severity, dict):  # some versions write the Severity object
        severity = severity.get("name")
    severity = _SYNONYMS.get(str(severity).upper(), str(severity).upper()) if severity else None
    resource = item.get("resource_address") or item.get("resource") or "?"
    return Finding(one_line(item["check_id"]), one_line(str(item.get("check_name") or "")), one_line(str(resource)),
                   severity if severity in SEVERITIES else None)  # NONE, OFF, anything else: no severity


def too_old(version: str | None) -> bool:
    """Whether ``version`` (checkov's own, from its report) is older than the one strata's parsing knows."""
    found = re.match(r"(\d+)\.(\d+)", version or "")
    return found is not None and (int(found[1]), int(found[2])) < MIN_VERSION
