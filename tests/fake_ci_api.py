"""A fake CI platform API on 127.0.0.1: GitHub issue comments, GitLab merge-request notes, Azure DevOps pull-request
threads, kept in memory, every request recorded.

Nothing here is a mock of strata: the real CLI talks HTTP to this server exactly as it would to the platform
(the platforms have no emulator, so the endpoints strata uses are served from their documented shapes).

Use the ``fake_ci_api`` fixture (registered by conftest.py); ``server.github_env(tmp_path)``,
``server.gitlab_env()`` and ``server.azure_env()`` give the environment of a pull/merge request job pointing at
it. ``server.requests`` lists every request (method, path, query, headers, body); ``server.route(method,
path_regex, handler)`` adds an endpoint (or overrides one: the latest route that matches wins), e.g. to answer
500, garbage or an artifact download::

    server.route("POST", r"/repos/.*/comments", lambda request, match: Reply(500, b"oops"))
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

GITHUB_TOKEN = "ghs_fake_actions_token"
GITHUB_BOT = "github-actions[bot]"
GITLAB_TOKEN = "glpat-fake-project-token"
GITLAB_BOT = {"id": 901, "username": "project_12_bot"}
AZURE_TOKEN = "fake-system-access-token"
AZURE_BOT = {"id": "7c0f0c6e-0000-4000-8000-buildservice", "uniqueName": "Build\\Project Build Service",
             "displayName": "Project Build Service (org)"}
REPO = "acme/infra"
PULL = 7
GITLAB_PROJECT = "12"
AZURE_PROJECT = "Infra Project"
AZURE_REPO = "3f1e0000-0000-4000-8000-000000000001"


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # names lower-case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """What a route answers: a status, a body (bytes as they are, anything else as JSON) and headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Recorded, "re.Match[str]"], Reply]

# what each platform answers to a refused token and to an unknown comment
UNAUTHORIZED = {"github": Reply(401, {"message": "Bad credentials"}),
                "gitlab": Reply(401, {"message": "401 Unauthorized"}), "azure-devops": Reply(401, b"")}
NOT_FOUND = {"github": Reply(404, {"message": "Not Found"}), "gitlab": Reply(404, {"message": "404 Not found"}),
             "azure-devops": Reply(404, {"message": "The comment does not exist."})}


class FakeCiApi:
    """The server and its in-memory comments. Thread-safe: handlers run under one lock."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.lock = threading.Lock()
        self.ids = itertools.count(1001)
        # GitHub: token -> login; tokens of GitHub apps (the Actions token) cannot read GET /user
        self.github_tokens = {GITHUB_TOKEN: GITHUB_BOT}
        self.github_app_tokens = {GITHUB_TOKEN}
        self.github_comments: list[dict[str, Any]] = []  # each with "_issue": (repo, number)
        self.gitlab_tokens: dict[str, dict[str, Any]] = {GITLAB_TOKEN: dict(GITLAB_BOT)}
        self.gitlab_notes: list[dict[str, Any]] = []  # each with "_mr": (project, iid)
        self.azure_tokens: dict[str, dict[str, Any]] = {AZURE_TOKEN: dict(AZURE_BOT)}
        self.azure_threads: list[dict[str, Any]] = []  # each with "_pr": (project, repo, id)
        self.azure_strips_html_comments = False  # store comments without their <!-- ... --> parts
        self._install()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeCiApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def route(self, method: str, path_regex: str, handler: Handler) -> None:
        """Answer ``method`` requests whose whole path matches ``path_regex`` with ``handler`` (latest wins)."""
        self.routes.append((method.upper(), re.compile(path_regex), handler))

    def answer(self, method: str, path_regex: str, status: int, body: Any = None) -> None:
        """Always answer this status and body to these requests (an error, garbage...)."""
        self.route(method, path_regex, lambda _request, _match: Reply(status, body))

    def writes(self) -> list[Recorded]:
        """The requests that change something (POST, PATCH, PUT, DELETE)."""
        return [r for r in self.requests if r.method != "GET"]

    # -- environments of a job -------------------------------------------------------------------------------

    def github_env(self, tmp_path: Path, number: int = PULL, event: dict[str, Any] | None = None) -> dict[str, str]:
        """A pull_request job: the event payload written under ``tmp_path``."""
        payload = event if event is not None else {"number": number, "pull_request": {
            "number": number, "base": {"ref": "main", "sha": "0" * 40}}}
        path = tmp_path / f"event-{next(self.ids)}.json"
        path.write_text(json.dumps(payload), encoding="utf-8")
        return {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": self.url, "GITHUB_REPOSITORY": REPO,
                "GITHUB_EVENT_PATH": str(path), "GITHUB_EVENT_NAME": "pull_request", "GITHUB_TOKEN": GITHUB_TOKEN}

    def gitlab_env(self, iid: int = PULL) -> dict[str, str]:
        return {"GITLAB_CI": "true", "CI_API_V4_URL": f"{self.url}/api/v4", "CI_PROJECT_ID": GITLAB_PROJECT,
                "CI_MERGE_REQUEST_IID": str(iid), "STRATA_GITLAB_TOKEN": GITLAB_TOKEN}

    def azure_env(self, pull: int = PULL) -> dict[str, str]:
        return {"TF_BUILD": "True", "SYSTEM_COLLECTIONURI": f"{self.url}/acme/", "SYSTEM_TEAMPROJECT": AZURE_PROJECT,
                "BUILD_REPOSITORY_ID": AZURE_REPO, "SYSTEM_PULLREQUEST_PULLREQUESTID": str(pull),
                "SYSTEM_ACCESSTOKEN": AZURE_TOKEN}

    # -- what is on the requests ---------------------------------------------------------------------------

    def github_bodies(self, number: int = PULL) -> list[str]:
        return [c["body"] for c in self.github_comments if c["_issue"] == (REPO, number)]

    def gitlab_bodies(self, iid: int = PULL) -> list[str]:
        return [n["body"] for n in self.gitlab_notes if n["_mr"] == (GITLAB_PROJECT, str(iid))]

    def azure_bodies(self, pull: int = PULL) -> list[str]:
        """The first comment of each live thread of the pull request."""
        return [c["content"] for t in self.azure_threads if t["_pr"][2] == str(pull) and not t["isDeleted"]
                for c in t["comments"][:1] if not c["isDeleted"]]

    def add_github_comment(self, body: str, login: str, number: int = PULL) -> dict[str, Any]:
        comment = {"id": next(self.ids), "body": body, "user": {"login": login}, "_issue": (REPO, number)}
        comment["html_url"] = f"https://github.invalid/{REPO}/pull/{number}#issuecomment-{comment['id']}"
        self.github_comments.append(comment)
        return comment

    def add_gitlab_note(self, body: str, author: dict[str, Any], iid: int = PULL,
                        system: bool = False) -> dict[str, Any]:
        note = {"id": next(self.ids), "body": body, "author": author, "system": system,
                "_mr": (GITLAB_PROJECT, str(iid))}
        self.gitlab_notes.append(note)
        return note

    def add_azure_thread(self, content: str, author: dict[str, Any], pull: int = PULL) -> dict[str, Any]:
        thread = {"id": next(self.ids), "status": "active", "isDeleted": False,
                  "_pr": (AZURE_PROJECT, AZURE_REPO, str(pull)),
                  "comments": [{"id": 1, "parentCommentId": 0, "content": content, "author": author,
                                "isDeleted": False, "commentType": "text"}]}
        self.azure_threads.append(thread)
        return thread

    # -- the platforms' endpoints --------------------------------------------------------------------------

    def _install(self) -> None:
        gh = r"/repos/(?P<repo>[^/]+/[^/]+)/issues"
        self.route("GET", r"/user", self._github_user)
        self.route("GET", gh + r"/(?P<number>\d+)/comments", self._github_list)
        self.route("POST", gh + r"/(?P<number>\d+)/comments", self._github_create)
        self.route("PATCH", gh + r"/comments/(?P<id>\d+)", self._github_update)
        self.route("DELETE", gh + r"/comments/(?P<id>\d+)", self._github_delete)
        gl = r"/api/v4/projects/(?P<project>[^/]+)/merge_requests/(?P<iid>\d+)/notes"
        self.route("GET", r"/api/v4/user", self._gitlab_user)
        self.route("GET", gl, self._gitlab_list)
        self.route("POST", gl, self._gitlab_create)
        self.route("PUT", gl + r"/(?P<id>\d+)", self._gitlab_update)
        self.route("DELETE", gl + r"/(?P<id>\d+)", self._gitlab_delete)
        az = (r"/acme/(?P<project>[^/]+)/_apis/git/repositories/(?P<repo>[^/]+)/pullRequests/(?P<pull>\d+)"
              r"/threads")
        self.route("GET", r"/acme/_apis/connectionData", self._azure_identity)
        self.route("GET", az, self._azure_list)
        self.route("POST", az, self._azure_create)
        self.route("PATCH", az + r"/(?P<thread>\d+)/comments/(?P<comment>\d+)", self._azure_update)
        self.route("DELETE", az + r"/(?P<thread>\d+)/comments/(?P<comment>\d+)", self._azure_delete)

    @staticmethod
    def _refused(platform: str, user: object, item: object = True) -> Reply | None:
        """The answer to a request without a known token, or about a comment that is not there; else None."""
        if user is None:
            return UNAUTHORIZED[platform]
        return NOT_FOUND[platform] if item is None else None

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def _page(self, request: Recorded, items: list[dict[str, Any]]) -> Reply:
        """GitHub/GitLab pagination: ``per_page`` (default 30 as GitHub's, 20 as GitLab's: 30 here), ``page``."""
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        chunk = items[(page - 1) * per_page: page * per_page]
        headers = {}
        if page * per_page < len(items):
            query = {**request.query, "page": str(page + 1)}
            headers["Link"] = f'<{self.url}{request.path}?{urllib.parse.urlencode(query)}>; rel="next"'
        return Reply(200, [self._public(i) for i in chunk], headers)

    def _github_login(self, request: Recorded) -> str | None:
        auth = request.headers.get("authorization", "")
        return self.github_tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    def _github_user(self, request: Recorded, _match: re.Match[str]) -> Reply:
        login = self._github_login(request)
        if login is None:
            return Reply(401, {"message": "Bad credentials"})
        if request.headers.get("authorization", "").removeprefix("Bearer ") in self.github_app_tokens:
            return Reply(403, {"message": "Resource not accessible by integration"})
        return Reply(200, {"login": login, "id": 5})

    def _github_comment(self, match: re.Match[str]) -> dict[str, Any] | None:
        return next((c for c in self.github_comments if c["id"] == int(match["id"])
                     and c["_issue"][0] == match["repo"]), None)

    def _github_list(self, request: Recorded, match: re.Match[str]) -> Reply:
        if refused := self._refused("github", self._github_login(request)):
            return refused
        issue = (match["repo"], int(match["number"]))
        return self._page(request, [c for c in self.github_comments if c["_issue"] == issue])

    def _github_create(self, request: Recorded, match: re.Match[str]) -> Reply:
        login = self._github_login(request)
        if login is None:
            return UNAUTHORIZED["github"]
        body = (request.json() or {}).get("body")
        if not isinstance(body, str) or len(body) > 65536:
            return Reply(422, {"message": "Validation Failed", "errors": [{"message": "body is too long"}]})
        return Reply(201, self._public(self.add_github_comment(body, login, int(match["number"]))))

    def _github_update(self, request: Recorded, match: re.Match[str]) -> Reply:
        login, comment = self._github_login(request), self._github_comment(match)
        if refused := self._refused("github", login, comment):
            return refused
        assert comment is not None
        if comment["user"]["login"] != login:
            return Reply(403, {"message": "Resource not accessible by integration"})
        comment["body"] = (request.json() or {})["body"]
        return Reply(200, self._public(comment))

    def _github_delete(self, request: Recorded, match: re.Match[str]) -> Reply:
        comment = self._github_comment(match)
        if refused := self._refused("github", self._github_login(request), comment):
            return refused
        self.github_comments.remove(comment)
        return Reply(204)

    def _gitlab_user_of(self, request: Recorded) -> dict[str, Any] | None:
        return self.gitlab_tokens.get(request.headers.get("private-token", ""))

    def _gitlab_user(self, request: Recorded, _match: re.Match[str]) -> Reply:
        user = self._gitlab_user_of(request)
        return Reply(200, user) if user else UNAUTHORIZED["gitlab"]

    def _gitlab_note(self, match: re.Match[str]) -> dict[str, Any] | None:
        mr = (urllib.parse.unquote(match["project"]), match["iid"])
        return next((n for n in self.gitlab_notes if n["id"] == int(match["id"]) and n["_mr"] == mr), None)

    def _gitlab_list(self, request: Recorded, match: re.Match[str]) -> Reply:
        if refused := self._refused("gitlab", self._gitlab_user_of(request)):
            return refused
        mr = (urllib.parse.unquote(match["project"]), match["iid"])
        return self._page(request, [n for n in self.gitlab_notes if n["_mr"] == mr])

    def _gitlab_create(self, request: Recorded, match: re.Match[str]) -> Reply:
        user = self._gitlab_user_of(request)
        if user is None:
            return UNAUTHORIZED["gitlab"]
        note = self.add_gitlab_note((request.json() or {})["body"], user, int(match["iid"]))
        return Reply(201, self._public(note))

    def _gitlab_update(self, request: Recorded, match: re.Match[str]) -> Reply:
        user, note = self._gitlab_user_of(request), self._gitlab_note(match)
        if refused := self._refused("gitlab", user, note):
            return refused
        assert user is not None and note is not None
        if note["author"]["id"] != user["id"]:
            return Reply(403, {"message": "403 Forbidden"})
        note["body"] = (request.json() or {})["body"]
        return Reply(200, self._public(note))

    def _gitlab_delete(self, request: Recorded, match: re.Match[str]) -> Reply:
        note = self._gitlab_note(match)
        if refused := self._refused("gitlab", self._gitlab_user_of(request), note):
            return refused
        self.gitlab_notes.remove(note)
        return Reply(204)

    def _azure_user(self, request: Recorded) -> dict[str, Any] | None:
        auth = request.headers.get("authorization", "")
        return self.azure_tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    def _azure_identity(self, request: Recorded, _match: re.Match[str]) -> Reply:
        user = self._azure_user(request)
        if user is None:  # Azure DevOps answers an HTML sign-in page, status 203, to a bad token
            return Reply(203, b"<html><body>Sign in</body></html>", {"Content-Type": "text/html"})
        return Reply(200, {"authenticatedUser": user, "authorizedUser": user})

    def _azure_pr(self, match: re.Match[str]) -> tuple[str, str, str]:
        return urllib.parse.unquote(match["project"]), match["repo"], match["pull"]

    def _azure_list(self, request: Recorded, match: re.Match[str]) -> Reply:
        if refused := self._refused("azure-devops", self._azure_user(request)):
            return refused
        threads = [self._public(t) for t in self.azure_threads if t["_pr"] == self._azure_pr(match)]
        return Reply(200, {"value": threads, "count": len(threads)})

    def _azure_create(self, request: Recorded, match: re.Match[str]) -> Reply:
        user = self._azure_user(request)
        if user is None:
            return UNAUTHORIZED["azure-devops"]
        sent = request.json() or {}
        thread = self.add_azure_thread(self._azure_content(sent["comments"][0]["content"]), user, int(match["pull"]))
        thread["properties"] = sent.get("properties") or {}
        thread["_pr"] = self._azure_pr(match)
        thread["status"] = {1: "active", 4: "closed"}.get(sent.get("status"), sent.get("status"))
        return Reply(200, self._public(thread))

    def _azure_comment(self, match: re.Match[str]) -> dict[str, Any] | None:
        for thread in self.azure_threads:
            if thread["id"] == int(match["thread"]) and thread["_pr"] == self._azure_pr(match):
                return next((c for c in thread["comments"] if c["id"] == int(match["comment"])), None)
        return None

    def _azure_update(self, request: Recorded, match: re.Match[str]) -> Reply:
        user, comment = self._azure_user(request), self._azure_comment(match)
        if comment is not None and comment["isDeleted"]:
            comment = None
        if refused := self._refused("azure-devops", user, comment):
            return refused
        assert user is not None and comment is not None
        if comment["author"]["id"] != user["id"]:
            return Reply(403, {"message": "Only the author can edit a comment."})
        comment["content"] = self._azure_content((request.json() or {})["content"])
        return Reply(200, comment)

    def _azure_content(self, content: str) -> str:
        return re.sub(r"<!--.*?-->", "", content, flags=re.S) if self.azure_strips_html_comments else content

    def _azure_delete(self, request: Recorded, match: re.Match[str]) -> Reply:
        comment = self._azure_comment(match)
        if refused := self._refused("azure-devops", self._azure_user(request), comment):
            return refused
        assert comment is not None
        comment["isDeleted"] = True
        for thread in self.azure_threads:  # a thread whose comments are all deleted is deleted
            if comment in thread["comments"] and all(c["isDeleted"] for c in thread["comments"]):
                thread["isDeleted"] = True
        return Reply(200)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def dispatch(self, request: Recorded) -> Reply:
        with self.lock:
            self.requests.append(request)
            for method, pattern, handler in reversed(self.routes):
                match = pattern.fullmatch(request.path)
                if method == request.method and match is not None:
                    return handler(request, match)
        return Reply(404, {"message": f"no route for {request.method} {request.path}"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                split = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Recorded(self.command, urllib.parse.unquote(split.path),
                                   dict(urllib.parse.parse_qsl(split.query)),
                                   {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                reply = api.dispatch(request)
                body = reply.body if isinstance(reply.body, bytes) else (
                    b"" if reply.body is None else json.dumps(reply.body).encode())
                self.send_response(reply.status)
                if not any(k.lower() == "content-type" for k in reply.headers):
                    self.send_header("Content-Type", "application/json")
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake_ci_api() -> Iterator[FakeCiApi]:
    """A fresh fake CI API on a free 127.0.0.1 port, stopped after the test."""
    server = FakeCiApi().start()
    try:
        yield server
    finally:
        server.stop()
