"""The commit a reviewer recognises: the pull request's head commit, not the merge commit CI checks out.

GitHub Actions runs a pull request on a merge commit (``GITHUB_SHA``); the head is in the event payload
(``pull_request.head.sha`` in the file ``GITHUB_EVENT_PATH`` names). GitLab's merged-results pipelines name it
``CI_MERGE_REQUEST_SOURCE_BRANCH_SHA`` (else ``CI_COMMIT_SHA`` is the head), Azure DevOps
``SYSTEM_PULLREQUEST_SOURCECOMMITID`` (else ``BUILD_SOURCEVERSION``). Outside CI: ``git rev-parse HEAD``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _github_head(event_path: str | None) -> str | None:
    if not event_path:
        return None
    try:
        with open(event_path, encoding="utf-8") as handle:
            event = json.load(handle)
    except (OSError, ValueError):
        return None  # no payload (or not JSON): GITHUB_SHA then
    pull = event.get("pull_request") if isinstance(event, dict) else None
    head = pull.get("head") if isinstance(pull, dict) else None
    sha = head.get("sha") if isinstance(head, dict) else None
    return sha if isinstance(sha, str) else None


def reviewed_commit(root: Path, env: Mapping[str, str] | None = None) -> str | None:
    """The full SHA of the commit under review, or None when neither CI nor git can tell."""
    env = os.environ if env is None else env
    candidates: list[str | None] = []
    if env.get("GITHUB_ACTIONS") == "true":
        candidates += [_github_head(env.get("GITHUB_EVENT_PATH")), env.get("GITHUB_SHA")]
    if env.get("GITLAB_CI"):
        candidates += [env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_SHA"), env.get("CI_COMMIT_SHA")]
    if env.get("TF_BUILD"):
        candidates += [env.get("SYSTEM_PULLREQUEST_SOURCECOMMITID"), env.get("BUILD_SOURCEVERSION")]
    for candidate in candidates:
        if candidate and _SHA.fullmatch(candidate.strip().lower()):
            return candidate.strip().lower()
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
                              capture_output=True, text=True, check=False)
    except OSError:
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and _SHA.fullmatch(sha) else None
