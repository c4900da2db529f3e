"""`strata ci comment`: the real CLI against a fake GitHub / GitLab / Azure DevOps API on 127.0.0.1 — one
comment per pull/merge request updated in place, parts added and deleted, nobody else's comment touched, and
every failure a clear message with a non-zero exit."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import Result

if TYPE_CHECKING:  # imported for real by conftest's pytest_plugins, which also rewrites its asserts
    from fake_ci_api import FakeCiApi

PLATFORMS = ("github", "gitlab", "azure-devops")
ONE = "<!-- strata:plan key=plan part=1 -->\n"
MARKER = re.compile(r"\A<!-- strata:plan key=(\S+) part=(\d+) -->\n")
# nothing of the machine's own CI or proxy settings may leak into a test
CLEAN = {name: "" for name in ("GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "GITHUB_TOKEN", "STRATA_GITLAB_TOKEN",
                                "SYSTEM_ACCESSTOKEN", "STRATA_COMMENT_AUTHOR", "CI_MERGE_REQUEST_IID",
                                "SYSTEM_PULLREQUEST_PULLREQUESTID", "http_proxy", "https_proxy", "HTTP_PROXY",
                                "HTTPS_PROXY", "ALL_PROXY", "all_proxy")}


def job_env(server: FakeCiApi, platform: str, tmp_path: Path) -> dict[str, str]:
    env = {"github": lambda: server.github_env(tmp_path), "gitlab": server.gitlab_env,
           "azure-devops": server.azure_env}[platform]()
    return {**CLEAN, **env}


def bodies(server: FakeCiApi, platform: str) -> list[str]:
    return {"github": server.github_bodies, "gitlab": server.gitlab_bodies,
            "azure-devops": server.azure_bodies}[platform]()


def other_author(platform: str) -> Any:
    return {"github": "octocat", "gitlab": {"id": 3, "username": "alice"},
            "azure-devops": {"id": "alice-guid", "uniqueName": "alice@example.invalid"}}[platform]


def add_comment(server: FakeCiApi, platform: str, body: str, author: Any) -> None:
    {"github": server.add_github_comment, "gitlab": server.add_gitlab_note,
     "azure-devops": server.add_azure_thread}[platform](body, author)


def write_summary(tmp_path: Path, *parts: str) -> Path:
    """SUMMARY.md and SUMMARY-2.md ... as `strata plan --summary-md` writes them."""
    first = tmp_path / "SUMMARY.md"
    for n, text in enumerate(parts, start=1):
        (first if n == 1 else tmp_path / f"SUMMARY-{n}.md").write_text(text, encoding="utf-8")
    return first


def plan_parts(count: int, tag: str = "") -> list[str]:
    return [f"## strata plan{f' (part {n} of {count})' if count > 1 else ''}\n\n{tag}stack {n}: 1 to add\n"
            for n in range(1, count + 1)]


@pytest.fixture
def comment(strata: Callable[..., Result], tmp_path: Path) -> Callable[..., Result]:
    def run(summary: Path, env: dict[str, str], *args: str) -> Result:
        return strata("ci", "comment", str(summary), *args, cwd=tmp_path, env=env, timeout=60)

    return run


# -- in place ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", PLATFORMS)
def test_one_comment_updated_in_place_grown_and_shrunk(platform: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                                       comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, platform, tmp_path)

    first = comment(write_summary(tmp_path, *plan_parts(1, "first push ")), env)
    assert first.code == 0, first.output
    posted = bodies(fake_ci_api, platform)
    assert len(posted) == 1
    assert posted[0] == "<!-- strata:plan key=plan part=1 -->\n" + plan_parts(1, "first push ")[0]
    assert "created the comment" in first.stdout

    fake_ci_api.requests.clear()
    second = comment(write_summary(tmp_path, *plan_parts(1, "second push ")), env)
    assert second.code == 0, second.output
    assert bodies(fake_ci_api, platform) == [ONE + plan_parts(1, "second push ")[0]]
    assert [r.method for r in fake_ci_api.writes()] == [{"github": "PATCH", "gitlab": "PUT",
                                                         "azure-devops": "PATCH"}[platform]]

    fake_ci_api.requests.clear()
    same = comment(write_summary(tmp_path, *plan_parts(1, "second push ")), env)
    assert same.code == 0 and "unchanged" in same.stdout
    assert fake_ci_api.writes() == []  # nothing to change: nothing written

    grown = comment(write_summary(tmp_path, *plan_parts(3, "third push ")), env)
    assert grown.code == 0, grown.output
    after = bodies(fake_ci_api, platform)
    assert [MARKER.match(b)[2] for b in after] == ["1", "2", "3"]  # type: ignore[index]
    assert [b.split("\n", 1)[1] for b in after] == plan_parts(3, "third push ")

    fake_ci_api.requests.clear()
    shrunk = comment(write_summary(tmp_path, *plan_parts(1, "fourth push ")), env)  # SUMMARY-2/3.md stay behind
    assert shrunk.code == 0, shrunk.output
    assert bodies(fake_ci_api, platform) == [ONE + plan_parts(1, "fourth push ")[0]]
    assert [r.method for r in fake_ci_api.writes()].count("DELETE") == 2
    assert "ignoring" in shrunk.stderr and "SUMMARY-2.md" in shrunk.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_someone_elses_comment_with_the_marker_is_left_alone(platform: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                                             comment: Callable[..., Result]) -> None:
    quoted = "<!-- strata:plan key=plan part=1 -->\nI copied strata's comment here"
    quoted_part2 = "<!-- strata:plan key=plan part=2 -->\nand its second part"
    add_comment(fake_ci_api, platform, quoted, other_author(platform))
    add_comment(fake_ci_api, platform, quoted_part2, other_author(platform))
    env = job_env(fake_ci_api, platform, tmp_path)

    for push in ("one", "two"):
        result = comment(write_summary(tmp_path, f"## strata plan\n\npush {push}\n"), env)
        assert result.code == 0, result.output
    now = bodies(fake_ci_api, platform)
    assert now[:2] == [quoted, quoted_part2]  # neither updated nor deleted as a stale part 2
    assert now[2:] == ["<!-- strata:plan key=plan part=1 -->\n## strata plan\n\npush two\n"]


def test_the_parts_strata_plan_writes_are_all_posted(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                     comment: Callable[..., Result]) -> None:
    # the contract with `plan --summary-md`: its first part's title says how many parts there are
    from strata.run.summary import StackPlan, render

    plans = [StackPlan(f"dev/stack{n}", "changes", None, f"# plan of stack {n}\n" + "~ change\n" * 400)
             for n in range(4)]
    parts = render(plans, limit=5000)
    assert len(parts) > 2
    result = comment(write_summary(tmp_path, *parts), job_env(fake_ci_api, "github", tmp_path))
    assert result.code == 0, result.output
    assert [b.split("\n", 1)[1] for b in fake_ci_api.github_bodies()] == parts


def test_a_missing_part_is_an_error(fake_ci_api: FakeCiApi, tmp_path: Path, comment: Callable[..., Result]) -> None:
    summary = write_summary(tmp_path, *plan_parts(3))
    (tmp_path / "SUMMARY-3.md").unlink()
    result = comment(summary, job_env(fake_ci_api, "github", tmp_path))
    assert result.code == 1
    assert "SUMMARY-3.md is missing: SUMMARY.md says the summary has 3 parts" in result.stderr
    assert fake_ci_api.requests == []


def test_a_key_keeps_its_own_comment(fake_ci_api: FakeCiApi, tmp_path: Path, comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, "github", tmp_path)
    assert comment(write_summary(tmp_path, "plan of workflow A\n"), env).code == 0
    assert comment(write_summary(tmp_path, "plan of workflow B\n"), env, "--key", "drift").code == 0
    assert comment(write_summary(tmp_path, "plan of workflow A, again\n"), env).code == 0
    assert fake_ci_api.github_bodies() == ["<!-- strata:plan key=plan part=1 -->\nplan of workflow A, again\n",
                                           "<!-- strata:plan key=drift part=1 -->\nplan of workflow B\n"]


def test_comments_are_found_on_every_page(fake_ci_api: FakeCiApi, tmp_path: Path,
                                          comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, "github", tmp_path)
    for n in range(130):  # strata's comment lands on the second page of 100
        fake_ci_api.add_github_comment(f"review remark {n}", "octocat")
    assert comment(write_summary(tmp_path, "first\n"), env).code == 0
    assert comment(write_summary(tmp_path, "second\n"), env).code == 0
    ours = [b for b in fake_ci_api.github_bodies() if MARKER.match(b)]
    assert ours == ["<!-- strata:plan key=plan part=1 -->\nsecond\n"]
    assert any(r.query.get("page") == "2" for r in fake_ci_api.requests)


def test_a_part_too_long_with_the_marker_becomes_two_comments(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                              comment: Callable[..., Result]) -> None:
    # as long as `plan --summary-md` may write a part: the marker would push it over GitHub's 65,536 characters
    lines = ["## strata plan", "", "```", *[f"+ resource.r{n:05d} {'x' * 60}" for n in range(829)], "```", ""]
    text = "\n".join(lines)
    assert 65_400 < len(text) <= 65_536
    result = comment(write_summary(tmp_path, text), job_env(fake_ci_api, "github", tmp_path))
    assert result.code == 0, result.output
    posted = fake_ci_api.github_bodies()
    assert len(posted) == 2 and all(len(b) <= 65_536 for b in posted)
    assert posted[0].count("```") == 2 and posted[1].count("```") == 2  # the code block closed and reopened
    joined = "".join(b.split("\n", 1)[1] for b in posted)
    assert all(f"resource.r{n:05d}" in joined for n in range(829))


def test_a_personal_token_is_recognised_by_its_user(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                    comment: Callable[..., Result]) -> None:
    fake_ci_api.github_tokens["ghp_person"] = "deploy-bot"
    env = {**job_env(fake_ci_api, "github", tmp_path), "GITHUB_TOKEN": "ghp_person"}
    assert comment(write_summary(tmp_path, "one\n"), env).code == 0
    assert comment(write_summary(tmp_path, "two\n"), env).code == 0
    assert fake_ci_api.github_bodies() == ["<!-- strata:plan key=plan part=1 -->\ntwo\n"]


def test_strata_comment_author_overrides_the_identity(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                      comment: Callable[..., Result]) -> None:
    # a GitHub app's token: GET /user is refused, the comments are by "<app>[bot]"
    fake_ci_api.github_tokens["ghs_app"] = "infra-app[bot]"
    fake_ci_api.github_app_tokens.add("ghs_app")
    env = {**job_env(fake_ci_api, "github", tmp_path), "GITHUB_TOKEN": "ghs_app",
           "STRATA_COMMENT_AUTHOR": "infra-app[bot]"}
    assert comment(write_summary(tmp_path, "one\n"), env).code == 0
    assert comment(write_summary(tmp_path, "two\n"), env).code == 0
    assert fake_ci_api.github_bodies() == ["<!-- strata:plan key=plan part=1 -->\ntwo\n"]
    assert not any(r.path == "/user" for r in fake_ci_api.requests)


def test_the_requests_carry_the_platforms_credentials(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                      comment: Callable[..., Result]) -> None:
    for platform in PLATFORMS:
        assert comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, platform, tmp_path)).code == 0
    by_path = {r.path: r.headers for r in fake_ci_api.requests if r.method == "POST"}
    github = by_path["/repos/acme/infra/issues/7/comments"]
    assert github["authorization"] == "Bearer ghs_fake_actions_token"
    assert github["x-github-api-version"] == "2022-11-28"
    assert by_path["/api/v4/projects/12/merge_requests/7/notes"]["private-token"] == "glpat-fake-project-token"
    azure = next(r for r in fake_ci_api.requests if r.method == "POST" and "/threads" in r.path)
    assert azure.headers["authorization"] == "Bearer fake-system-access-token"
    assert azure.query["api-version"] == "7.1"
    assert azure.path == ("/acme/Infra Project/_apis/git/repositories/3f1e0000-0000-4000-8000-000000000001"
                          "/pullRequests/7/threads")


# -- failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("platform", "variable"), [("github", "GITHUB_TOKEN"), ("gitlab", "STRATA_GITLAB_TOKEN"),
                                                    ("azure-devops", "SYSTEM_ACCESSTOKEN")])
def test_no_token_names_the_variable(platform: str, variable: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                     comment: Callable[..., Result]) -> None:
    env = {**job_env(fake_ci_api, platform, tmp_path), variable: ""}
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1
    assert f"{variable} is not set" in result.stderr
    assert fake_ci_api.requests == []


@pytest.mark.parametrize(("platform", "variable"), [("github", "GITHUB_TOKEN"), ("gitlab", "STRATA_GITLAB_TOKEN"),
                                                    ("azure-devops", "SYSTEM_ACCESSTOKEN")])
def test_a_refused_token_names_the_status_and_the_variable(platform: str, variable: str, fake_ci_api: FakeCiApi,
                                                           tmp_path: Path, comment: Callable[..., Result]) -> None:
    env = {**job_env(fake_ci_api, platform, tmp_path), variable: "wrong"}
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1
    if platform == "azure-devops":  # Azure DevOps answers a sign-in page with 203
        assert "HTTP 203" in result.stderr and "check the token" in result.stderr
    elif platform == "github":  # GET /user answers 401 to a bad token
        assert "HTTP 401" in result.stderr and f"check {variable} and that the job has" in result.stderr
    else:
        assert "HTTP 401" in result.stderr and f"check {variable}" in result.stderr
    assert "wrong" not in result.stderr  # never the token
    assert fake_ci_api.writes() == []


@pytest.mark.parametrize(("status", "says"), [(403, "the token lacks a permission"), (404, "not found"),
                                              (500, "the server failed")])
def test_http_errors_say_what_to_do(status: int, says: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                    comment: Callable[..., Result]) -> None:
    fake_ci_api.answer("POST", r"/repos/.*/comments", status, {"message": "nope"})
    result = comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, "github", tmp_path))
    assert result.code == 1
    assert f"GitHub pull request #7: POST {fake_ci_api.url}/repos/acme/infra/issues/7/comments answered HTTP " \
           f"{status} ('nope'): {says}" in result.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_garbage_instead_of_json_is_a_clear_error(platform: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                                  comment: Callable[..., Result]) -> None:
    listing = {"github": r"/repos/.*/comments", "gitlab": r"/api/v4/.*/notes", "azure-devops": r"/acme/.*/threads"}
    fake_ci_api.answer("GET", listing[platform], 200, b"<html>proxy login</html>")
    result = comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, platform, tmp_path))
    assert result.code == 1
    assert "not JSON" in result.stderr and "<html>proxy login</html>" in result.stderr
    fake_ci_api.answer("GET", listing[platform], 200, {"unexpected": "object"})
    result = comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, platform, tmp_path))
    assert result.code == 1 and "not the expected list" in result.stderr
    assert fake_ci_api.writes() == []


def test_nothing_listens_at_the_api_url(fake_ci_api: FakeCiApi, tmp_path: Path,
                                        comment: Callable[..., Result]) -> None:
    env = {**job_env(fake_ci_api, "gitlab", tmp_path), "CI_API_V4_URL": "http://127.0.0.1:1/api/v4"}
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1
    assert "GET http://127.0.0.1:1/api/v4/user failed" in result.stderr and "check the API URL" in result.stderr


@pytest.mark.parametrize(("platform", "unset", "says"), [
    ("github", None, "not a pull request: the GitHub event 'push'"),
    ("gitlab", "CI_MERGE_REQUEST_IID", "not a merge request pipeline: CI_MERGE_REQUEST_IID is not set"),
    ("azure-devops", "SYSTEM_PULLREQUEST_PULLREQUESTID", "not a pull request build"),
])
def test_not_a_pull_request(platform: str, unset: str | None, says: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                            comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, platform, tmp_path)
    if unset:
        env[unset] = ""
    else:
        env = {**env, **fake_ci_api.github_env(tmp_path, event={"before": "0" * 40, "after": "1" * 40}),
               "GITHUB_EVENT_NAME": "push"}
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1
    assert says in result.stderr
    assert fake_ci_api.requests == []


def test_a_broken_event_payload(fake_ci_api: FakeCiApi, tmp_path: Path, comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, "github", tmp_path)
    Path(env["GITHUB_EVENT_PATH"]).write_text("{not json", encoding="utf-8")
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1 and "is not a JSON object" in result.stderr
    env["GITHUB_EVENT_PATH"] = str(tmp_path / "missing.json")
    result = comment(write_summary(tmp_path, "plan\n"), env)
    assert result.code == 1 and "cannot read the GitHub event at GITHUB_EVENT_PATH=" in result.stderr


def test_bad_summaries_and_usage(fake_ci_api: FakeCiApi, tmp_path: Path, comment: Callable[..., Result]) -> None:
    env = job_env(fake_ci_api, "github", tmp_path)
    missing = comment(tmp_path / "nope.md", env)
    assert missing.code == 64 and "nope.md does not exist" in missing.stderr
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    empty = comment(tmp_path / "empty.md", env)
    assert empty.code == 1 and "is empty" in empty.stderr
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00plan")
    binary = comment(tmp_path / "binary.md", env)
    assert binary.code == 1 and "is not UTF-8" in binary.stderr
    (tmp_path / "huge.md").write_text("x" * (9 * 1024 * 1024), encoding="utf-8")
    huge = comment(tmp_path / "huge.md", env)
    assert huge.code == 1 and "too long for pull-request comments" in huge.stderr
    (tmp_path / "many.md").write_text(("y" * 99 + "\n") * 25_000, encoding="utf-8")  # 2.5 MB: 39 comments
    many = comment(tmp_path / "many.md", env)
    assert many.code == 1 and "more than the 30 strata posts" in many.stderr
    bad_key = comment(write_summary(tmp_path, "plan\n"), env, "--key", "a b")
    assert bad_key.code == 64 and "--key 'a b'" in bad_key.stderr
    assert fake_ci_api.requests == []


def test_the_platform_must_be_known(strata: Callable[..., Result], tmp_path: Path) -> None:
    summary = write_summary(tmp_path, "plan\n")
    nowhere = strata("ci", "comment", str(summary), cwd=tmp_path, env=CLEAN)
    assert nowhere.code == 64
    assert "cannot tell which CI platform this is" in nowhere.stderr and "--platform" in nowhere.stderr
    both = strata("ci", "comment", str(summary), cwd=tmp_path, env={**CLEAN, "GITHUB_ACTIONS": "true",
                                                                     "GITLAB_CI": "true"})
    assert both.code == 64 and "GITHUB_ACTIONS, GITLAB_CI are all set" in both.stderr
    wrong = strata("ci", "comment", str(summary), "--platform", "bitbucket", cwd=tmp_path, env=CLEAN)
    assert wrong.code == 64


def test_explicit_platform_wins_over_detection(fake_ci_api: FakeCiApi, tmp_path: Path,
                                               comment: Callable[..., Result]) -> None:
    env = {**job_env(fake_ci_api, "gitlab", tmp_path), "GITHUB_ACTIONS": "true", "GITLAB_CI": ""}
    assert comment(write_summary(tmp_path, "plan\n"), env, "--platform", "gitlab").code == 0
    assert fake_ci_api.gitlab_bodies() == ["<!-- strata:plan key=plan part=1 -->\nplan\n"]


def test_duplicates_from_racing_jobs_are_removed(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                 comment: Callable[..., Result]) -> None:
    for text in ("race one", "race two"):
        fake_ci_api.add_gitlab_note(f"<!-- strata:plan key=plan part=1 -->\n{text}\n", {"id": 901})
    assert comment(write_summary(tmp_path, "settled\n"), job_env(fake_ci_api, "gitlab", tmp_path)).code == 0
    assert fake_ci_api.gitlab_bodies() == ["<!-- strata:plan key=plan part=1 -->\nsettled\n"]


def test_a_redirect_never_carries_the_token(fake_ci_api: FakeCiApi) -> None:
    # as GitHub answers an artifact download: a redirect to a storage host, which must not see the token
    from fake_ci_api import Reply
    from strata.ci import platform

    elsewhere = fake_ci_api.url.replace("127.0.0.1", "localhost")
    fake_ci_api.route("GET", r"/download", lambda _r, _m: Reply(302, b"", {"Location": f"{elsewhere}/blob"}))
    fake_ci_api.route("GET", r"/same", lambda _r, _m: Reply(302, b"", {"Location": "/blob"}))
    fake_ci_api.route("GET", r"/blob", lambda _r, _m: Reply(200, b"bundle bytes", {"Content-Type": "application/zip"}))
    fake_ci_api.route("GET", r"/ftp", lambda _r, _m: Reply(302, b"", {"Location": "ftp://127.0.0.1/x"}))
    secret = {"Authorization": "Bearer s3cret", "PRIVATE-TOKEN": "s3cret"}

    assert platform.send("GET", f"{fake_ci_api.url}/download", headers=secret).body == b"bundle bytes"
    blob = fake_ci_api.requests[-1]
    assert blob.path == "/blob" and "authorization" not in blob.headers and "private-token" not in blob.headers
    platform.send("GET", f"{fake_ci_api.url}/same", headers=secret)
    assert "authorization" not in fake_ci_api.requests[-1].headers  # not even on the same host
    with pytest.raises(platform.ApiError, match="redirected to a ftp URL; not followed"):
        platform.send("GET", f"{fake_ci_api.url}/ftp", headers=secret)


def test_a_next_page_on_another_host_is_not_followed_with_the_token(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                                    comment: Callable[..., Result]) -> None:
    # a Link header (from the server, or anything between) naming another host must not receive the token
    from fake_ci_api import Reply
    from strata.ci import platform

    elsewhere = fake_ci_api.url.replace("127.0.0.1", "localhost")
    other_port = fake_ci_api.url.rsplit(":", 1)[0] + ":1"
    for where in (elsewhere, other_port, fake_ci_api.url.replace("http://", "https://")):
        fake_ci_api.route("GET", r"/list", lambda _r, _m, w=where: Reply(200, [{"id": 1}],
                                                                          {"Link": f'<{w}/list2>; rel="next"'}))
        fake_ci_api.route("GET", r"/list2", lambda _r, _m: Reply(200, [{"id": 2}]))
        before = len(fake_ci_api.requests)
        with pytest.raises(platform.ApiError, match="next page is on another host"):
            list(platform.paginate(f"{fake_ci_api.url}/list", headers={"PRIVATE-TOKEN": "s3cret"}))
        assert [r.path for r in fake_ci_api.requests[before:]] == ["/list"]
    fake_ci_api.route("GET", r"/list", lambda _r, _m: Reply(200, [{"id": 1}], {"Link": '</list2>; rel="next"'}))
    assert list(platform.paginate(f"{fake_ci_api.url}/list")) == [{"id": 1}, {"id": 2}]  # same host: followed

    link = {"Link": f'<{elsewhere}/x>; rel="next"'}
    fake_ci_api.route("GET", r"/api/v4/.*/notes", lambda _r, _m: Reply(200, [], link))
    result = comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, "gitlab", tmp_path))
    assert result.code == 1 and "next page is on another host" in result.stderr and "Traceback" not in result.stderr
    assert fake_ci_api.writes() == [] and not any(r.path == "/x" for r in fake_ci_api.requests)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_malformed_comments_are_a_clear_error(platform: str, fake_ci_api: FakeCiApi, tmp_path: Path,
                                              comment: Callable[..., Result]) -> None:
    listing = {"github": r"/repos/.*/comments", "gitlab": r"/api/v4/.*/notes", "azure-devops": r"/acme/.*/threads"}
    hostile = [{"id": "../../user", "body": 5, "user": "x", "author": ["x"], "comments": {"id": "x"}}]
    fake_ci_api.answer("GET", listing[platform], 200, {"value": hostile} if platform == "azure-devops" else hostile)
    result = comment(write_summary(tmp_path, "plan\n"), job_env(fake_ci_api, platform, tmp_path))
    assert result.code == 1 and "without a numeric id" in result.stderr
    assert fake_ci_api.writes() == []


def test_an_azure_thread_is_found_by_its_property_too(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                      comment: Callable[..., Result]) -> None:
    # should Azure DevOps ever drop the hidden marker from a comment, the thread's property still names the part
    fake_ci_api.azure_strips_html_comments = True
    env = job_env(fake_ci_api, "azure-devops", tmp_path)
    for push in ("one", "two"):
        assert comment(write_summary(tmp_path, f"push {push}\n"), env).code == 0
    assert fake_ci_api.azure_bodies() == ["\npush two\n"]
    assert [t["properties"] for t in fake_ci_api.azure_threads] == [
        {"strata.plan": {"$type": "System.String", "$value": "key=plan part=1"}}]


def test_a_push_that_affects_no_stack_replaces_the_earlier_plan(fake_ci_api: FakeCiApi, tmp_path: Path,
                                                                strata: Callable[..., Result],
                                                                comment: Callable[..., Result]) -> None:
    # the pull request's comment showed a plan; the next push changes no stack: the comment must say so
    from conftest import write_tree
    from test_changes import commit_all, init

    repo = write_tree(tmp_path / "repo", {"strata.hcl": 'strata {}\nbackend "local" {}\n',
                                          "dev/app/strata.hcl": "stack {}\n", "dev/app/main.tf": "",
                                          "README.md": "docs\n", ".gitignore": ".strata/\n"})
    init(repo)
    base = commit_all(repo, "base")
    (repo / "README.md").write_text("docs only\n", encoding="utf-8")
    commit_all(repo, "a docs-only push")
    env = job_env(fake_ci_api, "github", tmp_path)
    fake_ci_api.add_github_comment(ONE + "## strata plan\n\ndev/app: 1 to add\n", "github-actions[bot]")
    planned = strata("plan", "--changed", "--base", base, "--allow-empty", "--summary-md", "plan.md", cwd=repo)
    assert planned.code == 0, planned.output
    assert "No stacks were planned" in (repo / "plan.md").read_text()
    assert comment(repo / "plan.md", env).code == 0
    [posted] = fake_ci_api.github_bodies()
    assert "No stacks were planned" in posted and "1 to add" not in posted
