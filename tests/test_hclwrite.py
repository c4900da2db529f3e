"""Unit tests of strata.terraform.hclwrite, and a round trip through real Terraform (1.0.3 and 1.11)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from strata.terraform.hclwrite import attributes, hcl_key, hcl_string, hcl_value


@pytest.mark.parametrize(("text", "written"), [
    ("plain", '"plain"'),
    ('a"b', '"a\\"b"'),
    ("back\\slash", '"back\\\\slash"'),
    ("new\nline\ttab\r", '"new\\nline\\ttab\\r"'),
    ("${var.x}", '"$${var.x}"'),
    ("%{ if x }", '"%%{ if x }"'),
    ("$${already}", '"$$${already}"'),
    ("$ {not} % $", '"$ {not} % $"'),
    ("ünïcødé ✓ 😀", '"ünïcødé ✓ 😀"'),
    ("\x01ctl", '"\\u0001ctl"'),
    ("", '""'),
])
def test_strings_are_escaped(text: str, written: str) -> None:
    assert hcl_string(text) == written
    assert hcl_value(text) == written


@pytest.mark.parametrize(("key", "written"), [
    ("name", "name"), ("with-dash", "with-dash"), ("_under", "_under"), ("a1", "a1"),
    ("9lead", '"9lead"'), ("has space", '"has space"'), ("dot.key", '"dot.key"'), ('a"q', '"a\\"q"'), ("", '""'),
    ("${x}", '"$${x}"'),
])
def test_keys_are_quoted_only_when_needed(key: str, written: str) -> None:
    assert hcl_key(key) == written


def test_an_object_key_for_is_quoted() -> None:
    """``{ for = 1 }`` is the start of a for expression to terraform; a body's attribute ``for`` stays bare."""
    assert hcl_value({"for": 1, "b": {"for": [2]}}) == '{\n  "for" = 1\n  b = {\n    "for" = [2]\n  }\n}'
    assert attributes({"for": 1}) == "for = 1\n"


def test_primitive_values() -> None:
    assert [hcl_value(v) for v in (None, True, False, 3, -2, 1.5, 2.0, 0.1)] == [
        "null", "true", "false", "3", "-2", "1.5", "2", "0.1"]
    assert hcl_value([]) == "[]"
    assert hcl_value({}) == "{}"
    assert hcl_value(("a", "b")) == '["a", "b"]'
    with pytest.raises(TypeError, match="cannot write object as HCL"):
        hcl_value(object())


def test_short_lists_stay_on_one_line_and_long_ones_break() -> None:
    assert hcl_value(["a", 1, True]) == '["a", 1, true]'
    long = ["x" * 50, "y" * 50]
    assert hcl_value(long) == '[\n  "' + "x" * 50 + '",\n  "' + "y" * 50 + '",\n]'


def test_nested_maps_and_lists_are_indented() -> None:
    assert hcl_value([[1, 2], {"a": 1}]) == "[\n  [1, 2],\n  {\n    a = 1\n  },\n]"
    assert attributes({"m": {"k": [1, 2], "nested": {"deep": True}, "quoted key": "v"}}) == (
        "m = {\n"
        "  k = [1, 2]\n"
        "  nested = {\n"
        "    deep = true\n"
        "  }\n"
        '  "quoted key" = "v"\n'
        "}\n"
    )


def test_equals_signs_of_consecutive_one_line_attributes_are_aligned() -> None:
    text = attributes({"a": 1, "long_name": "x", "block": {"k": 1}, "z": None, "zz": [1]})
    assert text == (
        "a         = 1\n"
        'long_name = "x"\n'
        "block = {\n"
        "  k = 1\n"
        "}\n"
        "z  = null\n"
        "zz = [1]\n"
    )


def test_indent_argument_pads_every_line() -> None:
    assert attributes({"bucket": "b", "encrypt": True}, indent=2) == '    bucket  = "b"\n    encrypt = true\n'


def test_output_is_deterministic_and_keeps_key_order() -> None:
    values = {"b": 1, "a": {"y": 2, "x": 1}}
    assert attributes(values) == attributes(dict(values))
    assert attributes(values).index("b ") < attributes(values).index("a ")


TRICKY: dict[str, Any] = {
    "strings": ["plain", 'a"b', "back\\slash", "new\nline\ttab", "${var.x}", "%{ if }", "$${already}", "ünïcødé ✓",
                "\x01ctl", "$ {not}", "%", "$", "end$", "end%", "\u2028"],
    "map": {"k": [1, 2], "nested": {"deep": True}, "quoted key": "v", "9x": 1, "with-dash": None, "${k}": "%{v}"},
    "keywords": {"for": "first", "null": None, "true": 1, "if": [{"for": "in a list"}]},
    "number": 1.5,
    "big": 12345678901234567890,
    "negative": -7,
    "long": ["x" * 50, "y" * 50],
    "empty": {"list": [], "map": {}},
}


def test_terraform_reads_back_exactly_what_was_written(terraform_binary: str, tmp_path: Path) -> None:
    (tmp_path / "strata_inputs.auto.tfvars").write_text(attributes(TRICKY), encoding="utf-8")
    (tmp_path / "variables.tf").write_text("".join(f'variable "{name}" {{}}\n' for name in TRICKY),
                                           encoding="utf-8")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
           "TF_CLI_CONFIG_FILE": str(tmp_path / "none.rc")}
    (tmp_path / "none.rc").write_text("", encoding="utf-8")
    expression = "jsonencode({" + ", ".join(f"{name} = var.{name}" for name in TRICKY) + "})\n"
    proc = subprocess.run([terraform_binary, "console"], input=expression, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(json.loads(proc.stdout.strip())) == TRICKY
    fmt = subprocess.run([terraform_binary, "fmt", "-check", "-diff", str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
