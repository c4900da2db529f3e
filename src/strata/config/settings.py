"""Repository-wide settings: the ``strata {}`` block of the root strata.hcl."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strata.config import ast
from strata.config.ci import CISettings, load_ci
from strata.config.evaluate import Context, evaluate
from strata.config.files import ConfigFile
from strata.config.limits import shorten
from strata.config.policy import PolicySettings, load_policy
from strata.errors import ConfigError, Source

DEFAULT_ENVIRONMENT_NAMES = (
    "development", "dev", "staging", "stage", "qa", "uat", "test", "testing", "sandbox",
    "preprod", "pre-production", "production", "prod", "prd", "demo", "perf",
)


@dataclass(slots=True)
class Settings:
    terraform_binary: str = "terraform"
    layers: tuple[str, ...] | None = None  # explicit layer order; default: by numeric prefix
    infer_dimensions: bool = True
    environment_names: tuple[str, ...] = DEFAULT_ENVIRONMENT_NAMES
    production_environments: tuple[str, ...] = ("production", "prod", "prd")
    state_dir: str = ".strata/state"
    cidr_inputs: tuple[str, ...] = ("*cidr*",)
    network_scope: tuple[str, ...] = ("cloud", "account_id", "environment")
    backend_file: str = "strata_backend.tf"
    inputs_file: str = "strata_inputs.auto.tfvars"
    ci: CISettings | None = None  # the ci {} block; None: the pipelines' defaults
    policy: PolicySettings = field(default_factory=PolicySettings)  # the root `policy {}` block
    sources: dict[str, Source] = field(default_factory=dict)


class _ConstantScope:
    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        raise ctx.error(f"settings in the strata block must be constant values; {shorten(node.text())} is not", node)


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings")
    return tuple(value)


def _filename(value: Any, name: str, suffix: str) -> str:
    if not isinstance(value, str) or not value.endswith(suffix) or "/" in value or value.startswith("."):
        raise ValueError(f"{name} must be a plain file name ending in {suffix}")
    return value


def load_settings(cfg: ConfigFile) -> tuple[Settings, list[ConfigError]]:
    """Evaluate the root file's ``strata {}`` block (and its ``policy {}`` block); unset settings keep their
    defaults."""
    settings = Settings()
    settings.policy, errors = load_policy(cfg)
    if cfg.ci is not None:
        settings.ci, ci_errors = load_ci(cfg.ci, cfg.display, cfg.absdir)
        errors += ci_errors
    if cfg.settings is None:
        return settings, errors
    from strata.model.dimensions import DIMENSION_NAMES

    ctx = Context(_ConstantScope(), cfg.display, cfg.absdir)
    for name, attr in cfg.settings.attributes.items():
        try:
            value = evaluate(attr.expr, ctx)
            if name == "terraform_binary":
                if not isinstance(value, str) or not value:
                    raise ValueError("terraform_binary must be a command name or path, e.g. \"tofu\"")
                settings.terraform_binary = value
            elif name == "layers":
                settings.layers = _strings(value, name)
            elif name == "infer_dimensions":
                if not isinstance(value, bool):
                    raise ValueError("infer_dimensions must be true or false")
                settings.infer_dimensions = value
            elif name == "environment_names":
                settings.environment_names = _strings(value, name)
            elif name == "production_environments":
                settings.production_environments = _strings(value, name)
            elif name == "state_dir":
                if not isinstance(value, str) or not value or value.startswith("/") or ".." in value.split("/"):
                    raise ValueError("state_dir must be a folder path inside the repository")
                settings.state_dir = value.rstrip("/")
            elif name == "cidr_inputs":
                settings.cidr_inputs = _strings(value, name) if value != [] else ()
            elif name == "network_scope":
                scope = _strings(value, name) if value != [] else ()
                bad = [d for d in scope if d not in DIMENSION_NAMES]
                if bad:
                    raise ValueError(f"network_scope may only name dimensions ({', '.join(DIMENSION_NAMES)}); "
                                     f"not {', '.join(bad)}")
                settings.network_scope = scope
            elif name == "backend_file":
                settings.backend_file = _filename(value, name, ".tf")
            elif name == "inputs_file":
                settings.inputs_file = _filename(value, name, ".auto.tfvars")
            settings.sources[name] = cfg.source(attr.line)
        except ValueError as exc:
            errors.append(ConfigError(str(exc), cfg.source(attr.line)))
        except ConfigError as exc:
            errors.append(exc)
    if settings.backend_file and settings.inputs_file == settings.backend_file:
        errors.append(ConfigError("backend_file and inputs_file must differ", cfg.source(cfg.settings.line)))
    return settings, errors
