"""The plan summary as ONE pull/merge-request comment, updated in place on every push.

``post(first, platform, key)`` reads ``SUMMARY.md`` and its further parts (``SUMMARY-2.md``, ... as
``strata plan --summary-md`` writes them), and makes the request's strata comments match them: part *n* is the
comment whose body starts with the hidden marker ``<!-- strata:plan key=KEY part=n -->``. An existing part is
updated (left alone when unchanged), a missing one is created, and parts beyond the new count are deleted.
``KEY`` (default ``plan``) keeps two workflows' comments apart.

Only strata's own comments are ever touched: the marker AND the author must match the token's identity
(GitHub: ``GET /user``, or ``github-actions[bot]`` for the Actions token, which cannot read it; GitLab:
``GET /user``; Azure DevOps: ``_apis/connectionData``; ``STRATA_COMMENT_AUTHOR`` overrides all three). Someone
else's comment that quotes the marker is left as it is.

One class per platform, each with the same four operations: list, create, update, delete.
GitHub: issue comments. GitLab: merge-request notes. Azure DevOps: one pull-request thread per part, its first
comment updated in place; a stale part's comment is deleted (the thread shows as deleted); the thread also
carries the marker as its property ``strata.plan``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from strata.ci import platform as api
from strata.ci.platform import ApiError, Platform, require
from strata.errors import StrataError, UsageError
from strata.output import err, out

DEFAULT_KEY = "plan"
KEY = re.compile(r"[A-Za-z0-9._-]{1,64}")
MARKER = re.compile(r"\A<!-- strata:plan key=([A-Za-z0-9._-]{1,64}) part=([1-9][0-9]{0,3}) -->\r?\n")
MAX_PARTS = 30  # more comments than this is no longer a summary anyone reads
_PARTS = re.compile(r"\(part 1 of ([0-9]{1,6})\)\s*$")  # the title of the first of several parts
MAX_FILE = 8 * 1024 * 1024
# The longest comment body each platform takes, in characters (GitHub 65,536; GitLab 1,000,000; Azure DevOps'
# limit is not documented: 150,000 stays below what it accepts).
LIMITS: dict[Platform, int] = {"github": 65536, "gitlab": 1_000_000, "azure-devops": 150_000}
GITHUB_ACTIONS_BOT = "github-actions[bot]"
ACTIONS_SETS = "GitHub Actions sets it in every job; run this in a GitHub Actions job"
GITLAB_SETS = "GitLab CI sets it in every job; run this in a GitLab CI job"
AZURE_SETS = "Azure Pipelines sets it in every job; run this in an Azure Pipelines job"


def marker(key: str, part: int) -> str:
    """The hidden first line of part ``part`` of the comment ``key``."""
    return f"<!-- strata:plan key={key} part={part} -->\n"


@dataclass(frozen=True)
class Comment:
    """One comment on the request: its id on the platform, its body, whether the token's identity wrote it."""

    id: str
    body: str
    mine: bool
    url: str = ""


class Request(Protocol):
    """A pull/merge request's comments on one platform."""

    name: str  # e.g. "pull request #12", for messages
    token_hint: str  # what to check when the token is refused

    def comments(self) -> list[Comment]: ...

    def create(self, body: str) -> Comment: ...

    def update(self, comment: Comment, body: str) -> None: ...

    def delete(self, comment: Comment) -> None: ...


# -- reading the summary -----------------------------------------------------------------------------------


def read_parts(first: Path) -> list[str]:
    """SUMMARY.md and, when its title says "(part 1 of N)" as ``strata plan --summary-md`` writes it, SUMMARY-2.md
    to SUMMARY-N.md. A further part file is left from an earlier, longer summary: ignored, with a note."""
    texts = [_read(first)]
    said = _PARTS.search(texts[0].split("\n", 1)[0])
    count = int(said[1]) if said else 1
    if count > MAX_PARTS:
        raise StrataError(f"{first} says the summary has {count} parts, more than the {MAX_PARTS} comments strata "
                          "posts; plan fewer stacks per job (a selection, or `strata ci matrix`)")
    for n in range(2, count + 1):
        path = _part(first, n)
        if not path.is_file():
            raise StrataError(f"{path} is missing: {first.name} says the summary has {count} parts; keep every "
                              f"part `strata plan --summary-md {first.name}` wrote (e.g. in the job's artifacts)")
        texts.append(_read(path))
    if _part(first, count + 1).is_file():
        err(f"strata ci comment: ignoring {_part(first, count + 1)} and later parts: {first.name} says the summary "
            f"has {count} part{'s' if count > 1 else ''}, so they are left from an earlier summary")
    return texts


def _part(first: Path, n: int) -> Path:
    return first.with_name(f"{first.stem}-{n}{first.suffix}")


def _read(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise StrataError(f"{path} is {size // (1024 * 1024)} MiB: too long for pull-request comments "
                              f"(at most {MAX_FILE // (1024 * 1024)} MiB)")
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist: write it first with `strata plan --summary-md {path}`") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not the summary file") from None
    except OSError as exc:
        raise StrataError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise StrataError(f"{path} is not UTF-8 text; is it the file `strata plan --summary-md` wrote?") from None
    if not text.strip():
        raise StrataError(f"{path} is empty: nothing to post (did `strata plan --summary-md` fail?)")
    return text


def fit(text: str, room: int) -> list[str]:
    """``text`` in pieces of at most ``room`` characters, cut at a blank line (else a line end); a ``` fence
    open at a cut is closed there and reopened in the next piece."""
    pieces: list[str] = []
    reserve = 8  # for closing and reopening a fence
    while len(text) > room:
        budget = room - reserve
        cut = text.rfind("\n\n", 0, budget)
        if cut < budget // 2:
            cut = text.rfind("\n", 0, budget)
        if cut < budget // 2:
            cut = budget
        head, text = text[:cut], text[cut:].lstrip("\n")
        if sum(1 for line in head.splitlines() if line.lstrip().startswith("```")) % 2:
            head, text = head + "\n```", "```\n" + text
        pieces.append(head.rstrip("\n") + "\n")
    pieces.append(text)
    return pieces


# -- the platforms -----------------------------------------------------------------------------------------


def _override(env: Mapping[str, str]) -> str | None:
    return env.get("STRATA_COMMENT_AUTHOR", "").strip() or None


class GitHubPullRequest:
    """Issue comments of a GitHub pull request (``GITHUB_API_URL``, ``GITHUB_REPOSITORY``, the event's PR)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        token = require("GITHUB_TOKEN", "strata posts the comment with it: give the step `env: GITHUB_TOKEN: "
                        "${{ github.token }}` and the job `permissions: pull-requests: write`", env)
        self.api = require("GITHUB_API_URL", ACTIONS_SETS, env).rstrip("/")
        repo = require("GITHUB_REPOSITORY", ACTIONS_SETS, env)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
            raise StrataError(f"GITHUB_REPOSITORY={repo!r} is not OWNER/NAME")
        number = _github_pull_request(env)
        self.name = f"pull request #{number}"
        self.token_hint = "check GITHUB_TOKEN and that the job has `permissions: pull-requests: write`"
        self.repo = repo
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": "2022-11-28"}
        self.listing = f"{self.api}/repos/{repo}/issues/{number}/comments"
        self.author = _override(env) or self._identity()

    def _identity(self) -> str:
        try:
            user = api.request("GET", f"{self.api}/user", headers=self.headers)
        except ApiError as exc:
            if exc.status in (403, 404):  # the Actions token (an app installation) cannot read /user
                return GITHUB_ACTIONS_BOT
            raise _token_hint(exc, self.token_hint) from None
        login = user.get("login") if isinstance(user, dict) else None
        return login if isinstance(login, str) and login else GITHUB_ACTIONS_BOT

    def _comment(self, data: Any) -> Comment:
        ident = _id(data, "GitHub answered a comment", "GITHUB_API_URL")
        login = _field(data, "user", "login")
        return Comment(ident, _text(data, "body"), login.lower() == self.author.lower(), _text(data, "html_url"))

    def comments(self) -> list[Comment]:
        pages = api.paginate(api.with_query(self.listing, per_page="100"), headers=self.headers)
        return [self._comment(c) for c in pages]

    def create(self, body: str) -> Comment:
        return self._comment(api.request("POST", self.listing, headers=self.headers, json_body={"body": body}))

    def update(self, comment: Comment, body: str) -> None:
        api.request("PATCH", f"{self.api}/repos/{self.repo}/issues/comments/{comment.id}", headers=self.headers,
                    json_body={"body": body})

    def delete(self, comment: Comment) -> None:
        api.send("DELETE", f"{self.api}/repos/{self.repo}/issues/comments/{comment.id}", headers=self.headers)


def _github_pull_request(env: Mapping[str, str]) -> int:
    event = api.github_event(env)
    pull = event.get("pull_request")
    issue = event.get("issue")
    number: Any = None
    if isinstance(pull, dict):
        number = pull.get("number", event.get("number"))
    elif isinstance(issue, dict) and issue.get("pull_request"):  # issue_comment on a pull request
        number = issue.get("number")
    if isinstance(number, int) and not isinstance(number, bool) and number > 0:
        return number
    name = env.get("GITHUB_EVENT_NAME", "unknown")
    raise StrataError(f"not a pull request: the GitHub event {name!r} (GITHUB_EVENT_NAME) has no pull request "
                      "number; run `strata ci comment` in a job started by `on: pull_request`")


class GitLabMergeRequest:
    """Notes of a GitLab merge request (``CI_API_V4_URL``, ``CI_PROJECT_ID``, ``CI_MERGE_REQUEST_IID``)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        token = require("STRATA_GITLAB_TOKEN", "strata posts the note with it: a project access token with the "
                        "api scope, as a masked CI/CD variable", env)
        self.api = require("CI_API_V4_URL", GITLAB_SETS, env).rstrip("/")
        project = require("CI_PROJECT_ID", GITLAB_SETS, env)
        iid = env.get("CI_MERGE_REQUEST_IID", "").strip()
        if not iid.isdigit():
            raise StrataError("not a merge request pipeline: CI_MERGE_REQUEST_IID is not set; run `strata ci "
                              "comment` in a job with `rules: - if: $CI_PIPELINE_SOURCE == \"merge_request_event\"`")
        self.name = f"merge request !{iid}"
        self.token_hint = "check STRATA_GITLAB_TOKEN (a project access token with the api scope)"
        self.headers = {"PRIVATE-TOKEN": token}
        self.listing = f"{self.api}/projects/{urllib.parse.quote(project, safe='')}/merge_requests/{iid}/notes"
        override = _override(env)
        self.author_id: object = None
        self.author_name = override
        if override is None:
            try:
                user = api.request("GET", f"{self.api}/user", headers=self.headers)
            except ApiError as exc:
                raise _token_hint(exc, self.token_hint) from None
            if not isinstance(user, dict) or "id" not in user:
                raise ApiError("GitLab's GET /user answered no user id; is CI_API_V4_URL right?")
            self.author_id = user["id"]

    def _comment(self, data: Any) -> Comment:
        ident = _id(data, "GitLab answered a note", "CI_API_V4_URL")
        author = data.get("author") if isinstance(data.get("author"), dict) else {}
        if self.author_name is not None:
            mine = _field(data, "author", "username").lower() == self.author_name.lower()
        else:
            mine = author.get("id") == self.author_id
        return Comment(ident, _text(data, "body"), mine and not data.get("system"))

    def comments(self) -> list[Comment]:
        url = api.with_query(self.listing, per_page="100", sort="asc", order_by="created_at")
        return [self._comment(n) for n in api.paginate(url, headers=self.headers)]

    def create(self, body: str) -> Comment:
        return self._comment(api.request("POST", self.listing, headers=self.headers, json_body={"body": body}))

    def update(self, comment: Comment, body: str) -> None:
        api.request("PUT", f"{self.listing}/{comment.id}", headers=self.headers, json_body={"body": body})

    def delete(self, comment: Comment) -> None:
        api.send("DELETE", f"{self.listing}/{comment.id}", headers=self.headers)


AZURE_API_VERSION = "7.1"
PROPERTY = "strata.plan"  # a thread property naming the part too: "key=plan part=1"


class AzurePullRequest:
    """Threads of an Azure DevOps pull request: one thread per part, its first comment being the part."""

    def __init__(self, env: Mapping[str, str]) -> None:
        token = require("SYSTEM_ACCESSTOKEN", "strata posts the comment with it: map it into the step "
                        "(`env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`) and let the build service contribute to "
                        "pull requests", env)
        collection = require("SYSTEM_COLLECTIONURI", AZURE_SETS, env).rstrip("/")
        project = require("SYSTEM_TEAMPROJECT", AZURE_SETS, env)
        repo = require("BUILD_REPOSITORY_ID", AZURE_SETS, env)
        pull = env.get("SYSTEM_PULLREQUEST_PULLREQUESTID", "").strip()
        if not pull.isdigit():
            raise StrataError("not a pull request build: SYSTEM_PULLREQUEST_PULLREQUESTID is not set; run `strata "
                              "ci comment` in a build started by a pull request (branch policy build validation)")
        self.name = f"pull request {pull}"
        self.token_hint = ("check SYSTEM_ACCESSTOKEN and that the project's build service may contribute to pull "
                           "requests (Project settings > Repositories > Security)")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.threads = (f"{collection}/{urllib.parse.quote(project, safe='')}/_apis/git/repositories/"
                        f"{urllib.parse.quote(repo, safe='')}/pullRequests/{pull}/threads")
        self.override = _override(env)
        self.author_id = None
        if self.override is None:
            try:
                data = api.request("GET", f"{collection}/_apis/connectionData", headers=self.headers)
            except ApiError as exc:
                raise _token_hint(exc, self.token_hint) from None
            user = data.get("authenticatedUser") if isinstance(data, dict) else None
            if not isinstance(user, dict) or not user.get("id"):
                raise ApiError("Azure DevOps' connectionData names no authenticated user; is SYSTEM_COLLECTIONURI "
                               "right?")
            self.author_id = user["id"]

    def _url(self, path: str = "") -> str:
        return api.with_query(self.threads + path, **{"api-version": AZURE_API_VERSION})

    def _mine(self, author: Any) -> bool:
        if not isinstance(author, dict):
            return False
        if self.override is not None:
            names = {str(author.get(k, "")).lower() for k in ("id", "uniqueName", "displayName")}
            return self.override.lower() in names
        return bool(author.get("id")) and author.get("id") == self.author_id

    def _first(self, thread: Any) -> Comment | None:
        what, where = "Azure DevOps answered a thread", "SYSTEM_COLLECTIONURI"
        ident = _id(thread, what, where)
        comments = thread.get("comments")
        if thread.get("isDeleted") or not isinstance(comments, list):
            return None
        roots = [c for c in comments if isinstance(c, dict) and not c.get("isDeleted")
                 and c.get("parentCommentId", 0) in (0, None)]
        if not roots:
            return None
        root = min(roots, key=lambda c: int(_id(c, what, where)))
        content = _text(root, "content")
        if not MARKER.match(content):  # the thread's property says which part, should the content lose the marker
            properties = thread.get("properties")
            entry = properties.get(PROPERTY) if isinstance(properties, dict) else None
            said = entry if isinstance(entry, str) else _text(entry, "$value") if isinstance(entry, dict) else ""
            if found := re.fullmatch(r"key=([A-Za-z0-9._-]{1,64}) part=([1-9][0-9]{0,3})", said):
                content = marker(found[1], int(found[2])) + content
        return Comment(f"{ident}/{_id(root, what, where)}", content, self._mine(root.get("author")))

    def comments(self) -> list[Comment]:
        return [c for t in api.paginate(self._url(), headers=self.headers, items="value") if (c := self._first(t))]

    def create(self, body: str) -> Comment:
        # status active: the thread is shown open like a reviewer's; resolving it does not hide later updates
        said = MARKER.match(body)
        properties = {PROPERTY: {"$type": "System.String", "$value": f"key={said[1]} part={said[2]}"}} if said else {}
        thread = api.request("POST", self._url(), headers=self.headers, json_body={
            "comments": [{"parentCommentId": 0, "content": body, "commentType": 1}], "status": 1,
            "properties": properties})
        created = self._first(thread)
        if created is None:
            raise ApiError("Azure DevOps answered a new thread without its comment; is SYSTEM_COLLECTIONURI right?")
        return created

    def update(self, comment: Comment, body: str) -> None:
        thread, number = comment.id.split("/")
        api.request("PATCH", self._url(f"/{thread}/comments/{number}"), headers=self.headers,
                    json_body={"content": body})

    def delete(self, comment: Comment) -> None:
        thread, number = comment.id.split("/")
        api.send("DELETE", self._url(f"/{thread}/comments/{number}"), headers=self.headers)


def _id(data: Any, what: str, variable: str) -> str:
    """The positive integer id of an object the API answered (it goes into URLs: nothing else is accepted)."""
    ident = data.get("id") if isinstance(data, dict) else None
    if isinstance(ident, int) and not isinstance(ident, bool) and ident > 0:
        return str(ident)
    raise ApiError(f"{what} without a numeric id ({str(data)[:100]!r}); is {variable} right?")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _field(data: dict[str, Any], outer: str, key: str) -> str:
    inner = data.get(outer)
    return _text(inner, key) if isinstance(inner, dict) else ""


def _token_hint(exc: ApiError, hint: str) -> ApiError:
    if exc.status in (203, 401, 403) and hint not in exc.message:  # 203: Azure DevOps' sign-in page
        return ApiError(f"{exc.message}; {hint}", status=exc.status)
    return exc


def open_request(platform: Platform, env: Mapping[str, str] | None = None) -> Request:
    """The current pull/merge request on ``platform``, from the CI environment."""
    environ = os.environ if env is None else env
    if platform == "github":
        return GitHubPullRequest(environ)
    if platform == "gitlab":
        return GitLabMergeRequest(environ)
    return AzurePullRequest(environ)


# -- making the comments match the summary --------------------------------------------------------------------


def post(first: Path, platform: Platform, key: str = DEFAULT_KEY, env: Mapping[str, str] | None = None) -> None:
    """Make the request's strata comments for ``key`` the parts of the summary ``first``."""
    if not KEY.fullmatch(key):
        raise UsageError(f"--key {key!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    room = LIMITS[platform] - len(marker(key, MAX_PARTS))
    bodies = [piece for text in read_parts(first) for piece in fit(text, room)]
    if len(bodies) > MAX_PARTS:
        raise StrataError(f"the summary needs {len(bodies)} comments, more than the {MAX_PARTS} strata posts; "
                          "plan fewer stacks per job (a selection, or `strata ci matrix`)")
    try:
        request = open_request(platform, env)
    except ApiError as exc:
        raise ApiError(f"{api.NAMES[platform]}: {exc.message}", status=exc.status) from None
    try:
        _sync(request, bodies, key)
    except ApiError as exc:
        exc = _token_hint(exc, request.token_hint)
        raise ApiError(f"{api.NAMES[platform]} {request.name}: {exc.message}", status=exc.status) from None


def _sync(request: Request, bodies: list[str], key: str) -> None:
    existing: dict[int, Comment] = {}
    duplicates: list[Comment] = []
    for comment in request.comments():
        found = MARKER.match(comment.body)
        if not comment.mine or found is None or found[1] != key:
            continue  # not strata's, or another key's: never touched
        part = int(found[2])
        if part in existing:
            duplicates.append(comment)  # two jobs raced to create it: keep the first
        else:
            existing[part] = comment
    total = len(bodies)
    for part, text in enumerate(bodies, start=1):
        body = marker(key, part) + text
        where = f"part {part} of {total}" if total > 1 else "the comment"
        if part not in existing:
            created = request.create(body)
            out(f"{request.name}: created {where}" + (f": {created.url}" if created.url else ""))
        elif existing[part].body.replace("\r\n", "\n") == body.replace("\r\n", "\n"):
            out(f"{request.name}: {where} unchanged" + (f": {existing[part].url}" if existing[part].url else ""))
        else:
            request.update(existing[part], body)
            out(f"{request.name}: updated {where}" + (f": {existing[part].url}" if existing[part].url else ""))
    for part in sorted(p for p in existing if p > total):
        request.delete(existing[part])
        out(f"{request.name}: deleted part {part}, no longer needed")
    for comment in duplicates:
        request.delete(comment)
        out(f"{request.name}: deleted a duplicate of a part")
