"""The ``policy {}`` block of the root strata.hcl: policy checks (checkov) on every stack's plan.

::

    policy {
      enabled          = true        # check every plan (without it: only `strata plan --policy`)
      directory        = "policies"  # the repository's own checks: checkov YAML and Python custom policies
      severity         = "HIGH"      # the threshold: a finding below it is reported, not failing
      unrated_severity = "CRITICAL"  # what a finding without a severity counts as (checkov's built-in checks
                                     # have none offline): by default it fails whatever the threshold
      skip "CKV_AWS_144" {
        stacks = ["*/*/01-foundation"]  # globs of stack paths, as in a selection; default: every stack
        reason = "replication is done by the backup account"
      }
    }

Every value is a constant; every problem carries file:line. A skip without a reason is an error: a skipped check
must say why in the summary a reviewer reads.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.config import ast
from strata.config.evaluate import Context, evaluate
from strata.config.files import ConfigFile, _unknown
from strata.config.limits import one_line, shorten
from strata.errors import ConfigError, Diagnostic, Source

# checkov's severities, lowest first (INFO findings never fail a build in checkov's own tools either)
SEVERITIES = ("INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL")
POLICY_ATTRIBUTES = frozenset({"enabled", "directory", "severity", "unrated_severity"})
SKIP_ATTRIBUTES = frozenset({"stacks", "reason"})
ALL_CHECKS = "*"  # skip "*" { ... }: the stacks it names are not checked at all
_CHECK_ID = re.compile(r"[A-Za-z0-9_*?.-]{1,100}")


@dataclass(frozen=True, slots=True)
class SkipRule:
    """``skip "CHECK" { stacks = [...], reason = "..." }``: a check (id or glob) not counted in some stacks."""

    check: str
    stacks: tuple[str, ...]  # globs of stack paths; () means every stack
    reason: str
    source: Source

    def applies(self, check_id: str, stack: str) -> bool:
        in_stack = not self.stacks or any(fnmatch.fnmatchcase(stack, glob) for glob in self.stacks)
        return in_stack and fnmatch.fnmatchcase(check_id, self.check)


@dataclass(slots=True)
class PolicySettings:
    declared: bool = False  # the root file has a policy block
    enabled: bool = False
    directory: str | None = None  # repository-relative folder of custom checks
    severity: str = "LOW"
    unrated_severity: str = "CRITICAL"
    skips: tuple[SkipRule, ...] = ()
    source: Source = field(default_factory=Source)  # the block, or the attribute named by the key below
    sources: dict[str, Source] = field(default_factory=dict)

    def fails(self, severity: str | None) -> bool:
        """Whether a finding of ``severity`` (None: the check has none) fails the check."""
        rank = SEVERITIES.index(severity) if severity in SEVERITIES else SEVERITIES.index(self.unrated_severity)
        return rank >= SEVERITIES.index(self.severity)

    def skip_for(self, check_id: str, stack: str) -> SkipRule | None:
        return next((rule for rule in self.skips if rule.applies(check_id, stack)), None)

    def stack_skipped(self, stack: str) -> SkipRule | None:
        """The ``skip "*"`` rule that leaves ``stack`` unchecked, if any."""
        return next((rule for rule in self.skips if rule.check == ALL_CHECKS and rule.applies("*", stack)), None)


def unmatched_skips(policy: PolicySettings, stacks: Iterable[str]) -> list[Diagnostic]:
    """A warning for each stack glob of a skip that matches no stack: a typo would leave the check on."""
    paths = list(stacks)
    return [Diagnostic("warning", f"skip {rule.check!r}: {glob!r} matches no stack", rule.source)
            for rule in policy.skips for glob in rule.stacks
            if not any(fnmatch.fnmatchcase(path, glob) for path in paths)]


class _ConstantScope:
    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        raise ctx.error(f"settings in the policy block must be constant values; {shorten(node.text())} is not",
                        node)


def _severity(value: Any, name: str) -> str:
    if not isinstance(value, str) or value.upper() not in SEVERITIES:
        raise ValueError(f"{name} must be one of {', '.join(SEVERITIES)}; not {shorten(repr(value))}")
    return value.upper()


def _directory(value: Any, root: Path) -> str:
    parts = value.strip().strip("/").split("/") if isinstance(value, str) else []
    if not isinstance(value, str) or value.startswith("/") or not parts or {"", ".", ".."} & set(parts):
        # not the root itself either: checkov would take every YAML file of the repository for a policy
        raise ValueError("directory must be a folder inside the repository, of its own, e.g. \"policies\"")
    folder = "/".join(parts)
    if not (root / folder).is_dir():
        raise ValueError(f"directory {shorten(folder)!r} does not exist (the folder of the repository's own "
                         "checkov checks, relative to this file)")
    return folder


def load_policy(cfg: ConfigFile) -> tuple[PolicySettings, list[ConfigError]]:
    """Evaluate the root file's ``policy {}`` block; without one, policy checks run only when asked."""
    policy = PolicySettings()
    errors: list[ConfigError] = []
    block = cfg.policy
    if block is None:
        return policy, errors
    policy.declared = True
    policy.source = cfg.source(block.line)
    if block.labels:
        errors.append(ConfigError("the policy block takes no labels", cfg.source(block.line)))
    ctx = Context(_ConstantScope(), cfg.display, cfg.absdir)
    for attr in block.body.attributes:
        try:
            if attr.name not in POLICY_ATTRIBUTES:
                raise ValueError(_unknown("attribute", attr.name, POLICY_ATTRIBUTES | {"skip"}, "the policy block"))
            value = evaluate(attr.expr, ctx)
            if attr.name == "enabled":
                if not isinstance(value, bool):
                    raise ValueError("enabled must be true or false")
                policy.enabled = value
            elif attr.name == "directory":
                policy.directory = _directory(value, Path(cfg.absdir))
            elif attr.name == "severity":
                policy.severity = _severity(value, attr.name)
            elif attr.name == "unrated_severity":
                policy.unrated_severity = _severity(value, attr.name)
            policy.sources[attr.name] = cfg.source(attr.line)
        except ValueError as exc:
            errors.append(ConfigError(str(exc), cfg.source(attr.line)))
        except ConfigError as exc:
            errors.append(exc)
    skips: list[SkipRule] = []
    for inner in block.body.blocks:
        if inner.type != "skip":
            errors.append(ConfigError(_unknown("block", inner.type, frozenset({"skip"}), "the policy block"),
                                      cfg.source(inner.line)))
            continue
        rule = _skip(inner, cfg, ctx, errors)
        if rule is not None:
            skips.append(rule)
    policy.skips = tuple(skips)
    return policy, errors


def _skip(block: ast.Block, cfg: ConfigFile, ctx: Context, errors: list[ConfigError]) -> SkipRule | None:
    """One ``skip "CHECK" { stacks = [...], reason = "..." }``; None (and errors) when it is wrong."""
    where = cfg.source(block.line)
    if len(block.labels) != 1 or not _CHECK_ID.fullmatch(block.labels[0]):
        errors.append(ConfigError('a skip block needs one label, the check id (or a glob of ids): '
                                  'skip "CKV_AWS_144" { stacks = [...], reason = "..." }', where))
        return None
    check = block.labels[0]
    before = len(errors)
    values: dict[str, Any] = {}
    for attr in block.body.attributes:
        try:
            if attr.name not in SKIP_ATTRIBUTES:
                raise ValueError(_unknown("attribute", attr.name, SKIP_ATTRIBUTES, f"skip {check!r}"))
            values[attr.name] = (evaluate(attr.expr, ctx), cfg.source(attr.line))
        except ValueError as exc:
            errors.append(ConfigError(str(exc), cfg.source(attr.line)))
        except ConfigError as exc:
            errors.append(exc)
    for inner in block.body.blocks:
        errors.append(ConfigError(f"blocks are not allowed in skip {check!r} (found {shorten(inner.type)!r})",
                                  cfg.source(inner.line)))
    reason, reason_at = values.get("reason", (None, where))
    if not isinstance(reason, str) or not reason.strip():
        errors.append(ConfigError(f"skip {check!r} needs a reason: reason = \"why this check does not apply\" "
                                  "(it is shown wherever the skipped check is reported)", reason_at))
    stacks, stacks_at = values.get("stacks", ([], where))
    if not isinstance(stacks, list) or not all(isinstance(s, str) and s.strip("/") for s in stacks):
        errors.append(ConfigError(f"stacks of skip {check!r} must be a list of stack paths or globs, "
                                  'e.g. ["*/*/01-foundation"]', stacks_at))
    if len(errors) > before:
        return None
    return SkipRule(check, tuple(s.strip("/") for s in stacks), one_line(str(reason)), where)
