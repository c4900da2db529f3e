"""``apply --plan``: a saved plan whose policy check failed is applied only with ``--override-policy REASON``.

Each override is recorded: in the run report (the stack's policy status ``overridden`` with the reason) and in
an append-only audit file, ``.strata/audit/policy-overrides.jsonl``, one JSON object a line: when, who (the
local user and the CI platform's actor), the stack, the plan's sha256, the checks that failed and the reason.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

from strata.atomic import SECRET, private_dir
from strata.config.limits import one_line
from strata.errors import StrataError
from strata.policy.check import BLOCKING, ERROR, OVERRIDDEN

AUDIT_FILE = Path(".strata") / "audit" / "policy-overrides.jsonl"
MAX_REASON = 1000
# who started the CI job, per platform: GitHub Actions, GitLab CI, Azure DevOps
CI_ACTORS = ("GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_REQUESTEDFOREMAIL", "BUILD_REQUESTEDFOR")


def check_reason(reason: str) -> str:
    """An override's reason, as recorded: one line, not empty, at most 1,000 characters."""
    text = one_line(reason)
    if not text:
        raise ValueError("give a reason: why plans that did not pass their policy check may be applied anyway")
    if len(text) > MAX_REASON:
        raise ValueError(f"the reason is {len(text)} characters long; keep it to {MAX_REASON}")
    return text


def admit(root: Path, stack: str, meta: dict[str, Any], *, required: bool, override: str | None, run_id: str,
          plan_sha256: str | None) -> dict[str, Any] | None:
    """The policy record to report for a saved plan about to be applied; raises when it may not be applied.

    ``required``: the repository checks every plan (``policy { enabled = true }``), so a plan without a record
    (made before the block, or by a strata without policy checks) is refused too.
    """
    record = meta.get("policy")
    if record is None:
        if required:
            raise StrataError(f"the saved plan of {stack or '.'} was not checked by the policy (policy {{ enabled = "
                              "true }} in strata.hcl): plan again with `strata plan --out`")
        return None
    if not isinstance(record, dict) or record.get("status") not in ("passed", "failed", "skipped", "error"):
        raise StrataError(f"the policy record of the saved plan of {stack or '.'} is unreadable: plan again")
    if record["status"] not in BLOCKING:
        return record
    failed = [str(f.get("id")) for f in record.get("failed") or [] if isinstance(f, dict)]
    what = (f"failed {len(failed)} check(s): {', '.join(sorted(set(failed))[:10])}" if record["status"] != ERROR
            else f"could not be checked ({record.get('reason') or 'error'})")
    if override is None:
        raise StrataError(f"the saved plan of {stack or '.'} {what}; fix them and plan again, or apply anyway "
                          "with --override-policy \"REASON\" (recorded)")
    record_override(root, {"stack": stack, "plan_sha256": plan_sha256, "policy_status": record["status"],
                           "checks": sorted(set(failed)), "reason": override, "run": run_id})
    return {**record, "status": OVERRIDDEN, "reason": override}


def who() -> dict[str, str | None]:
    """The local user and, in CI, the platform's actor."""
    try:
        user: str | None = os.environ.get("USER") or os.environ.get("LOGNAME") or getpass.getuser()
    except (KeyError, OSError):
        user = None
    actor = next((f"{name}={os.environ[name]}" for name in CI_ACTORS if os.environ.get(name)), None)
    return {"user": user, "ci_actor": actor}


def record_override(root: Path, entry: dict[str, Any]) -> None:
    """Append one override to the audit file (one write of one line, O_APPEND, flushed to disk)."""
    path = root / AUDIT_FILE
    private_dir(path.parent, repository=root)
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **who(), **entry}
    data = (json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, SECRET)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
