"""The ``ci {}`` block of the root strata.hcl: how the generated pipelines gate, order, run and authenticate.

::

    ci {
      promotion   = ["development", "staging", "production"]  # apply order; each waits for the one before
      protected   = ["production"]                              # approval before the apply (default below)
      parallelism = 8                                           # jobs of one environment at a time
      runner      = ["ubuntu-latest"]                           # runs-on labels / GitLab tags / Azure pool
      environment "production" {
        protected   = true
        parallelism = 2
        runner      = ["self-hosted", "prod"]
        aws { role = "arn:aws:iam::{account_id}:role/strata-prod" }   # overrides the settings below
      }
      aws   { role = "arn:aws:iam::{account_id}:role/strata-apply-{environment}", region = "us-east-1",
              plan_role = "arn:aws:iam::{account_id}:role/strata-plan-{environment}" }
      azure { client_id = "...", plan_client_id = "...", tenant_id = "...", subscription_id = "{account_id}" }
      gcp   { workload_identity_provider = "projects/1/locations/global/workloadIdentityPools/p/providers/gh",
              service_account = "strata@{account_id}.iam.gserviceaccount.com",
              plan_service_account = "strata-plan@{account_id}.iam.gserviceaccount.com" }
    }

Plan jobs (the pull request's, and main's) run with the ``plan_*`` identity, never the apply one: a plan job runs
code from the pull request. Without a ``plan_*`` setting they fall back to the CI system's plan variables
(:data:`PLAN_SETTINGS`), never to the apply identity.

Credential values may name ``{environment}``, ``{account_id}`` and ``{cloud}``: the dimensions every stack of
one CI job shares (a job covers one environment, cloud and account); they are filled per job by
``strata ci matrix``. Every value is a constant; a mistake is reported at its file:line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from strata.config import ast
from strata.config.evaluate import Context, evaluate
from strata.errors import ConfigError, Source

CLOUDS = ("aws", "azure", "gcp")
# Per cloud: its settings, required ones first. service_connection is Azure DevOps' name for the identity.
CLOUD_SETTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aws": (("role",), ("plan_role", "region", "service_connection", "plan_service_connection")),
    "azure": (("client_id", "tenant_id", "subscription_id"),
              ("plan_client_id", "service_connection", "plan_service_connection")),
    "gcp": (("workload_identity_provider",),
            ("service_account", "plan_service_account", "project_id", "plan_service_connection")),
}
# Per cloud: the setting that makes the apply identity -> the one plan jobs use instead (never the apply one).
PLAN_SETTINGS: dict[str, dict[str, str]] = {
    "aws": {"role": "plan_role", "service_connection": "plan_service_connection"},
    "azure": {"client_id": "plan_client_id", "service_connection": "plan_service_connection"},
    "gcp": {"service_account": "plan_service_account", "service_connection": "plan_service_connection"},
}
PLACEHOLDERS = ("environment", "account_id", "cloud")
DEFAULT_RUNNER = ("ubuntu-latest",)
DEFAULT_PARALLELISM = 8
MAX_PARALLELISM = 256  # GitHub's limit of jobs in one matrix
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(slots=True)
class EnvironmentCI:
    """An ``environment "NAME" {}`` block: settings of one environment (None: the ci block's)."""

    name: str
    source: Source
    protected: bool | None = None
    parallelism: int | None = None
    runner: tuple[str, ...] | None = None
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(slots=True)
class CISettings:
    """The evaluated ``ci {}`` block."""

    source: Source
    promotion: tuple[str, ...] | None = None
    protected: tuple[str, ...] | None = None
    parallelism: int = DEFAULT_PARALLELISM
    runner: tuple[str, ...] | None = None  # None: each platform's default (GitHub ubuntu-latest)
    credentials: dict[str, dict[str, str]] = field(default_factory=dict)  # cloud -> setting -> template
    environments: dict[str, EnvironmentCI] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)  # where promotion and protected are set


class _Constants:
    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        raise ctx.error("settings in the ci block must be constant values", node)


def _labels(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{name} must be a non-empty list of non-empty strings")
    return tuple(value)


def _parallelism(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 1 <= value <= MAX_PARALLELISM:
        raise ValueError(f"parallelism must be a whole number from 1 to {MAX_PARALLELISM} (jobs at a time)")
    return int(value)


def _template(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{name} must be one line without control characters")
    bad = sorted({ch for ch in value if ch in "$`\"'\\"})
    if bad:  # a CI system would read them as its own syntax (${{ }}, $(macro), $VAR)
        raise ValueError(f"{name} must not contain {' '.join(bad)}: the pipelines carry it as it is")
    for placeholder in _PLACEHOLDER.findall(value):
        if placeholder not in PLACEHOLDERS:
            raise ValueError(f"{name}: unknown placeholder {{{placeholder}}}; a CI job covers one environment, "
                             f"cloud and account, so only {', '.join('{' + p + '}' for p in PLACEHOLDERS)} "
                             "can be filled")
    return value


class _Decoder:
    def __init__(self, display: str, absdir: str) -> None:
        self.display = display
        self.ctx = Context(_Constants(), display, absdir)
        self.errors: list[ConfigError] = []

    def source(self, line: int) -> Source:
        return Source(self.display, line)

    def error(self, message: str, line: int) -> None:
        self.errors.append(ConfigError(message, self.source(line)))

    def value(self, attr: ast.Attribute) -> Any:
        return evaluate(attr.expr, self.ctx)

    def attributes(self, body: ast.Body, allowed: tuple[str, ...], where: str) -> dict[str, ast.Attribute]:
        found: dict[str, ast.Attribute] = {}
        for attr in body.attributes:
            if attr.name not in allowed:
                self.error(f"unknown setting {attr.name!r} in {where} (allowed: {', '.join(allowed)})", attr.line)
            else:
                found[attr.name] = attr
        return found

    def cloud(self, block: ast.Block, where: str, *, complete: bool) -> dict[str, str] | None:
        """A cloud's credential block; ``complete``: its required settings must all be there."""
        if block.labels:
            self.error(f"the {block.type} block takes no labels", block.line)
        required, optional = CLOUD_SETTINGS[block.type]
        for nested in block.body.blocks:
            self.error(f"blocks are not allowed in the {block.type} block (found {nested.type!r})", nested.line)
        attrs = self.attributes(block.body, (*required, *optional), f"the {block.type} block of {where}")
        out: dict[str, str] = {}
        for name, attr in attrs.items():
            try:
                out[name] = _template(self.value(attr), name)
            except ValueError as exc:
                self.error(str(exc), attr.line)
            except ConfigError as exc:
                self.errors.append(exc)
        for apply_name, plan_name in PLAN_SETTINGS[block.type].items():
            if plan_name in out and out.get(apply_name) == out[plan_name]:
                self.error(f"{plan_name} must differ from {apply_name}: a plan job runs code from the pull request, "
                           "so it must not hold the identity that applies", attrs[plan_name].line)
        missing = [n for n in required if n not in attrs]
        if complete and missing:
            self.error(f"the {block.type} block needs {', '.join(missing)}", block.line)
            return None
        return out

    def settings(self, attrs: dict[str, ast.Attribute], target: CISettings | EnvironmentCI) -> None:
        for name, attr in attrs.items():
            try:
                value = self.value(attr)
                if name == "parallelism":
                    target.parallelism = _parallelism(value)
                elif name == "runner":
                    target.runner = _labels(value, "runner")
                elif name == "protected" and isinstance(target, EnvironmentCI):
                    if not isinstance(value, bool):
                        raise ValueError("protected must be true or false")
                    target.protected = value
                elif name == "protected" and isinstance(target, CISettings):
                    target.protected = () if value == [] else _labels(value, "protected")
                    target.sources[name] = self.source(attr.line)
                elif name == "promotion" and isinstance(target, CISettings):
                    target.sources[name] = self.source(attr.line)
                    target.promotion = _labels(value, "promotion")
                    repeated = sorted({e for e in target.promotion if target.promotion.count(e) > 1})
                    if repeated:
                        raise ValueError(f"promotion names {', '.join(repeated)} more than once")
            except ValueError as exc:
                self.error(str(exc), attr.line)
            except ConfigError as exc:
                self.errors.append(exc)

    def environment(self, block: ast.Block, ci: CISettings) -> None:
        if len(block.labels) != 1:
            self.error('an environment block needs one label, its name: environment "production" { ... }',
                       block.line)
            return
        name = block.labels[0]
        if name in ci.environments:
            self.error(f"environment {name!r} has a second block in the ci block (the first is at line "
                       f"{ci.environments[name].source.line})", block.line)
            return
        env = ci.environments[name] = EnvironmentCI(name, self.source(block.line))
        where = f"environment {name!r}"
        self.settings(self.attributes(block.body, ("protected", "parallelism", "runner"), where), env)
        for nested in block.body.blocks:
            if nested.type in CLOUDS:
                if nested.type in env.credentials:
                    self.error(f"a second {nested.type} block in {where}", nested.line)
                    continue
                values = self.cloud(nested, where, complete=False)
                if values is not None:
                    env.credentials[nested.type] = values
            else:
                self.error(f"unknown block {nested.type!r} in {where} (allowed: {', '.join(CLOUDS)})", nested.line)


def load_ci(block: ast.Block, display: str, absdir: str) -> tuple[CISettings, list[ConfigError]]:
    """Evaluate the root file's ``ci {}`` block."""
    decoder = _Decoder(display, absdir)
    ci = CISettings(decoder.source(block.line))
    if block.labels:
        decoder.error("the ci block takes no labels", block.line)
    decoder.settings(decoder.attributes(block.body, ("promotion", "protected", "parallelism", "runner"),
                                        "the ci block"), ci)
    for nested in block.body.blocks:
        if nested.type == "environment":
            decoder.environment(nested, ci)
        elif nested.type in CLOUDS:
            if nested.type in ci.credentials:
                decoder.error(f"a second {nested.type} block in the ci block", nested.line)
                continue
            values = decoder.cloud(nested, "the ci block", complete=True)
            if values is not None:
                ci.credentials[nested.type] = values
        else:
            decoder.error(f"unknown block {nested.type!r} in the ci block (allowed: environment, "
                          f"{', '.join(CLOUDS)})", nested.line)
    for env in ci.environments.values():
        for cloud, values in env.credentials.items():
            inherited = ci.credentials.get(cloud, {})
            missing = [n for n in CLOUD_SETTINGS[cloud][0] if n not in values and n not in inherited]
            if missing:
                decoder.error(f"the {cloud} block of environment {env.name!r} needs {', '.join(missing)} (or set "
                              f"them in a {cloud} block of the ci block)", env.source.line)
    if ci.protected is not None:
        for env in ci.environments.values():
            if env.protected is not None:
                decoder.error(f"environment {env.name!r} sets protected, and so does the ci block's protected "
                              "list; use one of them", env.source.line)
    return ci, decoder.errors
