"""A small local runner for Azure Pipelines YAML, to execute the pipeline ``strata ci generate azure-devops``
writes for real.

It runs stages → jobs → steps as an agent does: ``trigger``/``pr`` decide whether a run starts;
``parameters`` fill ``${{ parameters.x }}`` when the file is compiled; ``variables`` (and the predefined ones
the test gives, ``Build.Reason``...) are mapped into every script's environment as Azure maps them (upper-cased,
``.`` → ``_``), except secret ones, which a step only sees through its own ``env:``; macros ``$(Name)`` are
replaced in inputs, ``env:`` and scripts, and left as they are when no variable has that name (as Azure does);
``dependsOn`` and ``condition`` (``succeeded()``, ``failed()``, ``eq``/``ne``/``and``/``or``/``not``/``in``...,
``variables['Build.Reason']``, ``dependencies``/``stageDependencies`` outputs) decide what runs; logging
commands (``##vso[task.setvariable]`` with ``issecret``/``isOutput``, ``task.prependpath``,
``task.uploadsummary``, ``task.logissue``, ``task.complete``) act on the run. Deployment jobs run
``strategy.runOnce.deploy.steps`` after the check of their ``environment``: the test's ``approve`` callback
answers it, once per stage and environment, as an approver would.

``script``/``bash`` steps run as the agent runs them on Linux: the script written to a file and run with
``bash --noprofile --norc FILE``, with no ``-e``: a failing command in the middle of a script does not fail the
step, only the script's exit status does. (GitHub runs ``bash -e``; Azure does not, which is why a generated
script must ``set -e`` itself.)

``task:`` steps are simulated by handlers (:data:`TASKS` plus the test's): ``AzureCLI@2`` and
``AWSShellScript@1`` run their inline script in bash with the variables the service connection gives
(``servicePrincipalId``/``tenantId``/``idToken`` and an ``az`` that answers ``account show``; the AWS keys and
region), ``UsePythonVersion``/``Cache`` are recorded, ``publish``/``download`` (and the
``PublishPipelineArtifact``/``DownloadPipelineArtifact`` tasks) carry files between jobs, ``checkout`` is the
test's. A task, key or logging command the runner does not know fails the run loudly, so the generated file
cannot use something this runner would silently ignore.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PipelineError(Exception):
    """The pipeline uses something this runner does not simulate, or is wrong in a way Azure refuses."""


# -- runtime expressions (conditions, $[ ]) -----------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>[()\[\],.])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*)
)""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise PipelineError(f"cannot parse expression at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value != "" and value.lower() != "false"  # Azure: 'false' is not converted, '' is false
    return value not in (None, False, 0)


def _convert(value: Any, like: Any) -> Any:
    """Azure converts the right operand to the left one's type."""
    if isinstance(like, bool):
        return _truthy(value)
    if isinstance(like, (int, float)) and not isinstance(value, (int, float)):
        try:
            return float(_text(value))
        except ValueError:
            return None
    return value


def _equal(a: Any, b: Any) -> bool:
    b = _convert(b, a)
    if isinstance(a, str) or isinstance(b, str):
        return _text(a).lower() == _text(b).lower()
    return bool(a == b)


RESULTS_OK = ("Succeeded", "SucceededWithIssues")


class Evaluator:
    """Evaluates Azure's runtime expression language against ``contexts`` (variables, dependencies,
    stageDependencies). ``dependency_results`` (the results of what this stage/job/step depends on) answers
    succeeded()/failed(); ``step`` says whether it is a step's condition (results of earlier steps)."""

    def __init__(self, contexts: Mapping[str, Any], dependency_results: list[str]):
        self.contexts = contexts
        self.results = dependency_results

    def evaluate(self, text: str) -> Any:
        self.tokens, self.pos = _tokens(text), 0
        value = self._expr()
        if self.pos != len(self.tokens):
            raise PipelineError(f"unexpected {self.tokens[self.pos][1]!r} in {text!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise PipelineError("unexpected end of expression")
        token = self.tokens[self.pos]
        if expected is not None and token[1] != expected:
            raise PipelineError(f"expected {expected!r}, got {token[1]!r}")
        self.pos += 1
        return token

    def _expr(self) -> Any:
        kind, value = self._take()
        if kind == "string":
            return self._postfix(value[1:-1].replace("''", "'"))
        if kind == "number":
            return float(value) if "." in value else int(value)
        if kind != "name":
            raise PipelineError(f"unexpected {value!r}")
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value.lower() == "null":
            return None
        if self._peek() == "(":
            self._take("(")
            args: list[Any] = []
            lazy = value.lower() in ("and", "or")
            while self._peek() != ")":
                if lazy and args and ((value.lower() == "and" and not _truthy(args[-1]))
                                      or (value.lower() == "or" and _truthy(args[-1]))):
                    self._skip_argument()  # short-circuit: the rest is parsed, not evaluated
                else:
                    args.append(self._expr())
                if self._peek() == ",":
                    self._take(",")
            self._take(")")
            return self._postfix(self._call(value, args))
        if value not in self.contexts:
            raise PipelineError(f"unknown name {value!r} in an expression")
        return self._postfix(self.contexts[value])

    def _skip_argument(self) -> None:
        depth = 0
        while True:
            token = self._peek()
            if token is None:
                raise PipelineError("unexpected end of expression")
            if depth == 0 and token in (",", ")"):
                return
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(token, 0)
            self.pos += 1

    def _postfix(self, value: Any) -> Any:
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                _kind, name = self._take()
                value = _lookup(value, name)
            else:
                key = self._expr()
                self._take("]")
                value = _lookup(value, key)
        return value

    def _call(self, name: str, args: list[Any]) -> Any:
        fn = name.lower()
        if fn == "always":
            return True
        if fn == "succeeded":
            return all(r in RESULTS_OK for r in self.results)
        if fn == "failed":
            return any(r == "Failed" for r in self.results)
        if fn == "succeededorfailed":
            return all(r in (*RESULTS_OK, "Failed") for r in self.results)
        if fn == "canceled":
            return False
        if fn == "and":
            return all(_truthy(a) for a in args)
        if fn == "or":
            return any(_truthy(a) for a in args)
        if fn == "not":
            (arg,) = args
            return not _truthy(arg)
        if fn == "eq":
            return _equal(args[0], args[1])
        if fn == "ne":
            return not _equal(args[0], args[1])
        if fn == "in":
            return any(_equal(args[0], other) for other in args[1:])
        if fn == "notin":
            return not any(_equal(args[0], other) for other in args[1:])
        if fn == "contains":
            return _text(args[1]).lower() in _text(args[0]).lower()
        if fn == "startswith":
            return _text(args[0]).lower().startswith(_text(args[1]).lower())
        if fn == "endswith":
            return _text(args[0]).lower().endswith(_text(args[1]).lower())
        if fn == "coalesce":
            return next((a for a in args if a not in (None, "")), None)
        if fn == "format":
            return re.sub(r"\{(\d+)\}", lambda m: _text(args[1 + int(m.group(1))]), _text(args[0]))
        raise PipelineError(f"unknown function {name}()")


def _lookup(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        for k, v in value.items():  # Azure's names are case-insensitive
            if str(k).lower() == str(key).lower():
                return v
    return None


def condition(text: Any, evaluator: Evaluator) -> bool:
    """A ``condition:``; none means ``succeeded()``."""
    if text is None:
        return bool(evaluator.evaluate("succeeded()"))
    return _truthy(evaluator.evaluate(str(text)))


# -- compile time: ${{ parameters.x }} -----------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


def compile_templates(value: Any, parameters: Mapping[str, Any]) -> Any:
    """The document with every ``${{ parameters.NAME }}`` replaced; any other template expression (or a
    ``${{ if }}`` key) is an error: this runner does not evaluate them."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and "${{" in k:
                raise PipelineError(f"template expression keys are not supported: {k!r}")
            out[k] = compile_templates(v, parameters)
        return out
    if isinstance(value, list):
        return [compile_templates(v, parameters) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        inner = match.group(1).strip()
        found = re.fullmatch(r"parameters\.([A-Za-z_][A-Za-z0-9_]*)", inner)
        if not found or found.group(1) not in parameters:
            raise PipelineError(f"template expression not supported or unknown parameter: ${{{{ {inner} }}}}")
        return _text(parameters[found.group(1)])

    return _TEMPLATE.sub(replace, value)


def resolve_parameters(declared: list[dict[str, Any]], given: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = {p["name"] for p in declared}
    unknown = set(given) - names
    if unknown:
        raise PipelineError(f"unknown parameters {sorted(unknown)}")
    for p in declared:
        extra = set(p) - {"name", "displayName", "type", "default", "values"}
        if extra:
            raise PipelineError(f"parameter {p['name']}: unsupported keys {sorted(extra)}")
        value = given.get(p["name"], p.get("default"))
        if value is None:
            raise PipelineError(f"parameter {p['name']} has no value")
        if "values" in p and value not in p["values"]:
            raise PipelineError(f"parameter {p['name']}: {value!r} is not one of {p['values']}")
        out[p["name"]] = value
    return out


# -- macros $(Name) --------------------------------------------------------------------------------------------------

_MACRO = re.compile(r"\$\(([A-Za-z0-9_][A-Za-z0-9_.\-]*)\)")


def env_name(variable: str) -> str:
    """The environment variable Azure maps a pipeline variable to."""
    return variable.upper().replace(".", "_").replace(" ", "_")


@dataclass
class Variable:
    value: str
    secret: bool = False


class Variables:
    """Case-insensitive variable names; secret ones are kept out of the environment."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, Variable]] = {}

    def set(self, name: str, value: str, secret: bool = False) -> None:
        self.items[name.lower()] = (name, Variable(value, secret))

    def get(self, name: str) -> Variable | None:
        found = self.items.get(name.lower())
        return found[1] if found else None

    def copy(self) -> Variables:
        other = Variables()
        other.items = dict(self.items)
        return other

    def expand(self, text: str) -> str:
        """Macros replaced (recursively for variables whose values hold macros); unknown ones left as they are."""
        def replace(match: re.Match[str]) -> str:
            found = self.get(match.group(1))
            return match.group(0) if found is None else self.expand(found.value)
        return _MACRO.sub(replace, text)

    def environment(self) -> dict[str, str]:
        return {env_name(name): self.expand(v.value) for name, v in self.items.values() if not v.secret}

    def as_context(self) -> dict[str, str]:
        return {name: self.expand(v.value) for name, v in self.items.values()}


# -- the run ---------------------------------------------------------------------------------------------------------

@dataclass
class StepResult:
    name: str
    outcome: str  # Succeeded | Failed | Skipped
    output: str = ""
    env: dict[str, str] = field(default_factory=dict)  # what a script step's process saw


@dataclass
class JobResult:
    stage: str
    job: str
    result: str  # Succeeded | Failed | Skipped | Rejected
    leg: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)  # the files ##vso[task.uploadsummary] named, as read then
    issues: list[str] = field(default_factory=list)
    environment: str | None = None

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.outcome}]\n{s.output}" for s in self.steps)


@dataclass
class Job:
    """What a task handler sees."""
    stage: str
    name: str
    workspace: Path  # $(Pipeline.Workspace)
    sources: Path  # $(Build.SourcesDirectory)
    temp: Path  # $(Agent.TempDirectory)
    variables: Variables
    env: dict[str, str]  # the machine's environment plus the mapped variables
    run: Run
    result: JobResult


# A task handler: (inputs with macros expanded, the step, the job) -> text for the log. It raises to fail the step.
Task = Callable[[dict[str, Any], dict[str, Any], Job], str]

STAGE_KEYS = {"stage", "displayName", "dependsOn", "condition", "jobs", "variables", "lockBehavior", "pool"}
JOB_KEYS = {"job", "deployment", "displayName", "dependsOn", "condition", "pool", "steps", "variables", "strategy",
            "environment", "timeoutInMinutes", "continueOnError", "workspace"}
STEP_KEYS = {"displayName", "name", "condition", "env", "continueOnError", "enabled", "timeoutInMinutes"}
SCRIPT_KEYS = STEP_KEYS | {"script", "bash", "workingDirectory", "failOnStderr"}
TASK_KEYS = STEP_KEYS | {"task", "inputs"}


class Run:
    """One run of a pipeline file: :meth:`execute` runs every stage whose dependencies and condition allow."""

    def __init__(self, document: dict[str, Any], *, predefined: Mapping[str, str], secrets: Mapping[str, str],
                 machine_env: Mapping[str, str], agents: Path, checkout: Task,
                 tasks: Mapping[str, Task] | None = None, parameters: Mapping[str, Any] | None = None,
                 approve: Callable[[str, str], bool] | None = None):
        extra = set(document) - {"trigger", "pr", "parameters", "variables", "stages", "name"}
        if extra:
            raise PipelineError(f"unsupported top-level keys {sorted(extra)}")
        self.parameters = resolve_parameters(document.get("parameters") or [], parameters or {})
        self.doc = compile_templates({k: v for k, v in document.items() if k != "parameters"}, self.parameters)
        self.variables = Variables()
        for name, value in predefined.items():
            self.variables.set(name, value)
        for name, value in secrets.items():
            self.variables.set(name, value, secret=True)
        for name, value in _variable_list(self.doc.get("variables")).items():
            self.variables.set(name, value)
        self.machine_env = dict(machine_env)
        self.agents = agents
        self.tasks = {**TASKS, **(tasks or {}), "checkout": checkout}
        self.approve = approve
        self.approvals: list[tuple[str, str]] = []  # (stage, environment) whose check was answered
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.results: dict[str, dict[str, list[JobResult]]] = {}  # stage -> job -> legs
        self.stage_results: dict[str, str] = {}
        self.credentials: list[dict[str, Any]] = []  # what each credential task was given
        self.caches: list[dict[str, Any]] = []

    # -- triggers --------------------------------------------------------------------------------------------

    def triggered(self) -> bool:
        """Whether Azure starts this run: ``pr``/``trigger`` branch filters against the run's variables."""
        reason = (self.variables.get("Build.Reason") or Variable("")).value
        if reason == "PullRequest":
            target = (self.variables.get("System.PullRequest.TargetBranch") or Variable("")).value
            return _branch_included(self.doc.get("pr"), target)
        if reason in ("IndividualCI", "BatchedCI"):
            return _branch_included(self.doc.get("trigger"), (self.variables.get("Build.SourceBranch")
                                                             or Variable("")).value)
        return True

    # -- stages ----------------------------------------------------------------------------------------------

    def execute(self) -> dict[str, dict[str, list[JobResult]]]:
        stages = self.doc.get("stages") or []
        names = [s["stage"] for s in stages]
        if len(set(names)) != len(names):
            raise PipelineError(f"stage names repeat: {names}")
        depends: dict[str, list[str]] = {}
        for i, stage in enumerate(stages):
            extra = set(stage) - STAGE_KEYS
            if extra:
                raise PipelineError(f"stage {stage['stage']}: unsupported keys {sorted(extra)}")
            depends[stage["stage"]] = _list(stage.get("dependsOn"), default=names[i - 1:i])
            for dep in depends[stage["stage"]]:
                if dep not in names:
                    raise PipelineError(f"stage {stage['stage']} depends on unknown stage {dep}")
        pending = list(stages)
        while pending:
            ready = [s for s in pending if all(d in self.stage_results for d in depends[s["stage"]])]
            if not ready:
                raise PipelineError(f"stages wait on each other: {[s['stage'] for s in pending]}")
            for stage in ready:
                pending.remove(stage)
                self._stage(stage, depends[stage["stage"]])
        return self.results

    def _stage(self, stage: dict[str, Any], depends: list[str]) -> None:
        name = stage["stage"]
        variables = self.variables.copy()
        for k, v in _variable_list(stage.get("variables")).items():
            variables.set(k, v)
        dependencies = {d: {"result": self.stage_results[d], "outputs": self._stage_outputs(d)} for d in depends}
        evaluator = Evaluator({"variables": variables.as_context(), "dependencies": dependencies},
                              [self.stage_results[d] for d in depends])
        self.results[name] = {}
        if not condition(stage.get("condition"), evaluator):
            self.stage_results[name] = "Skipped"
            return
        jobs = stage.get("jobs") or []
        job_names = [j.get("job") or j.get("deployment") for j in jobs]
        approved: dict[str, bool] = {}
        done: dict[str, str] = {}
        pending = list(jobs)
        while pending:
            ready = [j for j in pending if all(d in done for d in _list(j.get("dependsOn"), default=[]))]
            if not ready:
                raise PipelineError(f"stage {name}: jobs wait on each other")
            for job in ready:
                pending.remove(job)
                for dep in _list(job.get("dependsOn"), default=[]):
                    if dep not in job_names:
                        raise PipelineError(f"stage {name}: job depends on unknown job {dep}")
                legs = self._job(name, job, variables, approved, depends)
                self.results[name][legs[0].job] = legs
                done[legs[0].job] = _combine([leg.result for leg in legs])
        self.stage_results[name] = _combine(list(done.values())) if done else "Succeeded"

    def _stage_outputs(self, stage: str) -> dict[str, str]:
        """``dependencies.STAGE.outputs['JOB.STEP.VAR']`` (deployment jobs: ``JOB.JOB.STEP.VAR``)."""
        out: dict[str, str] = {}
        for job, legs in self.results.get(stage, {}).items():
            for leg in legs:
                out.update({f"{job}.{k}": v for k, v in leg.outputs.items()})
        return out

    # -- jobs ------------------------------------------------------------------------------------------------

    def _job(self, stage: str, spec: dict[str, Any], stage_variables: Variables, approved: dict[str, bool],
             stage_depends: list[str]) -> list[JobResult]:
        extra = set(spec) - JOB_KEYS
        if extra:
            raise PipelineError(f"job {spec.get('job') or spec.get('deployment')}: unsupported keys {sorted(extra)}")
        deployment = "deployment" in spec
        name = spec["deployment"] if deployment else spec["job"]
        depends = _list(spec.get("dependsOn"), default=[])
        mine = self.results[stage]
        dependencies = {d: {"result": _combine([r.result for r in mine[d]]),
                            "outputs": {k: v for r in mine[d] for k, v in r.outputs.items()}} for d in depends}
        stage_deps = {s: {j: {"result": _combine([r.result for r in legs]),
                              "outputs": {k: v for r in legs for k, v in r.outputs.items()}}
                          for j, legs in self.results.get(s, {}).items()} for s in stage_depends}
        variables = stage_variables.copy()
        contexts = {"variables": variables.as_context(), "dependencies": dependencies,
                    "stageDependencies": stage_deps}
        for k, v in _variable_list(spec.get("variables")).items():
            variables.set(k, _runtime(v, contexts))
        evaluator = Evaluator({**contexts, "variables": variables.as_context()},
                              [str(dependencies[d]["result"]) for d in depends])
        if not condition(spec.get("condition"), evaluator):
            return [JobResult(stage, name, "Skipped")]
        steps, legs = self._steps_and_legs(spec, deployment, contexts)
        results = []
        for leg, leg_variables in legs:
            job_variables = variables.copy()
            for k, v in leg_variables.items():
                job_variables.set(k, _text(v))
            result = JobResult(stage, name, "Succeeded", leg=leg)
            if deployment:
                environment = spec.get("environment")
                if not isinstance(environment, str) or not environment:
                    raise PipelineError(f"deployment {name}: environment must be a name")
                result.environment = environment
                if environment not in approved:
                    approved[environment] = self.approve(stage, environment) if self.approve else True
                    self.approvals.append((stage, environment))
                if not approved[environment]:
                    result.result = "Rejected"
                    results.append(result)
                    continue
            results.append(self._run_steps(stage, name, steps, job_variables, result, deployment))
        return results

    def _steps_and_legs(self, spec: dict[str, Any], deployment: bool,
                        contexts: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
        strategy = spec.get("strategy") or {}
        legs: list[tuple[str, dict[str, Any]]] = [("", {})]
        if deployment:
            if set(strategy) != {"runOnce"} or set(strategy["runOnce"]) != {"deploy"} \
                    or set(strategy["runOnce"]["deploy"]) != {"steps"}:
                raise PipelineError(f"deployment {spec['deployment']}: only strategy.runOnce.deploy.steps is "
                                    "supported")
            if "steps" in spec:
                raise PipelineError(f"deployment {spec['deployment']}: steps belong under strategy")
            return list(strategy["runOnce"]["deploy"]["steps"]), legs
        if strategy:
            extra = set(strategy) - {"matrix", "maxParallel"}
            if extra:
                raise PipelineError(f"job {spec['job']}: unsupported strategy keys {sorted(extra)}")
            matrix = strategy.get("matrix")
            if isinstance(matrix, str):
                matrix = json.loads(_text(_runtime(matrix, contexts)) or "{}")
            if not isinstance(matrix, dict):
                raise PipelineError(f"job {spec['job']}: a matrix must be a mapping of legs")
            legs = [(leg, dict(values)) for leg, values in matrix.items()]
            if not legs:
                return [], []
        return list(spec.get("steps") or []), legs

    def _agent(self, stage: str, job: str, leg: str) -> tuple[Path, Path, Path]:
        base = self.agents / f"{stage}.{job}{'.' + leg if leg else ''}"
        n = 2
        while base.exists():
            base = base.with_name(f"{base.name}-{n}")
            n += 1
        workspace, temp = base / "w", base / "_temp"
        for folder in (workspace / "s", workspace / "a", workspace / "b", temp):
            folder.mkdir(parents=True)
        return workspace, workspace / "s", temp

    def _run_steps(self, stage: str, name: str, steps: list[dict[str, Any]], variables: Variables,
                   result: JobResult, deployment: bool) -> JobResult:
        workspace, sources, temp = self._agent(stage, name, result.leg)
        for k, v in {"Pipeline.Workspace": workspace, "Build.SourcesDirectory": sources,
                     "System.DefaultWorkingDirectory": sources, "Build.ArtifactStagingDirectory": workspace / "a",
                     "Build.BinariesDirectory": workspace / "b", "Agent.TempDirectory": temp,
                     "System.StageName": stage, "System.JobName": name, "Agent.JobName": name}.items():
            variables.set(k, str(v))
        if not deployment and not any("checkout" in s for s in steps):
            steps = [{"checkout": "self"}, *steps]  # a job checks out the repository unless told otherwise
        path_prefix: list[str] = []
        job = Job(stage, name, workspace, sources, temp, variables, {}, self, result)
        for index, step in enumerate(steps):
            job.env = {**self.machine_env, **variables.environment()}
            if path_prefix:
                job.env["PATH"] = os.pathsep.join([*path_prefix, job.env.get("PATH", "")])
            kind, step = _normalise(step)
            title = str(step.get("displayName") or step.get("name") or kind)
            evaluator = Evaluator({"variables": variables.as_context()},
                                  [result.result if result.result != "Failed" else "Failed"])
            if step.get("enabled") is False or not condition(step.get("condition"), evaluator):
                result.steps.append(StepResult(title, "Skipped"))
                continue
            step_env = {k: variables.expand(_text(v)) for k, v in (step.get("env") or {}).items()}
            if kind == "script":
                script = variables.expand(str(step.get("script", step.get("bash"))))
                cwd = Path(variables.expand(str(step["workingDirectory"]))) if "workingDirectory" in step \
                    else sources
                env = {**job.env, **step_env}
                code, output = run_bash(script, env, cwd, temp / f"step-{index}.sh")
                outcome = "Succeeded" if code == 0 else "Failed"
                if step.get("failOnStderr") and output.stderr:
                    outcome = "Failed"
                text = f"$ (exit {code})\n{output.stdout}{output.stderr}"
                outcome = self._commands(output.stdout, step, job, path_prefix, outcome)
                result.steps.append(StepResult(title, outcome, text, env))
            else:
                task = step["task"]
                handler = self.tasks.get(task)
                if handler is None:
                    raise PipelineError(f"job {name}: no simulation for task {task}")
                inputs = {k: variables.expand(_text(v)) for k, v in (step.get("inputs") or {}).items()}
                job.env = {**job.env, **step_env}
                try:
                    text = handler(inputs, step, job)
                    outcome = "Succeeded"
                except PipelineError:
                    raise
                except Exception as exc:  # a simulated task that fails fails the step
                    outcome, text = "Failed", f"{task}: {exc}"
                outcome = self._commands(text, step, job, path_prefix, outcome)
                result.steps.append(StepResult(title, outcome, text))
            if outcome == "Failed" and not step.get("continueOnError"):
                result.result = "Failed"
            elif outcome == "Failed":
                result.result = "SucceededWithIssues"
        return result

    def _commands(self, stdout: str, step: dict[str, Any], job: Job, path_prefix: list[str], outcome: str) -> str:
        """Act on the ``##vso[...]`` logging commands a step printed."""
        for line in stdout.splitlines():
            found = re.match(r"\s*##vso\[([\w.]+)([^\]]*)\](.*)$", line)
            if not found:
                continue
            command, props_text, value = found.group(1), found.group(2).strip(), found.group(3)
            props: dict[str, str] = {}
            for part in filter(None, props_text.split(";")):
                key, _, val = part.partition("=")
                props[key.strip()] = val
            if command == "task.setvariable":
                unknown = set(props) - {"variable", "issecret", "isOutput", "isoutput", "isreadonly"}
                if unknown:
                    raise PipelineError(f"setvariable: unsupported properties {sorted(unknown)}")
                var = props["variable"]
                secret = props.get("issecret", "false").lower() == "true"
                is_output = (props.get("isOutput") or props.get("isoutput") or "false").lower() == "true"
                if is_output:
                    if not step.get("name"):
                        raise PipelineError(f"an output variable {var} set by a step without name:")
                    prefix = f"{job.name}." if job.result.environment is not None else ""
                    job.result.outputs[f"{prefix}{step['name']}.{var}"] = value
                    job.variables.set(f"{step['name']}.{var}", value, secret)
                else:
                    job.variables.set(var, value, secret)
            elif command == "task.prependpath":
                path_prefix.insert(0, value)
            elif command == "task.uploadsummary":
                target = Path(value)
                if not target.is_file():
                    raise PipelineError(f"uploadsummary: {value} is not a file")
                job.result.summaries.append(target.read_text())
            elif command == "task.logissue":
                job.result.issues.append(f"{props.get('type', '')}: {value}")
            elif command == "task.complete":
                outcome = {"Succeeded": "Succeeded", "SucceededWithIssues": "Succeeded",
                           "Failed": "Failed"}[props.get("result", "Succeeded")]
            else:
                raise PipelineError(f"logging command ##vso[{command}] is not simulated")
        return outcome


@dataclass
class Output:
    stdout: str
    stderr: str


def run_bash(script: str, env: Mapping[str, str], cwd: Path, file: Path) -> tuple[int, Output]:
    """As the agent runs a script step on Linux: written to a file, ``bash --noprofile --norc FILE`` (no -e)."""
    file.write_text(script)
    proc = subprocess.run(["bash", "--noprofile", "--norc", str(file)], cwd=cwd, env=dict(env),
                          capture_output=True, text=True, timeout=900, check=False)
    return proc.returncode, Output(proc.stdout, proc.stderr)


def _normalise(step: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(script | task, the step as a task or script step): checkout/publish/download are tasks."""
    if "script" in step or "bash" in step:
        extra = set(step) - SCRIPT_KEYS
        if extra:
            raise PipelineError(f"script step: unsupported keys {sorted(extra)}")
        return "script", step
    if "checkout" in step:
        extra = set(step) - STEP_KEYS - {"checkout", "fetchDepth", "clean", "persistCredentials", "fetchTags"}
        if extra:
            raise PipelineError(f"checkout step: unsupported keys {sorted(extra)}")
        inputs = {k: v for k, v in step.items() if k in ("checkout", "fetchDepth", "clean", "fetchTags")}
        return "task", {**{k: v for k, v in step.items() if k in STEP_KEYS}, "task": "checkout", "inputs": inputs}
    if "publish" in step:
        extra = set(step) - STEP_KEYS - {"publish", "artifact"}
        if extra:
            raise PipelineError(f"publish step: unsupported keys {sorted(extra)}")
        return "task", {**{k: v for k, v in step.items() if k in STEP_KEYS}, "task": "PublishPipelineArtifact@1",
                        "inputs": {"targetPath": step["publish"], "artifact": step.get("artifact", "")}}
    if "download" in step:
        extra = set(step) - STEP_KEYS - {"download", "artifact", "patterns"}
        if extra:
            raise PipelineError(f"download step: unsupported keys {sorted(extra)}")
        if step["download"] != "current":
            raise PipelineError("only `download: current` is simulated")
        return "task", {**{k: v for k, v in step.items() if k in STEP_KEYS}, "task": "DownloadPipelineArtifact@2",
                        "inputs": {"artifact": step.get("artifact", "")}}
    if "task" in step:
        extra = set(step) - TASK_KEYS
        if extra:
            raise PipelineError(f"task step: unsupported keys {sorted(extra)}")
        return "task", step
    raise PipelineError(f"unknown step {sorted(step)}")


def _runtime(value: Any, contexts: Mapping[str, Any]) -> str:
    """A variable value: ``$[ expression ]`` evaluated at runtime, anything else as it is."""
    text = _text(value)
    whole = re.fullmatch(r"\s*\$\[(.*)\]\s*", text, re.DOTALL)
    if not whole:
        return text
    return _text(Evaluator(contexts, []).evaluate(whole.group(1)))


def _variable_list(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in value:
        if set(item) - {"name", "value", "readonly"}:
            raise PipelineError(f"variables: only name/value entries are simulated, not {sorted(item)}")
        out[item["name"]] = _text(item["value"])
    return out


def _list(value: Any, default: list[str]) -> list[str]:
    if value is None:
        return list(default)
    return [value] if isinstance(value, str) else list(value)


def _combine(results: list[str]) -> str:
    if any(r in ("Failed", "Rejected") for r in results):
        return "Failed"
    if results and all(r == "Skipped" for r in results):
        return "Skipped"
    if any(r == "SucceededWithIssues" for r in results):
        return "SucceededWithIssues"
    return "Succeeded"


def _branch_included(spec: Any, ref: str) -> bool:
    if spec is None:
        return True
    if spec == "none":
        return False
    if isinstance(spec, list):
        includes, excludes = spec, []  # type: list[str], list[str]
    else:
        extra = set(spec) - {"branches", "paths", "autoCancel", "drafts", "batch"}
        if extra or "paths" in spec:
            raise PipelineError(f"trigger keys not simulated: {sorted(extra | ({'paths'} & set(spec)))}")
        includes = (spec.get("branches") or {}).get("include") or []
        excludes = (spec.get("branches") or {}).get("exclude") or []
    branch = ref.removeprefix("refs/heads/")

    def matches(pattern: str) -> bool:
        pattern = pattern.removeprefix("refs/heads/")
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), branch) is not None

    return any(matches(p) for p in includes) and not any(matches(p) for p in excludes)


# -- the tasks the generated pipeline uses ------------------------------------------------------------------------

def _cache(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
    """A cache miss every time (each job is a fresh agent); the key and path are recorded."""
    if not inputs.get("key") or not inputs.get("path"):
        raise PipelineError(f"Cache@2 needs key and path, got {inputs}")
    job.run.caches.append({"job": job.name, **inputs})
    return f"cache miss for {inputs['key']}"


def _publish(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
    name = inputs.get("artifact") or inputs.get("artifactName")
    if not name:
        raise PipelineError("publish: an artifact name is needed")
    source = Path(inputs["targetPath"])
    source = source if source.is_absolute() else job.sources / source
    if not source.exists():
        raise FileNotFoundError(f"Path does not exist: {source}")
    if name in job.run.artifacts:
        raise RuntimeError(f"artifact {name} already exists in this run")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    root = source.parent if source.is_file() else source
    job.run.artifacts[name] = {p.relative_to(root).as_posix(): p.read_bytes() for p in files}
    return f"published {name}: {sorted(job.run.artifacts[name])}"


def _download(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
    name = inputs.get("artifact") or inputs.get("artifactName")
    if name not in job.run.artifacts:
        raise FileNotFoundError(f"artifact {name} not found in this run")
    target = Path(inputs.get("path") or inputs.get("targetPath") or job.workspace / str(name))
    for member, data in job.run.artifacts[str(name)].items():
        (target / member).parent.mkdir(parents=True, exist_ok=True)
        (target / member).write_bytes(data)
    return f"downloaded {name} to {target}"


@dataclass
class Connections:
    """The service connections of the project: name -> what the agent gets from it. Azure Resource Manager:
    ``servicePrincipalId``, ``tenantId``, ``idToken``, ``subscription``; AWS: ``AWS_ACCESS_KEY_ID`` ...."""
    azure: dict[str, dict[str, str]] = field(default_factory=dict)
    aws: dict[str, dict[str, str]] = field(default_factory=dict)


def credential_tasks(connections: Connections) -> dict[str, Task]:
    def inline(inputs: dict[str, Any], job: Job, extra_env: dict[str, str]) -> str:
        if inputs.get("scriptType") not in ("bash", "inlineScript") or \
                inputs.get("scriptLocation", "inlineScript") != "inlineScript":
            raise PipelineError(f"only inline bash scripts are simulated, not {inputs}")
        code, output = run_bash(inputs["inlineScript"], {**job.env, **extra_env}, job.sources,
                                job.temp / f"task-{len(job.result.steps)}.sh")
        if code != 0:
            raise RuntimeError(f"the inline script exited with {code}: {output.stderr}")
        return output.stdout + output.stderr

    def azure_cli(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
        name = inputs.get("azureSubscription", "")
        connection = connections.azure.get(name)
        job.run.credentials.append({"task": "AzureCLI@2", "job": job.name, "stage": job.stage,
                                    "connection": name})
        if connection is None:
            raise RuntimeError(f"no Azure service connection named {name!r} (or the pipeline may not use it)")
        shims = job.temp / "az-shim"
        shims.mkdir(exist_ok=True)
        (shims / "az").write_text(
            '#!/bin/sh\nif [ "$*" = "account show --query id --output tsv" ]; then echo '
            f'"{connection["subscription"]}"; exit 0; fi\necho "az shim: $* is not simulated" >&2\nexit 2\n')
        (shims / "az").chmod(0o755)
        env = {"PATH": f"{shims}{os.pathsep}{job.env.get('PATH', '')}"}
        if str(inputs.get("addSpnToEnvironment", "")).lower() == "true":
            env.update({k: connection[k] for k in ("servicePrincipalId", "tenantId", "idToken")})
        return inline(inputs, job, env)

    def aws_shell(inputs: dict[str, Any], _step: dict[str, Any], job: Job) -> str:
        name = inputs.get("awsCredentials", "")
        connection = connections.aws.get(name)
        job.run.credentials.append({"task": "AWSShellScript@1", "job": job.name, "stage": job.stage,
                                    "connection": name, "region": inputs.get("regionName")})
        if connection is None:
            raise RuntimeError(f"no AWS service connection named {name!r} (or the pipeline may not use it)")
        return inline(inputs, job, {**connection, "AWS_REGION": inputs.get("regionName", ""),
                                    "AWS_DEFAULT_REGION": inputs.get("regionName", "")})

    return {"AzureCLI@2": azure_cli, "AWSShellScript@1": aws_shell}


TASKS: dict[str, Task] = {
    "UsePythonVersion@0": lambda inputs, _s, _j: f"python {inputs.get('versionSpec')} (the agent's)",
    "Cache@2": _cache,
    "PublishPipelineArtifact@1": _publish,
    "DownloadPipelineArtifact@2": _download,
}
