"""The schema of a strata.hcl file: which attributes and blocks it may hold.

Decoding checks the shape only (unknown names, duplicated blocks, missing labels); values are
evaluated later, per stack, by the model. Every problem carries file:line.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from strata.config import ast
from strata.config.limits import shorten
from strata.errors import ConfigError, Source

DIMENSIONS = ("cloud", "account_id", "environment", "region", "layer", "client")

TOP_ATTRIBUTES = frozenset({*DIMENSIONS, "inputs", "dependencies"})
TOP_BLOCKS = frozenset({"strata", "ci", "locals", "backend", "bootstrap", "stack", "dependency", "policy"})
STACK_ATTRIBUTES = frozenset({"name", "description", "tags"})
DEPENDENCY_ATTRIBUTES = frozenset({"path", "mock_outputs"})
# How `strata bootstrap` builds the backend (inherited and merged like backend settings; deeper wins).
BOOTSTRAP_ATTRIBUTES = frozenset({
    "noncurrent_version_days", "access_log_bucket", "kms_key_alias", "tags", "dr_region", "tls_only_policy",
})
SETTINGS_ATTRIBUTES = frozenset({
    "terraform_binary", "layers", "infer_dimensions", "environment_names", "production_environments",
    "state_dir", "cidr_inputs", "network_scope", "backend_file", "inputs_file",
})


@dataclass(slots=True)
class DependencyDecl:
    name: str
    path: ast.Expr | None
    mock_outputs: ast.Expr | None
    line: int


@dataclass(slots=True)
class BackendDecl:
    type: str
    attributes: dict[str, ast.Attribute]
    line: int


@dataclass(slots=True)
class StackDecl:
    attributes: dict[str, ast.Attribute]
    line: int


@dataclass(slots=True)
class ConfigFile:
    """One decoded strata.hcl."""

    directory: str  # repository-relative folder, "" for the root
    display: str  # the path as shown in messages (relative to the working directory)
    absdir: str  # absolute folder, for file() and relative paths
    settings: StackDecl | None = None  # the root `strata {}` block
    ci: ast.Block | None = None  # the root `ci {}` block (decoded by strata.config.ci)
    locals: dict[str, ast.Attribute] = field(default_factory=dict)
    dimensions: dict[str, ast.Attribute] = field(default_factory=dict)
    backend: BackendDecl | None = None
    bootstrap: StackDecl | None = None
    stack: StackDecl | None = None
    inputs: ast.Attribute | None = None
    dependencies: list[DependencyDecl] = field(default_factory=list)
    dependency_paths: ast.Attribute | None = None
    policy: ast.Block | None = None  # the root `policy {}` block (strata.config.policy reads it)

    def source(self, line: int, note: str = "") -> Source:
        return Source(self.display, line, note)


def _unknown(kind: str, name: str, known: frozenset[str], where: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1) if len(name) < 200 else []
    hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(sorted(known))})"
    return f"unknown {kind} {shorten(name)!r} in {where}{hint}"


def decode(body: ast.Body, directory: str, display: str, absdir: str) -> tuple[ConfigFile, list[ConfigError]]:
    """Decode a parsed strata.hcl; returns the file and every schema problem found in it."""
    cfg = ConfigFile(directory, display, absdir)
    errors: list[ConfigError] = []

    def err(message: str, line: int) -> None:
        errors.append(ConfigError(message, Source(display, line)))

    for attr in body.attributes:
        if attr.name in DIMENSIONS:
            cfg.dimensions[attr.name] = attr
        elif attr.name == "inputs":
            cfg.inputs = attr
        elif attr.name == "dependencies":
            cfg.dependency_paths = attr
        else:
            err(_unknown("attribute", attr.name, TOP_ATTRIBUTES | TOP_BLOCKS, "strata.hcl"), attr.line)

    dependency_lines: dict[str, int] = {}
    for block in body.blocks:
        kind = block.type
        if kind == "locals":
            if block.labels:
                err("a locals block takes no labels", block.line)
            for b in block.body.blocks:
                err(f"blocks are not allowed inside locals (found {shorten(b.type)!r})", b.line)
            for attr in block.body.attributes:
                if attr.name in cfg.locals:
                    err(f"local {attr.name!r} is defined twice in this file "
                        f"(first at line {cfg.locals[attr.name].line})", attr.line)
                cfg.locals[attr.name] = attr
        elif kind == "backend":
            if len(block.labels) != 1:
                err('a backend block needs exactly one label, its type: backend "s3" { ... }', block.line)
                continue
            if cfg.backend is not None:
                err(f"a second backend block in this file (the first is at line {cfg.backend.line})", block.line)
                continue
            for b in block.body.blocks:
                err(f"nested blocks are not supported in a backend block ({shorten(b.type)!r}); "
                    f"write it as an attribute: {shorten(b.type)} = {{ ... }}", b.line)
            cfg.backend = BackendDecl(block.labels[0], {a.name: a for a in block.body.attributes}, block.line)
        elif kind == "bootstrap":
            if block.labels:
                err("the bootstrap block takes no labels", block.line)
            if cfg.bootstrap is not None:
                err(f"a second bootstrap block in this file (the first is at line {cfg.bootstrap.line})",
                    block.line)
                continue
            _check_names(block, BOOTSTRAP_ATTRIBUTES, "the bootstrap block", err)
            cfg.bootstrap = StackDecl({a.name: a for a in block.body.attributes if a.name in BOOTSTRAP_ATTRIBUTES},
                                      block.line)
        elif kind == "stack":
            if block.labels:
                err("a stack block takes no labels; set its name with name = \"...\"", block.line)
            if cfg.stack is not None:
                err(f"a second stack block in this file (the first is at line {cfg.stack.line})", block.line)
                continue
            _check_names(block, STACK_ATTRIBUTES, "a stack block", err)
            cfg.stack = StackDecl({a.name: a for a in block.body.attributes}, block.line)
        elif kind == "dependency":
            if len(block.labels) != 1:
                err('a dependency block needs exactly one label, its name: dependency "vpc" { path = "..." }',
                    block.line)
                continue
            name = block.labels[0]
            if name in dependency_lines:
                err(f"dependency {shorten(name)!r} is declared twice in this file (first at line "
                    f"{dependency_lines[name]})", block.line)
                continue
            dependency_lines[name] = block.line
            _check_names(block, DEPENDENCY_ATTRIBUTES, f"dependency {shorten(name)!r}", err)
            attrs = {a.name: a for a in block.body.attributes}
            if "path" not in attrs:
                err(f"dependency {shorten(name)!r} needs a path to the stack it depends on", block.line)
            cfg.dependencies.append(DependencyDecl(
                name,
                attrs["path"].expr if "path" in attrs else None,
                attrs["mock_outputs"].expr if "mock_outputs" in attrs else None,
                block.line,
            ))
        elif kind == "strata":
            if directory:
                err("the strata {} block belongs in the repository root strata.hcl only", block.line)
                continue
            if block.labels:
                err("the strata block takes no labels", block.line)
            _check_names(block, SETTINGS_ATTRIBUTES, "the strata block", err)
            cfg.settings = StackDecl({a.name: a for a in block.body.attributes}, block.line)
        elif kind in ("ci", "policy"):  # the root file's blocks that their own modules decode
            first: ast.Block | None = getattr(cfg, kind)
            if directory:
                err(f"the {kind} {{}} block belongs in the repository root strata.hcl only", block.line)
            elif first is not None:
                err(f"a second {kind} block in this file (the first is at line {first.line})", block.line)
            else:
                setattr(cfg, kind, block)
        else:
            err(_unknown("block", kind, TOP_BLOCKS, "strata.hcl"), block.line)
    return cfg, errors


def _check_names(block: ast.Block, allowed: frozenset[str], where: str,
                 report: Callable[[str, int], None]) -> None:
    for attr in block.body.attributes:
        if attr.name not in allowed:
            report(_unknown("attribute", attr.name, allowed, where), attr.line)
    for b in block.body.blocks:
        report(f"blocks are not allowed in {where} (found {shorten(b.type)!r})", b.line)
