"""The migration file: which state to split, and the ordered rules that send each resource somewhere.

A migration file is HCL kept in the repository (e.g. ``migrations/2026-01-split-production.hcl``)::

    migration {
      description = "Split the production monolith into layers"      # optional
    }

    source {
      stack = "legacy/production"                   # a stack path, repository-relative
      # or, for a state no stack owns yet (exactly one of the two):
      # backend "local" { path = "legacy/terraform.tfstate" }
    }

    move "foundation" {                             # rules are tried in order: the first match decides
      resources = ["module.vpc", "null_resource.dns_zone", "module.eks.null_resource.node_*"]
      regex     = ["^module\\\\.network\\\\..*$"]    # optional, re.search on the resource address
      to        = "production/us-east-1/01-foundation"
      rename    = { "module.vpc" = "" }             # optional address prefix rewrites
    }

    keep "leftovers" {                              # resources that stay in the source state
      resources = ["null_resource.legacy_*"]
    }

Values are constant expressions: strata's functions work, references (``local.x``, ``var.x``) do not.
Every problem is reported with the file and line it is on, all of them at once (:class:`ProblemsFound`).

The address helpers at the end (:func:`parse_address`, :func:`is_module_path`...) define what a
Terraform resource address is for the whole package; :mod:`strata.migrate.surgery` uses them.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from strata.backends import BACKEND_TYPES, get_backend
from strata.config import ast
from strata.config.evaluate import Context, evaluate
from strata.config.functions import type_name
from strata.config.parse import parse_text
from strata.errors import ConfigError, Diagnostic, ProblemsFound, Source, StaticConfigError

TOP_BLOCKS = frozenset({"migration", "source", "move", "keep"})
MIGRATION_ATTRIBUTES = frozenset({"description"})
SOURCE_ATTRIBUTES = frozenset({"stack"})
MOVE_ATTRIBUTES = frozenset({"resources", "regex", "to", "rename"})
KEEP_ATTRIBUTES = frozenset({"resources", "regex"})
_RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Rule:
    """One ``move`` or ``keep`` block. ``source`` is the block's file:line; ``target_source`` the line of
    its ``to`` (for "not a stack" messages)."""

    name: str
    kind: Literal["move", "keep"]
    patterns: tuple[str, ...]
    regexes: tuple[str, ...]
    target: str | None
    rename: tuple[tuple[str, str], ...]
    source: Source
    target_source: Source = field(default_factory=Source)


@dataclass(frozen=True)
class SourceSpec:
    """The state being split: a stack's (``stack``), or one named by a backend block (``backend_type``
    and its evaluated settings, local paths relative to the repository root)."""

    stack: str | None
    backend_type: str | None
    backend_values: dict[str, Any]
    source: Source


@dataclass(frozen=True)
class Migration:
    name: str  # the file's stem: 2026-01-split-production
    file: str  # the display path used in messages
    description: str
    source: SourceSpec
    rules: tuple[Rule, ...]

    @property
    def targets(self) -> list[str]:
        """Every target stack, in the order the rules name them first."""
        return list(dict.fromkeys(r.target for r in self.rules if r.target is not None))


class _NoReferences:
    """The scope of a migration file: functions only, every reference is an error at its line."""

    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        raise StaticConfigError(f"references are not allowed in a migration file ({node.text()}); write the "
                                "value itself", Source(ctx.file, node.line))


def load_migration(path: Path, display: str) -> Migration:
    """Read and check the migration file at ``path`` (``display`` is how messages name it).

    Raises :class:`ConfigError` when the file cannot be read, and :class:`ProblemsFound` with every
    problem (syntax, unknown names, wrong types, missing or conflicting settings) otherwise.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the migration file: {exc.strerror}", Source(display)) from None
    except UnicodeDecodeError:
        raise ConfigError("the migration file is not UTF-8 text", Source(display)) from None
    try:
        body = parse_text(text, display)
    except ConfigError as exc:
        raise ProblemsFound([exc.diagnostic()]) from None
    decoder = _Decoder(display, str(path.parent))
    migration = decoder.decode(body, path.stem)
    if decoder.problems or migration is None:
        raise ProblemsFound(sorted(decoder.problems, key=lambda d: d.source.line))
    return migration


class _Decoder:
    def __init__(self, display: str, directory: str) -> None:
        self.display = display
        self.ctx = Context(_NoReferences(), display, directory)
        self.problems: list[Diagnostic] = []

    def err(self, message: str, line: int) -> None:
        self.problems.append(Diagnostic("error", message, Source(self.display, line)))

    def at(self, line: int) -> Source:
        return Source(self.display, line)

    # -- values --------------------------------------------------------------------------------------

    def value(self, attr: ast.Attribute) -> tuple[bool, Any]:
        try:
            return True, evaluate(attr.expr, self.ctx)
        except ConfigError as exc:
            self.problems.append(exc.diagnostic())
            return False, None

    def string(self, attr: ast.Attribute, what: str, allow_empty: bool = False) -> str | None:
        ok, value = self.value(attr)
        if not ok:
            return None
        if not isinstance(value, str):
            self.err(f"{what} must be a string, got {type_name(value)}", attr.line)
            return None
        if not value.strip() and not allow_empty:
            self.err(f"{what} must not be empty", attr.line)
            return None
        return value

    def strings(self, attr: ast.Attribute, what: str) -> tuple[list[tuple[str, int]], bool]:
        """The non-empty strings of a list, each with its own line when the list is written out, and
        whether the whole value was good (every problem is reported)."""
        ok, value = self.value(attr)
        if not ok:
            return [], False
        if not isinstance(value, list):
            self.err(f"{what} must be a list of strings, like [\"module.vpc\"]; got {type_name(value)}", attr.line)
            return [], False
        lines = ([item.line for item in attr.expr.items] if isinstance(attr.expr, ast.TupleExpr)
                 and len(attr.expr.items) == len(value) else [attr.line] * len(value))
        out: list[tuple[str, int]] = []
        good = True
        for item, line in zip(value, lines, strict=True):
            if not isinstance(item, str):
                self.err(f"{what} must be a list of strings; an element is a {type_name(item)}", line)
                good = False
            elif not item.strip():
                self.err(f"{what}: an element is an empty string", line)
                good = False
            else:
                out.append((item, line))
        return out, good

    # -- blocks --------------------------------------------------------------------------------------

    def check_names(self, block: ast.Block, allowed: frozenset[str], where: str,
                    blocks: frozenset[str] = frozenset()) -> dict[str, ast.Attribute]:
        attrs: dict[str, ast.Attribute] = {}
        for attr in block.body.attributes:
            if attr.name not in allowed:
                self.err(_unknown("attribute", attr.name, allowed, where), attr.line)
            elif attr.name in attrs:
                self.err(f"{attr.name} is set twice in {where} (first at line {attrs[attr.name].line})", attr.line)
            else:
                attrs[attr.name] = attr
        for inner in block.body.blocks:
            if inner.type not in blocks:
                if blocks:
                    self.err(_unknown("block", inner.type, blocks, where), inner.line)
                else:
                    self.err(f"blocks are not allowed in {where} (found {inner.type!r})", inner.line)
        return attrs

    def decode(self, body: ast.Body, name: str) -> Migration | None:
        for attr in body.attributes:
            self.err(_unknown("attribute", attr.name, TOP_BLOCKS, "a migration file") +
                     " (a migration file holds only blocks: migration, source, move, keep)", attr.line)
        description = ""
        seen: dict[str, int] = {}
        source: SourceSpec | None = None
        rules: list[Rule] = []
        rule_lines: dict[str, int] = {}
        for block in body.blocks:
            kind = block.type
            if kind in ("migration", "source"):
                if block.labels:
                    self.err(f"the {kind} block takes no labels", block.line)
                if kind in seen:
                    self.err(f"a second {kind} block (the first is at line {seen[kind]})", block.line)
                    continue
                seen[kind] = block.line
                if kind == "migration":
                    attrs = self.check_names(block, MIGRATION_ATTRIBUTES, "the migration block")
                    if "description" in attrs:
                        description = self.string(attrs["description"], "description", allow_empty=True) or ""
                else:
                    source = self.source(block)
            elif kind in ("move", "keep"):
                if len(block.labels) != 1:
                    self.err(f'a {kind} block needs exactly one label, its name: {kind} "foundation" {{ ... }}',
                             block.line)
                    continue
                rule_name = block.labels[0]
                if not _RULE_NAME.match(rule_name):
                    self.err(f"rule name {rule_name!r}: use letters, digits, '_', '-' and '.'", block.line)
                if rule_name in rule_lines:
                    self.err(f"rule name {rule_name!r} is used twice (first at line {rule_lines[rule_name]})",
                             block.line)
                    continue
                rule_lines[rule_name] = block.line
                rule = self.rule(block, "move" if kind == "move" else "keep", rule_name)
                if rule is not None:
                    rules.append(rule)
            else:
                self.err(_unknown("block", kind, TOP_BLOCKS, "a migration file"), block.line)
        if "source" not in seen:
            self.err('no source block: say which state to split, e.g. source { stack = "legacy/production" }', 1)
        if not rule_lines:
            self.err('no move or keep rules: add move "<name>" { resources = [...], to = "<stack>" }', 1)
        if source is None:
            return None
        return Migration(name, self.display, description, source, tuple(rules))

    def source(self, block: ast.Block) -> SourceSpec | None:
        attrs = self.check_names(block, SOURCE_ATTRIBUTES, "the source block", frozenset({"backend"}))
        backends = [b for b in block.body.blocks if b.type == "backend"]
        stack_attr = attrs.get("stack")
        if stack_attr is not None and backends:
            self.err(f"the source block sets both stack (line {stack_attr.line}) and a backend block "
                     f"(line {backends[0].line}): keep one", block.line)
            return None
        if stack_attr is None and not backends:
            self.err('the source block needs stack = "<path>" or a backend "<type>" { ... } block', block.line)
            return None
        if stack_attr is not None:
            stack = self.string(stack_attr, "stack")
            if stack is None:
                return None
            return SourceSpec(stack_path(stack), None, {}, self.at(stack_attr.line))
        for extra in backends[1:]:
            self.err(f"a second backend block in the source block (the first is at line {backends[0].line})",
                     extra.line)
        return self.backend(backends[0])

    def backend(self, block: ast.Block) -> SourceSpec | None:
        if len(block.labels) != 1:
            self.err('a backend block needs exactly one label, its type: backend "local" { path = "..." }',
                     block.line)
            return None
        kind = block.labels[0]
        backend = get_backend(kind)
        if backend is None:
            self.err(f'unknown backend type "{kind}" (strata supports: {", ".join(BACKEND_TYPES)})', block.line)
            return None
        for inner in block.body.blocks:
            self.err(f"nested blocks are not supported in a backend block ({inner.type!r}); write it as an "
                     f"attribute: {inner.type} = {{ ... }}", inner.line)
        values: dict[str, Any] = {}
        lines: dict[str, int] = {}
        good = True
        for attr in block.body.attributes:
            if attr.name not in backend.attributes:
                close = difflib.get_close_matches(attr.name, sorted(backend.attributes), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.err(f'unknown setting {attr.name!r} for backend "{kind}"{hint}', attr.line)
                good = False
                continue
            if attr.name in values:
                self.err(f"{attr.name} is set twice in the backend block (first at line {lines[attr.name]})",
                         attr.line)
                good = False
                continue
            ok, value = self.value(attr)
            good = good and ok
            values[attr.name] = value
            lines[attr.name] = attr.line
        if not good:
            return None
        if kind == "local" and "path" not in values:
            self.err('backend "local" in a migration source needs path = "<state file>" (relative to the '
                     "repository root)", block.line)
            return None
        bad = False
        for problem in backend.check(values, None):
            if problem.severity == "error":
                self.err(f'backend "{kind}": {problem.message}',
                         lines.get(problem.attribute or "", block.line))
                bad = True
        return None if bad else SourceSpec(None, kind, values, self.at(block.line))

    def rule(self, block: ast.Block, kind: Literal["move", "keep"], name: str) -> Rule | None:
        where = f'{kind} "{name}"'
        attrs = self.check_names(block, MOVE_ATTRIBUTES if kind == "move" else KEEP_ATTRIBUTES, where)
        good = True
        patterns: list[str] = []
        regexes: list[str] = []
        if "resources" in attrs:
            found, all_good = self.strings(attrs["resources"], f"{where}: resources")
            good = good and all_good
            for pattern, line in found:
                problem = pattern_problem(pattern)
                if problem:
                    self.err(f"{where}: resources: {pattern!r} {problem}", line)
                    good = False
                patterns.append(pattern)
        if "regex" in attrs:
            found, all_good = self.strings(attrs["regex"], f"{where}: regex")
            good = good and all_good
            for text, line in found:
                try:
                    re.compile(text)
                except re.error as exc:
                    self.err(f"{where}: regex {text!r} is not a valid regular expression: {exc}", line)
                    good = False
                regexes.append(text)
        if "resources" not in attrs and "regex" not in attrs:
            self.err(f"{where} needs resources = [...] or regex = [...]: it matches nothing", block.line)
            good = False
        target: str | None = None
        target_source = Source()
        if kind == "move":
            if "to" not in attrs:
                self.err(f'{where} needs to = "<stack path>": the stack its resources move to', block.line)
                good = False
            else:
                target_source = self.at(attrs["to"].line)
                value = self.string(attrs["to"], f"{where}: to")
                if value is None:
                    good = False
                else:
                    target = stack_path(value)
        renames: list[tuple[str, str]] = []
        if "rename" in attrs:
            found_renames = self.renames(attrs["rename"], where)
            if found_renames is None:
                good = False
            else:
                renames = found_renames
        if not good:
            return None
        return Rule(name, kind, tuple(patterns), tuple(regexes), target, tuple(renames), self.at(block.line),
                    target_source)

    def renames(self, attr: ast.Attribute, where: str) -> list[tuple[str, str]] | None:
        expr = attr.expr
        if not isinstance(expr, ast.ObjectExpr):
            ok, value = self.value(attr)
            if ok:
                self.err(f'{where}: rename must be an object: {{ "module.vpc" = "" }}; got {type_name(value)}',
                         attr.line)
            return None
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        good = True
        for item in expr.items:
            key: Any
            if isinstance(item.key, str):
                key = item.key
            elif isinstance(item.key, ast.Traversal) and all(isinstance(s, str | ast.Literal)
                                                              for s in item.key.steps):
                key = item.key.text()  # { module.vpc = "" } written without quotes
            else:
                try:
                    key = evaluate(item.key, self.ctx)
                except ConfigError as exc:
                    self.problems.append(exc.diagnostic())
                    good = False
                    continue
            try:
                value = evaluate(item.value, self.ctx)
            except ConfigError as exc:
                self.problems.append(exc.diagnostic())
                good = False
                continue
            if not isinstance(key, str) or not isinstance(value, str):
                self.err(f"{where}: rename maps address prefixes to address prefixes (strings)", item.line)
                good = False
                continue
            problem = rename_problem(key, value)
            if problem:
                self.err(f"{where}: rename {key!r} = {value!r}: {problem}", item.line)
                good = False
                continue
            if key in seen:
                self.err(f"{where}: rename {key!r} is given twice (first at line {seen[key]})", item.line)
                good = False
                continue
            seen[key] = item.line
            out.append((key, value))
        return out if good else None


def stack_path(text: str) -> str:
    """A stack path as the repository names stacks: ``./production//01-foundation/`` ->
    ``production/01-foundation``; the root is ""."""
    path = posixpath.normpath(text.strip())
    return "" if path == "." else path.rstrip("/")


def _unknown(kind: str, name: str, known: frozenset[str], where: str) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(sorted(known))})"
    return f"unknown {kind} {name!r} in {where}{hint}"


# -- addresses ------------------------------------------------------------------------------------------

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_KEY = r'\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\]'
_MODULE = rf"module\.{_NAME}(?:{_KEY})?"
_MODULE_PATH = rf"{_MODULE}(?:\.{_MODULE})*"
_MODULE_PATH_RE = re.compile(_MODULE_PATH)
_KEY_RE = re.compile(_KEY)
_ADDRESS_RE = re.compile(rf"(?:(?P<module>{_MODULE_PATH})\.)?(?P<data>data\.)?(?!(?:data|module)\.)"
                         rf"(?P<type>{_NAME})\.(?P<name>{_NAME})")
_GLOB_CHARS = frozenset("*?[")


def parse_address(address: str) -> tuple[str, str, str, str] | None:
    """A resource address as ``(module, mode, type, name)`` (module "" at the root; mode "managed" or
    "data"), or None when it is not one. Instance keys of modules stay in the module path, as a state
    stores them: ``module.x["a"].null_resource.b`` -> ``('module.x["a"]', 'managed', 'null_resource', 'b')``."""
    m = _ADDRESS_RE.fullmatch(address)
    if m is None:
        return None
    return m.group("module") or "", "data" if m.group("data") else "managed", m.group("type"), m.group("name")


def resource_address(module: str, mode: str, rtype: str, name: str) -> str:
    """The address of a state resource: ``[module.].[data.]type.name``."""
    local = f"data.{rtype}.{name}" if mode == "data" else f"{rtype}.{name}"
    return f"{module}.{local}" if module else local


def is_module_path(text: str) -> bool:
    """``module.a``, ``module.a["k"].module.b[0]``..."""
    return _MODULE_PATH_RE.fullmatch(text) is not None


def is_literal_pattern(pattern: str) -> bool:
    """Whether a ``resources`` entry is an address or address prefix (matched exactly or as a prefix),
    as opposed to a glob. ``module.x["k"]`` is literal although it holds ``[``."""
    if not any(c in _GLOB_CHARS for c in pattern):
        return True
    return is_module_path(pattern) or parse_address(pattern) is not None


def glob_regex(pattern: str) -> str:
    """A glob as a regular expression for ``fullmatch``: ``*`` is any text (dots included), ``?`` one
    character, ``[abc]``/``[!abc]`` a character class, as :func:`fnmatch.fnmatchcase`; but an instance
    key (``["k"]``, ``[0]``) stands for itself."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            key = _KEY_RE.match(pattern, i)
            if key is not None:
                out.append(re.escape(key.group(0)))
                i = key.end()
                continue
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            j = pattern.find("]", j)
            if j < 0:
                out.append("\\[")
            else:
                inner = pattern[i + 1:j].replace("\\", "\\\\")
                if inner.startswith("!"):
                    inner = "^" + inner[1:]
                elif inner.startswith(("^", "[")):
                    inner = "\\" + inner
                out.append(f"[{inner}]")
                i = j + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def pattern_problem(pattern: str) -> str | None:
    """Why a ``resources`` entry can never match a resource address, or None."""
    if pattern != pattern.strip():
        return "has spaces around it"
    if is_literal_pattern(pattern):
        if pattern.startswith(".") or pattern.endswith(".") or ".." in pattern:
            return "is not a resource address or address prefix (misplaced '.')"
        return None
    try:
        re.compile(glob_regex(pattern))
    except re.error as exc:
        return f"is not a valid glob: {exc}"
    return None


def rename_problem(old: str, new: str) -> str | None:
    """Why ``old = new`` is not a valid rename, or None.

    ``old`` is a module path (then ``new`` is "" or a module path) or a full resource address (then
    ``new`` is a resource address of the same mode).
    """
    if is_module_path(old):
        if new == "" or is_module_path(new):
            return None
        return 'a module prefix can be renamed to another module path or to "" (dropped), not to ' + repr(new)
    parsed = parse_address(old)
    if parsed is None:
        return ("the key is not a module path (module.vpc) or a resource address (null_resource.a); "
                "globs are not allowed here")
    renamed = parse_address(new)
    if renamed is None:
        return "a resource address must be renamed to a resource address (like module.x.null_resource.b)"
    if renamed[1] != parsed[1]:
        return "a data source and a managed resource cannot be renamed into each other"
    if renamed[2] != parsed[2]:
        return f"the resource type cannot change ({parsed[2]} -> {renamed[2]}); terraform cannot move between types"
    return None
