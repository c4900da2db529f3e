"""Unit tests of strata.config.evaluate: values, errors with file:line, try/can, file(), for expressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strata.config import ast
from strata.config.evaluate import Context, Lazy, evaluate
from strata.config.parse import parse_text
from strata.errors import ConfigError

# Expressions are written at this line of the parsed text, so every error must point here.
LINE = 4


class Scope:
    """A tiny scope: root names map to plain values (or Lazy objects)."""

    def __init__(self, **roots: Any) -> None:
        self.roots = roots
        self.asked: list[str] = []

    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        self.asked.append(name)
        if name not in self.roots:
            raise ctx.error(f"unknown reference {name!r}", node)
        return self.roots[name]


LOCALS = {
    "name": "web", "n": 3, "f": 1.5, "flag": True, "nothing": None, "l": [1, 2],
    "m": {"a": 1, "b": 2}, "objs": [{"id": "x"}, {"id": "y"}], "words": ["a", "b", "a"],
}


def parse_expr(text: str) -> ast.Expr:
    body = parse_text("\n" * (LINE - 1) + f"_ = {text}\n", "dir/strata.hcl")
    return body.attributes[0].expr


def context(directory: str = "/nonexistent", scope: Any = None) -> Context:
    return Context(scope or Scope(local=LOCALS), "dir/strata.hcl", directory)


def ev(text: str, ctx: Context | None = None) -> Any:
    return evaluate(parse_expr(text), ctx or context())


def error(text: str, ctx: Context | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ev(text, ctx)
    err = info.value
    assert err.source.file == "dir/strata.hcl"
    assert err.source.line == LINE, f"{text}: {err}"
    return err


# -- templates ---------------------------------------------------------------------------------------


def test_template_with_numbers_and_bools() -> None:
    assert ev('"n=${local.n} f=${local.f} flag=${local.flag} no=${!local.flag}"') == "n=3 f=1.5 flag=true no=false"
    assert ev('"${1.0}-${2 * 2}"') == "1-4"


def test_a_lone_interpolation_keeps_its_type() -> None:
    assert ev('"${local.l}"') == [1, 2]
    assert ev('"${local.n}"') == 3
    assert ev('"${local.flag}"') is True
    assert ev('"${local.m}"') == {"a": 1, "b": 2}


def test_null_cannot_be_interpolated() -> None:
    err = error('"a-${local.nothing}"')
    assert "${local.nothing} is null" in err.message


def test_a_list_cannot_be_interpolated() -> None:
    err = error('"a-${local.l}"')
    assert "${local.l} must be a string, got list" in err.message


# -- traversals --------------------------------------------------------------------------------------


def test_missing_attribute_lists_the_known_ones() -> None:
    err = error("local.missing")
    assert "local has no attribute 'missing'" in err.message
    assert "(it has: f, flag, l, m, n, name, nothing, objs, words)" in err.message
    err = error("local.m.c")
    assert "local.m has no attribute 'c' (it has: a, b)" in err.message


def test_attribute_of_a_string_or_null() -> None:
    assert "cannot read attribute 'x' of local.name: it is a string" in error("local.name.x").message
    assert "cannot read attribute 'x' of local.nothing: it is null" in error("local.nothing.x").message


def test_index_out_of_range() -> None:
    err = error("local.l[5]")
    assert "local.l[5]: index out of range (the list has 2 elements)" in err.message
    assert "index out of range" in error("local.l[-1]").message


def test_index_errors() -> None:
    assert "local.m has no key 'zz'" in error('local.m["zz"]').message
    assert "index must be a number" in error('local.l["x"]').message
    assert "cannot index local.n: it is a number" in error("local.n[0]").message


def test_traversals_that_work() -> None:
    assert ev("local.objs[0].id") == "x"
    assert ev('local.m["b"]') == 2
    assert ev("local.l[1]") == 2
    assert ev("local.objs[*].id") == ["x", "y"]
    assert ev("local.objs.*.id") == ["x", "y"]
    assert ev("local.nothing[*]") == []
    assert ev("local.m[*]") == [{"a": 1, "b": 2}]
    assert ev('{a = {b = "c"}}.a.b') == "c"
    assert ev('[10, 20][1]') == 20


def test_unknown_root_is_reported_by_the_scope() -> None:
    err = error("var.x")
    assert "unknown reference 'var'" in err.message


class _Counting(Lazy):
    """A Lazy mapping that computes each entry on first use and counts the computations."""

    def __init__(self) -> None:
        self.computed: list[str] = []

    def names(self) -> list[str]:
        return ["a", "b"]

    def get(self, name: str, node: ast.Expr, ctx: Context) -> Any:
        if name not in self.names():
            raise ctx.error(f"no {name}", node)
        self.computed.append(name)
        return {"a": {"deep": 1}, "b": 2}[name]


def test_lazy_roots_compute_only_what_is_read() -> None:
    lazy = _Counting()
    ctx = context(scope=Scope(local=lazy))
    assert ev("local.a.deep", ctx) == 1
    assert lazy.computed == ["a"]
    assert ev('local["b"]', ctx) == 2
    assert lazy.resolve_all(ctx) == {"a": {"deep": 1}, "b": 2}
    assert error("local.zzz", ctx).message == "no zzz"


# -- functions ---------------------------------------------------------------------------------------


def test_try_returns_the_first_value_that_works() -> None:
    assert ev('try(local.missing, "default")') == "default"
    assert ev("try(local.m.a, 0)") == 1
    assert ev("try(local.l[9], local.m.zz, null)") is None
    err = error("try(local.missing, local.m.c)")
    assert "try(): no argument could be evaluated" in err.message
    assert "needs at least one argument" in error("try()").message


def test_can() -> None:
    assert ev("can(local.missing)") is False
    assert ev("can(local.n)") is True
    assert ev('can(cidrsubnet("10.0.0.0/8", 8, 999))') is False


def test_try_and_can_do_not_hide_a_misspelled_function() -> None:
    # an unknown function is a mistake in the text, not a value that may be missing
    assert "unknown function lowr()" in error('try(lowr("X"), "default")').message
    assert "unknown function lowr()" in error('can(lowr("X"))').message


def test_file_reads_relative_to_the_directory_and_records_the_read(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text('{"x": 1}\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    ctx = context(str(tmp_path / "sub"))
    assert ev('jsondecode(file("../policy.json")).x', ctx) == 1
    assert ctx.reads == {str(tmp_path / "policy.json")}
    assert ev('fileexists("../policy.json")', ctx) is True
    assert ev('fileexists("nope.txt")', ctx) is False
    assert str(tmp_path / "sub" / "nope.txt") in ctx.reads


def test_file_errors(tmp_path: Path) -> None:
    ctx = context(str(tmp_path))
    err = error('file("missing.txt")', ctx)
    assert "file(): cannot read 'missing.txt'" in err.message
    assert "No such file" in err.message
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in error('file("bin.dat")', ctx).message
    assert "takes 1 argument" in error('file("a", "b")', ctx).message


def test_unknown_function_suggests_a_close_name() -> None:
    err = error('lowr("X")')
    assert "unknown function lowr()" in err.message
    assert "did you mean lower()?" in err.message
    assert "did you mean cidrsubnet()?" in error('cidrsubnett("10.0.0.0/8", 1, 1)').message
    assert "did you mean" not in error("zzzzzzzz()").message


def test_function_errors_name_the_function() -> None:
    err = error('substr("hello", 1.5, 1)')
    assert err.message.startswith("substr(): ")
    assert "cidrsubnet: netnum 256 does not fit in 8 bits" in error('cidrsubnet("10.0.0.0/8", 8, 256)').message
    # Python errors inside a function are still reported as the function's error, never a crash
    assert error("ceil(\"1e400\")").message.startswith("ceil(): ")


def test_argument_expansion() -> None:
    assert ev("concat(local.l, [[3]]...)") == [1, 2, 3]
    assert ev("max(local.l...)") == 2
    assert "the argument before ... must be a list" in error("max(local.n...)").message


# -- for expressions -----------------------------------------------------------------------------


def test_for_expression_to_a_list() -> None:
    assert ev("[for x in local.l : x * 2]") == [2, 4]
    assert ev("[for i, x in local.l : i]") == [0, 1]
    assert ev('[for k, v in local.m : "${k}=${v}"]') == ["a=1", "b=2"]


def test_for_expression_to_an_object() -> None:
    assert ev("{for k, v in local.m : k => v + 1}") == {"a": 2, "b": 3}
    assert ev("{for o in local.objs : o.id => upper(o.id)}") == {"x": "X", "y": "Y"}


def test_for_expression_with_an_if_clause() -> None:
    assert ev("[for i, x in local.l : i if x > 1]") == [1]
    assert ev("{for k, v in local.m : k => v if k != \"a\"}") == {"b": 2}


def test_for_expression_grouping() -> None:
    assert ev("{for x in local.words : x => x...}") == {"a": ["a", "a"], "b": ["b"]}


def test_for_expression_duplicate_key_is_an_error() -> None:
    err = error("{for x in local.words : x => 1}")
    assert "duplicate key 'a'" in err.message
    assert "..." in err.message


def test_for_expression_errors() -> None:
    assert "needs a list or map, got number" in error("[for x in local.n : x]").message
    assert "if clause of a for expression must be a bool" in error("[for x in local.l : x if 1]").message


def test_for_variables_shadow_only_inside_the_expression() -> None:
    scope = Scope(local=LOCALS, x="outer")
    ctx = context(scope=scope)
    assert ev("[for x in local.l : x]", ctx) == [1, 2]
    assert ev("x", ctx) == "outer"
    assert ctx.vars is None


# -- operators ---------------------------------------------------------------------------------------


def test_conditional_needs_a_bool() -> None:
    assert ev("local.flag ? 1 : 2") == 1
    err = error("local.n ? 1 : 2")
    assert "the condition must be a bool, got number" in err.message


def test_conditional_evaluates_only_the_chosen_branch() -> None:
    assert ev("true ? 1 : local.missing") == 1
    assert ev("false ? local.missing : 2") == 2


def test_equality_of_bool_and_number_is_false() -> None:
    assert ev("true == 1") is False
    assert ev("false == 0") is False
    assert ev("true != 1") is True
    assert ev('"1" == 1') is False
    assert ev("1 == 1.0") is True
    assert ev("[1, 2] == [1, 2]") is True
    assert ev("{a = 1} == {a = 1}") is True
    assert ev("null == null") is True
    assert ev("local.nothing == null") is True


def test_division_by_zero_is_an_error() -> None:
    assert "division by zero" in error("1 / 0").message
    assert "division by zero" in error("local.n % 0").message


def test_arithmetic_results() -> None:
    assert ev("5 / 2") == 2.5
    assert ev("7 % 3") == 1
    assert ev("2 * 1.5") == 3 and isinstance(ev("2 * 1.5"), int)
    assert ev('1 + "2"') == 3
    assert ev('-"3"') == -3
    assert ev("-local.n") == -3


def test_operand_type_errors() -> None:
    assert "the left operand of + must be a number, got 'a'" in error('"a" + 1').message
    assert "the right operand of > must be a number" in error('local.n > "a"').message
    assert "the operand of ! must be a bool, got number" in error("!local.n").message
    assert "the operand of - must be a number" in error("-local.name").message
    assert "the operands of && must be bools, got number" in error("local.flag && local.n").message
    assert "the operands of || must be bools, got string" in error('"x" || true').message


def test_logical_operators() -> None:
    assert ev("true && false") is False
    assert ev("false || true") is True
    assert ev("false && local.missing") is False
    assert ev("true || local.missing") is True


def test_object_keys_from_expressions() -> None:
    assert ev("{(local.name) = 1}") == {"web": 1}
    assert ev("{(local.n) = 1}") == {"3": 1}
    assert "an object key must be a string, got list" in error("{(local.l) = 1}").message


def test_errors_inside_multiline_expressions_point_at_their_own_line() -> None:
    text = 'x = {\n  a = 1\n  b = [\n    local.n,\n    local.nope,\n  ]\n}\n'
    node = parse_text(text, "multi.hcl").attributes[0].expr
    with pytest.raises(ConfigError) as info:
        evaluate(node, Context(Scope(local=LOCALS), "multi.hcl", "/"))
    assert info.value.source.line == 5
    assert str(info.value).startswith("multi.hcl:5: ")
