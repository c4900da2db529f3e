"""Hostile names never reach a shell or break the YAML of a generated pipeline (issue 10, item 8).

Two layers, each tested on its own:
- validation: an environment (any dimension), a stack name or a folder of a stack's path outside the safe set
  is an error at its file:line naming the characters and the allowed set, and `strata ci generate` refuses;
- the generator, called directly with names validation would refuse (defence in depth): every file parses
  as YAML and reads back the exact name, passes actionlint / the GitLab CI schema, and every script that
  handles the name, run by bash with the variables the CI system would set, passes it to strata as one
  argument and runs nothing else (no PWNED file appears).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLE, Result, snapshot, write_tree
from strata.ci import generate
from strata.ci.generate import q
from strata.errors import Source, StrataError
from strata.model.repository import Repository
from strata.model.stack import Setting
from strata.workspace import Workspace
from test_ci import ACTIONLINT, CHECK_JSONSCHEMA, actionlint, run, write

Strata = Callable[..., Result]

# what an attacker (or an unlucky typist) puts in a name
HOSTILE = [
    "qa$(touch${IFS}PWNED)",
    "qa`touch PWNED`",
    "it's",
    'say "hi"; touch PWNED; echo "',
    "a: b # c",
    "line1\ntouch PWNED",
    "tab\there & touch PWNED",
    "back\\slash'$(touch PWNED)'",
    "- [x, {y: z}]",
    "ünïcødé\u2028\x85",
]
RULE = "allowed: ASCII letters, digits, '.', '_' and '-'"


# -- validation: the real CLI ------------------------------------------------------------------------------------

def hcl_string(value: str) -> str:
    """``value`` as an HCL quoted string (``${`` is a template in HCL: ``$${`` is a literal one)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + escaped.replace("${", "$${") + '"'


@pytest.mark.parametrize("value", HOSTILE[:8])
def test_a_hostile_environment_is_refused_at_its_line(strata: Strata, tmp_path: Path, value: str) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "dev/app/strata.hcl": f"stack {{}}\n\nenvironment = {hcl_string(value)}\n",
    })
    before = snapshot(root)
    result = strata("validate", cwd=root)
    assert result.code == 1, result.output
    assert "dev/app/strata.hcl:3: error: environment" in result.output, result.output
    assert "not safe" in result.output and RULE in result.output, result.output
    generated = strata("ci", "generate", "gitlab", cwd=root)
    assert generated.code == 1, generated.output
    assert "dev/app/strata.hcl:3" in generated.output
    assert snapshot(root) == before  # nothing written
    assert not list(tmp_path.rglob("PWNED"))


def test_a_hostile_stack_name_is_refused_at_its_line(strata: Strata, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "dev/app/strata.hcl": 'stack {\n  name = "app`id`"\n}\n',
    })
    result = strata("validate", cwd=root)
    assert result.code == 1
    assert "dev/app/strata.hcl:2: error: stack name" in result.output and "'`'" in result.output, result.output


def test_a_hostile_folder_in_a_stack_path_is_refused(strata: Strata, tmp_path: Path) -> None:
    folder = "app$(touch PWNED)"
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", f"dev/{folder}/strata.hcl": "stack {}\n"})
    result = strata("validate", cwd=root)
    assert result.code == 1
    assert f"dev/{folder}/strata.hcl:1: error: folder name {folder!r}" in result.output, result.output
    assert RULE in result.output
    assert not list(tmp_path.rglob("PWNED"))


# -- the generator on names validation refuses ---------------------------------------------------------------------

@pytest.mark.parametrize("value", [*HOSTILE, "", "${{ github.token }}", "$(System.AccessToken)", "#", "'", '"',
                                   "\x00\x07\x1b", "\U0001f600", "null", "true", "0x1F", "~", "*anchor", "&a"])
def test_q_reads_back_exactly(value: str) -> None:
    assert yaml.safe_load(f"key: {q(value)}  # a comment\n") == {"key": value}
    assert "\n" not in q(value)


@pytest.fixture
def hostile_repo(request: pytest.FixtureRequest) -> tuple[Repository, str, str]:
    """The example with its staging environment renamed ``other`` and production renamed ``prod`` (a
    production environment), both names that validation refuses."""
    other, prod = request.param
    repo = Workspace(cwd=EXAMPLE).repository()
    renames = {"staging": other, "production": prod}
    for stack in repo.stacks.values():
        env = stack.environment
        if env in renames:
            stack.dimensions["environment"] = Setting(renames[env], Source(note="test"))
    repo.settings.production_environments = (prod,)
    repo.settings.ci = None  # the example's ci block names staging and production
    return repo, other, prod


PAIRS = [(HOSTILE[i], HOSTILE[(i + 1) % len(HOSTILE)]) for i in range(len(HOSTILE))]


def fake_strata(folder: Path) -> Path:
    """A `strata` that records each call's arguments, NUL-separated, in a file of its own under $CALLS."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    script = bin_dir / "strata"
    script.write_text('#!/bin/sh\nn=$(ls "$CALLS" | wc -l)\nprintf "%s\\0" "$@" > "$CALLS/call-$n"\n'
                      # as the real one, plan --summary-md writes the summary whatever it planned
                      'case " $* " in *" --summary-md plan.md "*) echo "the plan" > plan.md ;; esac\n')
    script.chmod(0o755)
    return bin_dir


def run_script(script: str, env: dict[str, str], tmp_path: Path) -> tuple[int, list[list[str]]]:
    """Run ``script`` with bash -e in a fresh folder with ``env``; the strata calls it made. The folder (and
    the test's whole tmp_path) must be without a PWNED file afterwards."""
    work = tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}"
    work.mkdir()
    bin_dir = fake_strata(work)
    calls_dir = work / "calls"
    calls_dir.mkdir()
    full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls_dir), "HOME": str(work), **env}
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=full, capture_output=True, text=True,
                          timeout=30, check=False)
    assert not list(tmp_path.rglob("PWNED")), (script, env, proc.stdout, proc.stderr)
    calls = [p.read_bytes().decode().split("\0")[:-1] for p in sorted(calls_dir.iterdir())]
    return proc.returncode, calls


def strata_env_arg(call: list[str]) -> str:
    return call[call.index("--env") + 1]


@pytest.mark.parametrize("hostile_repo", PAIRS, indirect=True)
def test_github_workflows_with_hostile_names(hostile_repo: tuple[Repository, str, str], tmp_path: Path) -> None:
    repo, other, prod = hostile_repo
    files = generate("github", repo)
    apply = yaml.safe_load(files[".github/workflows/strata-apply.yml"])
    destroy = yaml.safe_load(files[".github/workflows/strata-destroy.yml"])
    jobs = {name: job for name, job in apply["jobs"].items() if name.startswith("apply-")}
    assert len(jobs) == 8  # 4 waves of each environment
    assert {job["environment"] for job in jobs.values()} == {other, prod}
    plans = [job for name, job in apply["jobs"].items() if name.startswith("plan-")]
    assert sorted(job["name"] for job in plans) == sorted([f"Plan {other}", f"Plan {prod}"])
    assert destroy[True]["workflow_dispatch"]["inputs"]["environment"]["options"] == sorted([other, prod])
    for job in jobs.values():
        env = job["environment"]
        assert job["name"].startswith(f"Apply {env} (")
        (step,) = [s for s in job["steps"] if "strata apply" in s.get("run", "")]
        assert step["name"] == f"Apply the saved plans of {env}"
        assert step["env"]["STRATA_ENVIRONMENT"] == env
        code, calls = run_script(step["run"], {"STRATA_STACKS": "a/b c/d",
                                               "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}, tmp_path)
        assert code == 0 and calls == [["ci", "plans", "unpack", "strata-plans.bundle"],
                                       ["plan", "a/b", "c/d", "--keep-valid", "--policy", "--summary-md", "plan.md",
                                        "--summary-format", "github"],
                                       ["apply", "--plan", "a/b", "c/d", "--yes"]]
    # destroy: the inputs arrive through env:, the confirmation compares them
    steps = destroy["jobs"]["destroy"]["steps"]
    check = next(s for s in steps if s.get("name") == "Check the confirmation")
    gone = next(s for s in steps if s.get("name") == "Destroy")
    for confirm, code_wanted in ((other, 0), (prod, 1)):
        code, _ = run_script(check["run"], {"ENVIRONMENT": other, "CONFIRM": confirm}, tmp_path)
        assert code == code_wanted
    code, calls = run_script(gone["run"], {"ENVIRONMENT": other}, tmp_path)
    assert code == 0 and [strata_env_arg(c) for c in calls] == [other]
    if ACTIONLINT.exists():
        result = actionlint(write(files, tmp_path / "out"), tmp_path / "out")
        assert result.returncode == 0, result.stdout + result.stderr


ROLES = {"STRATA_AWS_ROLE_ARN": "arn:x", "STRATA_AWS_PLAN_ROLE_ARN": "arn:plan"}  # the apply and the plan identity


@pytest.mark.parametrize("hostile_repo", PAIRS, indirect=True)
def test_gitlab_pipeline_with_hostile_names(hostile_repo: tuple[Repository, str, str], tmp_path: Path) -> None:
    repo, other, prod = hostile_repo
    text = generate("gitlab", repo)[".gitlab-ci.yml"]
    ci = yaml.safe_load(text)
    jobs = {name: job for name, job in ci.items() if name.startswith(("plan-", "apply-", "destroy-"))}
    assert len(jobs) == 6
    for name, job in jobs.items():
        env = job["environment"]["name"] if "environment" in job else job["variables"]["STRATA_ENVIRONMENT"]["value"]
        assert env in (other, prod)
        variables = {k: v["value"] if isinstance(v, dict) else v for k, v in job["variables"].items()}
        assert variables["STRATA_ENVIRONMENT"] == env and job["variables"]["STRATA_ENVIRONMENT"]["expand"] is False
        script = "\n".join(job["script"])
        if name.startswith("destroy-"):
            code, calls = run_script(script, {**variables, "CONFIRM": "nope"}, tmp_path)
            assert code == 1 and calls == []  # refused: CONFIRM is not the environment's name
            variables["CONFIRM"] = env
        if name.startswith("apply-"):
            code, calls = run_script(script, {**variables, **ROLES}, tmp_path)
            assert code == 0 and calls == [], (name, calls)  # no saved plan of this group: nothing to apply
            continue
        code, calls = run_script(script, {**variables, **ROLES}, tmp_path)
        assert code == 0, (name, calls)
        assert [strata_env_arg(c) for c in calls if "--env" in c] == [env] * (2 if name.startswith("destroy-")
                                                                         else 1), (name, calls)
    if CHECK_JSONSCHEMA.exists():
        (path,) = write({".gitlab-ci.yml": text}, tmp_path / "out")
        result = run([CHECK_JSONSCHEMA, "--builtin-schema", "vendor.gitlab-ci", path], tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


def deploy_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job["strategy"]["runOnce"]["deploy"]["steps"]
    return steps


@pytest.mark.parametrize("hostile_repo", PAIRS, indirect=True)
def test_azure_pipeline_with_hostile_names(hostile_repo: tuple[Repository, str, str], tmp_path: Path) -> None:
    repo, other, prod = hostile_repo
    pipeline = yaml.safe_load(generate("azure-devops", repo)["azure-pipelines.yml"])
    params = {p["name"]: p for p in pipeline["parameters"]}
    assert params["destroyEnvironment"]["values"] == ["none", *sorted([other, prod])]
    applies = [s for s in pipeline["stages"] if s["stage"].startswith("apply_")]
    assert len(applies) == 2
    for stage in applies:
        (job,) = stage["jobs"]
        env = job["environment"]
        assert stage["displayName"] == f"Apply {env}"
        (step,) = [s for s in deploy_steps(job) if "strata apply" in s.get("script", "")]
        assert step["env"]["STRATA_ENVIRONMENT"] == env
        code, calls = run_script(step["script"], {**step["env"], "PLANS": str(tmp_path / "none")}, tmp_path)
        assert code == 0 and calls == []  # no saved plan of this group: nothing to apply
    for stage in (s for s in pipeline["stages"] if s["stage"].startswith("plan_")):
        (job,) = stage["jobs"]
        (step,) = [s for s in job["steps"] if "strata ci matrix" in s.get("script", "")]
        code, calls = run_script(step["script"], step["env"], tmp_path)
        assert code == 0 and [strata_env_arg(c) for c in calls if "--env" in c] == [step["env"]["STRATA_ENVIRONMENT"]]
    destroy = next(s for s in pipeline["stages"] if s["stage"] == "destroy")
    for job in destroy["jobs"]:
        env = job["environment"]
        assert job["condition"] == "eq('${{ parameters.destroyEnvironment }}', '" + env.replace("'", "''") + "')"
        steps = deploy_steps(job)
        check = next(s for s in steps if s.get("displayName") == "Check the confirmation")
        code, _ = run_script(check["script"], {"ENVIRONMENT": other, "CONFIRM": prod}, tmp_path)
        assert code == 1
        gone = steps[-1]
        code, calls = run_script(gone["script"], gone["env"], tmp_path)
        assert code == 0 and [strata_env_arg(c) for c in calls] == [env]


@pytest.mark.parametrize("hostile_repo", [("qa.1", "qa-1")], indirect=True)
def test_two_environments_with_one_job_name_are_refused(hostile_repo: tuple[Repository, str, str]) -> None:
    repo, _, _ = hostile_repo
    with pytest.raises(StrataError, match=re.escape("'qa-1' and 'qa.1' would share the CI job names")):
        generate("gitlab", repo)


def test_bash_is_available() -> None:
    assert shutil.which("bash"), "these tests run the generated scripts with bash"
