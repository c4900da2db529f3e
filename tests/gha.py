"""A small local runner for GitHub Actions workflows, to execute the pipelines strata generates for real.

It runs a job's ``run:`` steps in bash, as a runner does: with the ``GITHUB_*`` variables, the event payload
file, ``$GITHUB_OUTPUT`` / ``$GITHUB_ENV`` / ``$GITHUB_STEP_SUMMARY``, the step and job ``env:`` maps, ``if:``
conditions, job outputs, ``needs`` and dynamic matrices. Expressions (``${{ ... }}``) are evaluated by a
parser of GitHub's expression language (literals, contexts, ``==``/``!=``/``<``/``>``, ``&&``/``||``/``!``,
and the functions pipelines use). Actions (``uses:``) are not downloaded: each one the generated pipelines
use is simulated by a handler the test gives (checkout clones the test's repository, upload-artifact keeps
the files, ...); an action without a handler fails the run, so a new action cannot slip by untested.

This is not a reimplementation of GitHub's runner: it is as much of it as the generated pipelines use, strict
where they could be wrong (unknown contexts, functions and actions are errors, not empty strings).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- expressions ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],.*])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""", re.VERBOSE)


class ExpressionError(Exception):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ExpressionError(f"cannot parse expression at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", 0.0)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _loose_equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    if type(a) is type(b) or a is None or b is None:
        return bool(a == b)
    try:  # GitHub converts to numbers when the types differ
        return float(_text(a) or 0) == float(_text(b) or 0)
    except ValueError:
        return False


class Evaluator:
    """Evaluates GitHub expressions against ``contexts`` (github, env, matrix, needs, steps, secrets, vars,
    inputs, job) with ``status`` answering success()/failure()."""

    def __init__(self, contexts: Mapping[str, Any], *, status: str = "success", workspace: Path | None = None):
        self.contexts = contexts
        self.status = status
        self.workspace = workspace

    def evaluate(self, text: str) -> Any:
        self.tokens = _tokens(text)
        self.pos = 0
        value = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.pos][1]!r} in {text!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExpressionError("unexpected end of expression")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r}")
        self.pos += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if _truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            value = right if _truthy(value) else value
        return value

    def _compare(self) -> Any:
        left = self._unary()
        op = self._peek()
        if op in ("==", "!=", "<", ">", "<=", ">="):
            self._take()
            right = self._unary()
            if op == "==":
                return _loose_equal(left, right)
            if op == "!=":
                return not _loose_equal(left, right)
            a, b = float(_text(left) or 0), float(_text(right) or 0)
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not _truthy(self._unary())
        return self._postfix(self._primary())

    def _primary(self) -> Any:
        kind, value = self._take()
        if kind == "string":
            return value[1:-1].replace("''", "'")
        if kind == "number":
            return float(value) if "." in value else int(value)
        if value == "(":
            inner = self._or()
            self._take(")")
            return inner
        if kind != "name":
            raise ExpressionError(f"unexpected {value!r}")
        if value in ("true", "false"):
            return value == "true"
        if value == "null":
            return None
        if self._peek() == "(":
            self._take("(")
            args = []
            while self._peek() != ")":
                args.append(self._or())
                if self._peek() == ",":
                    self._take(",")
            self._take(")")
            return self._call(value, args)
        if value not in self.contexts:
            raise ExpressionError(f"unknown context {value!r}")
        return self.contexts[value]

    def _postfix(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                _kind, name = self._take()
                if name == "*":
                    raise ExpressionError("object filters (.*) are not supported")
                value = value.get(name) if isinstance(value, dict) else None
            else:
                key = self._or()
                self._take("]")
                if isinstance(value, dict):
                    value = value.get(key)
                elif isinstance(value, list) and isinstance(key, int):
                    value = value[key] if 0 <= key < len(value) else None
                else:
                    value = None
        return value

    def _call(self, name: str, args: list[Any]) -> Any:
        lowered = name.lower()
        if lowered == "always":
            return True
        if lowered == "success":
            return self.status == "success"
        if lowered == "failure":
            return self.status == "failure"
        if lowered == "cancelled":
            return False
        if lowered == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_loose_equal(item, needle) for item in haystack)
            return _text(needle).lower() in _text(haystack).lower()
        if lowered == "startswith":
            return _text(args[0]).lower().startswith(_text(args[1]).lower())
        if lowered == "endswith":
            return _text(args[0]).lower().endswith(_text(args[1]).lower())
        if lowered == "format":
            template = _text(args[0])
            return re.sub(r"\{(\d+)\}", lambda m: _text(args[1 + int(m.group(1))]), template)
        if lowered == "join":
            items = args[0] if isinstance(args[0], list) else [args[0]]
            return (_text(args[1]) if len(args) > 1 else ",").join(_text(i) for i in items)
        if lowered == "tojson":
            return json.dumps(args[0], indent=2)
        if lowered == "fromjson":
            return json.loads(_text(args[0]))
        if lowered == "hashfiles":
            if self.workspace is None:
                return ""
            digest = hashlib.sha256()
            found = False
            for pattern in args:
                for path in sorted(self.workspace.glob(_text(pattern))):
                    if path.is_file():
                        found = True
                        digest.update(hashlib.sha256(path.read_bytes()).digest())
            return digest.hexdigest() if found else ""
        raise ExpressionError(f"unknown function {name}()")


_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def interpolate(value: Any, evaluator: Evaluator) -> Any:
    """A YAML value with every ``${{ }}`` evaluated. A string that is one expression keeps its type."""
    if isinstance(value, dict):
        return {k: interpolate(v, evaluator) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, evaluator) for v in value]
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return evaluator.evaluate(whole.group(1))
    return _TEMPLATE.sub(lambda m: _text(evaluator.evaluate(m.group(1))), value)


def condition(text: Any, evaluator: Evaluator) -> bool:
    """An ``if:``: an expression with or without ``${{ }}``; success() is implied unless a status function is
    used."""
    if text is None:
        return evaluator.status == "success"
    if isinstance(text, bool):
        return text and evaluator.status == "success"
    source = str(text).strip()
    whole = _TEMPLATE.fullmatch(source)
    if whole:
        source = whole.group(1)
    if not re.search(r"\b(always|success|failure|cancelled)\s*\(", source):
        source = f"success() && ({source})"
    return _truthy(evaluator.evaluate(source))


# -- jobs -------------------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    outcome: str  # success | failure | skipped
    output: str = ""


@dataclass
class JobResult:
    job: str
    matrix: dict[str, Any] | None
    result: str  # success | failure | skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.outcome}]\n{s.output}" for s in self.steps)


# An action handler: (inputs of ``with:``, the job's run) -> outputs of the step.
Action = Callable[[dict[str, Any], "JobRun"], dict[str, str]]


@dataclass
class JobRun:
    """What a step sees: the workspace, the environment and the artifacts of the workflow run."""
    workspace: Path
    env: dict[str, str]
    artifacts: dict[str, dict[str, bytes]]
    job: str
    matrix: dict[str, Any] | None


def _parse_output_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heredoc = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if heredoc:
            name, delimiter = heredoc.groups()
            body = []
            i += 1
            while i < len(lines) and lines[i] != delimiter:
                body.append(lines[i])
                i += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
        i += 1
    return values


def expand_matrix(matrix: Any) -> list[dict[str, Any]]:
    """The job instances of a ``strategy.matrix`` (already evaluated): the product of its lists, extended by
    ``include`` entries as GitHub does for the common cases (an include-only matrix gives one job per entry)."""
    if not isinstance(matrix, dict):
        raise ExpressionError(f"a matrix must be a mapping, got {matrix!r}")
    include = matrix.get("include") or []
    exclude = matrix.get("exclude") or []
    keys = [k for k in matrix if k not in ("include", "exclude")]
    combos: list[dict[str, Any]] = []
    if keys:
        for values in itertools.product(*(matrix[k] for k in keys)):
            combos.append(dict(zip(keys, values, strict=True)))
        combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]
        for entry in include:
            matched = [c for c in combos if all(c.get(k) == v for k, v in entry.items() if k in keys)]
            if matched and all(k in keys for k in entry if k in keys):
                for c in matched:
                    c.update({k: v for k, v in entry.items() if k not in keys})
            else:
                combos.append(dict(entry))
    else:
        combos = [dict(entry) for entry in include]
    return combos


class Workflow:
    """One workflow file, run job by job in ``needs`` order by :meth:`run`."""

    def __init__(self, document: dict[str, Any], *, actions: Mapping[str, Action], base_env: Mapping[str, str],
                 contexts: Mapping[str, Any], workspace_factory: Callable[[str], Path]):
        self.doc = document
        self.actions = actions
        self.base_env = dict(base_env)
        self.contexts = dict(contexts)
        self.workspace_factory = workspace_factory
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.results: dict[str, list[JobResult]] = {}

    def run(self, only: set[str] | None = None) -> dict[str, list[JobResult]]:
        jobs: dict[str, Any] = self.doc["jobs"]
        done: set[str] = set()
        while len(done) < len(jobs):
            ready = [j for j in jobs if j not in done and all(n in done for n in _needs(jobs[j]))]
            if not ready:
                raise ExpressionError(f"jobs wait on each other: {sorted(set(jobs) - done)}")
            for job in sorted(ready):
                done.add(job)
                if only is not None and job not in only:
                    continue
                self.results[job] = self._run_job(job, jobs[job])
        return self.results

    def _needs_context(self, spec: Any) -> tuple[dict[str, Any], str]:
        needs: dict[str, Any] = {}
        status = "success"
        for name in _needs(spec):
            runs = self.results.get(name, [])
            result = "skipped" if not runs else (
                "failure" if any(r.result == "failure" for r in runs) else
                "success" if any(r.result == "success" for r in runs) else "skipped")
            outputs: dict[str, str] = {}
            for r in runs:
                outputs.update(r.outputs)
            needs[name] = {"result": result, "outputs": outputs}
            if result != "success":
                status = "failure" if result == "failure" else status
        return needs, status

    def _run_job(self, name: str, spec: dict[str, Any]) -> list[JobResult]:
        needs, status = self._needs_context(spec)
        if any(n["result"] == "skipped" for n in needs.values()) and status == "success":
            status = "skipped"  # success() is false when a needed job was skipped
        contexts = {**self.contexts, "needs": needs, "env": dict(self.doc.get("env") or {}), "matrix": {},
                    "steps": {}, "job": {}, "strategy": {}}
        evaluator = Evaluator(contexts, status="success" if status == "success" else "failure")
        if status == "skipped":
            evaluator.status = "skipped"
        if not condition(spec.get("if"), evaluator):
            return [JobResult(name, None, "skipped")]
        matrices: list[dict[str, Any] | None] = [None]
        strategy = spec.get("strategy")
        if strategy and "matrix" in strategy:
            matrices = list(expand_matrix(interpolate(strategy["matrix"], evaluator)))
            if not matrices:
                raise ExpressionError(f"job {name}: the matrix is empty (GitHub fails such a job)")
        return [self._run_instance(name, spec, contexts, matrix) for matrix in matrices]

    def _run_instance(self, name: str, spec: dict[str, Any], contexts: dict[str, Any],
                      matrix: dict[str, Any] | None) -> JobResult:
        contexts = {**contexts, "matrix": matrix or {}, "steps": {}}
        workspace = self.workspace_factory(name)
        runner = workspace.parent / f".runner-{workspace.name}"
        runner.mkdir(parents=True, exist_ok=True)
        summary = runner / "step_summary.md"
        summary.write_text("")
        env = {**self.base_env, "GITHUB_WORKSPACE": str(workspace), "GITHUB_JOB": name,
               "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_TEMP": str(runner)}
        evaluator = Evaluator(contexts, workspace=workspace)
        env.update({k: _text(v) for k, v in interpolate(self.doc.get("env") or {}, evaluator).items()})
        env.update({k: _text(v) for k, v in interpolate(spec.get("env") or {}, evaluator).items()})
        result = JobResult(name, matrix, "success")
        job_run = JobRun(workspace, env, self.artifacts, name, matrix)
        for index, step in enumerate(spec.get("steps") or []):
            step_name = str(step.get("name") or step.get("uses") or step.get("run", "")[:40])
            evaluator = Evaluator({**contexts, "env": dict(env)},
                                  status="success" if result.result == "success" else "failure",
                                  workspace=workspace)
            if not condition(step.get("if"), evaluator):
                result.steps.append(StepResult(step_name, "skipped"))
                continue
            step_env = {**env, **{k: _text(v) for k, v in interpolate(step.get("env") or {}, evaluator).items()}}
            outputs: dict[str, str] = {}
            if "uses" in step:
                action = str(step["uses"]).split("@")[0]
                handler = self.actions.get(action)
                if handler is None:
                    raise ExpressionError(f"job {name}: no simulation for action {action}")
                inputs = interpolate(step.get("with") or {}, evaluator)
                try:
                    outputs = handler(inputs, JobRun(workspace, step_env, self.artifacts, name, matrix))
                    outcome, text = "success", f"{action} {json.dumps(inputs, default=str)}"
                except Exception as exc:  # a simulated action that fails fails the step
                    outcome, text = "failure", f"{action}: {exc}"
            else:
                script = interpolate(str(step["run"]), evaluator)
                script = script if isinstance(script, str) else _text(script)
                outcome, text, outputs, new_env = _run_bash(script, step_env, workspace, runner,
                                                            index, step.get("working-directory"))
                env.update(new_env)
            job_run.env = env
            if step.get("id"):
                contexts["steps"][step["id"]] = {"outputs": outputs, "outcome": outcome,
                                                 "conclusion": outcome}
            result.steps.append(StepResult(step_name, outcome, text))
            if outcome == "failure" and not step.get("continue-on-error"):
                result.result = "failure"
        evaluator = Evaluator(contexts, workspace=workspace)
        result.outputs = {k: _text(v) for k, v in interpolate(spec.get("outputs") or {}, evaluator).items()}
        result.summary = summary.read_text()
        return result


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _run_bash(script: str, env: dict[str, str], workspace: Path, runner: Path, index: int,
              working_directory: str | None) -> tuple[str, str, dict[str, str], dict[str, str]]:
    output_file = runner / f"output-{index}"
    env_file = runner / f"env-{index}"
    path_file = runner / f"path-{index}"
    for f in (output_file, env_file, path_file):
        f.write_text("")
    full_env = {**env, "GITHUB_OUTPUT": str(output_file), "GITHUB_ENV": str(env_file),
                "GITHUB_PATH": str(path_file)}
    cwd = workspace / working_directory if working_directory else workspace
    # GitHub's default shell for run steps on Linux: bash -e {0} (with pipefail when shell: bash is named)
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                          env=full_env, capture_output=True, text=True, timeout=600, check=False)
    new_env = _parse_output_file(env_file)
    extra_path = [p for p in path_file.read_text().splitlines() if p]
    if extra_path:
        new_env["PATH"] = os.pathsep.join([*extra_path, env.get("PATH", "")])
    outcome = "success" if proc.returncode == 0 else "failure"
    return outcome, f"$ (exit {proc.returncode})\n{proc.stdout}{proc.stderr}", _parse_output_file(output_file), \
        new_env
