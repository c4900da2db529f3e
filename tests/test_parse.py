"""Unit tests of strata.config.parse: HCL text -> strata's syntax tree, with lines."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from strata.config import ast
from strata.config.evaluate import Context, evaluate
from strata.config.parse import parse_text
from strata.errors import ConfigError


def parse(text: str) -> ast.Body:
    return parse_text(textwrap.dedent(text).lstrip("\n"), "test.hcl")


def expr(text: str) -> ast.Expr:
    return parse(f"x = {text}\n").attributes[0].expr


class _NoNames:
    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        raise ctx.error(f"no names here ({name})", node)


class _Names:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        if name not in self.values:
            raise ctx.error(f"unknown {name}", node)
        return self.values[name]


def value(text: str, **names: Any) -> Any:
    return evaluate(expr(text), Context(_Names(names) if names else _NoNames(), "test.hcl", "/"))


def syntax_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


# -- structure and lines -------------------------------------------------------------------------


def test_attributes_and_blocks_keep_their_lines() -> None:
    body = parse("""
        # a comment

        environment = "production"
        locals {
          a = 1

          b = {
            x = 1
            y = local.q
          }
        }
        backend "s3" {
          bucket = "b"
        }
        dependency "vpc" {
          path = "../vpc"
        }
        stack {
          name = "x"
          inner {
            y = 1
          }
        }
    """)
    assert [(a.name, a.line) for a in body.attributes] == [("environment", 3)]
    assert [(b.type, b.labels, b.line) for b in body.blocks] == [
        ("locals", [], 4), ("backend", ["s3"], 12), ("dependency", ["vpc"], 15), ("stack", [], 18),
    ]
    locals_body = body.blocks[0].body
    assert [(a.name, a.line) for a in locals_body.attributes] == [("a", 5), ("b", 7)]
    obj = locals_body.attributes[1].expr
    assert isinstance(obj, ast.ObjectExpr)
    assert obj.line == 7
    assert [(i.key, i.line) for i in obj.items] == [("x", 8), ("y", 9)]
    assert isinstance(obj.items[1].value, ast.Traversal) and obj.items[1].value.line == 9
    nested = body.blocks[3].body.blocks
    assert [(b.type, b.line, b.body.attributes[0].line) for b in nested] == [("inner", 20, 21)]
    assert body.blocks[1].body.attributes[0].line == 13


def test_multiline_call_arguments_keep_their_own_lines() -> None:
    call = parse("""
        a = merge(
          local.a,
          {
            k = local.b
          },
        )
    """).attributes[0].expr
    assert isinstance(call, ast.Call) and call.name == "merge" and call.line == 1
    first, second = call.args
    assert first.line == 2
    assert isinstance(second, ast.ObjectExpr) and second.line == 3
    assert second.items[0].value.line == 4


def test_comments_of_every_kind_are_ignored() -> None:
    body = parse("""
        a = 1 // trailing
        # hash
        b = 2 /* block */
        /* multi
           line */
        c = 3
    """)
    assert [(a.name, a.line, value_of(a)) for a in body.attributes] == [("a", 1, 1), ("b", 3, 2), ("c", 6, 3)]


def value_of(attr: ast.Attribute) -> Any:
    return evaluate(attr.expr, Context(_NoNames(), "test.hcl", "/"))


def test_a_file_without_final_newline_parses() -> None:
    body = parse_text('a = "x"', "test.hcl")
    assert value_of(body.attributes[0]) == "x"


# -- strings ---------------------------------------------------------------------------------------


def test_string_escapes() -> None:
    node = expr(r'"x\ny\t\"q\" \\ \u00e9 \U0001F600"')
    assert isinstance(node, ast.Literal)
    assert node.value == 'x\ny\t"q" \\ é 😀'


def test_dollar_dollar_brace_is_a_literal_interpolation() -> None:
    node = expr('"$${lit} and %%{d}"')
    assert isinstance(node, ast.Literal)
    assert node.value == "${lit} and %{d}"


def test_escaped_backslash_before_an_interpolation_still_interpolates() -> None:
    node = expr(r'"\\${local.x}"')
    assert isinstance(node, ast.Template)
    assert node.parts[0] == "\\"
    assert isinstance(node.parts[1], ast.Traversal)


def test_interpolation_builds_a_template() -> None:
    node = expr('"pre-${local.x}-post"')
    assert isinstance(node, ast.Template)
    assert node.parts[0] == "pre-" and node.parts[2] == "-post"
    ref = node.parts[1]
    assert isinstance(ref, ast.Traversal) and ref.root == "local" and ref.steps == ["x"]
    assert value('"pre-${local.x}-post"', local={"x": "mid"}) == "pre-mid-post"


def test_a_lone_interpolation_is_a_one_part_template() -> None:
    node = expr('"${local.n}"')
    assert isinstance(node, ast.Template) and len(node.parts) == 1
    assert value('"${local.n}"', local={"n": 3}) == 3


def test_string_directives_are_refused_with_the_line() -> None:
    err = syntax_error('a = 1\nb = "%{ if true }x%{ endif }"\n')
    assert err.source.line == 2
    assert "template directives" in err.message


def test_block_labels_cannot_interpolate() -> None:
    err = syntax_error('backend "s${x}" {}\n')
    assert "block labels cannot contain interpolation" in err.message


# -- heredocs --------------------------------------------------------------------------------------


def test_heredoc_with_interpolation_and_line_numbers() -> None:
    body = parse("""
        a = 1
        b = <<EOT
        hello ${local.x}
          world
        EOT
    """)
    attr = body.attributes[1]
    assert attr.line == 2
    node = attr.expr
    assert isinstance(node, ast.Template)
    interp = node.parts[1]
    assert isinstance(interp, ast.Traversal) and interp.line == 3
    assert evaluate(node, Context(_Names({"local": {"x": "there"}}), "t", "/")) == "hello there\n  world\n"


def test_indented_heredoc_trims_the_common_indent() -> None:
    text = "b = <<-EOT\n    one\n      two ${1 + 2}\n    EOT\n"
    node = parse_text(text, "t.hcl").attributes[0].expr
    assert isinstance(node, ast.Template)
    interp = node.parts[1]
    assert isinstance(interp, ast.Expr) and interp.line == 3
    assert evaluate(node, Context(_NoNames(), "t", "/")) == "one\n  two 3\n"


def test_heredoc_literal_escapes_and_empty_heredoc() -> None:
    assert value_of(parse_text("a = <<EOT\n$${lit} %%{d}\nEOT\n", "t").attributes[0]) == "${lit} %{d}\n"
    assert value_of(parse_text("a = <<EOT\nEOT\n", "t").attributes[0]) == ""


def test_heredoc_errors_carry_the_line_of_the_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_text("a = 1\nb = <<EOT\nfine\n${local.x\nEOT\n", "t.hcl")
    assert info.value.source.line == 4
    assert "unclosed" in info.value.message
    with pytest.raises(ConfigError) as info:
        parse_text("a = <<EOT\nok\n%{if x}y%{endif}\nEOT\n", "t.hcl")
    assert info.value.source.line == 3
    assert "directives" in info.value.message


# -- numbers and literals ------------------------------------------------------------------------


def test_numbers() -> None:
    assert value("1") == 1 and isinstance(value("1"), int)
    assert value("-2") == -2
    assert value("1.5") == 1.5
    assert value("0.0") == 0
    assert value("1e3") == 1000
    assert value("1.5e2") == 150


def test_literal_words() -> None:
    assert value("true") is True
    assert value("false") is False
    assert value("null") is None


# -- collections -----------------------------------------------------------------------------------


def test_tuples() -> None:
    node = expr('[1, "x", true, null]')
    assert isinstance(node, ast.TupleExpr) and len(node.items) == 4
    assert value('[1, "x", true, null]') == [1, "x", True, None]
    assert value("[\n  1,\n  2,\n]") == [1, 2]
    assert value("[]") == []


def test_object_keys_bare_quoted_and_parenthesized() -> None:
    node = expr('{ k = 1, "q k" = 2, (local.n) = 3, k2: 4, "dot.key" = 5 }')
    assert isinstance(node, ast.ObjectExpr)
    keys = [item.key for item in node.items]
    assert keys[0] == "k" and keys[1] == "q k" and keys[3] == "k2" and keys[4] == "dot.key"
    paren = keys[2]
    assert isinstance(paren, ast.Traversal) and paren.root == "local" and paren.steps == ["n"]
    result = value('{ k = 1, "q k" = 2, (local.n) = 3 }', local={"n": "dynamic"})
    assert result == {"k": 1, "q k": 2, "dynamic": 3}


def test_bare_key_is_a_name_not_a_reference() -> None:
    # `local = 1` as an object key is the string "local", never a reference
    assert value("{ local = 1, strata = 2 }") == {"local": 1, "strata": 2}


def test_object_with_commas_and_newlines() -> None:
    assert value("{\n  a = 1,\n  b = 2,\n}") == {"a": 1, "b": 2}
    assert value("{}") == {}


# -- operators and conditionals -----------------------------------------------------------------


def test_conditional() -> None:
    node = expr('local.a == null ? 1 : 2')
    assert isinstance(node, ast.Conditional)
    assert isinstance(node.condition, ast.Binary) and node.condition.op == "=="
    assert value("true ? \"x\" : \"y\"") == "x"
    assert value("false ? \"x\" : \"y\"") == "y"


def test_arithmetic_precedence() -> None:
    node = expr("1 + 2 * 3")
    assert isinstance(node, ast.Binary) and node.op == "+"
    assert isinstance(node.right, ast.Binary) and node.right.op == "*"
    assert value("1 + 2 * 3") == 7
    assert value("(1 + 2) * 3") == 9
    assert value("1 * 2 % 3 - 4 / 2") == 0
    assert value("10 - 2 - 3") == 5
    assert value("1 - -2") == 3


def test_logical_and_comparison_precedence() -> None:
    node = expr("!true || false && true")
    assert isinstance(node, ast.Binary) and node.op == "||"
    assert isinstance(node.left, ast.Unary) and node.left.op == "!"
    assert isinstance(node.right, ast.Binary) and node.right.op == "&&"
    assert value("!true || false && true") is False
    assert value("true || false && false") is True
    assert value("1 < 2 == true") is True
    assert value("1 + 1 == 2 && 3 > 2") is True
    assert value("2 >= 2 && 1 <= 0") is False


# -- for expressions, splats, traversals, calls ---------------------------------------------------


def test_for_tuple_expression() -> None:
    node = expr('[for k, v in local.m : "${k}=${v}" if v != ""]')
    assert isinstance(node, ast.ForExpr)
    assert (node.key_var, node.value_var, node.key, node.grouping) == ("k", "v", None, False)
    assert node.condition is not None
    assert value('[for k, v in local.m : "${k}=${v}" if v != ""]', local={"m": {"a": "1", "b": ""}}) == ["a=1"]


def test_for_object_expression_with_grouping() -> None:
    node = expr("{for s in local.l : s => upper(s)...}")
    assert isinstance(node, ast.ForExpr)
    assert node.key_var is None and node.value_var == "s"
    assert node.key is not None and node.grouping is True
    plain = expr("{for s in local.l : s => upper(s)}")
    assert isinstance(plain, ast.ForExpr) and plain.grouping is False


def test_splat_expressions() -> None:
    for text in ("local.l[*].name", "local.l.*.name"):
        node = expr(text)
        assert isinstance(node, ast.Splat), text
        assert node.steps == ["name"]
        assert value(text, local={"l": [{"name": "a"}, {"name": "b"}]}) == ["a", "b"]


def test_traversal_steps() -> None:
    node = expr('local.x[0]["k"].y')
    assert isinstance(node, ast.Traversal)
    assert node.root == "local"
    assert node.steps[0] == "x" and node.steps[3] == "y"
    assert isinstance(node.steps[1], ast.Literal) and node.steps[1].value == 0
    assert isinstance(node.steps[2], ast.Literal) and node.steps[2].value == "k"
    assert node.text() == 'local.x[0]["k"].y'
    legacy = expr("local.m.x.0")
    assert isinstance(legacy, ast.Traversal)
    assert isinstance(legacy.steps[2], ast.Literal) and legacy.steps[2].value == 0


def test_attribute_of_a_call_result() -> None:
    node = expr("merge(local.a, local.b).k")
    assert isinstance(node, ast.GetAttr) and node.name == "k"
    assert isinstance(node.obj, ast.Call)
    assert value("merge(local.a, local.b).k", local={"a": {"k": 1}, "b": {"k": 2}}) == 2


def test_function_call_with_expansion() -> None:
    node = expr("concat(local.a, local.b...)")
    assert isinstance(node, ast.Call)
    assert node.name == "concat" and len(node.args) == 2 and node.expand_last is True
    plain = expr("concat(local.a, local.b)")
    assert isinstance(plain, ast.Call) and plain.expand_last is False
    assert value("max([3, 9, 2]...)") == 9


# -- syntax errors ---------------------------------------------------------------------------------


def test_missing_value_reports_its_line() -> None:
    err = syntax_error("a = 1\nb = \nc = 2\n")
    assert err.source.line == 2 and err.source.file == "test.hcl"
    assert err.message.startswith("syntax error")


def test_unclosed_block_is_a_syntax_error() -> None:
    err = syntax_error("a = 1\nlocals {\n  x = 1\n")
    assert err.message.startswith("syntax error")
    assert "}" in err.message
    assert err.source.line >= 2


def test_unclosed_string_reports_its_line() -> None:
    err = syntax_error('a = 1\nb = "unclosed\n')
    assert err.source.line == 2
    assert err.message.startswith("syntax error")


def test_unclosed_list_reports_the_line_that_opens_it() -> None:
    err = syntax_error("a = 1\n\nb = [1, 2\nc = 3\n")
    assert err.source.line == 3
    assert err.message.startswith("syntax error")
    assert "[" in err.message


def test_unexpected_character() -> None:
    err = syntax_error("a = 1\nb = @\n")
    assert err.source.line == 2
    assert "'@'" in err.message


def test_empty_interpolation_is_an_error() -> None:
    err = syntax_error('a = 1\nb = "${}"\n')
    assert err.source.line == 2


def test_an_attribute_set_twice_names_both_lines() -> None:
    err = syntax_error("a = 1\nb = 2\na = 3\n")
    assert err.source.line == 3
    assert "first at line 1" in err.message
