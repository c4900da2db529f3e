"""The ``variable`` blocks a stack's Terraform code declares.

strata passes inputs as ``TF_VAR_*``, and terraform reads such a text in one of two ways (its
``VariableParsingMode``): as the text itself when the variable has no type or a primitive one
(string, number, bool), and as an HCL expression for any other type (``any``, ``list(...)``,
``object(...)``...). So a dependency's output vpc-123 must reach an ``any`` variable quoted, as
``"vpc-123"``, or terraform evaluates ``vpc - 123``. The declarations are read here, once per file
content, for every feature that needs them (inputs, and checking inputs against them). So are the
names the variable files terraform loads by itself set (``terraform.tfvars``, ``*.auto.tfvars``...), for
the required variables no input sets.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.config import ast
from strata.config.cache import ParseCache
from strata.config.discover import read_config
from strata.config.limits import MAX_CODE_SIZE
from strata.config.parse import parse_text
from strata.errors import ConfigError, Source
from strata.terraform.hclwrite import hcl_value
from strata.terraform.modules import code_files

PRIMITIVE_TYPES = frozenset({"string", "number", "bool"})
AUTOMATIC_VARIABLE_FILES = ("terraform.tfvars", "terraform.tfvars.json", "*.auto.tfvars", "*.auto.tfvars.json")


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable a stack declares, as far as strata needs it."""

    name: str
    type_expr: str | None  # the type constraint as written (spacing normalised); None when it has none
    has_default: bool
    sensitive: bool
    source: Source  # the file and line of the ``variable`` block
    reads_text: bool = True  # terraform takes a TF_VAR_ value as the text itself, not as an HCL expression

    @property
    def required(self) -> bool:
        return not self.has_default


def declared_variables(folder: Path, shown: str | None = None) -> dict[str, Variable]:
    """Every variable the Terraform files of ``folder`` declare (override files applied), by name.

    ``shown`` is the folder as messages name it. A file strata cannot read or parse is a
    :class:`ConfigError` at its file and line; the caller decides whether terraform should say it instead.
    """
    return _declared(_code(folder, shown), _parsed)


def declared_variables_of(folders: list[tuple[Path, str]], cache: Path | None,
                          generated: str = "") -> list[dict[str, Variable] | ConfigError | None]:
    """:func:`declared_variables` of many ``(folder, shown)`` at once, for checking a whole repository:
    the variable blocks go through strata's parse cache (by content, kept in ``cache`` between runs, new
    ones parsed by worker processes), as strata.hcl files do. None for a folder with no Terraform code but
    the file named ``generated`` (strata's backend file)."""
    code: list[list[_CodeFile] | ConfigError | None] = []
    for folder, shown in folders:
        try:
            files = _code(folder, shown)
        except ConfigError as exc:
            code.append(exc)
            continue
        code.append(files if any(f.name != generated for f in files) else None)
    texts = list(dict.fromkeys(f.text for files in code if isinstance(files, list) for f in files if not f.json))
    store = ParseCache(cache)
    parsed = dict(zip(texts, store.parse_all([("", text.encode("utf-8")) for text in texts]), strict=True))
    store.save()

    summaries: dict[str, tuple[dict[str, Any], ...]] = {}

    def summary(text: str, file: str) -> tuple[dict[str, Any], ...]:
        result = parsed[text]
        if isinstance(result, ConfigError):
            raise ConfigError(result.message, Source(file, result.source.line))
        if text not in summaries:  # stacks often share their variables.tf: one summary each
            summaries[text] = _summary(result)
        return summaries[text]

    out: list[dict[str, Variable] | ConfigError | None] = []
    for each in code:
        try:
            out.append(_declared(each, summary) if isinstance(each, list) else each)
        except ConfigError as exc:
            out.append(exc)
    return out


@dataclass(frozen=True, slots=True)
class _CodeFile:
    name: str
    file: str  # as messages show it
    text: str  # .tf.json: the whole file; .tf: only its variable blocks, on their own lines

    @property
    def json(self) -> bool:
        return self.name.endswith(".json")


def _code(folder: Path, shown: str | None) -> list[_CodeFile]:
    out = []
    for path in code_files(folder):
        if _ignored(path.name):
            continue
        file = _shown(path, shown)
        text = _read_text(path, file)
        out.append(_CodeFile(path.name, file, text if path.name.endswith(".json") else _variable_text(text, file)))
    return out


def _declared(code: list[_CodeFile], summary: Callable[[str, str], tuple[dict[str, Any], ...]]
              ) -> dict[str, Variable]:
    """The variables of ``code``; ``summary`` gives the variable blocks of a .tf file's text."""
    primary: dict[str, dict[str, Any]] = {}
    overrides: list[dict[str, Any]] = []
    for f in code:
        if f.json:
            blocks = _json_blocks(f.text, f.file)
        else:
            blocks = [{**entry, "source": Source(f.file, entry["line"])} for entry in summary(f.text, f.file)]
        if _is_override(f.name):
            overrides.extend(blocks)
        else:
            for block in blocks:
                primary.setdefault(block["name"], block)  # a second declaration is terraform's error to report
    for block in overrides:
        if block["name"] in primary:  # an override of nothing is terraform's error to report
            primary[block["name"]] = {**primary[block["name"]],
                                      **{k: v for k, v in block.items() if k not in ("source", "line")}}
    return {name: _variable(block) for name, block in primary.items()}


def assigned_variables(folder: Path, shown: str | None = None, skip: str = "") -> set[str]:
    """The variables set by the files terraform loads from ``folder`` by itself (``terraform.tfvars``,
    ``*.auto.tfvars`` and their ``.json`` forms), the file named ``skip`` aside (strata writes it from the
    inputs). A file strata cannot read or parse is a :class:`ConfigError`: terraform will name the mistake.
    """
    names: set[str] = set()
    paths = {p for pattern in AUTOMATIC_VARIABLE_FILES for p in folder.glob(pattern)}
    for path in sorted(paths):
        if path.name == skip or _ignored(path.name) or path.is_dir():
            continue
        file = _shown(path, shown)
        text = _read_text(path, file)
        names.update(_json_names(text, file) if path.name.endswith(".json") else _assigned(text, file))
    return names


def tf_var_text(value: Any, variable: Variable | None) -> str:
    """The ``TF_VAR_`` text terraform reads back as ``value`` for ``variable`` (None: not declared).

    A string stays as it is where terraform reads the text itself; anything else, and every value of a
    variable terraform parses, is an HCL literal (strings quoted, with ``${`` and ``%{`` escaped).
    """
    if isinstance(value, str) and (variable is None or variable.reads_text):
        return value
    return hcl_value(value)


def _shown(path: Path, folder: str | None) -> str:
    if folder is None:
        return str(path)
    return path.name if folder in ("", ".") else f"{folder}/{path.name}"


def _read_text(path: Path, file: str) -> str:
    try:  # a FIFO or /dev/zero among the code is a ConfigError, never a hang
        return read_config(path, file, MAX_CODE_SIZE).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", Source(file, 1)) from None


def _ignored(name: str) -> bool:
    """terraform skips editor backups and hidden files."""
    return name.startswith(".") or name.endswith("~") or (name.startswith("#") and name.endswith("#"))


def _is_override(name: str) -> bool:
    stem = name.removesuffix(".json").removesuffix(".tf")
    return stem == "override" or stem.endswith("_override")


def _variable(block: dict[str, Any]) -> Variable:
    type_text, reads_text = block.get("type", (None, True))
    return Variable(name=block["name"], type_expr=type_text, has_default=bool(block.get("default")),
                    sensitive=bool(block.get("sensitive")), source=block["source"], reads_text=reads_text)


def _typed(type_expr: ast.Expr) -> tuple[str, bool]:
    """A block's ``type``: as text, and whether terraform reads a TF_VAR_ as the text itself."""
    return _type_text(type_expr), _reads_text(type_expr)


def _reads_text(type_expr: ast.Expr | None) -> bool:
    """terraform's rule (configs.decodeVariableType): literal parsing for no type or a primitive one."""
    if type_expr is None:
        return True
    if isinstance(type_expr, ast.Literal):  # the pre-0.12 quoted form, which terraform rejects anyway
        return bool(type_expr.value == "string")
    return isinstance(type_expr, ast.Traversal) and not type_expr.steps and type_expr.root in PRIMITIVE_TYPES


# -- the two syntaxes ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=512)
def _parsed(text: str, file: str) -> tuple[dict[str, Any], ...]:
    """The variable blocks of one file, parsed once per content (the engine asks for every stack)."""
    return _summary(parse_text(text, file))


def _summary(body: ast.Body) -> tuple[dict[str, Any], ...]:
    """What strata needs of each variable block, with its line (the file is added by the caller)."""
    found = []
    for block in body.blocks:
        if block.type != "variable" or len(block.labels) != 1:
            continue
        attrs = {a.name: a.expr for a in block.body.attributes}
        entry: dict[str, Any] = {"name": block.labels[0], "line": block.line}
        if "type" in attrs:
            entry["type"] = _typed(attrs["type"])
        if "default" in attrs:
            entry["default"] = True
        if "sensitive" in attrs:
            sensitive = attrs["sensitive"]
            entry["sensitive"] = isinstance(sensitive, ast.Literal) and sensitive.value is True
        found.append(entry)
    return tuple(found)


@functools.lru_cache(maxsize=512)
def _assigned(text: str, file: str) -> frozenset[str]:
    """The names a ``.tfvars`` file sets, parsed once per content."""
    return frozenset(attribute.name for attribute in parse_text(text, file).attributes)


_CODE_TOKEN = re.compile(r'["{}\[\]()#]|//|/\*|<<-?([A-Za-z][A-Za-z0-9._-]*)[ \t]*\r?\n')
_STRING_TOKEN = re.compile(r'\\.|\$\$\{|%%\{|[$%]\{|"|\n', re.S)
_VARIABLE_HEADER = re.compile(r'(?m)^[ \t]*variable[ \t]*(?:"[^"\n]*"|[A-Za-z_][\w-]*)[ \t]*\Z')
_CLOSERS = {"{": "}", "[": "]", "(": ")", "${": "}"}


def _variable_text(text: str, file: str) -> str:
    """Only the top-level ``variable`` blocks of ``text``, each on its own lines (messages keep their
    lines): parsing a whole file costs seconds per MiB, and a stack's resources can fill megabytes."""
    kept: list[str] = []
    line = 1
    for start, end in _variable_spans(text, file):
        first = text.count("\n", 0, start) + 1
        kept.append("\n" * (first - line) + text[start:end] + "\n")
        line = first + text.count("\n", start, end) + 1
    return "".join(kept)


def _variable_spans(text: str, file: str) -> list[tuple[int, int]]:
    """Where each top-level ``variable`` block starts and ends: a scan of strings, comments, heredocs
    and brackets. Text it cannot follow is a ConfigError (terraform will name the mistake)."""
    spans: list[tuple[int, int]] = []
    opened: list[str] = []
    i, top, block = 0, 0, -1  # top: where the current top-level item starts; block: a variable block's start
    while True:
        in_string = bool(opened) and opened[-1] == '"'
        found = (_STRING_TOKEN if in_string else _CODE_TOKEN).search(text, i)
        if found is None:
            break
        token, i = found.group(), found.end()
        if in_string:
            if token == '"':
                opened.pop()
            elif token in ("${", "%{"):
                opened.append("${")
            elif token == "\n":
                raise _lost(text, i, file)  # a string is never closed
        elif token in ('"', "{", "[", "("):
            if token == "{" and not opened:
                header = _VARIABLE_HEADER.search(text, top, found.start())
                block = header.start() if header else -1
            opened.append(token)
        elif token in ("}", "]", ")"):
            if not opened or _CLOSERS[opened[-1]] != token:
                raise _lost(text, i, file)
            opened.pop()
            if not opened:
                if block >= 0:
                    spans.append((block, i))
                top, block = i, -1
        elif token in ("#", "//"):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif token == "/*":
            end = text.find("*/", i)
            if end < 0:
                raise _lost(text, i, file)
            i = end + 2
        else:  # a heredoc: up to its closing marker
            closing = re.compile(rf"^[ \t]*{re.escape(found.group(1))}[ \t]*\r?$", re.M).search(text, i)
            if closing is None:
                raise _lost(text, i, file)
            i = closing.end()
    if opened:
        raise _lost(text, i, file)
    return spans


def _lost(text: str, at: int, file: str) -> ConfigError:
    line = text.count("\n", 0, at) + 1
    return ConfigError("strata cannot follow the brackets, strings or comments here", Source(file, line))


def _json_blocks(text: str, file: str) -> list[dict[str, Any]]:
    """``{"variable": {"name": {"type": "list(string)", ...}}}``, or its list forms."""
    document = _json_document(text, file)
    found = []
    for declared in _objects(document.get("variable") if isinstance(document, dict) else None):
        for name, body in declared.items():
            settings = next(iter(_objects(body)), {})
            entry: dict[str, Any] = {"name": name, "source": Source(file, _json_line(text, name))}
            if isinstance(settings.get("type"), str):
                entry["type"] = _typed(_json_type(settings["type"], file, entry["source"].line))
            if "default" in settings:
                entry["default"] = True
            if "sensitive" in settings:
                entry["sensitive"] = settings["sensitive"] is True
            found.append(entry)
    return found


def _json_names(text: str, file: str) -> set[str]:
    document = _json_document(text, file)
    return set(document) if isinstance(document, dict) else set()


def _json_document(text: str, file: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"invalid JSON: {exc}", Source(file, getattr(exc, "lineno", 1))) from None


def _objects(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _json_type(text: str, file: str, line: int) -> ast.Expr:
    """In JSON, a type is a string holding the type expression."""
    try:
        attributes = parse_text(f"type = {text}\n", file).attributes
    except ConfigError:
        attributes = []
    return attributes[0].expr if attributes else ast.Literal(text, line)  # an unreadable type: terraform says so


def _json_line(text: str, name: str) -> int:
    start = text.find('"variable"')
    at = text.find(json.dumps(name), max(start, 0))
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _type_text(expr: ast.Expr) -> str:
    """A type constraint written back as HCL, for messages."""
    if isinstance(expr, ast.Traversal):
        return expr.text()
    if isinstance(expr, ast.Literal):
        return hcl_value(expr.value)
    if isinstance(expr, ast.Call):
        return f"{expr.name}({', '.join(_type_text(arg) for arg in expr.args)})"
    if isinstance(expr, ast.TupleExpr):
        return f"[{', '.join(_type_text(item) for item in expr.items)}]"
    if isinstance(expr, ast.ObjectExpr):
        items = [f"{item.key if isinstance(item.key, str) else '(...)'} = {_type_text(item.value)}"
                 for item in expr.items]
        return "{" + ", ".join(items) + "}"
    return "..."
