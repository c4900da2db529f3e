"""The generated GitHub Actions pipelines, executed for real (issue 12's acceptance).

Every ``run:`` step of the generated workflows runs in bash (tests/gha.py), in clones of a real git repository
of the bundled example whose state is in a real PostgreSQL server, with real terraform, with GitHub's
environment simulated: the event payload file, the SHAs and refs, ``$GITHUB_OUTPUT``/``$GITHUB_STEP_SUMMARY``,
and the GitHub API served on 127.0.0.1 (tests/fake_ci_api.py: comments, the merged pull request of a commit,
artifacts). Actions are simulated: checkout clones the repository at the event's commit, upload-artifact
keeps the file (and publishes the pull request's artifact to the fake API, as GitHub does), download-artifact
gives it back, the setup and credential actions record what they were given. ``pip install tfstrata``
is the one command a shim answers (strata under test is already installed).

What it shows:
- the pull-request job posts one comment, and a second push updates that same comment;
- the job on main applies the saved plan of the pull request's last commit (not a plan of its own);
- a plan made stale by a change of state after the review is refused, and nothing is applied;
- a request that changes a layer's outputs: main applies the layer's reviewed plan, then plans its dependents
  again with the new outputs (their reviewed plans saw the old ones) and applies them, wave by wave;
- each job authenticates only for its own stacks' cloud, with the environment's role.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_example import change, example_copy, git, pip_shim, publish
from conftest import Result, checkov_for_pipelines
from fake_ci_api import GITHUB_TOKEN, PULL, REPO, FakeCiApi, Recorded, Reply
from gha import JobRun, Workflow

pytestmark = pytest.mark.terraform
pytest_plugins = ["servers"]  # postgres_server: the state of every job's stacks

Strata = Callable[..., Result]
STACK = "staging/us-east-1/clients/ezra"  # the stack the pull requests change
# the example's ci block (staging, then production once approved) gains the role of each environment's account
ROLE = """ci {
  aws {
    role      = "arn:aws:iam::{account_id}:role/strata-ci-{environment}"
    plan_role = "arn:aws:iam::{account_id}:role/strata-plan-{environment}"
  }
"""


@dataclass
class Platform:
    """The simulated GitHub: the origin repository, the fake API and the runners' shared environment."""

    tmp: Path
    origin: Path
    dev: Path  # a developer's clone
    api: FakeCiApi
    env: dict[str, str]
    key: str
    credentials: list[dict[str, Any]] = field(default_factory=list)  # what the credential actions were given
    installs: Path = field(init=False)
    policy: bool = field(init=False)  # checkov is there: the plans are checked (plan --policy)
    runs: int = 0

    def __post_init__(self) -> None:
        self.installs = self.tmp / "pip-installs.log"
        self.policy = checkov_for_pipelines(Path(self.env["HOME"]))

    # -- the repository ---------------------------------------------------------------------------------------

    def change(self, old: str, new: str, message: str, stack: str = STACK) -> str:
        """Commit a change of the stack's inputs on the feature branch and push it; the new head SHA."""
        return change(self.dev, stack, old, new, message)

    def merge_ref(self, number: int) -> str:
        """refs/pull/N/merge: the feature branch merged into main, as GitHub prepares it for a PR run."""
        work = self.tmp / f"merge-{number}-{self.runs}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "checkout", "-q", "origin/feature")
        git(work, "merge", "-q", "--no-ff", "-m", "merge", "origin/main")
        sha = git(work, "rev-parse", "HEAD")
        git(work, "push", "-q", "origin", f"HEAD:refs/pull/{number}/merge")
        return sha

    def merge(self) -> tuple[str, str]:
        """Merge the feature branch into main (a merge commit, as the merge button makes); (before, after)."""
        before = git(self.origin, "rev-parse", "refs/heads/main")
        work = self.tmp / f"merge-main-{self.runs}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "merge", "-q", "--no-ff", "-m", "Merge pull request #7", "origin/feature")
        git(work, "push", "-q", "origin", "main")
        return before, git(work, "rev-parse", "HEAD")

    # -- running a workflow -----------------------------------------------------------------------------------

    def run(self, workflow: str, event_name: str, event: dict[str, Any], sha: str, ref: str,
            head_sha: str) -> dict[str, list[Any]]:
        self.runs += 1
        run_dir = self.tmp / f"run-{self.runs}"
        run_dir.mkdir()
        event_path = run_dir / "event.json"
        event_path.write_text(json.dumps(event))
        env = {**self.env, "GITHUB_EVENT_NAME": event_name, "GITHUB_EVENT_PATH": str(event_path),
               "GITHUB_SHA": sha, "GITHUB_REF": ref, "GITHUB_RUN_ID": str(1000 + self.runs),
               "GITHUB_REF_NAME": ref.removeprefix("refs/heads/"),
               "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/{workflow}@{ref}"}
        if event_name == "pull_request":
            env.update({"GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "feature"})
        text = self.origin_file(sha, f".github/workflows/{workflow}")
        doc = yaml.safe_load(text if self.policy else text.replace(" --policy", ""))  # no checkov: unchecked
        contexts = {
            "github": {"event_name": event_name, "event": event, "sha": sha, "ref": ref, "token": GITHUB_TOKEN,
                       "repository": REPO, "base_ref": env.get("GITHUB_BASE_REF", ""), "run_id": self.runs},
            "secrets": {"STRATA_PLAN_KEY": self.key}, "vars": {}, "inputs": {},
            "runner": {"os": "Linux", "temp": str(run_dir)},
        }

        def workspace(job: str) -> Path:
            path = run_dir / job
            n = 2
            while path.exists():
                path = run_dir / f"{job}-{n}"
                n += 1
            path.mkdir()
            return path

        def checkout(_inputs: dict[str, Any], job: JobRun) -> dict[str, str]:
            git(job.workspace, "init", "-q")
            git(job.workspace, "fetch", "-q", str(self.origin), "+refs/heads/*:refs/remotes/origin/*",
                "+refs/pull/*:refs/remotes/pull/*")
            git(job.workspace, "remote", "add", "origin", str(self.origin))
            git(job.workspace, "checkout", "-q", "--detach", sha)
            return {}

        def noop(_inputs: dict[str, Any], _job: JobRun) -> dict[str, str]:
            return {}

        def credentials(name: str) -> Callable[[dict[str, Any], JobRun], dict[str, str]]:
            def record(inputs: dict[str, Any], job: JobRun) -> dict[str, str]:
                self.credentials.append({"action": name, "job": job.job, "matrix": job.matrix, **inputs})
                return {}
            return record

        def upload(inputs: dict[str, Any], job: JobRun) -> dict[str, str]:
            data = (job.workspace / inputs["path"]).read_bytes()
            members = {Path(inputs["path"]).name: data}
            if inputs["name"] in wf.artifacts and not inputs.get("overwrite"):
                raise RuntimeError(f"artifact {inputs['name']} exists")
            wf.artifacts[inputs["name"]] = members
            self.publish(inputs["name"], members, head_sha)
            return {}

        def download(inputs: dict[str, Any], job: JobRun) -> dict[str, str]:
            for name, data in wf.artifacts[inputs["name"]].items():
                (job.workspace / name).write_bytes(data)
            return {}

        actions = {
            "actions/checkout": checkout, "actions/setup-python": noop, "actions/cache": noop,
            "hashicorp/setup-terraform": noop, "opentofu/setup-opentofu": noop,
            "aws-actions/configure-aws-credentials": credentials("aws"), "azure/login": credentials("azure"),
            "google-github-actions/auth": credentials("gcp"),
            "actions/upload-artifact": upload, "actions/download-artifact": download,
        }
        wf = Workflow(doc, actions=actions, base_env=env, contexts=contexts, workspace_factory=workspace)
        return wf.run()

    def origin_file(self, sha: str, path: str) -> str:
        return git(self.origin, "show", f"{sha}:{path}")

    def publish(self, name: str, members: dict[str, bytes], head_sha: str) -> None:
        """An artifact as GitHub's API lists it, downloadable as a zip."""
        number = len(self.api.artifacts) + 1
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            for member, data in members.items():
                z.writestr(member, data)
        self.api.artifacts.append({
            "id": number, "name": name, "expired": False, "created_at": f"2026-12-04T00:00:{number:02d}Z",
            "archive_download_url": f"{self.api.url}/repos/{REPO}/actions/artifacts/{number}/zip",
            "workflow_run": {"id": 5000 + number, "head_sha": head_sha}, "zip": archive.getvalue()})


def _install_github_routes(api: FakeCiApi, pulls: dict[str, dict[str, Any]]) -> None:
    api.artifacts = []  # type: ignore[attr-defined]

    def commit_pulls(_request: Recorded, match: Any) -> Reply:
        return Reply(200, [pulls[match.group(1)]] if match.group(1) in pulls else [])

    def list_artifacts(request: Recorded, _match: Any) -> Reply:
        found = [{k: v for k, v in a.items() if k != "zip"} for a in api.artifacts  # type: ignore[attr-defined]
                 if a["name"] == request.query.get("name")]
        found.sort(key=lambda a: a["created_at"], reverse=True)
        return Reply(200, {"total_count": len(found), "artifacts": found})

    def download(_request: Recorded, match: Any) -> Reply:
        artifact = api.artifacts[int(match.group(1)) - 1]  # type: ignore[attr-defined]
        return Reply(200, artifact["zip"], {"Content-Type": "application/zip"})

    api.route("GET", rf"/repos/{REPO}/commits/([0-9a-f]+)/pulls", commit_pulls)
    api.route("GET", rf"/repos/{REPO}/actions/artifacts", list_artifacts)
    api.route("GET", rf"/repos/{REPO}/actions/artifacts/(\d+)/zip", download)


@pytest.fixture
def platform(tmp_path: Path, strata: Strata, fake_ci_api: FakeCiApi, postgres_server: Any, tf_111: str,
             provider_mirror: dict[str, str]) -> Platform:
    url = postgres_server.url(postgres_server.create_database())
    repo = example_copy(tmp_path, f'backend "pg" {{\n  conn_str = "{url}"\n}}', ci_block=ROLE)
    shims = pip_shim(tmp_path)
    env = {
        "PATH": os.pathsep.join([str(shims), str(Path(sys.executable).parent), str(Path(tf_111).parent),
                                 "/usr/bin", "/bin"]),
        "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8", "NO_COLOR": "1", "CI": "true", "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": fake_ci_api.url, "GITHUB_REPOSITORY": REPO, "GITHUB_SERVER_URL": "https://github.invalid",
        "STRATA_TERRAFORM": tf_111, **provider_mirror,
    }
    if "PYTHONPATH" in os.environ:  # a worktree's sources under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    generated = strata("ci", "generate", "github", cwd=repo)
    assert generated.code == 0, generated.output
    origin, dev = publish(tmp_path, repo, "the example, its pipelines")
    # what is deployed before the pull request: the stack and the layers it depends on
    applied = strata("apply", "--yes", "-q", "--env", "staging", "--region", "us-east-1", cwd=dev,
                     env={**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"})
    assert applied.code == 0, applied.output
    key = strata("ci", "plans", "key").stdout.strip()
    _install_github_routes(fake_ci_api, {})
    return Platform(tmp_path, origin, dev, fake_ci_api, env, key)


def _job_log(results: dict[str, list[Any]]) -> str:
    return "\n".join(f"=== {name} [{r.result}] {r.matrix or ''}\n{r.log}" for name, runs in results.items()
                     for r in runs)


def pull_request_run(p: Platform, head: str) -> dict[str, list[Any]]:
    merge = p.merge_ref(PULL)
    base = git(p.origin, "rev-parse", "refs/heads/main")
    event = {"number": PULL, "pull_request": {"number": PULL, "head": {"sha": head, "ref": "feature"},
                                              "base": {"sha": base, "ref": "main"}}}
    return p.run("strata-plan.yml", "pull_request", event, merge, f"refs/pull/{PULL}/merge", head)


def state_of(p: Platform, strata: Strata, stack: str = STACK) -> dict[str, Any]:
    pulled = strata("state", "pull", stack, cwd=p.dev, env={"STRATA_TERRAFORM": p.env["STRATA_TERRAFORM"]})
    assert pulled.code == 0, pulled.output
    return dict(json.loads(pulled.stdout))


def test_the_pull_request_comment_is_updated_and_main_applies_the_reviewed_plan(
        platform: Platform, strata: Strata) -> None:
    p = platform
    first = p.change('"standard"', '"gold"', "ezra: gold tier")
    results = pull_request_run(p, first)
    log = _job_log(results)
    assert all(r.result == "success" for runs in results.values() for r in runs), log
    bodies = p.api.github_bodies()
    assert len(bodies) == 1, log
    assert "ezra" in bodies[0] and first[:7] in bodies[0]
    # the pull request's plan runs its code: the plan role, never the apply role
    roles = {c["role-to-assume"] for c in p.credentials if c["action"] == "aws"}
    assert roles == {"arn:aws:iam::111111111111:role/strata-plan-staging"}, p.credentials
    p.credentials.clear()

    second = p.change('"Ezra"', '"Ezra Ltd"', "ezra: its display name")
    results = pull_request_run(p, second)
    log = _job_log(results)
    assert all(r.result == "success" for runs in results.values() for r in runs), log
    bodies = p.api.github_bodies()
    assert len(bodies) == 1 and second[:7] in bodies[0], log  # the same comment, updated in place
    assert [r.method for r in p.api.writes()].count("POST") == 1

    serial_before = state_of(p, strata)["serial"]
    before, after = p.merge()
    p.api.route("GET", rf"/repos/{REPO}/commits/{after}/pulls",
                lambda _r, _m: Reply(200, [{"number": PULL, "head": {"sha": second}, "merged_at": "2026-12-04"}]))
    results = p.run("strata-apply.yml", "push", {"before": before, "after": after, "ref": "refs/heads/main"},
                    after, "refs/heads/main", after)
    log = _job_log(results)
    assert all(r.result in ("success", "skipped") for runs in results.values() for r in runs), log
    assert "Applying the plan reviewed in the pull request" in log, log
    assert "planning main" not in log
    state = state_of(p, strata)
    assert state["serial"] > serial_before, log
    roles = {(c["job"].split("-")[0], c["role-to-assume"]) for c in p.credentials if c["action"] == "aws"}
    assert roles == {("plan", "arn:aws:iam::111111111111:role/strata-plan-staging"),
                     ("apply", "arn:aws:iam::111111111111:role/strata-ci-staging")}, p.credentials


def test_a_reviewed_plan_made_stale_after_the_review_is_refused(platform: Platform, strata: Strata) -> None:
    p = platform
    head = p.change('"standard"', '"gold"', "ezra: gold tier")
    results = pull_request_run(p, head)
    assert all(r.result == "success" for runs in results.values() for r in runs), _job_log(results)
    # after the review, someone applies the stack from elsewhere: the state moves on
    applied = strata("apply", "--yes", "-q", STACK, cwd=p.dev,
                     env={"STRATA_TERRAFORM": p.env["STRATA_TERRAFORM"], "STRATA_NO_LIVE": "1",
                          **{k: v for k, v in p.env.items() if k.startswith(("TF_", "CHECKPOINT"))}})
    assert applied.code == 0, applied.output
    serial = state_of(p, strata)["serial"]
    before, after = p.merge()
    p.api.route("GET", rf"/repos/{REPO}/commits/{after}/pulls",
                lambda _r, _m: Reply(200, [{"number": PULL, "head": {"sha": head}, "merged_at": "2026-12-04"}]))
    results = p.run("strata-apply.yml", "push", {"before": before, "after": after, "ref": "refs/heads/main"},
                    after, "refs/heads/main", after)
    log = _job_log(results)
    assert any(r.result == "failure" for runs in results.values() for r in runs), log
    assert "stale" in log, log
    assert state_of(p, strata)["serial"] == serial, log  # nothing applied


def test_dependents_of_a_changed_layer_are_planned_again_with_its_new_outputs(platform: Platform,
                                                                             strata: Strata) -> None:
    p = platform
    foundation = "staging/us-east-1/01-foundation"
    vpc_before = outputs_of(p, strata, foundation)["vpc_id"]
    # a new VPC name replaces the VPC: its id (an output every layer above reads) changes
    head = p.change('"%s-vpc"', '"%s-network"', "foundation: rename the VPC", stack=foundation)
    results = pull_request_run(p, head)
    assert all(r.result == "success" for runs in results.values() for r in runs), _job_log(results)
    before, after = p.merge()
    p.api.route("GET", rf"/repos/{REPO}/commits/{after}/pulls",
                lambda _r, _m: Reply(200, [{"number": PULL, "head": {"sha": head}, "merged_at": "2026-12-04"}]))
    results = p.run("strata-apply.yml", "push", {"before": before, "after": after, "ref": "refs/heads/main"},
                    after, "refs/heads/main", after)
    log = _job_log(results)
    assert all(r.result in ("success", "skipped") for runs in results.values() for r in runs), log
    assert "Applying the plan reviewed in the pull request" in log
    first = "\n".join(r.log for r in results["apply-staging-1"])
    assert "saved plan kept: still valid" in first, first  # the foundation: exactly the reviewed plan
    later = "\n".join(r.log for name, runs in results.items() if name.startswith("apply-staging-")
                      and name != "apply-staging-1" for r in runs)
    assert "planned again: the outputs of its dependencies changed since the saved plan" in later, later
    vpc_after = outputs_of(p, strata, foundation)["vpc_id"]
    assert vpc_after != vpc_before
    assert outputs_of(p, strata, STACK)["vpc_id"] == vpc_after  # the client applied with the new VPC


def outputs_of(p: Platform, strata: Strata, stack: str) -> dict[str, Any]:
    shown = strata("output", "--json", stack, cwd=p.dev, env={"STRATA_TERRAFORM": p.env["STRATA_TERRAFORM"]})
    assert shown.code == 0, shown.output
    document = json.loads(shown.stdout)
    values = document["stacks"][stack]
    assert isinstance(values, dict), document
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in values.items()}
