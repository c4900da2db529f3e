"""A small local runner for GitLab CI pipelines, to execute the ``.gitlab-ci.yml`` strata generates for real.

It does what GitLab and its shell runner do with the subset of keywords the generated file uses:

- ``extends`` (deep merge of mappings, a list replaced as a whole, as GitLab merges), ``default`` (a key the
  job does not set), hidden ``.jobs``;
- ``variables``: predefined < global < job < project/pipeline variables (the test's), each value expanded from the
  others unless ``expand: false``; ``id_tokens`` give a fake (unsigned) JWT with the ``aud`` asked for;
- ``workflow:rules`` and job ``rules``: ``if`` expressions on variables (``==``, ``!=``, ``=~``, ``!~``, ``&&``,
  ``||``, parentheses, ``$VAR`` presence), ``when: on_success/manual/never/always/on_failure``, ``allow_failure``;
- ``stages`` and ``needs`` (and ``dependencies``) for order and for which artifacts a job receives;
- ``before_script`` + ``script`` in ONE bash ``set -eo pipefail`` session (the first failing command fails the
  job, an ``export`` in before_script is seen by script), ``after_script`` in another whose failure is ignored;
- ``artifacts``: ``paths`` (globs, folders), ``when``, ``reports`` (recorded, ``terraform`` among them);
- ``environment``, ``resource_group``, ``image``, ``cache``, ``tags`` are recorded, not simulated (no image: the
  host's tools; no cache: every job starts cold).

A manual job runs only when the caller starts it (``start={"job"}``: an approver pressing play); a manual job
that is not started blocks what needs it (and, with ``allow_failure: false``, the later stages). Keywords that
would change what runs and that this runner does not implement (``trigger``, ``parallel``, ``include``,
``rules:changes``, ``services``, ``retry``, ``dotenv`` reports ...) raise :class:`PipelineError` instead of being
ignored, so a generator that starts using one cannot pass untested.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class PipelineError(Exception):
    """The pipeline uses something this runner does not implement, or is invalid."""


# -- if: expressions --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>"[^"]*"|'[^']*')
  | (?P<regex>/(?:\\.|[^/\\])*/[imx]*)
  | (?P<variable>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<null>null\b)
  | (?P<op>==|!=|=~|!~|&&|\|\||[()])
)""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        if not match:
            raise PipelineError(f"cannot parse rules:if at {text[pos:]!r} in {text!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class Expression:
    """A ``rules:if`` expression evaluated against a job's variables. ``&&`` binds tighter than ``||``."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def evaluate(self, variables: Mapping[str, str]) -> bool:
        self.variables = variables
        self.pos = 0
        value = self._or()
        if self.pos != len(self.tokens):
            raise PipelineError(f"unexpected {self.tokens[self.pos][1]!r} in rules:if {self.text!r}")
        return bool(value)

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise PipelineError(f"rules:if {self.text!r} ends too early")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value or right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            value = value and right
        return value

    def _compare(self) -> Any:
        left = self._operand()
        op = self._peek()
        if op in ("==", "!="):
            self._take()
            right = self._operand()
            equal = left == right
            return equal if op == "==" else not equal
        if op in ("=~", "!~"):
            self._take()
            kind, pattern = self._take()
            if kind == "variable":  # a variable holding /pattern/
                pattern = self._value(pattern) or ""
            found = _regex(pattern, self.text).search(left or "") is not None
            return found if op == "=~" else not found
        return left  # presence: a variable that is set and not empty

    def _operand(self) -> Any:
        kind, value = self._take()
        if value == "(":
            inner = self._or()
            if self._take()[1] != ")":
                raise PipelineError(f"missing ) in rules:if {self.text!r}")
            return inner
        if kind == "string":
            return value[1:-1]
        if kind == "null":
            return None
        if kind == "variable":
            return self._value(value)
        raise PipelineError(f"unexpected {value!r} in rules:if {self.text!r}")

    def _value(self, token: str) -> str | None:
        return self.variables.get(token.lstrip("$").strip("{}"))


def _regex(pattern: str, text: str) -> re.Pattern[str]:
    match = re.fullmatch(r"/(.*)/([imx]*)", pattern, re.DOTALL)
    if not match:
        raise PipelineError(f"{pattern!r} is not a /regex/ in rules:if {text!r}")
    flags = re.IGNORECASE if "i" in match.group(2) else 0
    return re.compile(match.group(1), flags)


# -- the document -----------------------------------------------------------------------------------------------

GLOBAL_KEYWORDS = {"stages", "workflow", "variables", "default", "include", "image", "services", "cache",
                   "before_script", "after_script"}
DEFAULT_KEYS = {"after_script", "artifacts", "before_script", "cache", "hooks", "id_tokens", "image",
                "interruptible", "retry", "services", "tags", "timeout"}
# keywords this runner implements or records (whatever it does not implement must not be ignored)
JOB_KEYWORDS = {"stage", "extends", "script", "before_script", "after_script", "variables", "rules", "needs",
                "dependencies", "artifacts", "id_tokens", "environment", "resource_group", "image", "cache", "tags",
                "when", "allow_failure", "interruptible", "timeout"}
ARTIFACT_KEYS = {"paths", "when", "expire_in", "reports", "name", "expose_as"}
REPORTS_RECORDED = {"terraform", "junit", "codequality", "sast", "dependency_scanning", "cyclonedx"}
DEFAULT_STAGES = [".pre", "build", "test", "deploy", ".post"]


def deep_merge(base: Any, override: Any) -> Any:
    """GitLab's ``extends`` merge: mappings merge key by key (recursively), anything else (lists too) is
    replaced by the overriding value."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def resolve_job(document: Mapping[str, Any], name: str, _depth: int = 0) -> dict[str, Any]:
    """The job ``name`` with its ``extends`` chain merged in (no more than 11 levels, as GitLab allows)."""
    if _depth > 10:
        raise PipelineError(f"job {name}: extends nests deeper than GitLab's 11 levels (a cycle?)")
    if name not in document or not isinstance(document[name], dict):
        raise PipelineError(f"extends names {name!r}, which is not a job or hidden job of the file")
    spec = document[name]
    parents = spec.get("extends") or []
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = deep_merge(merged, resolve_job(document, parent, _depth + 1))
    own = {k: v for k, v in spec.items() if k != "extends"}
    return dict(deep_merge(merged, own))


def job_names(document: Mapping[str, Any]) -> list[str]:
    """The jobs of the file, in file order (hidden jobs, whose names start with '.', are not jobs)."""
    return [k for k, v in document.items() if k not in GLOBAL_KEYWORDS and not k.startswith(".")
            and isinstance(v, dict)]


def _variable_value(value: Any) -> tuple[str, bool]:
    """(value, expand) of a ``variables:`` entry: a scalar, or ``{value, expand, description, options}``."""
    if isinstance(value, dict):
        unknown = set(value) - {"value", "expand", "description", "options"}
        if unknown:
            raise PipelineError(f"variable keys {sorted(unknown)} are not supported")
        return _scalar(value.get("value", "")), value.get("expand", True) is not False
    return _scalar(value), True


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise PipelineError(f"a variable's value must be a string or number, got {value!r}")
    return str(value)


_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def expand(value: str, variables: Mapping[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` replaced by their values (unknown ones by nothing), ``$$`` by ``$``."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1) or match.group(2), "")
    return _REFERENCE.sub(replace, value)


def merge_variables(layers: list[Mapping[str, Any]]) -> dict[str, str]:
    """The variables of a job: later layers win; each value expanded against what comes before it and the
    other layers' values (GitLab expands a variable from the others), unless ``expand: false``."""
    raw: dict[str, tuple[str, bool]] = {}
    for layer in layers:
        for name, value in layer.items():
            raw[name] = _variable_value(value)
    plain = {name: value for name, (value, _) in raw.items()}
    return {name: expand(value, {k: v for k, v in plain.items() if k != name}) if expanded else value
            for name, (value, expanded) in raw.items()}


def fake_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned JWT (``alg: none``) with ``claims``: what a job sees in an ``id_tokens`` variable."""
    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(dict(data), sort_keys=True).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


# -- running ----------------------------------------------------------------------------------------------------

@dataclass
class JobResult:
    """What happened to one job: ``status`` success | failed | skipped | manual (not started) | created
    (waiting on a job that did not run)."""

    name: str
    status: str
    log: str = ""
    variables: dict[str, str] = field(default_factory=dict)  # what the job was given
    exported: dict[str, str] = field(default_factory=dict)  # the shell's environment when the script ended
    artifacts: dict[str, bytes] = field(default_factory=dict)  # path in the project folder -> content
    reports: dict[str, dict[str, bytes]] = field(default_factory=dict)  # report type -> path -> content
    environment: dict[str, Any] | None = None
    resource_group: str | None = None
    id_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # variable -> claims
    spec: dict[str, Any] = field(default_factory=dict)  # the job after extends/default


# Sets up a job's project folder (the runner's git clone at CI_COMMIT_SHA): (folder, variables) -> None
Checkout = Callable[[Path, Mapping[str, str]], None]


class Pipeline:
    """One ``.gitlab-ci.yml`` document, for one pipeline's predefined and project variables."""

    def __init__(self, document: Mapping[str, Any], *, variables: Mapping[str, str], checkout: Checkout,
                 workspace_factory: Callable[[str], Path], project_variables: Mapping[str, str] | None = None):
        self.doc = dict(document)
        self.predefined = dict(variables)
        self.project_variables = dict(project_variables or {})  # CI/CD settings: they win over the file's
        self.checkout = checkout
        self.workspace_factory = workspace_factory
        self.results: dict[str, JobResult] = {}
        self.attempts: list[str] = []  # the jobs run, in order
        self._check_globals()

    def _check_globals(self) -> None:
        unsupported = {"include", "services", "image", "cache", "before_script", "after_script"} & set(self.doc)
        if unsupported:
            raise PipelineError(f"top-level {sorted(unsupported)}: not supported by this runner (use default:)")
        unknown = set(self.doc.get("default") or {}) - DEFAULT_KEYS
        if unknown:  # a default key the runner does not implement fails with the job that inherits it
            raise PipelineError(f"default: {sorted(unknown)} cannot be set in default")

    @property
    def stages(self) -> list[str]:
        stages = self.doc.get("stages")
        return [".pre", *stages, ".post"] if stages else list(DEFAULT_STAGES)

    def job(self, name: str) -> dict[str, Any]:
        """A job as GitLab sees it: extends merged, then ``default`` for the keys it does not set."""
        spec = resolve_job(self.doc, name)
        for key, value in (self.doc.get("default") or {}).items():
            spec.setdefault(key, copy.deepcopy(value))
        unknown = set(spec) - JOB_KEYWORDS
        if unknown:
            raise PipelineError(f"job {name}: keyword(s) {sorted(unknown)} not supported by this runner "
                                "(they would change what runs)")
        if "script" not in spec:
            raise PipelineError(f"job {name}: no script (GitLab refuses the file)")
        if spec.get("stage", "test") not in self.stages:
            raise PipelineError(f"job {name}: stage {spec.get('stage')!r} is not in stages {self.stages}")
        return spec

    def created(self) -> bool:
        """Whether ``workflow:rules`` let this pipeline be created."""
        rules = (self.doc.get("workflow") or {}).get("rules")
        if rules is None:
            return True
        outcome = self._rules(rules, self._base_variables(), "workflow")
        return outcome is not None and outcome[0] != "never"

    def _base_variables(self) -> dict[str, str]:
        return merge_variables([self.predefined, self.doc.get("variables") or {}, self.project_variables])

    def _rules(self, rules: list[Any], variables: Mapping[str, str], where: str) -> tuple[str, bool | None] | None:
        """(when, allow_failure) of the first rule that matches, None when none does."""
        for rule in rules:
            unknown = set(rule) - {"if", "when", "allow_failure"}
            if unknown:
                raise PipelineError(f"{where}: rules with {sorted(unknown)} are not supported by this runner")
            if "if" in rule and not Expression(str(rule["if"])).evaluate(variables):
                continue
            when = str(rule.get("when", "on_success"))
            if when not in ("on_success", "manual", "never", "always", "on_failure"):
                raise PipelineError(f"{where}: rules:when {when!r} is not supported by this runner")
            return when, rule.get("allow_failure")
        return None

    def run(self, start: set[str] | frozenset[str] = frozenset()) -> dict[str, JobResult]:
        """Run the pipeline's jobs in stage/needs order; a manual job runs only when named in ``start``.
        Returns every job of the file that the rules created, by name (none when workflow:rules refuse)."""
        if not self.created():
            return {}
        names = job_names(self.doc)
        specs = {name: self.job(name) for name in names}
        plan: dict[str, tuple[str, bool]] = {}  # job -> (when, allow_failure)
        for name, spec in specs.items():
            variables = merge_variables([self.predefined, self.doc.get("variables") or {},
                                         spec.get("variables") or {}, self.project_variables])
            if "rules" in spec:
                if "when" in spec:
                    raise PipelineError(f"job {name}: when and rules together (GitLab refuses the file)")
                outcome = self._rules(spec["rules"], variables, f"job {name}")
                if outcome is None or outcome[0] == "never":
                    continue
                when, allow = outcome
                allow_failure = bool(allow) if allow is not None else bool(spec.get("allow_failure", False))
            else:
                when = str(spec.get("when", "on_success"))
                allow_failure = bool(spec.get("allow_failure", when == "manual"))
            plan[name] = (when, allow_failure)
        order = self._order(plan, specs)
        for name in order:
            self.results[name] = self._decide(name, specs[name], plan, start, specs)
        return self.results

    def play(self, name: str, variables: Mapping[str, str] | None = None) -> JobResult:
        """Start a manual job the pipeline left waiting (an approver pressing play), or run a manual job that ran
        again (retry), with the ``variables`` given on the form (they win over all others); what needs it stays
        waiting."""
        job = self.results.get(name)
        if job is None or job.status not in ("manual", "failed", "success") or "manual" not in _whens(job.spec):
            raise PipelineError(f"{name} is not a manual job waiting to be started "
                                f"({job.status if job else 'not in this pipeline'})")
        self.results[name] = self._execute(name, job.spec, variables or {})
        return self.results[name]

    def _needs(self, spec: Mapping[str, Any]) -> list[tuple[str, bool]] | None:
        """(job, artifacts?) of ``needs``; None when the job has no ``needs`` (stage order)."""
        if "needs" not in spec:
            return None
        out: list[tuple[str, bool]] = []
        for need in spec["needs"] or []:
            if isinstance(need, str):
                out.append((need, True))
            elif isinstance(need, dict) and set(need) <= {"job", "artifacts", "optional"}:
                out.append((str(need["job"]), need.get("artifacts", True) is not False))
            else:
                raise PipelineError(f"needs entry {need!r} is not supported by this runner")
        return out

    def _prerequisites(self, name: str, spec: Mapping[str, Any], plan: Mapping[str, Any],
                       specs: Mapping[str, Any]) -> list[str]:
        needs = self._needs(spec)
        if needs is not None:
            for need, _ in needs:
                if need not in plan:
                    raise PipelineError(f"job {name} needs {need}, which is not in this pipeline (GitLab refuses "
                                        "to create it)")
            return [n for n, _ in needs]
        stage = self.stages.index(spec.get("stage", "test"))
        return [other for other in plan if self.stages.index(specs[other].get("stage", "test")) < stage]

    def _order(self, plan: Mapping[str, Any], specs: Mapping[str, Any]) -> list[str]:
        order: list[str] = []
        waiting = list(plan)  # file order
        while waiting:
            ready = [n for n in waiting if all(p in order for p in self._prerequisites(n, specs[n], plan, specs))]
            if not ready:
                raise PipelineError(f"jobs wait on each other: {waiting}")
            ready.sort(key=lambda n: self.stages.index(specs[n].get("stage", "test")))
            order.append(ready[0])
            waiting.remove(ready[0])
        return order

    def _decide(self, name: str, spec: dict[str, Any], plan: Mapping[str, tuple[str, bool]],
                start: set[str] | frozenset[str], specs: Mapping[str, Any]) -> JobResult:
        """Whether the job runs, given how its prerequisites ended (``needs``, else the earlier stages)."""
        when = plan[name][0]
        needed = {n for n, _ in (self._needs(spec) or [])}
        failed = waiting = skipped = False
        for before in self._prerequisites(name, spec, plan, specs):
            status, allow_failure = self.results[before].status, plan[before][1]
            failed |= status == "failed" and not allow_failure
            skipped |= status == "skipped" and before in needed
            # a manual job not started holds what needs it, and the later stages when it may not fail
            waiting |= status == "created" or (status == "manual" and (before in needed or not allow_failure))
        if when == "on_failure":
            return self._execute(name, spec) if failed else JobResult(name, "skipped", spec=spec)
        if when != "always":
            if failed or skipped:
                return JobResult(name, "skipped", spec=spec)
            if waiting:
                return JobResult(name, "created", spec=spec)
        if when == "manual" and name not in start:
            return JobResult(name, "manual", spec=spec)
        return self._execute(name, spec)

    def _execute(self, name: str, spec: dict[str, Any], played: Mapping[str, str] | None = None) -> JobResult:
        attempt = sum(1 for r in self.attempts if r == name) + 1
        self.attempts.append(name)
        workspace = self.workspace_factory(name if attempt == 1 else f"{name}-{attempt}")  # a retry: a new clone
        job_id = str(9000 + len(self.attempts))
        environment = spec.get("environment")
        if isinstance(environment, str):
            environment = {"name": environment}
        predefined = {**self.predefined, "CI_JOB_NAME": name, "CI_JOB_STAGE": str(spec.get("stage", "test")),
                      "CI_JOB_ID": job_id, "CI_PROJECT_DIR": str(workspace), "CI_BUILDS_DIR": str(workspace.parent),
                      "CI_JOB_TOKEN": f"job-token-{job_id}", "CI": "true", "GITLAB_CI": "true"}
        if environment:
            predefined["CI_ENVIRONMENT_NAME"] = str(environment.get("name", ""))
            if "deployment_tier" in environment:
                predefined["CI_ENVIRONMENT_TIER"] = str(environment["deployment_tier"])
        variables = merge_variables([predefined, self.doc.get("variables") or {}, spec.get("variables") or {},
                                     self.project_variables, played or {}])
        result = JobResult(name, "success", variables=variables, environment=environment,
                           resource_group=spec.get("resource_group"), spec=spec)
        for variable, token in (spec.get("id_tokens") or {}).items():
            unknown = set(token) - {"aud"}
            if unknown:
                raise PipelineError(f"job {name}: id_tokens keys {sorted(unknown)} not supported")
            audience = token["aud"]
            audience = [expand(str(a), variables) for a in audience] if isinstance(audience, list) else \
                expand(str(audience), variables)
            claims = {"aud": audience, "iss": "https://gitlab.invalid", "job_id": job_id,
                      "sub": f"project_path:{variables.get('CI_PROJECT_PATH', '')}:ref_type:"
                             f"{'branch' if variables.get('CI_COMMIT_BRANCH') else 'merge_request'}:ref:"
                             f"{variables.get('CI_COMMIT_REF_NAME', '')}",
                      "environment": (environment or {}).get("name", "")}
            result.id_tokens[variable] = claims
            variables[variable] = fake_jwt(claims)
        self.checkout(workspace, variables)
        for path, data in self._inherited_artifacts(name, spec).items():
            target = workspace / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        commands = [*_commands(spec, "before_script"), *_commands(spec, "script")]
        code, log, exported = _bash(commands, variables, workspace)
        result.log = log
        result.exported = exported
        if code != 0:
            result.status = "failed"
        after = _commands(spec, "after_script")
        if after:
            _code, after_log, _ = _bash(after, variables, workspace)
            result.log += "\n[after_script]\n" + after_log
        self._collect(result, spec.get("artifacts"), workspace)
        return result

    def _inherited_artifacts(self, name: str, spec: Mapping[str, Any]) -> dict[str, bytes]:
        needs = self._needs(spec)
        if needs is not None:
            sources = [job for job, artifacts in needs if artifacts]
        elif "dependencies" in spec:
            sources = list(spec["dependencies"] or [])
            for job in sources:
                if job not in self.results:
                    raise PipelineError(f"job {name}: dependencies names {job}, not an earlier job")
        else:
            stage = self.stages.index(spec.get("stage", "test"))
            sources = [job for job, r in self.results.items()
                       if self.stages.index(r.spec.get("stage", "test")) < stage]
        files: dict[str, bytes] = {}
        for job in sources:
            files.update(self.results[job].artifacts)
        return files

    def _collect(self, result: JobResult, artifacts: Any, workspace: Path) -> None:
        if not artifacts:
            return
        unknown = set(artifacts) - ARTIFACT_KEYS
        if unknown:
            raise PipelineError(f"job {result.name}: artifacts:{sorted(unknown)} not supported by this runner")
        when = artifacts.get("when", "on_success")
        if when not in ("on_success", "on_failure", "always"):
            raise PipelineError(f"job {result.name}: artifacts:when {when!r} is not on_success/on_failure/always")
        if when != "always" and (when == "on_success") != (result.status == "success"):
            return
        result.artifacts = _files(workspace, artifacts.get("paths") or [])
        for kind, paths in (artifacts.get("reports") or {}).items():
            if kind not in REPORTS_RECORDED:
                raise PipelineError(f"job {result.name}: artifacts:reports:{kind} not supported (a dotenv report "
                                    "would pass variables on)")
            result.reports[kind] = _files(workspace, [paths] if isinstance(paths, str) else paths)


def _whens(spec: Mapping[str, Any]) -> set[str]:
    """Every ``when`` the job or its rules can have."""
    return {str(spec.get("when", "on_success")), *(str(r.get("when", "on_success")) for r in spec.get("rules") or [])}


def _commands(spec: Mapping[str, Any], key: str) -> list[str]:
    value = spec.get(key) or []
    items = [value] if isinstance(value, str) else value
    out: list[str] = []
    for item in items:  # GitLab flattens nested lists (from !reference) one level deep
        out += [str(i) for i in item] if isinstance(item, list) else [str(item)]
    return out


def _files(workspace: Path, patterns: list[str]) -> dict[str, bytes]:
    """The files matching GitLab artifact ``paths`` (globs; a folder brings everything in it), by relative path."""
    found: dict[str, bytes] = {}
    for pattern in patterns:
        for match in sorted(workspace.glob(pattern.rstrip("/"))):
            files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            for path in files:
                if path.is_file() and not path.is_symlink():
                    found[path.relative_to(workspace).as_posix()] = path.read_bytes()
    return found


def _bash(commands: list[str], variables: Mapping[str, str], workspace: Path) -> tuple[int, str, dict[str, str]]:
    """The commands in one bash session as GitLab's shell runner writes them: ``set -eo pipefail``, each
    command echoed then run as it is; returns (exit code, log, the exported environment at the end)."""
    env_file = workspace.parent / f".env-{workspace.name}-{len(commands)}"
    lines = ["set -eo pipefail", "set +o noclobber",
             f"trap 'env -0 > {_quote(str(env_file))}' EXIT"]
    for command in commands:
        lines += [f"printf '%s\\n' {_quote('$ ' + command.splitlines()[0] if command else '$')}", command]
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", "\n".join(lines) + "\n"], cwd=workspace,
                          env=dict(variables), capture_output=True, text=True, timeout=600, check=False)
    exported: dict[str, str] = {}
    if env_file.is_file():
        for entry in env_file.read_bytes().decode(errors="replace").split("\0"):
            key, sep, value = entry.partition("=")
            if sep:
                exported[key] = value
        env_file.unlink()
    return proc.returncode, f"{proc.stdout}{proc.stderr}(exit {proc.returncode})", exported


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
