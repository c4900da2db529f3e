"""The generated GitLab CI pipeline, executed for real (issue 12's acceptance, on GitLab).

Every job of the ``.gitlab-ci.yml`` that ``strata ci generate gitlab`` writes runs in bash (tests/gitlab_ci.py:
before_script + script in one ``set -eo pipefail`` session, as GitLab's shell runner does), each in its own clone
of a real git repository of the bundled example (the runner's checkout at ``CI_COMMIT_SHA``) whose state is in a
real PostgreSQL server, with real terraform. GitLab is simulated: the predefined variables of a merge request
pipeline and of a push to main, the project's CI/CD variables (STRATA_GITLAB_TOKEN, STRATA_PLAN_KEY), the
``id_tokens`` (fake JWTs), the artifacts passed through ``needs`` and the GitLab API on 127.0.0.1
(tests/fake_ci_api.py: merge request notes; here also the merge requests of a commit and the raw artifact of a
ref's latest successful pipeline, served from the artifacts the simulated merge request pipelines kept).

Tools: ``pip install tfstrata==...`` is answered by a shim on PATH (strata under test is already installed). The
terraform download runs as generated (curl, SHA256SUMS check, unzip): its URL is the ``STRATA_TOOL_URL`` variable,
which the test overrides as a project CI/CD variable (they win over the file's) to point at a release server on
127.0.0.1 serving the zip and its SHA256SUMS. The zip holds a two-line ``terraform`` that execs the machine's real
terraform 1.11 (the real 90 MB binary, unzipped in every job, would make the test slow for nothing). No
STRATA_TERRAFORM is set: strata finds that downloaded terraform on PATH.

What it shows:
- the merge request pipeline posts one note, and a second push updates that same note;
- its plan job keeps every summary part and a terraform report per stack as artifacts;
- the pipeline on main fetches the plan artifact of the merge request's last commit through the API and applies
  that reviewed plan; production's apply waits for an approver, who starts it;
- a plan made stale by a change of state after the review is refused, and nothing is applied;
  (in a merged results pipeline: the plan is found at the merge request's merge ref);
- a pipeline run from the web UI offers the destroy jobs only; one runs when the environment's name is typed,
  and destroys it;
- each job gets an OIDC token for its own cloud only and assumes its own environment's role.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci_example import GITIGNORE, change, example_copy, git, publish
from conftest import Result, checkov_for_pipelines
from fake_ci_api import GITLAB_PROJECT, GITLAB_TOKEN, PULL, FakeCiApi, Recorded, Reply
from gitlab_ci import JobResult, Pipeline, jwt_claims
from strata.run import terraform_report

pytestmark = pytest.mark.terraform
pytest_plugins = ["servers"]  # postgres_server: the state of every job's stacks

Strata = Callable[..., Result]
STACK = "staging/us-east-1/clients/ezra"  # the stack the merge requests change
PROJECT_PATH = "acme/infra"
MR_REF = f"refs/merge-requests/{PULL}/head"
ROLE = """ci {
  aws {
    role      = "arn:aws:iam::{account_id}:role/strata-ci-{environment}"
    plan_role = "arn:aws:iam::{account_id}:role/strata-plan-{environment}"
  }
"""
ROLES = {"staging": "arn:aws:iam::111111111111:role/strata-ci-staging",
         "production": "arn:aws:iam::222222222222:role/strata-ci-production"}
# plan jobs (the merge request's, main's) run code from the merge request: never the apply role
PLAN_ROLES = {"staging": "arn:aws:iam::111111111111:role/strata-plan-staging",
              "production": "arn:aws:iam::222222222222:role/strata-plan-production"}
APPROVED = "apply-production-aws-222222222222"  # the protected environment's manual job


@dataclass
class Run:
    """One simulated pipeline: its ref, commit and jobs."""

    ref: str
    sha: str
    pipeline: Pipeline
    jobs: dict[str, JobResult]

    @property
    def log(self) -> str:
        return "\n".join(f"=== {name} [{job.status}]\n{job.log}" for name, job in self.jobs.items())

    @property
    def succeeded(self) -> bool:
        return not any(j.status == "failed" for j in self.jobs.values())


@dataclass
class Platform:
    """The simulated GitLab: the origin repository, the API, the runner's environment and the pipelines run."""

    tmp: Path
    origin: Path
    dev: Path  # a developer's clone, on the feature branch
    api: FakeCiApi
    env: dict[str, str]  # the runner's own environment (PATH, HOME, terraform's CLI configuration)
    project_variables: dict[str, str]
    terraform: str
    policy: bool  # whether this strata's plan has --policy
    runs: list[Run] = field(default_factory=list)

    def change(self, old: str, new: str, message: str) -> str:
        """Commit a change of the stack's inputs on the feature branch and push it; the new head SHA."""
        head = change(self.dev, STACK, old, new, message)
        git(self.dev, "push", "-q", "origin", f"HEAD:{MR_REF}")  # GitLab keeps the MR's head at this ref
        return head

    def merge(self) -> tuple[str, str]:
        """Merge the merge request into main (a merge commit, GitLab's default); (before, after)."""
        before = git(self.origin, "rev-parse", "refs/heads/main")
        work = self.tmp / f"merge-main-{len(self.runs)}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "merge", "-q", "--no-ff", "-m", f"Merge branch 'feature' into 'main' (!{PULL})", "origin/feature")
        git(work, "push", "-q", "origin", "main")
        return before, git(work, "rev-parse", "HEAD")

    def merge_request_pipeline(self, head: str, *, merged_results: bool = False) -> Run:
        """A merge request pipeline of ``head``; with ``merged_results``, GitLab's merged results pipeline: it
        runs on the MR merged into main (refs/merge-requests/N/merge), the MR's head in another variable."""
        main = git(self.origin, "rev-parse", "refs/heads/main")
        diff_base = git(self.origin, "merge-base", main, head)
        variables = {
            "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": str(PULL),
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": diff_base, "CI_COMMIT_REF_NAME": "feature",
            "CI_COMMIT_BEFORE_SHA": "0" * 40}
        if not merged_results:
            return self.run(MR_REF, head, variables)
        work = self.tmp / f"merged-result-{len(self.runs)}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "checkout", "-q", "--detach", main)  # GitLab's merge ref: main with the MR merged in
        git(work, "merge", "-q", "--no-ff", "-m", f"Merge branch 'feature' into 'main' (!{PULL})", head)
        ref = f"refs/merge-requests/{PULL}/merge"
        git(work, "push", "-q", "origin", f"HEAD:{ref}")
        variables.update({"CI_MERGE_REQUEST_EVENT_TYPE": "merged_result", "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA": head,
                          "CI_MERGE_REQUEST_TARGET_BRANCH_SHA": main})
        return self.run(ref, git(work, "rev-parse", "HEAD"), variables)

    def main_pipeline(self, before: str, after: str) -> Run:
        return self.run("main", after, {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main",
                                        "CI_COMMIT_REF_NAME": "main", "CI_COMMIT_BEFORE_SHA": before})

    def run(self, ref: str, sha: str, pipeline_variables: dict[str, str]) -> Run:
        number = len(self.runs) + 1
        run_dir = self.tmp / f"pipeline-{number}"
        run_dir.mkdir()
        variables = {
            **self.env, "CI": "true", "GITLAB_CI": "true", "CI_SERVER_URL": "https://gitlab.invalid",
            "CI_API_V4_URL": f"{self.api.url}/api/v4", "CI_PROJECT_ID": GITLAB_PROJECT,
            "CI_PROJECT_PATH": PROJECT_PATH, "CI_DEFAULT_BRANCH": "main", "CI_COMMIT_SHA": sha,
            "CI_PIPELINE_ID": str(500 + number), **pipeline_variables,
        }
        text = git(self.origin, "show", f"{sha}:.gitlab-ci.yml")
        if not self.policy:  # no checkov here: the plans go unchecked
            text = text.replace(" --policy", "")
        origin = self.origin

        def checkout(folder: Path, _variables: Mapping[str, str]) -> None:
            git(folder, "init", "-q")
            git(folder, "remote", "add", "origin", str(origin))
            git(folder, "fetch", "-q", "origin", "+refs/heads/*:refs/remotes/origin/*",
                "+refs/merge-requests/*:refs/merge-requests/*")
            git(folder, "checkout", "-q", "--detach", sha)

        def workspace(job: str) -> Path:
            path = run_dir / job
            path.mkdir()
            return path

        pipeline = Pipeline(yaml.safe_load(text), variables=variables, checkout=checkout,
                            workspace_factory=workspace, project_variables=self.project_variables)
        run = Run(ref, sha, pipeline, pipeline.run())
        self.runs.append(run)
        return run


def _install_gitlab_routes(p: Platform) -> None:
    """The merge requests of a commit and ``jobs/artifacts/:ref/raw/:path?job=`` (the file from that job of the
    ref's latest successful pipeline), as GitLab's API answers them."""
    base = f"/api/v4/projects/{GITLAB_PROJECT}"

    def raw_artifact(request: Recorded, match: re.Match[str]) -> Reply:
        if request.headers.get("private-token") != GITLAB_TOKEN:
            return Reply(401, {"message": "401 Unauthorized"})
        ref, path = match.group(1), match.group(2)
        for run in reversed(p.runs):
            if run.ref == ref and run.succeeded:
                job = run.jobs.get(request.query.get("job", ""))
                if job is not None and job.status == "success" and path in job.artifacts:
                    return Reply(200, job.artifacts[path], {"Content-Type": "application/octet-stream"})
                break
        return Reply(404, {"message": "404 Not found"})

    p.api.route("GET", rf"{base}/jobs/artifacts/(.+?)/raw/(.+)", raw_artifact)


def merged(p: Platform, after: str, head: str) -> None:
    """GitLab's answer to the merge requests of the merge commit ``after``: !7 merged, last commit ``head``."""
    p.api.route("GET", rf"/api/v4/projects/{GITLAB_PROJECT}/repository/commits/{after}/merge_requests",
                lambda _r, _m: Reply(200, [{"iid": PULL, "state": "merged", "sha": head,
                                            "merge_commit_sha": after, "squash_commit_sha": None}]))


@pytest.fixture
def release_server(tmp_path: Path, tf_111: str) -> Iterator[tuple[str, list[str]]]:
    """HashiCorp's release folder for terraform 1.11.4 on 127.0.0.1: the zip and its SHA256SUMS; (url, paths
    requested)."""
    folder = tmp_path / "releases" / "terraform" / "1.11.4"
    folder.mkdir(parents=True)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("terraform", f'#!/bin/sh\nexec "{tf_111}" "$@"\n')
    zip_name = "terraform_1.11.4_linux_amd64.zip"
    (folder / zip_name).write_bytes(archive.getvalue())
    digest = hashlib.sha256(archive.getvalue()).hexdigest()
    (folder / "terraform_1.11.4_SHA256SUMS").write_text(f"{'0' * 64}  terraform_1.11.4_darwin_arm64.zip\n"
                                                         f"{digest}  {zip_name}\n")
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path / "releases"), **kwargs)

        def do_GET(self) -> None:
            requested.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/terraform/1.11.4", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _origin(tmp_path: Path, strata: Strata, backend: str) -> tuple[Path, Path]:
    """The example with ``backend`` and the ci block's roles, its generated pipeline, in a bare origin repository;
    (origin, a developer's clone on the feature branch)."""
    repo = example_copy(tmp_path, backend, ci_block=ROLE, gitignore=GITIGNORE + ".cache/\n")
    generated = strata("ci", "generate", "gitlab", cwd=repo)
    assert generated.code == 0, generated.output
    origin, dev = publish(tmp_path, repo, "the example, its pipeline")
    return origin, dev


def _platform(tmp_path: Path, strata: Strata, api: FakeCiApi, origin: Path, dev: Path, tf_111: str,
              provider_mirror: dict[str, str], release_url: str) -> Platform:
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "pip").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path / "pip-installs.log"}"\n')
    (shims / "pip").chmod(0o755)
    env = {  # no terraform on PATH: the jobs download theirs
        "PATH": os.pathsep.join([str(shims), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8", "NO_COLOR": "1", **provider_mirror,
    }
    assert not (Path("/usr/bin") / "terraform").exists()
    if "PYTHONPATH" in os.environ:  # a worktree's sources under test
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    key = strata("ci", "plans", "key").stdout.strip()
    project_variables = {"STRATA_GITLAB_TOKEN": GITLAB_TOKEN, "STRATA_PLAN_KEY": key, "STRATA_TOOL_URL": release_url}
    policy = checkov_for_pipelines(tmp_path / "home") and "--policy" in strata("plan", "--help").stdout
    p = Platform(tmp_path, origin, dev, api, env, project_variables, tf_111, policy)
    _install_gitlab_routes(p)
    return p


@pytest.fixture
def platform(tmp_path: Path, strata: Strata, fake_ci_api: FakeCiApi, postgres_server: Any, tf_111: str,
             provider_mirror: dict[str, str], release_server: tuple[str, list[str]]) -> Platform:
    url = postgres_server.url(postgres_server.create_database())
    origin, dev = _origin(tmp_path, strata, f'backend "pg" {{\n  conn_str = "{url}"\n}}')
    # what is deployed before the merge request: the region of the stack and the layers it depends on
    applied = strata("apply", "--yes", "-q", "--env", "staging", "--region", "us-east-1", cwd=dev,
                     env={**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"})
    assert applied.code == 0, applied.output
    return _platform(tmp_path, strata, fake_ci_api, origin, dev, tf_111, provider_mirror, release_server[0])


def state_of(p: Platform, strata: Strata) -> dict[str, Any]:
    pulled = strata("state", "pull", STACK, cwd=p.dev, env={"STRATA_TERRAFORM": p.terraform})
    assert pulled.code == 0, pulled.output
    return dict(json.loads(pulled.stdout))


def assert_own_cloud_only(job: JobResult, environment: str) -> None:
    """The job got an OIDC token for AWS only and assumed its environment's role (a plan job: its plan role),
    with no other cloud's login."""
    assert {v: c["aud"] for v, c in job.id_tokens.items()} == {"STRATA_AWS_ID_TOKEN": "sts.amazonaws.com"}, job.name
    assert jwt_claims(job.variables["STRATA_AWS_ID_TOKEN"])["aud"] == "sts.amazonaws.com"
    roles = PLAN_ROLES if job.name == "plan" or job.name.startswith("plan-") else ROLES
    assert job.exported.get("AWS_ROLE_ARN") == roles[environment], (job.name, job.log)
    assert not {k for k in job.exported if k.startswith(("ARM_", "GOOGLE_"))}, job.name


def test_the_merge_request_note_is_updated_and_main_applies_the_reviewed_plan(
        platform: Platform, strata: Strata, release_server: tuple[str, list[str]]) -> None:
    p = platform
    first = p.change('"standard"', '"gold"', "ezra: gold tier")
    run = p.merge_request_pipeline(first)
    assert set(run.jobs) == {"plan"} and run.jobs["plan"].status == "success", run.log
    plan = run.jobs["plan"]
    bodies = p.api.gitlab_bodies()
    assert len(bodies) == 1, run.log
    assert "ezra" in bodies[0] and first[:7] in bodies[0]
    assert_own_cloud_only(plan, "staging")
    # every part of the summary kept, the encrypted plans, and a terraform report for the changed stack
    workspace = Path(plan.variables["CI_PROJECT_DIR"])
    parts = sorted(f.name for f in workspace.glob("plan*.md"))
    assert parts and [a for a in plan.artifacts if a.endswith(".md")] == parts, plan.artifacts.keys()
    assert "strata-plans.bundle" in plan.artifacts
    assert list(plan.reports["terraform"]) == [f"strata-reports/{terraform_report.file_name(STACK)}"], plan.reports
    assert "terraform_1.11.4_SHA256SUMS" in "".join(release_server[1])
    assert "terraform_1.11.4_linux_amd64.zip: OK" in plan.log

    second = p.change('"Ezra"', '"Ezra Ltd"', "ezra: its display name")
    run = p.merge_request_pipeline(second)
    assert run.jobs["plan"].status == "success", run.log
    bodies = p.api.gitlab_bodies()
    assert len(bodies) == 1 and second[:7] in bodies[0], run.log  # the same note, updated in place
    assert [r.method for r in p.api.writes()].count("POST") == 1

    serial_before = state_of(p, strata)["serial"]
    before, after = p.merge()
    merged(p, after, second)
    run = p.main_pipeline(before, after)
    jobs = run.jobs
    assert "plan" not in jobs and not any(n.startswith("destroy-") for n in jobs), list(jobs)
    assert all(j.status == "success" for n, j in jobs.items() if n != APPROVED), run.log
    assert jobs[APPROVED].status == "manual", run.log  # production waits for an approver
    staging_plan = jobs["plan-staging-aws-111111111111"]
    assert "Applying the plan reviewed in the pull request" in staging_plan.log, run.log
    assert "planning main" not in run.log
    fetched = [r for r in p.api.requests if "/jobs/artifacts/" in r.path]
    assert fetched and fetched[-1].path.endswith(f"/jobs/artifacts/{MR_REF}/raw/strata-plans.bundle"), fetched
    assert state_of(p, strata)["serial"] > serial_before, run.log
    for name, job in jobs.items():
        if job.status == "success":
            assert_own_cloud_only(job, "staging" if "staging" in name else "production")
    assert jobs["apply-staging-aws-111111111111"].environment == {"name": "staging", "deployment_tier": "staging"}
    assert jobs["apply-staging-aws-111111111111"].resource_group == "apply-staging-aws-111111111111"

    approved = run.pipeline.play(APPROVED)  # the approver starts production's apply: nothing changed there
    assert approved.status == "success", approved.log
    assert "nothing to apply" in approved.log
    assert_own_cloud_only(approved, "production")


def test_a_reviewed_plan_made_stale_after_the_review_is_refused(platform: Platform, strata: Strata) -> None:
    p = platform
    head = p.change('"standard"', '"gold"', "ezra: gold tier")
    run = p.merge_request_pipeline(head, merged_results=True)  # the merge request merged into main, as a test
    assert run.jobs["plan"].status == "success", run.log
    assert run.sha != head and head[:7] in p.api.gitlab_bodies()[0], run.log  # the note names the MR's commit
    # after the review, someone applies the stack from elsewhere: the state moves on
    applied = strata("apply", "--yes", "-q", STACK, cwd=p.dev,
                     env={"STRATA_TERRAFORM": p.terraform, "STRATA_NO_LIVE": "1",
                          **{k: v for k, v in p.env.items() if k.startswith(("TF_", "CHECKPOINT"))}})
    assert applied.code == 0, applied.output
    serial = state_of(p, strata)["serial"]
    before, after = p.merge()
    merged(p, after, head)
    run = p.main_pipeline(before, after)
    assert "Applying the plan reviewed in the pull request" in run.jobs["plan-staging-aws-111111111111"].log, run.log
    fetched = [r.path for r in p.api.requests if "/jobs/artifacts/" in r.path]
    assert fetched[-1].endswith(f"/jobs/artifacts/refs/merge-requests/{PULL}/merge/raw/strata-plans.bundle"), fetched
    # refused in the plan job, before anyone is asked to approve it
    refused = run.jobs["plan-staging-aws-111111111111"]
    assert refused.status == "failed" and "stale" in refused.log, run.log
    assert run.jobs["apply-staging-aws-111111111111"].status != "success", run.log
    assert run.jobs[APPROVED].status == "skipped", run.log  # production does not follow a failed staging
    assert state_of(p, strata)["serial"] == serial, run.log  # nothing applied


def test_a_pipeline_run_from_the_web_ui_only_offers_the_destroy_jobs(platform: Platform, strata: Strata) -> None:
    """Run from the web UI on main, the pipeline neither plans nor applies (were production's blocking approval in
    it, the destroy jobs of the later stage could not be started); a destroy job runs when the environment's name
    is typed on the play form, and destroys it."""
    p = platform
    assert state_of(p, strata)["resources"]
    head = git(p.origin, "rev-parse", "refs/heads/main")
    run = p.run("main", head, {"CI_PIPELINE_SOURCE": "web", "CI_COMMIT_BRANCH": "main", "CI_COMMIT_REF_NAME": "main",
                               "CI_COMMIT_BEFORE_SHA": "0" * 40})
    assert {n: j.status for n, j in run.jobs.items()} == {"destroy-production": "manual",
                                                         "destroy-staging": "manual"}, run.log
    refused = run.pipeline.play("destroy-staging", {"CONFIRM": "production"})  # the wrong environment typed
    assert refused.status == "failed" and "set CONFIRM to staging to destroy it" in refused.log, refused.log
    assert "$ strata destroy" not in refused.log
    assert state_of(p, strata)["resources"]
    destroyed = run.pipeline.play("destroy-staging", {"CONFIRM": "staging"})  # retried with the right name
    assert destroyed.status == "success", destroyed.log
    assert_own_cloud_only(destroyed, "staging")
    assert destroyed.environment == {"name": "staging", "action": "stop"}
    assert state_of(p, strata)["resources"] == [], destroyed.log
