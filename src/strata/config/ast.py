"""strata's own syntax tree for strata.hcl files.

Compact, picklable nodes with the line each starts on. They are built once from python-hcl2's parse
tree (see :mod:`strata.config.parse`) and cached by content hash, so a warm run never re-parses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class Expr:
    """Base of every expression node."""

    __slots__ = ("line",)
    line: int


@dataclass(slots=True)
class Literal(Expr):
    value: Any  # str | int | float | bool | None
    line: int


@dataclass(slots=True)
class Template(Expr):
    """A string with interpolations: parts are str or Expr."""

    parts: list[str | Expr]
    line: int


@dataclass(slots=True)
class TupleExpr(Expr):
    items: list[Expr]
    line: int


@dataclass(slots=True)
class ObjectItem:
    key: str | Expr  # a plain name/string, or an expression in parentheses
    value: Expr
    line: int
    reads_dependency: bool = False  # the value reads dependency.* (found once, when parsed)


@dataclass(slots=True)
class ObjectExpr(Expr):
    items: list[ObjectItem]
    line: int


@dataclass(slots=True)
class Traversal(Expr):
    """``root.a.b[0]["k"]``: a root name followed by attribute names (str) or index expressions."""

    root: str
    steps: list[str | Expr]
    line: int

    def text(self) -> str:
        out = self.root
        for step in self.steps:
            if isinstance(step, str):
                out += f".{step}"
            elif isinstance(step, Literal):
                out += f"[{step.value!r}]".replace("'", '"')
            else:
                out += "[...]"
        return out


@dataclass(slots=True)
class GetAttr(Expr):
    """Attribute access on a computed value, e.g. ``merge(a, b).key``."""

    obj: Expr
    name: str
    line: int


@dataclass(slots=True)
class Index(Expr):
    obj: Expr
    key: Expr
    line: int


@dataclass(slots=True)
class Splat(Expr):
    """``obj[*].a.b``: apply the steps to every element."""

    obj: Expr
    steps: list[str | Expr]
    line: int


@dataclass(slots=True)
class Call(Expr):
    name: str
    args: list[Expr]
    expand_last: bool
    line: int


@dataclass(slots=True)
class Unary(Expr):
    op: str
    operand: Expr
    line: int


@dataclass(slots=True)
class Binary(Expr):
    op: str
    left: Expr
    right: Expr
    line: int


@dataclass(slots=True)
class Conditional(Expr):
    condition: Expr
    true: Expr
    false: Expr
    line: int


@dataclass(slots=True)
class ForExpr(Expr):
    """``[for k, v in coll : value if cond]`` or ``{for k, v in coll : key => value...}``."""

    key_var: str | None
    value_var: str
    collection: Expr
    key: Expr | None  # object form only
    value: Expr
    condition: Expr | None
    grouping: bool
    line: int


@dataclass(slots=True)
class Attribute:
    name: str
    expr: Expr
    line: int
    reads_dependency: bool = False  # the value reads dependency.* (found once, when parsed)


@dataclass(slots=True)
class Block:
    type: str
    labels: list[str]
    body: Body
    line: int


@dataclass(slots=True)
class Body:
    attributes: list[Attribute]
    blocks: list[Block]


def walk(expr: Expr) -> list[Expr]:
    """Every expression node under ``expr`` (itself included), depth first."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        mark = len(stack)
        if isinstance(node, Template):
            stack.extend(p for p in node.parts if isinstance(p, Expr))
        elif isinstance(node, TupleExpr):
            stack.extend(node.items)
        elif isinstance(node, ObjectExpr):
            for item in node.items:
                if isinstance(item.key, Expr):
                    stack.append(item.key)
                stack.append(item.value)
        elif isinstance(node, Traversal):
            stack.extend(s for s in node.steps if isinstance(s, Expr))
        elif isinstance(node, GetAttr):
            stack.append(node.obj)
        elif isinstance(node, Index):
            stack.extend((node.obj, node.key))
        elif isinstance(node, Splat):
            stack.append(node.obj)
            stack.extend(s for s in node.steps if isinstance(s, Expr))
        elif isinstance(node, Call):
            stack.extend(node.args)
        elif isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, Binary):
            stack.extend((node.left, node.right))
        elif isinstance(node, Conditional):
            stack.extend((node.condition, node.true, node.false))
        elif isinstance(node, ForExpr):
            stack.extend(n for n in (node.collection, node.key, node.value, node.condition) if n is not None)
        stack[mark:] = reversed(stack[mark:])  # children pushed in source order are popped in source order
    return out


def traversals(expr: Expr, root: str) -> list[Traversal]:
    """Every traversal under ``expr`` that starts at ``root`` (e.g. "dependency")."""
    return [n for n in walk(expr) if isinstance(n, Traversal) and n.root == root]
