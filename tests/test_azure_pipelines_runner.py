"""The local Azure Pipelines runner the pipeline tests use (tests/azure_pipelines.py) behaves as Azure does."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from azure_pipelines import (
    Connections,
    Evaluator,
    Job,
    PipelineError,
    Run,
    Variables,
    compile_templates,
    condition,
    credential_tasks,
    env_name,
)

CONTEXTS: dict[str, Any] = {
    "variables": {"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/heads/main", "flag": "true"},
    "dependencies": {"plan": {"result": "Succeeded", "outputs": {"select.groups": '{"a": {"x": "1"}}'}}},
    "stageDependencies": {"plan_staging": {"plan": {"result": "Skipped", "outputs": {"s.v": "7"}}}},
}


@pytest.mark.parametrize(("expression", "expected"), [
    ("eq(variables['Build.Reason'], 'PullRequest')", True),
    ("eq(variables['build.reason'], 'pullrequest')", True),  # names and string comparisons ignore case
    ("ne(variables['Build.Reason'], 'PullRequest')", False),
    ("and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'))", True),
    ("or(false, in(variables['Build.Reason'], 'IndividualCI', 'PullRequest'))", True),
    ("not(eq(variables.flag, 'false'))", True),
    ("eq(dependencies.plan.outputs['select.groups'], '')", False),
    ("eq(stageDependencies.plan_staging.plan.outputs['s.v'], 7)", True),
    ("eq(stageDependencies.plan_staging.plan.result, 'Skipped')", True),
    ("eq('none', 'none')", True),
    ("and(false, nosuchfunction())", False),  # and() short-circuits: the rest is not evaluated
    ("startsWith(variables['Build.SourceBranch'], 'refs/heads/')", True),
])
def test_expressions(expression: str, expected: Any) -> None:
    assert Evaluator(CONTEXTS, ["Succeeded"]).evaluate(expression) == expected


def test_status_functions_follow_the_dependencies() -> None:
    assert condition(None, Evaluator(CONTEXTS, ["Succeeded", "SucceededWithIssues"]))
    assert not condition(None, Evaluator(CONTEXTS, ["Succeeded", "Skipped"]))  # a skipped dependency
    assert not condition(None, Evaluator(CONTEXTS, ["Failed"]))
    assert condition("failed()", Evaluator(CONTEXTS, ["Failed"]))
    assert condition("succeededOrFailed()", Evaluator(CONTEXTS, ["Failed"]))
    assert condition("always()", Evaluator(CONTEXTS, ["Skipped"]))


def test_unknown_names_functions_and_templates_are_errors() -> None:
    with pytest.raises(PipelineError):
        Evaluator(CONTEXTS, []).evaluate("pipeline.x")
    with pytest.raises(PipelineError):
        Evaluator(CONTEXTS, []).evaluate("frobnicate(1)")
    with pytest.raises(PipelineError):
        compile_templates({"a": "${{ variables.x }}"}, {})
    with pytest.raises(PipelineError):
        compile_templates({"${{ if eq(1, 1) }}": {"a": 1}}, {})
    assert compile_templates({"c": "eq('${{ parameters.env }}', 'none')"}, {"env": "none"}) == \
        {"c": "eq('none', 'none')"}


def test_macros_and_environment_mapping() -> None:
    variables = Variables()
    variables.set("Pipeline.Workspace", "/w")
    variables.set("PIP_CACHE_DIR", "$(Pipeline.Workspace)/.pip")
    variables.set("System.AccessToken", "secret", secret=True)
    assert variables.expand("$(PIP_CACHE_DIR) $(Nope) $(strata ci base) $((1 + 1))") == \
        "/w/.pip $(Nope) $(strata ci base) $((1 + 1))"  # unknown macros stay, as Azure leaves them
    assert variables.environment() == {"PIPELINE_WORKSPACE": "/w", "PIP_CACHE_DIR": "/w/.pip"}  # no secret
    assert variables.expand("$(System.AccessToken)") == "secret"
    assert env_name("System.PullRequest.TargetBranch") == "SYSTEM_PULLREQUEST_TARGETBRANCH"


def _checkout(_inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
    (job.sources / "README").write_text("checked out\n")
    return "checkout"


def _run(tmp_path: Path, doc: dict[str, Any], **kwargs: Any) -> Run:
    run = Run(doc, predefined={"Build.Reason": kwargs.pop("reason", "IndividualCI"),
                               "Build.SourceBranch": "refs/heads/main"},
              secrets={"STRATA_PLAN_KEY": "k3y"}, machine_env={"PATH": "/usr/bin:/bin"}, agents=tmp_path,
              checkout=_checkout, **kwargs)
    run.execute()
    return run


PIPELINE: dict[str, Any] = {
    "trigger": {"branches": {"include": ["main"]}},
    "pr": {"branches": {"include": ["main"]}},
    "parameters": [{"name": "mode", "type": "string", "default": "none", "values": ["none", "x"]}],
    "variables": {"TOOL_DIR": "$(Pipeline.Workspace)/.tool"},
    "stages": [
        {"stage": "pr", "condition": "eq(variables['Build.Reason'], 'PullRequest')",
         "jobs": [{"job": "plan", "steps": [{"script": "exit 1"}]}]},
        {"stage": "build", "dependsOn": [], "jobs": [
            {"job": "first", "steps": [
                {"script": 'echo "##vso[task.setvariable variable=LATER]yes"\n'
                           'echo "##vso[task.setvariable variable=TOKEN;issecret=true]s3cret"\n'
                           'echo "##vso[task.setvariable variable=out;isOutput=true]$MODE-$(Build.Reason)"',
                 "name": "s", "env": {"MODE": "${{ parameters.mode }}"}},
                {"script": 'test "$LATER" = yes && test -z "$TOKEN" && test "$MINE" = s3cret\n'
                           'test "$TOOL_DIR" = "$PIPELINE_WORKSPACE/.tool" && test -z "$STRATA_PLAN_KEY"\n'
                           'test -f README && mkdir -p out && echo data > out/file && echo "# hi" > sum.md\n'
                           'echo "##vso[task.uploadsummary]$PWD/sum.md"',
                 "env": {"MINE": "$(TOKEN)"}},
                {"publish": "out", "artifact": "carried"},
            ]},
            {"job": "second", "dependsOn": "first",
             "variables": {"got": "$[ dependencies.first.outputs['s.out'] ]"},
             "steps": [{"script": 'test "$GOT" = none-IndividualCI'},
                       {"script": "false\necho the step goes on"},  # no -e: only the last status counts
                       {"script": "false"},
                       {"script": "echo never"},
                       {"script": "echo recovered", "condition": "failed()"}]},
        ]},
        {"stage": "deploy", "dependsOn": "build", "condition": "succeeded()", "jobs": []},
        {"stage": "release", "dependsOn": [], "jobs": [
            {"deployment": "apply", "environment": "production", "strategy": {"runOnce": {"deploy": {"steps": [
                {"download": "current", "artifact": "carried"},
                {"script": 'test "$(cat "$PIPELINE_WORKSPACE/carried/file")" = data && test ! -f README'},
            ]}}}},
        ]},
    ],
}


def test_a_pipeline_runs_stages_jobs_and_steps_as_azure_does(tmp_path: Path) -> None:
    asked: list[tuple[str, str]] = []
    run = _run(tmp_path, PIPELINE, approve=lambda stage, env: asked.append((stage, env)) is None)
    build = run.results["build"]
    first, second = build["first"][0], build["second"][0]
    assert first.result == "Succeeded", first.log
    assert first.outputs == {"s.out": "none-IndividualCI"} and first.summaries == ["# hi\n"]
    # a job checks out first; a failed step skips the rest except what runs on failed()
    assert [s.outcome for s in second.steps] == ["Succeeded", "Succeeded", "Succeeded", "Failed", "Skipped",
                                                 "Succeeded"], second.log
    assert second.result == "Failed"
    assert run.stage_results == {"pr": "Skipped", "build": "Failed", "deploy": "Skipped", "release": "Succeeded"}
    assert asked == [("release", "production")]
    assert run.results["release"]["apply"][0].log.count("Succeeded") == 2, run.results["release"]["apply"][0].log


def test_a_rejected_approval_fails_the_deployment(tmp_path: Path) -> None:
    doc = {**PIPELINE, "stages": [copy.deepcopy(PIPELINE["stages"][3])]}
    doc["stages"][0]["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"] = [{"script": "exit 0"}]
    run = _run(tmp_path, doc, approve=lambda _stage, _env: False)
    assert run.results["release"]["apply"][0].result == "Rejected"
    assert run.stage_results["release"] == "Failed"


def test_triggers_and_parameters(tmp_path: Path) -> None:
    run = Run(PIPELINE, predefined={"Build.Reason": "PullRequest", "System.PullRequest.TargetBranch":
                                    "refs/heads/release"}, secrets={}, machine_env={}, agents=tmp_path,
              checkout=_checkout)
    assert not run.triggered()
    with pytest.raises(PipelineError, match="not one of"):
        Run(PIPELINE, predefined={}, secrets={}, machine_env={}, agents=tmp_path, checkout=_checkout,
            parameters={"mode": "y"})


@pytest.mark.parametrize("step", [
    {"task": "Frobnicate@1"},
    {"script": "echo", "target": "host"},
    {"script": 'echo "##vso[task.setsecret]x"'},
    {"download": "other", "artifact": "a"},
])
def test_what_the_runner_does_not_simulate_fails_loudly(tmp_path: Path, step: dict[str, Any]) -> None:
    doc = {"stages": [{"stage": "s", "jobs": [{"job": "j", "steps": [step]}]}]}
    with pytest.raises(PipelineError):
        _run(tmp_path, doc)


def test_credential_tasks_run_their_inline_script_with_the_connection(tmp_path: Path) -> None:
    tasks = credential_tasks(Connections(
        azure={"arm": {"servicePrincipalId": "app", "tenantId": "t", "idToken": "jwt", "subscription": "sub"}},
        aws={"aws": {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}}))
    doc = {"stages": [{"stage": "s", "jobs": [{"job": "j", "steps": [
        {"task": "AzureCLI@2", "inputs": {"azureSubscription": "arm", "scriptType": "bash",
                                          "scriptLocation": "inlineScript", "addSpnToEnvironment": True,
                                          "inlineScript": 'echo "##vso[task.setvariable variable=SUB]'
                                                          '$(az account show --query id --output tsv)-$tenantId"'}},
        {"task": "AWSShellScript@1", "inputs": {"awsCredentials": "aws", "regionName": "eu-west-1",
                                                "scriptType": "inlineScript",
                                                "inlineScript": 'echo "##vso[task.setvariable variable=R]'
                                                                '$AWS_REGION-$AWS_ACCESS_KEY_ID"'}},
        {"script": 'test "$SUB" = sub-t && test "$R" = eu-west-1-AKIA && test -z "$AWS_ACCESS_KEY_ID"'},
        {"task": "AzureCLI@2", "inputs": {"azureSubscription": "missing", "scriptType": "bash",
                                          "scriptLocation": "inlineScript", "inlineScript": "true"}},
    ]}]}]}
    run = _run(tmp_path, doc, tasks=tasks)
    job = run.results["s"]["j"][0]
    assert [s.outcome for s in job.steps] == ["Succeeded", "Succeeded", "Succeeded", "Succeeded", "Failed"], job.log
    assert [c["connection"] for c in run.credentials] == ["arm", "aws", "missing"]


def test_a_matrix_from_an_output_variable_runs_one_leg_per_entry(tmp_path: Path) -> None:
    doc = {"stages": [{"stage": "s", "jobs": [
        {"job": "select", "steps": [{"name": "m", "script": "echo '##vso[task.setvariable variable=legs;isOutput="
                                                           'true]{"a": {"G": "1"}, "b": {"G": "2"}}\''}]},
        {"job": "fan", "dependsOn": "select",
         "strategy": {"matrix": "$[ dependencies.select.outputs['m.legs'] ]"},
         "steps": [{"script": 'echo "##vso[task.uploadsummary]$PWD/g" && echo "$G" > g'}]},
    ]}]}
    run = _run(tmp_path, doc)
    legs = run.results["s"]["fan"]
    assert [(leg.leg, leg.result) for leg in legs] == [("a", "Succeeded"), ("b", "Succeeded")], legs[0].log
