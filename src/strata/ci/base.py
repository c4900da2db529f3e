"""The commit a CI job compares with for ``--changed``, read from the platform's environment.

Pull/merge request: the merge-base of ``HEAD`` with the target branch (GitHub ``pull_request.base`` of the event
payload; GitLab ``CI_MERGE_REQUEST_DIFF_BASE_SHA``, else ``CI_MERGE_REQUEST_TARGET_BRANCH_NAME``; Azure DevOps
``SYSTEM_PULLREQUEST_TARGETBRANCH``). Push: the branch's previous head (GitHub ``before``, GitLab
``CI_COMMIT_BEFORE_SHA``). Azure DevOps tells a pipeline no previous head: when ``HEAD`` is a merge commit (a
pull request completed with a merge, Azure's default) its first parent is the branch's previous head, and so
is a squash commit's parent when its subject is Azure's own ``Merged PR <id>: ...``; any other push (a rebase,
a direct push, which may hold several commits) runs every stack.

No base (an empty answer, every stack runs) when there is none: a new branch (all zeros), a force push (the
previous head is not an ancestor of ``HEAD``), a commit this clone does not have (shallow) — each with a
note on stderr saying why and, when the clone lacks history, what to fetch. A full run is never wrong; a base
that misses commits would be.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from strata.ci import platform as api
from strata.ci.platform import Platform
from strata.errors import StrataError

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ZEROS = re.compile(r"0{40}|0{64}")
FETCH_HINT = ("fetch the history first: `git fetch --no-tags origin {branch}` in a full clone (GitHub actions/checkout "
              "`fetch-depth: 0`, GitLab `GIT_DEPTH: 0`, Azure DevOps `fetchDepth: 0`)")


@dataclass(frozen=True)
class Base:
    """The commit to compare with (``""``: run every stack) and why, for stderr."""

    commit: str
    note: str = ""


def _git(cwd: Path, *args: str) -> tuple[int, str]:
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StrataError("`strata ci base` needs git, and no `git` command was found on PATH") from None
    return proc.returncode, proc.stdout.strip()


def _commit(cwd: Path, ref: str) -> str | None:
    code, sha = _git(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    return sha if code == 0 and sha else None


def _shallow(cwd: Path) -> bool:
    return _git(cwd, "rev-parse", "--is-shallow-repository")[1] == "true"


def _head(cwd: Path) -> str:
    head = _commit(cwd, "HEAD")
    if head is None:
        raise StrataError(f"{cwd} is not inside a git repository with a commit checked out; `strata ci base` runs "
                          "in the job's checkout")
    return head


def merge_base(cwd: Path, branch: str, candidates: list[str]) -> Base:
    """The merge-base of HEAD with the first of ``candidates`` (refs or SHAs of the target ``branch``) found."""
    head = _head(cwd)
    for ref in candidates:
        if not ref or ref.startswith("-"):
            continue
        commit = _commit(cwd, ref)
        if commit is None:
            continue
        code, found = _git(cwd, "merge-base", head, commit)
        if code == 0 and found:
            return Base(found)
        why = "this shallow clone lacks the history between them" if _shallow(cwd) else "they share no history"
        return Base("", f"no merge-base of HEAD and {branch} ({ref}): {why}; every stack runs. To compare, "
                        + FETCH_HINT.format(branch=branch))
    looked = ", ".join(c for c in candidates if c)
    return Base("", f"the target branch {branch} is not in this clone (looked for {looked}); every stack runs. To "
                    "compare, " + FETCH_HINT.format(branch=branch))


def previous_head(cwd: Path, before: str, variable: str) -> Base:
    """``before`` (the branch's head before this push) when it is an ancestor of HEAD, else no base."""
    head = _head(cwd)
    before = before.strip().lower()
    if not before or _ZEROS.fullmatch(before):
        return Base("", f"no previous commit ({variable} is {'empty' if not before else 'all zeros'}: a new branch, "
                        "or a pipeline not started by a push); every stack runs")
    if not _SHA.fullmatch(before):
        return Base("", f"{variable}={before[:80]!r} is not a commit id; every stack runs")
    if _commit(cwd, before) is None:
        if _shallow(cwd):
            return Base("", f"the previous commit {before[:12]} ({variable}) is not in this shallow clone; every "
                            "stack runs. To compare, " + FETCH_HINT.format(branch="<branch>"))
        return Base("", f"the previous commit {before[:12]} ({variable}) is not in this clone: a force push "
                        "replaced it; every stack runs")
    if _git(cwd, "merge-base", "--is-ancestor", before, head)[0] != 0:
        return Base("", f"the previous commit {before[:12]} ({variable}) is not an ancestor of HEAD: a force push; "
                        "every stack runs")
    return Base(before)


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


def _candidates(branch: str, *extra: str) -> list[str]:
    return [f"refs/remotes/origin/{branch}", f"refs/heads/{branch}", *extra]


def find(platform: Platform, cwd: Path, env: Mapping[str, str] | None = None) -> Base:
    """The base of the current CI job on ``platform``, run in the checkout at ``cwd``."""
    environ = os.environ if env is None else env
    if platform == "github":
        return _github(cwd, environ)
    if platform == "gitlab":
        return _gitlab(cwd, environ)
    return _azure(cwd, environ)


def _github(cwd: Path, env: Mapping[str, str]) -> Base:
    event = api.github_event(env)
    pull = event.get("pull_request")
    if isinstance(pull, dict):
        base = pull.get("base")
        if not isinstance(base, dict):
            base = {}
        ref, sha = str(base.get("ref") or ""), str(base.get("sha") or "")
        if not ref and not sha:
            raise StrataError("the GitHub event's pull_request has no base (ref, sha): is GITHUB_EVENT_PATH the "
                              "event of this job?")
        return merge_base(cwd, ref or sha, _candidates(ref, sha) if ref else [sha])
    queued = event.get("merge_group")
    if isinstance(queued, dict) and queued.get("base_sha"):  # a merge queue builds on the target's tip
        branch = _branch(str(queued.get("base_ref") or "the target branch"))
        return merge_base(cwd, branch, [str(queued["base_sha"])])
    if "before" in event:
        pushed = previous_head(cwd, str(event.get("before") or ""), "the push event's before")
        applied = _github_last_success(cwd, env)
        if applied is not None and applied.commit and pushed.commit and \
                _git(cwd, "merge-base", "--is-ancestor", applied.commit, pushed.commit)[0] == 0:
            return applied  # older than the push's own before: the runs in between never completed
        return pushed
    name = env.get("GITHUB_EVENT_NAME", "unknown")
    return Base("", f"the GitHub event {name!r} names no previous commit; every stack runs")


def _github_last_success(cwd: Path, env: Mapping[str, str]) -> Base | None:
    """The commit of this workflow's last successful run on the branch, when it is an ancestor of HEAD.

    GitHub keeps one pending run per concurrency group and cancels the one it replaces: with pushes A (applied),
    B (its run waiting, then cancelled by C's) and C, C's ``before`` is B and B's changes would never be applied.
    Comparing with the last run that succeeded covers every commit since. None when it cannot be asked (no
    GITHUB_TOKEN, an old runner without GITHUB_WORKFLOW_REF, the API refusing): the push's ``before`` then."""
    token, repo = env.get("GITHUB_TOKEN", "").strip(), env.get("GITHUB_REPOSITORY", "").strip()
    workflow_ref, branch = env.get("GITHUB_WORKFLOW_REF", "").strip(), env.get("GITHUB_REF_NAME", "").strip()
    path = workflow_ref.split("@", 1)[0]
    prefix = f"{repo}/"
    if not token or not repo or not branch or not path.startswith(prefix):
        return None
    workflow = path[len(prefix):].rsplit("/", 1)[-1]
    url = api.with_query(f"{env.get('GITHUB_API_URL', 'https://api.github.com').rstrip('/')}/repos/{repo}/actions/"
                         f"workflows/{workflow}/runs", branch=branch, status="success", per_page="1")
    try:
        answer = api.request("GET", url, headers={"Authorization": f"Bearer {token}",
                                                  "Accept": "application/vnd.github+json"})
    except StrataError:
        return None
    runs = answer.get("workflow_runs") if isinstance(answer, dict) else None
    if not isinstance(runs, list) or not runs or not isinstance(runs[0], dict):
        return None
    sha = str(runs[0].get("head_sha") or "").lower()
    if not _SHA.fullmatch(sha) or _commit(cwd, sha) is None:
        return None
    if _git(cwd, "merge-base", "--is-ancestor", sha, _head(cwd))[0] != 0:
        return None
    return Base(sha, f"comparing with {sha[:12]}, the commit of the last successful run of {workflow} on {branch} "
                     "(runs after it did not complete)")


def _gitlab(cwd: Path, env: Mapping[str, str]) -> Base:
    if env.get("CI_MERGE_REQUEST_IID", "").strip():
        branch = env.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "").strip()
        diff_base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", "").strip()
        if not branch and not diff_base:
            raise StrataError("a merge request pipeline without CI_MERGE_REQUEST_TARGET_BRANCH_NAME or "
                              "CI_MERGE_REQUEST_DIFF_BASE_SHA: cannot tell the target branch")
        return merge_base(cwd, branch or diff_base, [diff_base, *(_candidates(branch) if branch else [])])
    return previous_head(cwd, env.get("CI_COMMIT_BEFORE_SHA", ""), "CI_COMMIT_BEFORE_SHA")


def _azure(cwd: Path, env: Mapping[str, str]) -> Base:
    target = env.get("SYSTEM_PULLREQUEST_TARGETBRANCH", "").strip()
    if env.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "").strip() or target:
        if not target:
            raise StrataError("a pull request build without SYSTEM_PULLREQUEST_TARGETBRANCH: cannot tell the "
                              "target branch")
        branch = _branch(target)
        return merge_base(cwd, branch, _candidates(branch))
    head = _head(cwd)
    code, parents = _git(cwd, "rev-list", "--parents", "-n", "1", head)
    listed = parents.split()[1:] if code == 0 else []
    if len(listed) >= 2:
        return Base(listed[0])  # a completed pull request's merge commit: its first parent is the previous head
    subject = _git(cwd, "log", "-1", "--format=%s", head)[1]
    if len(listed) == 1 and re.match(r"Merged PR [0-9]+: ", subject):
        return Base(listed[0])  # a pull request completed with a squash: one commit, Azure's own message
    return Base("", "Azure DevOps does not tell a pipeline the branch's previous commit, and HEAD is neither a "
                    "merge commit nor a squash of a pull request (a rebase or a direct push may hold several "
                    "commits); every stack runs")
