"""The generated Azure DevOps pipeline, executed for real (issue 12's acceptance, Azure's model).

Every step of azure-pipelines.yml runs (tests/azure_pipelines.py: scripts in bash as the agent runs them, with no
``-e``), in clones of a real git repository of the bundled example whose state is in a real PostgreSQL server,
with real terraform, with Azure DevOps' environment simulated: the predefined variables (``Build.Reason``,
``Build.SourceVersion``, ``System.PullRequest.*``, ``System.CollectionUri`` pointing at the Azure DevOps API
served on 127.0.0.1 by tests/fake_ci_api.py, the secret ``System.AccessToken`` and ``STRATA_PLAN_KEY``), the
pull request's merge commit, the service connections (AWS keys, recorded), pipeline artifacts carried between
stages, and the environments' approvals (given by the test, which records each check).

Tools: ``pip install tfstrata==...`` is answered by a shim on PATH (strata under test is already installed).
terraform is really downloaded, checksum-verified and unpacked by the generated step: its URL is a pipeline
variable (``STRATA_TOOL_URL``), which the test points at a release server on 127.0.0.1 serving a zip whose
``terraform`` runs the test machine's terraform 1.11, and the release's SHA256SUMS; no ``curl`` shim. strata
finds terraform on PATH, where the step put it (``STRATA_TERRAFORM`` is not set).

Azure DevOps cannot hand a pull request's plan to the pipeline of the merge, so (docs/ci.md) main plans, shows
the plan in the run summary, waits for the environment's approval and applies that saved plan. What it shows:
- the pull-request pipeline posts one PR thread, and a second push updates that same thread;
- the main pipeline's apply stage applies exactly the saved plan its plan stage made and showed, carried as a
  pipeline artifact; the approval of each environment is asked once, staging before production;
- a rejected approval applies nothing;
- a saved plan made stale between the plan stage and the approved apply (someone applied from elsewhere while
  the approval waited) is refused and nothing is applied;
- every job authenticates for its own cloud only (the test adds an Azure stack to production, so production has
  an AWS job and an Azure job), and no script sees another cloud's credentials;
- a download whose checksum does not match stops the job before strata runs.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from azure_pipelines import Connections, Job, JobResult, Run, credential_tasks
from ci_example import change, example_copy, git, pip_shim, publish
from conftest import Result, checkov_for_pipelines
from fake_ci_api import AZURE_PROJECT, AZURE_REPO, AZURE_TOKEN, PULL, FakeCiApi
from strata import __version__

pytestmark = pytest.mark.terraform
pytest_plugins = ["servers"]  # postgres_server: the state of every job's stacks

Strata = Callable[..., Result]
STACK = "staging/us-east-1/clients/ezra"  # the stack the pull requests change
SUBSCRIPTION = "5e1f0000-0000-4000-8000-00000000a2a2"
# a production stack on Azure, so that the pipeline has a job per cloud: it never changes, never runs terraform
AZURE_REGION = """region = "eastus"

locals {
  region_netnum      = 5
  region_code        = "eus"
  availability_zones = ["1", "2", "3"]
}
"""
AZURE_STACK = f"""cloud      = "azure"
account_id = "{SUBSCRIPTION}"

stack {{
  description = "The public DNS zone, on Azure"
}}
"""
# the service connections the generated file names by default: strata-aws (one AWS connection for both
# accounts) and strata-azure (workload identity federation) for the Azure stack the test adds to production,
# and their -plan twins, the read-only identities of the plan stages (a plan runs the pull request's code)
AWS_CONNECTIONS = {
    name: {"AWS_ACCESS_KEY_ID": "AKIAFAKEAZURE", "AWS_SECRET_ACCESS_KEY": "fake-secret",
           "AWS_SESSION_TOKEN": "fake-session"} for name in ("strata-aws", "strata-aws-plan")
}
AZURE_CONNECTIONS = {
    name: {"servicePrincipalId": "app-0001", "tenantId": "tenant-0001", "idToken": "fake-jwt",
           "subscription": SUBSCRIPTION} for name in ("strata-azure", "strata-azure-plan")
}


class ReleaseServer:
    """HashiCorp's release folder for one version, on 127.0.0.1: the zip and its SHA256SUMS."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Platform:
    """The simulated Azure DevOps project: the origin repository, the fake API, the agents' machine."""

    tmp: Path
    origin: Path
    dev: Path  # a developer's clone
    api: FakeCiApi
    releases: ReleaseServer
    machine_env: dict[str, str]
    key: str
    strata_env: dict[str, str]  # what a developer's strata needs (terraform, provider mirror)
    policy: bool  # whether `strata plan --policy` exists
    runs: list[Run] = field(default_factory=list)

    # -- the repository ---------------------------------------------------------------------------------------

    def change(self, old: str, new: str, message: str) -> str:
        """Commit a change of the stack's inputs on the feature branch and push it; the new head SHA."""
        return change(self.dev, STACK, old, new, message)

    def merge_ref(self) -> str:
        """refs/pull/N/merge: Azure's merge of the source branch into the target, the commit a PR build runs."""
        work = self.tmp / f"merge-{PULL}-{len(self.runs)}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "merge", "-q", "--no-ff", "-m", f"Merge pull request {PULL} from feature into main",
            "origin/feature")
        git(work, "push", "-q", "-f", "origin", f"HEAD:refs/pull/{PULL}/merge")
        return git(work, "rev-parse", "HEAD")

    def complete(self) -> str:
        """Complete the pull request with a merge commit (Azure's default); the new head of main."""
        work = self.tmp / f"complete-{len(self.runs)}"
        git(self.tmp, "clone", "-q", str(self.origin), str(work))
        git(work, "merge", "-q", "--no-ff", "-m", f"Merged PR {PULL}: ezra", "origin/feature")
        git(work, "push", "-q", "origin", "main")
        return git(work, "rev-parse", "HEAD")

    # -- running the pipeline ---------------------------------------------------------------------------------

    def pipeline(self, sha: str) -> dict[str, Any]:
        text = git(self.origin, "show", f"{sha}:azure-pipelines.yml")
        if not self.policy:  # no checkov here: the plans go unchecked
            text = text.replace(" --policy", "")
        doc = yaml.safe_load(text)
        assert isinstance(doc, dict)
        doc["variables"]["STRATA_TOOL_URL"] = self.releases.url  # HashiCorp's release site, on loopback
        return doc

    def run(self, sha: str, variables: dict[str, str], *, approve: Callable[[str, str], bool] | None = None,
            doc: dict[str, Any] | None = None, parameters: dict[str, str] | None = None) -> Run:
        number = len(self.runs) + 1
        agents = self.tmp / f"run-{number}"
        agents.mkdir()
        predefined = {
            "TF_BUILD": "True", "Agent.OS": "Linux", "Build.BuildId": str(900 + number),
            "Build.SourceVersion": sha, "Build.Repository.ID": AZURE_REPO, "Build.Repository.Name": "infra",
            "System.CollectionUri": f"{self.api.url}/acme/", "System.TeamProject": AZURE_PROJECT,
            **variables,
        }

        def checkout(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
            if inputs["checkout"] == "none":  # a job that needs no sources (the destroy's confirmation)
                return "no checkout"
            assert inputs["checkout"] == "self"
            assert str(inputs.get("fetchDepth")) == "0", "change detection needs the history"
            git(job.sources, "init", "-q")
            git(job.sources, "remote", "add", "origin", str(self.origin))
            refspecs = ["+refs/heads/*:refs/remotes/origin/*"]
            if variables["Build.Reason"] == "PullRequest":
                refspecs.append(f"+refs/pull/{PULL}/merge:refs/remotes/pull/{PULL}/merge")
            git(job.sources, "fetch", "-q", "origin", *refspecs)
            git(job.sources, "checkout", "-q", "--detach", sha)
            return f"checked out {sha}"

        run = Run(doc or self.pipeline(sha), predefined=predefined,
                  secrets={"System.AccessToken": AZURE_TOKEN, "STRATA_PLAN_KEY": self.key},
                  machine_env=self.machine_env, agents=agents, checkout=checkout,
                  tasks=credential_tasks(Connections(aws=AWS_CONNECTIONS, azure=AZURE_CONNECTIONS)), approve=approve,
                  parameters=parameters)
        self.runs.append(run)
        assert run.triggered()
        run.execute()
        return run

    def pull_request(self, head: str, **kwargs: Any) -> Run:
        merge = self.merge_ref()
        return self.run(merge, {
            "Build.Reason": "PullRequest", "Build.SourceBranch": f"refs/pull/{PULL}/merge",
            "System.PullRequest.PullRequestId": str(PULL), "System.PullRequest.TargetBranch": "refs/heads/main",
            "System.PullRequest.SourceBranch": "refs/heads/feature", "System.PullRequest.SourceCommitId": head,
        }, **kwargs)

    def main(self, after: str, approve: Callable[[str, str], bool]) -> Run:
        return self.run(after, {"Build.Reason": "IndividualCI", "Build.SourceBranch": "refs/heads/main"},
                        approve=approve)

    def destroy(self, environment: str, confirm: str, approve: Callable[[str, str], bool]) -> Run:
        """A manual run of main with the destroy parameters, as typed on Azure's run form."""
        head = git(self.origin, "rev-parse", "refs/heads/main")
        return self.run(head, {"Build.Reason": "Manual", "Build.SourceBranch": "refs/heads/main"}, approve=approve,
                        parameters={"destroyEnvironment": environment, "confirmDestroy": confirm})

    def state(self, strata: Strata) -> dict[str, Any]:
        pulled = strata("state", "pull", STACK, cwd=self.dev, env=self.strata_env)
        assert pulled.code == 0, pulled.output
        return dict(json.loads(pulled.stdout))


def legs(run: Run) -> list[JobResult]:
    return [leg for jobs in run.results.values() for results in jobs.values() for leg in results]


def log(run: Run) -> str:
    return "\n".join(f"=== {r.stage}/{r.job} [{r.result}]\n{r.log}" for r in legs(run))


def job(run: Run, stage: str, name: str) -> JobResult:
    (result,) = run.results[stage][name]
    return result


def _release(folder: Path, zip_name: str, sums_name: str, terraform: str) -> None:
    folder.mkdir()
    with zipfile.ZipFile(folder / zip_name, "w") as z:  # stands for the real binary: runs this machine's
        info = zipfile.ZipInfo("terraform")
        info.external_attr = 0o755 << 16
        z.writestr(info, f'#!/bin/sh\nexec "{terraform}" "$@"\n')
    digest = hashlib.sha256((folder / zip_name).read_bytes()).hexdigest()
    (folder / sums_name).write_text(f"{'0' * 64}  terraform_0.0.0_linux_amd64.zip\n{digest}  {zip_name}\n")


@pytest.fixture
def platform(tmp_path: Path, strata: Strata, fake_ci_api: FakeCiApi, postgres_server: Any, tf_111: str,
             provider_mirror: dict[str, str]) -> Iterator[Platform]:
    url = postgres_server.url(postgres_server.create_database())
    repo = example_copy(tmp_path, f'backend "pg" {{\n  conn_str = "{url}"\n}}')
    (repo / "production" / "eastus" / "dns").mkdir(parents=True)
    (repo / "production" / "eastus" / "strata.hcl").write_text(AZURE_REGION)
    (repo / "production" / "eastus" / "dns" / "strata.hcl").write_text(AZURE_STACK)
    (repo / "production" / "eastus" / "dns" / "main.tf").write_text('resource "null_resource" "zone" {}\n')
    generated = strata("ci", "generate", "azure-devops", cwd=repo)
    assert generated.code == 0, generated.output
    variables = yaml.safe_load((repo / "azure-pipelines.yml").read_text())["variables"]
    releases = tmp_path / "releases"
    _release(releases, variables["STRATA_TOOL_ZIP"], variables["STRATA_TOOL_SUMS"], tf_111)
    shims = pip_shim(tmp_path)
    machine_env = {  # the agent machine: no terraform on PATH, no strata settings
        "PATH": os.pathsep.join([str(shims), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8", "NO_COLOR": "1", **provider_mirror,
    }
    if "PYTHONPATH" in os.environ:  # a worktree's sources under test
        machine_env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    origin, dev = publish(tmp_path, repo, "the example, its pipeline")
    strata_env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    # what is deployed before the pull request: the stack and the layers it depends on
    applied = strata("apply", "--yes", "-q", "--env", "staging", "--region", "us-east-1", cwd=dev, env=strata_env)
    assert applied.code == 0, applied.output
    key = strata("ci", "plans", "key").stdout.strip()
    server = ReleaseServer(releases)
    try:
        yield Platform(tmp_path, origin, dev, fake_ci_api, server, machine_env, key, strata_env,
                       checkov_for_pipelines(tmp_path / "home") and "--policy" in strata("plan", "--help").stdout)
    finally:
        server.stop()


def assert_own_credentials(run: Run) -> None:
    """Each job authenticated through its own cloud's service connection only (the pull-request plan, which
    plans every stack, through both), and its scripts saw that cloud's credentials and no other's."""
    assert run.credentials, "no job authenticated"
    tasks = {"aws": "AWSShellScript@1", "azure": "AzureCLI@2"}
    mapped = {"aws": ("AWS_ACCESS_KEY_ID", "AKIAFAKEAZURE"), "azure": ("ARM_CLIENT_ID", "app-0001")}
    for result in legs(run):
        if result.result == "Skipped" or result.job.startswith("destroy") or result.job == "confirm":
            continue
        own = {"aws", "azure"} if result.stage == "plan" else {c for c in tasks if f"_{c}_" in result.job}
        assert len(own) == (2 if result.stage == "plan" else 1), result.job
        used = {c["task"] for c in run.credentials if (c["stage"], c["job"]) == (result.stage, result.job)}
        assert used == {tasks[c] for c in own}, (result.job, used)
        connections = {c["connection"] for c in run.credentials if (c["stage"], c["job"]) == (result.stage, result.job)}
        plans = result.stage.startswith("plan")  # never the apply identity: a plan runs the pull request's code
        assert all(c.endswith("-plan") == plans for c in connections), (result.stage, result.job, connections)
        for step in result.steps:
            for cloud, (name, _value) in mapped.items():
                if cloud not in own:
                    assert name not in step.env, (result.job, step.name, name)
            assert not [k for k in step.env if k.startswith("GOOGLE_")], (result.job, step.name)
            if step.name.startswith(("Plan", "Apply the saved")):
                for cloud in own:
                    name, value = mapped[cloud]
                    assert step.env.get(name) == value, (result.job, step.name, name)


def test_the_pull_request_thread_is_updated_and_main_applies_the_plan_it_showed(
        platform: Platform, strata: Strata) -> None:
    p = platform
    first = p.change('"standard"', '"gold"', "ezra: gold tier")
    run = p.pull_request(first)
    assert run.stage_results["plan"] == "Succeeded", log(run)
    assert all(run.stage_results[s] == "Skipped" for s in run.stage_results if s != "plan"), run.stage_results
    bodies = p.api.azure_bodies()
    assert len(bodies) == 1, log(run)
    assert "ezra" in bodies[0] and first[:7] in bodies[0]
    assert job(run, "plan", "plan").summaries and "ezra" in job(run, "plan", "plan").summaries[0]
    assert_own_credentials(run)

    second = p.change('"Ezra"', '"Ezra Ltd"', "ezra: its display name")
    run = p.pull_request(second)
    assert run.stage_results["plan"] == "Succeeded", log(run)
    bodies = p.api.azure_bodies()
    assert len(bodies) == 1 and second[:7] in bodies[0], log(run)  # the same thread, updated in place
    assert [r.method for r in p.api.writes()].count("POST") == 1, p.api.writes()

    serial_before = p.state(strata)["serial"]
    after = p.complete()
    approvals: list[tuple[str, str, int]] = []

    def approve(stage: str, environment: str) -> bool:
        approvals.append((stage, environment, p.state(strata)["serial"]))
        return True

    run = p.main(after, approve)
    text = log(run)
    assert run.stage_results == {"plan": "Skipped", "plan_staging": "Succeeded", "apply_staging": "Succeeded",
                                 "plan_production": "Succeeded", "apply_production": "Succeeded",
                                 "destroy_confirm": "Skipped", "destroy": "Skipped"}, text
    planned = job(run, "plan_staging", "plan_staging_aws_111111111111")
    assert "planning main" in planned.log and planned.summaries and "ezra" in planned.summaries[0], text
    assert "Applying the plan reviewed" not in text
    # the approver saw the plan before anything was applied; staging first, production once staging applied
    assert [a[:2] for a in approvals] == [("apply_staging", "staging"), ("apply_production", "production")]
    assert approvals[0][2] == serial_before < approvals[1][2], approvals
    carried = run.artifacts["strata-plans-staging-aws-111111111111"]
    assert sorted(carried) == ["plans.bundle", "stacks.txt"] and carried["stacks.txt"].decode().split() == [STACK]
    applied = job(run, "apply_staging", "apply_staging_aws_111111111111")
    assert applied.environment == "staging" and "plans.bundle" not in applied.log
    assert p.state(strata)["serial"] > serial_before, text
    assert "nothing to apply" in job(run, "apply_production", "apply_production_aws_222222222222").log
    assert_own_credentials(run)
    assert {c["job"] for c in run.credentials if c["task"] == "AzureCLI@2"} == \
        {f"{s}_production_azure_{SUBSCRIPTION.replace('-', '_')}" for s in ("plan", "apply")}, run.credentials
    assert p.releases.requests, "terraform was not downloaded"
    installs = (p.tmp / "pip-installs.log").read_text().splitlines()
    assert installs and all(line == f"install tfstrata[all]=={__version__}" for line in installs), installs


def test_a_rejected_approval_applies_nothing(platform: Platform, strata: Strata) -> None:
    p = platform
    p.change('"standard"', '"gold"', "ezra: gold tier")
    after = p.complete()
    serial = p.state(strata)["serial"]
    run = p.main(after, lambda _stage, environment: environment != "staging")
    text = log(run)
    assert run.stage_results["plan_staging"] == "Succeeded", text
    assert job(run, "apply_staging", "apply_staging_aws_111111111111").result == "Rejected", text
    assert run.stage_results["apply_production"] == "Skipped", text
    assert p.state(strata)["serial"] == serial, text


def test_a_plan_made_stale_while_the_approval_waits_is_refused(platform: Platform, strata: Strata) -> None:
    p = platform
    p.change('"standard"', '"gold"', "ezra: gold tier")
    after = p.complete()

    def approve(stage: str, environment: str) -> bool:
        if environment == "staging":  # while the approval waits, someone applies the stack from elsewhere
            applied = strata("apply", "--yes", "-q", STACK, cwd=p.dev, env=p.strata_env)
            assert applied.code == 0, applied.output
        return True

    run = p.main(after, approve)
    text = log(run)
    serial = p.state(strata)["serial"]
    assert run.stage_results["plan_staging"] == "Succeeded", text
    assert run.stage_results["apply_staging"] == "Failed", text
    assert run.stage_results["apply_production"] == "Skipped", text  # production waits for staging
    assert "stale" in job(run, "apply_staging", "apply_staging_aws_111111111111").log, text
    assert p.state(strata)["serial"] == serial, text  # nothing applied after the refusal


def test_a_download_that_does_not_match_its_checksum_stops_the_job(platform: Platform) -> None:
    p = platform
    zip_path = next(p.releases.folder.glob("*.zip"))
    with zipfile.ZipFile(zip_path, "a") as z:
        z.writestr("extra", "tampered")
    head = p.change('"standard"', '"gold"', "ezra: gold tier")
    run = p.pull_request(head)
    result = job(run, "plan", "plan")
    assert result.result == "Failed", result.log
    outcomes = {s.name: s.outcome for s in result.steps}
    assert outcomes[next(n for n in outcomes if n.startswith("Install terraform"))] == "Failed", result.log
    assert outcomes["Plan"] == "Skipped", result.log
    assert p.api.azure_bodies() == []


def test_a_manual_destroy_needs_the_environment_typed_again(platform: Platform, strata: Strata) -> None:
    p = platform
    asked: list[tuple[str, str]] = []

    def approve(stage: str, environment: str) -> bool:
        asked.append((stage, environment))
        return True

    serial = p.state(strata)["serial"]
    run = p.destroy("staging", "production", approve)  # the second field mistyped
    text = log(run)
    # the confirmation is checked in a stage before the destroy: no approver is asked for a refused run
    assert {s: r for s, r in run.stage_results.items() if r != "Skipped"} == {"destroy_confirm": "Failed"}, text
    refused = job(run, "destroy_confirm", "confirm")
    assert refused.result == "Failed" and "confirmDestroy differs" in refused.log, text
    assert asked == [], asked
    assert p.state(strata)["serial"] == serial  # nothing destroyed

    run = p.destroy("staging", "staging", approve)
    text = log(run)
    assert job(run, "destroy", "destroy_staging_aws_111111111111").result == "Succeeded", text
    assert {r.job: r.result for r in legs(run) if r.job.startswith("destroy_production")} == {
        "destroy_production_aws_222222222222": "Skipped",
        f"destroy_production_azure_{SUBSCRIPTION.replace('-', '_')}": "Skipped"}, text
    assert p.state(strata)["resources"] == [], text
    assert set(asked) == {("destroy", "staging")}, asked
    assert_own_credentials(run)
