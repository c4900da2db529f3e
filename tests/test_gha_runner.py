"""The local GitHub Actions runner the pipeline tests use (tests/gha.py) evaluates what GitHub evaluates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gha import Evaluator, ExpressionError, Workflow, condition, expand_matrix, interpolate

CONTEXTS: dict[str, Any] = {
    "github": {"event_name": "push", "event": {"before": "abc", "pull_request": {"number": 7}},
               "ref": "refs/heads/main"},
    "needs": {"select": {"outputs": {"w0": '{"include":[{"stack":"a"}]}', "w1": "[]"}, "result": "success"}},
    "inputs": {}, "vars": {"ROLE": "arn:x"}, "secrets": {}, "matrix": {"cloud": "aws"}, "env": {}, "steps": {},
}


@pytest.mark.parametrize(("expression", "expected"), [
    ("github.event_name == 'push'", True),
    ("github.event_name == 'PUSH'", True),  # string comparison ignores case
    ("github.event.pull_request.number", 7),
    ("github.event.missing.deeper", None),
    ("vars.ROLE || 'none'", "arn:x"),
    ("vars.NOPE || 'none'", "none"),
    ("needs.select.outputs.w1 != '[]'", False),
    ("fromJSON(needs.select.outputs.w0).include[0].stack", "a"),
    ("!(matrix.cloud == 'azure') && true", True),
    ("format('strata-plans-{0}', github.event.pull_request.number)", "strata-plans-7"),
    ("contains(fromJSON('[\"a\",\"b\"]'), 'b')", True),
    ("startsWith(github.ref, 'refs/heads/')", True),
])
def test_expressions(expression: str, expected: Any) -> None:
    assert Evaluator(CONTEXTS).evaluate(expression) == expected


def test_unknown_contexts_and_functions_are_errors() -> None:
    with pytest.raises(ExpressionError):
        Evaluator(CONTEXTS).evaluate("nope.x")
    with pytest.raises(ExpressionError):
        Evaluator(CONTEXTS).evaluate("frobnicate(1)")


def test_interpolation_and_conditions() -> None:
    ev = Evaluator(CONTEXTS)
    assert interpolate("pr-${{ github.event.pull_request.number }}", ev) == "pr-7"
    assert interpolate("${{ fromJSON(needs.select.outputs.w0) }}", ev) == {"include": [{"stack": "a"}]}
    assert condition("github.event_name == 'push'", ev)
    assert not condition("github.event_name == 'push'", Evaluator(CONTEXTS, status="failure"))
    assert condition("always() && github.event_name == 'push'", Evaluator(CONTEXTS, status="failure"))


def test_matrix_expansion() -> None:
    assert expand_matrix({"include": [{"a": 1}, {"a": 2}]}) == [{"a": 1}, {"a": 2}]
    assert expand_matrix({"x": [1, 2], "y": ["a"]}) == [{"x": 1, "y": "a"}, {"x": 2, "y": "a"}]


def test_a_workflow_runs_steps_in_bash_with_outputs_env_and_needs(tmp_path: Path) -> None:
    doc = {"jobs": {
        "first": {"outputs": {"value": "${{ steps.s.outputs.value }}"}, "steps": [
            {"id": "s", "run": 'echo "value=$GREETING-$GITHUB_JOB" >> "$GITHUB_OUTPUT"\n'
                               'echo "LATER=yes" >> "$GITHUB_ENV"', "env": {"GREETING": "hi"}},
            {"run": 'test "$LATER" = yes && echo "# done" >> "$GITHUB_STEP_SUMMARY"'},
        ]},
        "second": {"needs": "first", "strategy": {"matrix": {"n": [1, 2]}}, "steps": [
            {"run": 'test "$V" = hi-first', "env": {"V": "${{ needs.first.outputs.value }}"}},
            {"run": "exit $(( ${{ matrix.n }} - 1 ))"},
            {"if": "failure()", "run": "echo recovered"},
        ]},
        "skipped": {"if": "github.event_name == 'pull_request'", "steps": [{"run": "exit 1"}]},
    }}

    def workspace(job: str) -> Path:
        path = tmp_path / job
        path.mkdir(exist_ok=True)
        return path

    results = Workflow(doc, actions={}, base_env={"PATH": "/usr/bin:/bin"}, contexts=CONTEXTS,
                       workspace_factory=workspace).run()
    assert results["first"][0].result == "success", results["first"][0].log
    assert results["first"][0].outputs == {"value": "hi-first"}
    assert results["first"][0].summary == "# done\n"
    assert [r.result for r in results["second"]] == ["success", "failure"], results["second"][0].log
    assert [s.outcome for s in results["second"][0].steps] == ["success", "success", "skipped"]
    assert [s.outcome for s in results["second"][1].steps] == ["success", "failure", "success"]
    assert results["skipped"][0].result == "skipped"
