"""The CI platform a command runs on, and JSON over HTTP to its API (standard library only).

``detect()`` tells GitHub Actions, GitLab CI and Azure DevOps apart from the variables each sets
(``GITHUB_ACTIONS``, ``GITLAB_CI``, ``TF_BUILD``). ``request()`` sends one JSON request and returns the parsed
answer; ``paginate()`` follows a listing across pages (a ``Link: <...>; rel="next"`` header, as GitHub and
GitLab send, or Azure DevOps' ``x-ms-continuationtoken``). ``send()`` is the raw form, for downloads.

Redirects are followed to http(s) only, and never with the token.
Every failure is an :class:`ApiError` (a :class:`~strata.errors.StrataError`) whose message names the request,
the HTTP status and what to do; a token never appears in a message. Idempotent requests (GET) are retried
twice on a dropped connection or a 502/503/504/429; nothing else is retried.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from strata import __version__
from strata.errors import StrataError, UsageError

Platform = Literal["github", "gitlab", "azure-devops"]
PLATFORMS: tuple[Platform, ...] = ("github", "gitlab", "azure-devops")
NAMES: dict[Platform, str] = {"github": "GitHub", "gitlab": "GitLab", "azure-devops": "Azure DevOps"}
_DETECT_BY: dict[Platform, str] = {"github": "GITHUB_ACTIONS", "gitlab": "GITLAB_CI", "azure-devops": "TF_BUILD"}

TIMEOUT = 30.0  # seconds for one request (connect and each read)
MAX_BODY = 64 * 1024 * 1024  # a bigger answer is refused rather than read into memory
_RETRIED = (429, 502, 503, 504)
_RETRY_DELAYS = (1.0, 3.0)

_HINTS = {
    400: "the server refused the request as malformed",
    401: "the token was refused: it is missing, expired or revoked",
    403: "the token lacks a permission this needs (or a rate limit was hit)",
    404: "not found: check the project/repository and request ids, and that the token can see them",
    409: "a conflicting change happened at the same time; run again",
    422: "the server refused the content (too long, or not allowed here)",
    429: "rate limited; run again later",
}


class ApiError(StrataError):
    """A request to a CI platform's API failed: no answer, an HTTP error, or an answer that is not JSON."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, None when there was no HTTP answer


def detect(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Platform:
    """``explicit`` when given (validated), else the platform whose marker variable is set.

    Raises :class:`UsageError` when none (or several) is set, naming the variables and ``--platform``.
    """
    if explicit is not None:
        if explicit not in PLATFORMS:
            raise UsageError(f"unknown CI platform {explicit!r}: use one of {', '.join(PLATFORMS)}")
        return explicit
    environ = os.environ if env is None else env
    found = [name for name, var in _DETECT_BY.items() if environ.get(var, "").strip().lower() in ("true", "1")]
    if len(found) == 1:
        return found[0]
    markers = ", ".join(f"{var}=true ({NAMES[name]})" for name, var in _DETECT_BY.items())
    if not found:
        raise UsageError(f"cannot tell which CI platform this is: none of {markers} is set; run this in a CI job "
                         "or pass --platform github|gitlab|azure-devops")
    raise UsageError(f"cannot tell which CI platform this is: {', '.join(_DETECT_BY[n] for n in found)} are all "
                     "set; pass --platform github|gitlab|azure-devops")


def require(name: str, why: str, env: Mapping[str, str] | None = None) -> str:
    """The value of environment variable ``name`` (stripped), or a StrataError "NAME is not set: ``why``"."""
    value = (os.environ if env is None else env).get(name, "").strip()
    if not value:
        raise StrataError(f"{name} is not set: {why}")
    return value


@dataclass(frozen=True)
class Response:
    """One HTTP answer: its status, headers (names lower-case) and body bytes."""

    status: int
    headers: dict[str, str]
    body: bytes
    method: str
    url: str

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); an :class:`ApiError` when it is not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            hint = ("Azure DevOps answers a sign-in page with HTTP 203 to a token it does not accept: check the token"
                    if self.status == 203 else "is the API URL right?")
            raise ApiError(f"{self.method} {_shown(self.url)} answered HTTP {self.status} with a body that is not "
                           f"JSON ({_excerpt(self.body)}); {hint}", status=self.status) from None


def _shown(url: str) -> str:
    """The URL without its query string's values (which could carry a continuation token)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def _server_message(body: bytes) -> str:
    """The message an API error body carries (GitHub/Azure ``message``, GitLab ``message``/``error``)."""
    try:
        data = json.loads(body)
    except ValueError:
        return _excerpt(body) if body.strip() else ""
    if isinstance(data, dict):
        for key in ("message", "error", "error_description"):
            value = data.get(key)
            if value:
                return _excerpt(value.encode() if isinstance(value, str) else json.dumps(value).encode())
    return _excerpt(body)


def _read(stream: Any, limit: int, method: str, url: str) -> bytes:
    body: bytes = stream.read(limit + 1)
    if len(body) > limit:
        raise ApiError(f"{method} {_shown(url)}: the answer is larger than {limit // (1024 * 1024)} MiB; refused")
    return body


_CREDENTIAL_HEADERS = frozenset({"authorization", "private-token"})


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only, and never with the token: GitHub answers an artifact download with a
    redirect to a storage URL that carries its own signature, and the token must stay with the API."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> urllib.request.Request | None:
        target = urllib.parse.urlsplit(newurl)
        if target.scheme not in ("http", "https"):
            raise ApiError(f"{req.get_method()} {_shown(req.full_url)} redirected to a {target.scheme or 'relative'} "
                           "URL; not followed")
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            for name in [n for n in new.headers if n.lower() in _CREDENTIAL_HEADERS]:
                del new.headers[name]
        return new


_OPENER = urllib.request.build_opener(_Redirects())


def send(method: str, url: str, *, headers: Mapping[str, str] | None = None, json_body: Any = None,
         data: bytes | None = None, timeout: float = TIMEOUT, ok: Callable[[int], bool] | None = None,
         max_bytes: int = MAX_BODY) -> Response:
    """Send one request; the :class:`Response` when its status is 2xx (or ``ok(status)``), else an ApiError.
    A body longer than ``max_bytes`` is refused."""
    if not url.startswith(("http://", "https://")):
        raise ApiError(f"not an http(s) URL: {url!r}; check the API URL variable")
    all_headers = {"User-Agent": f"strata/{__version__}", "Accept": "application/json", **(headers or {})}
    if json_body is not None:
        data = json.dumps(json_body).encode("utf-8")
        all_headers.setdefault("Content-Type", "application/json")
    delays = list(_RETRY_DELAYS) if method == "GET" else []
    while True:
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with _OPENER.open(request, timeout=timeout) as answer:
                response = Response(answer.status, {k.lower(): v for k, v in answer.headers.items()},
                                    _read(answer, max_bytes, method, url), method, url)
        except urllib.error.HTTPError as exc:
            body = _read(exc, max_bytes, method, url) if exc.fp is not None else b""
            response = Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, body, method, url)
        except OSError as exc:  # URLError and timeouts are OSErrors
            if delays:
                time.sleep(delays.pop(0))
                continue
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"{method} {_shown(url)} failed: {reason}; check the API URL and the network") from None
        if (200 <= response.status < 300) or (ok is not None and ok(response.status)):
            return response
        if response.status in _RETRIED and delays:
            time.sleep(delays.pop(0))
            continue
        hint = _HINTS.get(response.status, "the server failed; run again later" if response.status >= 500 else "")
        said = _server_message(response.body)
        raise ApiError(f"{method} {_shown(url)} answered HTTP {response.status}"
                       + (f" ({said})" if said else "") + (f": {hint}" if hint else ""), status=response.status)


def request(method: str, url: str, *, headers: Mapping[str, str] | None = None, json_body: Any = None,
            timeout: float = TIMEOUT) -> Any:
    """Send one JSON request and return the parsed answer (None for an empty body)."""
    return send(method, url, headers=headers, json_body=json_body, timeout=timeout).json()


def _next_link(link: str) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header."""
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") or "rel=next" in params.replace(" ", ""):
            return target.strip().strip("<>")
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of ``url`` (the port filled in for http and https)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # a port that is not a number
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def paginate(url: str, *, headers: Mapping[str, str] | None = None, items: str | None = None,
             max_pages: int = 100) -> Iterator[Any]:
    """Every item of a listing, page after page. ``items`` names the key holding a page's list (Azure DevOps:
    ``"value"``); without it a page must be a JSON list. A next page is followed only on the API's own scheme,
    host and port: the request carries the token."""
    seen: set[str] = set()
    origin = _origin(url)
    for _ in range(max_pages):
        response = send("GET", url, headers=headers)
        page = response.json()
        listed = page.get(items) if items is not None and isinstance(page, dict) else page
        if not isinstance(listed, list):
            raise ApiError(f"GET {_shown(url)} answered HTTP {response.status} with JSON that is not the expected "
                           f"list ({_excerpt(response.body)}); is the API URL right?", status=response.status)
        yield from listed
        following = _next_link(response.headers.get("link", ""))
        token = response.headers.get("x-ms-continuationtoken")
        if following is None and token:
            following = with_query(url, continuationToken=token)
        if following is None:
            return
        if following in seen:  # a server that points back at a page already read would loop forever
            raise ApiError(f"GET {_shown(url)}: the server's next page repeats an earlier one; stopped")
        seen.add(following)
        following = urllib.parse.urljoin(url, following)
        if _origin(following) != origin:
            raise ApiError(f"GET {_shown(url)}: the server's next page is on another host ({_shown(following)}), "
                           "and the request would carry the token there; stopped (check the API URL variable)")
        url = following
    raise ApiError(f"GET {_shown(url)}: more than {max_pages} pages; stopped")


def with_query(url: str, **params: str) -> str:
    """``url`` with these query parameters set (replacing any of the same name)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(query), ""))



def github_event(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The event payload GitHub Actions writes at ``GITHUB_EVENT_PATH``, as a dict."""
    path = require("GITHUB_EVENT_PATH", "GitHub Actions sets it to the event that started the job; run this in a "
                   "GitHub Actions job, or pass --platform", env)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BODY + 1)
    except OSError as exc:
        raise StrataError(f"cannot read the GitHub event at GITHUB_EVENT_PATH={path}: {exc.strerror}") from None
    try:
        event = json.loads(raw) if len(raw) <= MAX_BODY else None
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise StrataError(f"the GitHub event at GITHUB_EVENT_PATH={path} is not a JSON object")
    return event
