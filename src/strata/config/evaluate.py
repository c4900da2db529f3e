"""Evaluate strata.hcl expressions.

Values are plain Python: str, int/float, bool, None, list, dict. Names are looked up through a
:class:`Scope` (``local``, ``strata``, ``dependency``), which the model supplies per stack, so the
evaluator knows nothing about repositories. Every error carries the file and line of the expression.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable
from typing import Any, Protocol

from strata.config import ast
from strata.config.functions import FUNCTIONS, FunctionError, function_names, to_number, to_string, type_name
from strata.config.limits import (
    MAX_ITEMS,
    MAX_ITERATIONS,
    MAX_NESTING,
    MAX_NUMBER_BITS,
    MAX_STRING,
    max_file_size,
    shorten,
)
from strata.errors import ConfigError, Source, StaticConfigError


class Scope(Protocol):
    """Resolves the root names an expression may use (``local``, ``strata``, ``dependency``)."""

    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any: ...


class Taint(Protocol):
    """The run's secrets (strata.run.redact.Secrets): a value computed from a secret is one too."""

    def derived(self, inputs: Any, result: Any) -> None: ...


class Lazy:
    """A mapping whose entries are computed on first access (locals, stack context)."""

    def get(self, name: str, node: ast.Expr, ctx: Context) -> Any:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError

    def resolve_all(self, ctx: Context) -> dict[str, Any]:
        node = ast.Literal(None, 0)
        return {name: self.get(name, node, ctx) for name in self.names()}


class Context:
    """What an expression sees: its scope, the file it is written in, for-expression variables, and where
    values computed from secrets are registered (when it reads dependency outputs)."""

    __slots__ = ("directory", "file", "reads", "scope", "secrets", "vars", "work")

    def __init__(self, scope: Scope, file: str, directory: str, reads: set[str] | None = None,
                 variables: dict[str, Any] | None = None, work: list[int] | None = None,
                 secrets: Taint | None = None) -> None:
        self.scope = scope
        self.file = file
        self.directory = directory
        self.reads = reads if reads is not None else set()
        self.vars = variables
        self.work = work if work is not None else [0]  # for-expression iterations, shared per stack
        self.secrets = secrets

    def with_vars(self, variables: dict[str, Any]) -> Context:
        merged = dict(self.vars or {})
        merged.update(variables)
        return Context(self.scope, self.file, self.directory, self.reads, merged, self.work, self.secrets)

    def with_secrets(self, secrets: Taint | None) -> Context:
        return Context(self.scope, self.file, self.directory, self.reads, self.vars, self.work, secrets)

    def derived(self, inputs: Any, result: Any) -> Any:
        """``result``, computed from ``inputs``: a secret when one of them holds a secret (see :class:`Taint`)."""
        if self.secrets is not None:
            self.secrets.derived(inputs, result)
        return result

    def error(self, message: str, node: ast.Expr | int) -> ConfigError:
        line = node if isinstance(node, int) else node.line
        return ConfigError(message, Source(self.file, line))


def evaluate(expr: ast.Expr, ctx: Context) -> Any:
    """Evaluate ``expr`` in ``ctx``; raises :class:`ConfigError` with the expression's file:line."""
    return _EVAL[type(expr)](expr, ctx)


def _literal(node: ast.Literal, ctx: Context) -> Any:
    return node.value


def _template(node: ast.Template, ctx: Context) -> Any:
    if len(node.parts) == 1 and isinstance(node.parts[0], ast.Expr):
        return evaluate(node.parts[0], ctx)  # "${x}" keeps x's type, as in HCL
    out: list[str] = []
    values: list[Any] = []
    for part in node.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = evaluate(part, ctx)
        values.append(value)
        what = f"${{{part.text()}}}" if isinstance(part, ast.Traversal) else "an interpolated value"
        if value is None:
            raise ctx.error(f"{what} is null and cannot be interpolated into a string", part)
        try:
            out.append(to_string(value, what))
        except FunctionError as exc:
            raise ctx.error(str(exc), part) from None
    text = "".join(out)
    if len(text) > MAX_STRING:
        raise ctx.error(f"the string is too long ({len(text)} characters; the limit is {MAX_STRING})", node)
    return ctx.derived(values, text)


def _tuple(node: ast.TupleExpr, ctx: Context) -> Any:
    return [evaluate(item, ctx) for item in node.items]


def _object(node: ast.ObjectExpr, ctx: Context) -> Any:
    out: dict[str, Any] = {}
    for item in node.items:
        key = item.key if isinstance(item.key, str) else object_key(evaluate(item.key, ctx), item.key, ctx)
        out[key] = evaluate(item.value, ctx)
    return out


def object_key(value: Any, node: ast.Expr, ctx: Context) -> str:
    try:
        return to_string(value, "an object key")
    except FunctionError as exc:
        raise ctx.error(str(exc), node) from None


def _traversal(node: ast.Traversal, ctx: Context) -> Any:
    if ctx.vars is not None and node.root in ctx.vars:
        value = ctx.vars[node.root]
    else:
        value = ctx.scope.root(node.root, node, ctx)
    path = node.root
    for step in node.steps:
        value, path = _step(value, step, path, node, ctx)
    if isinstance(value, Lazy):  # `local` or `strata.stack` alone: computed one name at a time
        example = shorten(f"{path}.{(value.names() or ['name'])[0]}")
        raise ctx.error(f"{shorten(path)} cannot be used as a value by itself; name one of its attributes "
                        f"(e.g. {example})", node)
    return value


def _step(value: Any, step: str | ast.Expr, path: str, node: ast.Expr, ctx: Context) -> tuple[Any, str]:
    if isinstance(value, Lazy):
        if not isinstance(step, str):
            key = evaluate(step, ctx)
            step = object_key(key, node, ctx)
        return value.get(step, node, ctx), f"{path}.{step}"
    if isinstance(step, str):
        if isinstance(value, dict):
            if step not in value:
                known = ", ".join(sorted(value)) or "none"
                raise ctx.error(f"{shorten(path)} has no attribute {shorten(step)!r} (it has: {shorten(known, 300)})",
                                node)
            return value[step], f"{path}.{step}"
        if value is None:
            raise ctx.error(f"cannot read attribute {shorten(step)!r} of {shorten(path)}: it is null", node)
        raise ctx.error(f"cannot read attribute {shorten(step)!r} of {shorten(path)}: it is a {type_name(value)}",
                        node)
    key = evaluate(step, ctx)
    return _index_value(value, key, path, node, ctx), f"{path}[{key!r}]"


def _index_value(value: Any, key: Any, path: str, node: ast.Expr, ctx: Context) -> Any:
    if isinstance(value, list):
        try:
            index = int(to_number(key, "index"))
        except (FunctionError, OverflowError, ValueError) as exc:
            raise ctx.error(f"{shorten(path)}: {exc}", node) from None
        if not 0 <= index < len(value):
            raise ctx.error(f"{shorten(path)}[{index}]: index out of range (the list has {len(value)} elements)", node)
        return value[index]
    if isinstance(value, dict):
        name = object_key(key, node, ctx)
        if name not in value:
            raise ctx.error(f"{shorten(path)} has no key {shorten(name)!r}", node)
        return value[name]
    raise ctx.error(f"cannot index {shorten(path)}: it is a {type_name(value)}", node)


def _getattr(node: ast.GetAttr, ctx: Context) -> Any:
    return _step(evaluate(node.obj, ctx), node.name, "value", node, ctx)[0]


def _index(node: ast.Index, ctx: Context) -> Any:
    return _index_value(evaluate(node.obj, ctx), evaluate(node.key, ctx), "value", node, ctx)


def _splat(node: ast.Splat, ctx: Context) -> Any:
    base = evaluate(node.obj, ctx)
    if base is None:
        return []
    items = base if isinstance(base, list) else [base]
    out = []
    for item in items:
        value, path = item, "element"
        for step in node.steps:
            value, path = _step(value, step, path, node, ctx)
        out.append(value)
    return out


def _call(node: ast.Call, ctx: Context) -> Any:
    name = node.name
    if name in ("try", "can"):
        return _try_can(node, ctx)
    args = [evaluate(a, ctx) for a in node.args]
    if node.expand_last:
        if not args or not isinstance(args[-1], list):
            raise ctx.error(f"{name}(...): the argument before ... must be a list", node)
        args = args[:-1] + args[-1]
    if name in ("file", "fileexists"):
        return _file(name, args, node, ctx)
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise StaticConfigError(unknown_function_message(name), Source(ctx.file, node.line))
    try:
        result = fn(args)
    except FunctionError as exc:
        message = str(exc)
        if not message.startswith(f"{name}"):
            message = f"{name}(): {message}"
        raise ctx.error(message, node) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ctx.error(f"{name}(): {shorten(str(exc), 200)}", node) from None
    except RecursionError:
        raise ctx.error(f"{name}(): the value is nested too deeply", node) from None
    check_size(result, ctx, node, f"{name}()")
    return ctx.derived(args, result)


def check_size(value: Any, ctx: Context, node: ast.Expr, what: str = "the value") -> None:
    """Refuse a value that is too big or too deeply nested for strata to handle (see limits)."""
    kind = type(value)
    if kind is bool or value is None:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ctx.error(f"{what}: the number is too large (it is not finite)", node)
        return
    if kind is str:
        if len(value) > MAX_STRING:
            raise ctx.error(f"{what} is too long ({len(value)} characters; the limit is {MAX_STRING})", node)
        return
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_NUMBER_BITS:
            raise ctx.error(f"{what}: the number is too large (more than {MAX_NUMBER_BITS} bits)", node)
        return
    if not isinstance(value, list | dict):
        return
    pending: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while pending:
        item, depth = pending.pop()
        if depth > MAX_NESTING:
            raise ctx.error(f"{what} is nested too deeply (more than {MAX_NESTING} levels)", node)
        children = item.values() if isinstance(item, dict) else item
        count += len(children)
        if count > MAX_ITEMS:
            raise ctx.error(f"{what} is too big (more than {MAX_ITEMS} elements)", node)
        pending.extend((c, depth + 1) for c in children if isinstance(c, list | dict))


def unknown_function_message(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, function_names(), n=1)
    hint = f"; did you mean {close[0]}()?" if close else ""
    return f"unknown function {shorten(name)}(){hint} (see the function list in the README)"


def _try_can(node: ast.Call, ctx: Context) -> Any:
    if not node.args:
        raise ctx.error(f"{node.name}() needs at least one argument", node)
    for arg in node.args:
        try:
            value = evaluate(arg, ctx)
        except StaticConfigError:
            raise
        except ConfigError:
            continue
        return True if node.name == "can" else value
    if node.name == "can":
        return False
    raise ctx.error("try(): no argument could be evaluated without an error", node)


def _file(name: str, args: list[Any], node: ast.Call, ctx: Context) -> Any:
    if len(args) != 1:
        raise ctx.error(f"{name}() takes 1 argument, got {len(args)}", node)
    try:
        rel = to_string(args[0], "path")
    except FunctionError as exc:
        raise ctx.error(f"{name}(): {exc}", node) from None
    path = os.path.normpath(os.path.join(ctx.directory, rel))
    ctx.reads.add(path)
    if name == "fileexists":
        return os.path.isfile(path)
    from strata.config.discover import read_config

    limit = min(max_file_size(), MAX_STRING)
    try:
        return read_config(path, rel, limit).decode("utf-8")
    except ConfigError as exc:
        reason = exc.message.removeprefix("cannot read: ")
        raise ctx.error(f"file(): cannot read {shorten(rel)!r}: {reason}", node) from None
    except UnicodeDecodeError:
        raise ctx.error(f"file(): {shorten(rel)!r} is not UTF-8 text", node) from None


def _unary(node: ast.Unary, ctx: Context) -> Any:
    value = evaluate(node.operand, ctx)
    if node.op == "!":
        if not isinstance(value, bool):
            raise ctx.error(f"the operand of ! must be a bool, got {type_name(value)}", node)
        return not value
    try:
        return ctx.derived([value], -to_number(value, "the operand of -"))
    except FunctionError as exc:
        raise ctx.error(str(exc), node) from None


_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


def _binary(node: ast.Binary, ctx: Context) -> Any:
    op = node.op
    if op in ("&&", "||"):
        left = evaluate(node.left, ctx)
        if not isinstance(left, bool):
            raise ctx.error(f"the operands of {op} must be bools, got {type_name(left)}", node)
        if (op == "&&" and not left) or (op == "||" and left):
            return left
        right = evaluate(node.right, ctx)
        if not isinstance(right, bool):
            raise ctx.error(f"the operands of {op} must be bools, got {type_name(right)}", node)
        return right
    left = evaluate(node.left, ctx)
    right = evaluate(node.right, ctx)
    if op in ("==", "!="):
        same = _equal(left, right)
        return same if op == "==" else not same
    try:
        a = to_number(left, f"the left operand of {op}")
        b = to_number(right, f"the right operand of {op}")
    except FunctionError as exc:
        raise ctx.error(str(exc), node) from None
    if op in _COMPARE:
        return _COMPARE[op](a, b)
    if op in ("/", "%") and b == 0:
        raise ctx.error("division by zero", node)
    result = _ARITH[op](a, b)
    if isinstance(result, float) and result.is_integer() and op != "/":
        result = int(result)
    if isinstance(result, int) and result.bit_length() > MAX_NUMBER_BITS:
        raise ctx.error(f"the result of {op} is too large (more than {MAX_NUMBER_BITS} bits)", node)
    if isinstance(result, float) and not math.isfinite(result):
        raise ctx.error(f"the result of {op} is too large (it is not finite)", node)
    return ctx.derived([left, right], result)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _conditional(node: ast.Conditional, ctx: Context) -> Any:
    cond = evaluate(node.condition, ctx)
    if not isinstance(cond, bool):
        raise ctx.error(f"the condition must be a bool, got {type_name(cond)}", node.condition)
    return evaluate(node.true if cond else node.false, ctx)


def _for(node: ast.ForExpr, ctx: Context) -> Any:
    coll = evaluate(node.collection, ctx)
    if isinstance(coll, dict):
        pairs: list[tuple[Any, Any]] = list(coll.items())
    elif isinstance(coll, list):
        pairs = list(enumerate(coll))
    else:
        raise ctx.error(f"a for expression needs a list or map, got {type_name(coll)}", node.collection)
    ctx.work[0] += len(pairs)
    if ctx.work[0] > MAX_ITERATIONS:  # nested for expressions multiply: 1,024 x 1,024 x 1,024 would hang
        raise ctx.error(f"for expressions iterate more than {MAX_ITERATIONS} times in all", node)
    tuple_out: list[Any] = []
    object_out: dict[str, Any] = {}
    for key, value in pairs:
        names = {node.value_var: value}
        if node.key_var:
            names[node.key_var] = key
        inner = ctx.with_vars(names)
        if node.condition is not None:
            keep = evaluate(node.condition, inner)
            if not isinstance(keep, bool):
                raise ctx.error("the if clause of a for expression must be a bool", node.condition)
            if not keep:
                continue
        if node.key is None:
            tuple_out.append(evaluate(node.value, inner))
            continue
        out_key = object_key(evaluate(node.key, inner), node.key, inner)
        out_value = evaluate(node.value, inner)
        if node.grouping:
            object_out.setdefault(out_key, []).append(out_value)
        elif out_key in object_out:
            raise ctx.error(f"duplicate key {shorten(out_key)!r} in for expression (add ... to group values)", node)
        else:
            object_out[out_key] = out_value
    return tuple_out if node.key is None else object_out


_EVAL: dict[type, Callable[[Any, Context], Any]] = {
    ast.Literal: _literal,
    ast.Template: _template,
    ast.TupleExpr: _tuple,
    ast.ObjectExpr: _object,
    ast.Traversal: _traversal,
    ast.GetAttr: _getattr,
    ast.Index: _index,
    ast.Splat: _splat,
    ast.Call: _call,
    ast.Unary: _unary,
    ast.Binary: _binary,
    ast.Conditional: _conditional,
    ast.ForExpr: _for,
}
