"""The local GitLab CI runner the pipeline tests use (tests/gitlab_ci.py) does what GitLab does."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gitlab_ci import Expression, Pipeline, PipelineError, deep_merge, jwt_claims, merge_variables, resolve_job

VARIABLES = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": "", "CI_DEFAULT_BRANCH": "main",
             "CI_COMMIT_REF_NAME": "feature/x", "EMPTY": ""}


@pytest.mark.parametrize(("expression", "expected"), [
    ('$CI_PIPELINE_SOURCE == "merge_request_event"', True),
    ("$CI_PIPELINE_SOURCE == 'push'", False),
    ("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", False),
    ('$CI_PIPELINE_SOURCE != "push"', True),
    ("$CI_COMMIT_REF_NAME =~ /^feature\\//", True),
    ("$CI_COMMIT_REF_NAME !~ /^FEATURE/i", False),
    ("$CI_DEFAULT_BRANCH", True),  # presence
    ("$EMPTY", False),  # set but empty: false
    ("$MISSING", False),
    ("$MISSING == null", True),
    ('$EMPTY == ""', True),
    ('$MISSING || $CI_DEFAULT_BRANCH == "main" && $CI_PIPELINE_SOURCE == "push"', False),  # && binds tighter
    ('($MISSING || $CI_DEFAULT_BRANCH == "main") && $CI_PIPELINE_SOURCE != "push"', True),
    ("${CI_DEFAULT_BRANCH} == 'main'", True),
])
def test_rules_if_expressions(expression: str, expected: bool) -> None:
    assert Expression(expression).evaluate(VARIABLES) is expected


def test_a_rules_if_it_cannot_read_is_an_error() -> None:
    for bad in ("$A = 'x'", "$A == ", "($A == 'x'", "$A =~ 'not a regex'"):
        with pytest.raises(PipelineError):
            Expression(bad).evaluate(VARIABLES)


def test_extends_merges_mappings_deeply_and_replaces_lists() -> None:
    doc = {".base": {"variables": {"A": "1", "B": "1"}, "script": ["base"], "artifacts": {"paths": ["x"]}},
           ".middle": {"extends": ".base", "variables": {"B": "2"}, "tags": ["t"]},
           "job": {"extends": [".middle"], "variables": {"C": "3"}, "script": ["own"]}}
    assert resolve_job(doc, "job") == {"variables": {"A": "1", "B": "2", "C": "3"}, "script": ["own"],
                                       "artifacts": {"paths": ["x"]}, "tags": ["t"]}
    assert deep_merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    with pytest.raises(PipelineError, match="not a job"):
        resolve_job({"job": {"extends": ".nope"}}, "job")
    with pytest.raises(PipelineError, match="11 levels"):
        resolve_job({".a": {"extends": ".b"}, ".b": {"extends": ".a"}}, ".a")


def test_variables_expand_from_each_other_unless_expand_false() -> None:
    merged = merge_variables([{"CI_PROJECT_DIR": "/builds/p"},
                              {"CACHE": "$CI_PROJECT_DIR/.cache", "RAW": {"value": "$CI_PROJECT_DIR", "expand": False},
                               "DEPTH": 0, "MONEY": "$$5"},
                              {"DEPTH": {"value": "1"}}])
    assert merged == {"CI_PROJECT_DIR": "/builds/p", "CACHE": "/builds/p/.cache", "RAW": "$CI_PROJECT_DIR",
                      "DEPTH": "1", "MONEY": "$5"}


class Runner:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.checkouts: list[str] = []

    def checkout(self, folder: Path, variables: Mapping[str, str]) -> None:
        self.checkouts.append(variables["CI_JOB_NAME"])
        (folder / "source.txt").write_text("checked out\n")

    def workspace(self, job: str) -> Path:
        path = self.tmp / job
        path.mkdir(parents=True)
        return path

    def pipeline(self, doc: dict[str, Any], **variables: str) -> Pipeline:
        return Pipeline(doc, variables={"PATH": "/usr/bin:/bin", "CI_PIPELINE_SOURCE": "push",
                                        "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main", **variables},
                        checkout=self.checkout, workspace_factory=self.workspace,
                        project_variables={"SECRET": "s3cret"})


DOC: dict[str, Any] = {
    "stages": ["plan", "apply"],
    "workflow": {"rules": [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'},
                           {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]},
    "variables": {"OUT": "$CI_PROJECT_DIR/out", "SECRET": "from the file"},
    "default": {"before_script": ['export FROM_BEFORE="$SECRET"']},
    ".base": {"image": "python:3.11", "variables": {"GIT_DEPTH": 0}},
    "mr": {"extends": ".base", "stage": "plan", "script": ["exit 1"],
           "rules": [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]},
    "plan": {"extends": ".base", "stage": "plan", "id_tokens": {"TOKEN": {"aud": "sts.amazonaws.com"}},
             "script": ['test "$FROM_BEFORE" = s3cret', 'mkdir -p "$OUT" && echo plan > "$OUT/plan.txt"',
                        "echo report > r.json"],
             "after_script": ["exit 3"],
             "artifacts": {"paths": ["out/"], "reports": {"terraform": "r.json"}}},
    "broken": {"stage": "plan", "script": ["false", "echo never"], "allow_failure": True,
               "artifacts": {"when": "on_failure", "paths": ["source.txt"]}},
    "apply": {"stage": "apply", "needs": ["plan"], "environment": {"name": "staging"}, "resource_group": "rg",
              "script": ["cat out/plan.txt", 'test ! -e "source.txt.from-broken"', "echo $CI_ENVIRONMENT_NAME"]},
    "gate": {"stage": "apply", "needs": [], "rules": [{"if": "$CI_COMMIT_BRANCH", "when": "manual"}],
             "script": ["echo approved"]},
    "after-gate": {"stage": "apply", "needs": ["gate"], "script": ["true"]},
}


def test_a_pipeline_runs_in_stage_and_needs_order_with_artifacts_rules_and_manual_jobs(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    pipeline = runner.pipeline(DOC)
    results = pipeline.run()
    statuses = {name: r.status for name, r in results.items()}
    assert statuses == {"plan": "success", "broken": "failed", "apply": "success", "gate": "manual",
                        "after-gate": "created"}, {n: r.log for n, r in results.items()}
    plan = results["plan"]
    assert plan.artifacts == {"out/plan.txt": b"plan\n"}
    assert plan.reports == {"terraform": {"r.json": b"report\n"}}
    assert jwt_claims(plan.variables["TOKEN"])["aud"] == "sts.amazonaws.com"
    assert plan.variables["GIT_DEPTH"] == "0" and plan.variables["SECRET"] == "s3cret"  # project variables win
    assert "(exit 3)" in plan.log  # after_script failed, the job did not
    assert "echo never" not in results["broken"].log.replace("$ echo never", "")
    assert results["broken"].artifacts == {"source.txt": b"checked out\n"}  # when: on_failure
    assert "staging" in results["apply"].log and results["apply"].resource_group == "rg"
    assert results["apply"].exported["FROM_BEFORE"] == "s3cret"
    assert runner.checkouts == ["plan", "broken", "apply"]

    started = pipeline.play("gate", {"WHO": "approver"})  # an approver starts the manual job
    assert started.status == "success" and "approved" in started.log and started.variables["WHO"] == "approver"
    again = pipeline.play("gate")  # run again (retry)
    assert again.status == "success" and "WHO" not in again.variables
    with pytest.raises(PipelineError, match="not a manual job"):
        pipeline.play("plan")


def test_workflow_rules_and_job_rules_decide_what_runs(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    assert runner.pipeline(DOC, CI_COMMIT_BRANCH="feature").run() == {}  # no workflow rule matches: no pipeline
    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": ""}
    with pytest.raises(PipelineError, match="after-gate needs gate, which is not in this pipeline"):
        Runner(tmp_path / "refused").pipeline(DOC, **mr).run()  # GitLab refuses such a pipeline too
    doc = {k: v for k, v in DOC.items() if k != "after-gate"}
    results = Runner(tmp_path / "mr").pipeline(doc, **mr).run()
    assert results["mr"].status == "failed" and "gate" not in results
    assert results["apply"].status == "success"  # it needs plan only, whatever else failed


def test_a_failed_job_skips_the_later_stages_unless_allowed_to_fail(tmp_path: Path) -> None:
    doc = {"stages": ["a", "b"], "fails": {"stage": "a", "script": ["false"]},
           "later": {"stage": "b", "script": ["true"]},
           "cleanup": {"stage": "b", "script": ["true"], "when": "on_failure"}}
    results = Runner(tmp_path / "1").pipeline(doc).run()
    assert {n: r.status for n, r in results.items()} == {"fails": "failed", "later": "skipped", "cleanup": "success"}
    doc["fails"]["allow_failure"] = True
    results = Runner(tmp_path / "2").pipeline(doc).run()
    assert {n: r.status for n, r in results.items()} == {"fails": "failed", "later": "success", "cleanup": "skipped"}


def test_a_blocking_manual_job_holds_the_later_stages(tmp_path: Path) -> None:
    doc = {"stages": ["a", "b"],
           "approve": {"stage": "a", "script": ["true"], "rules": [{"when": "manual"}]},  # allow_failure: false
           "optional": {"stage": "a", "script": ["true"], "when": "manual"},  # allow_failure: true
           "later": {"stage": "b", "script": ["true"]}}
    results = Runner(tmp_path).pipeline(doc).run()
    assert {n: r.status for n, r in results.items()} == {"approve": "manual", "optional": "manual",
                                                         "later": "created"}


@pytest.mark.parametrize(("job", "message"), [
    ({"trigger": {"include": "child.yml"}}, "trigger"),
    ({"parallel": {"matrix": [{"A": ["1"]}]}}, "parallel"),
    ({"retry": 2}, "retry"),
    ({"rules": [{"changes": ["x"]}]}, "changes"),
    ({"artifacts": {"reports": {"dotenv": "x.env"}}}, "dotenv"),
    ({"artifacts": {"untracked": True}}, "untracked"),
    ({"stage": "nowhere"}, "not in stages"),
    ({"needs": ["ghost"]}, "not in this pipeline"),
])
def test_what_the_runner_does_not_implement_fails_loudly(tmp_path: Path, job: dict[str, Any], message: str) -> None:
    doc = {"job": {"script": ["true"], **job}}
    with pytest.raises(PipelineError, match=message):
        Runner(tmp_path).pipeline(doc).run()
    with pytest.raises(PipelineError, match="include"):
        Runner(tmp_path).pipeline({"include": "x.yml", "job": {"script": ["true"]}})
