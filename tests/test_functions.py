"""Unit tests of strata.config.functions: the results Terraform gives for the same calls.

Every expected value in the tables below was produced by Terraform 1.11 (`terraform console`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from strata.config.functions import (
    FUNCTIONS,
    SPECIAL_FUNCTIONS,
    FunctionError,
    function_names,
    is_function,
    to_number,
    to_string,
    type_name,
)


def call(name: str, *args: Any) -> Any:
    return FUNCTIONS[name](list(args))


def fails(name: str, *args: Any) -> str:
    with pytest.raises(FunctionError) as info:
        call(name, *args)
    return str(info.value)


TERRAFORM_RESULTS: list[tuple[str, tuple[Any, ...], Any]] = [
    # networks
    ("cidrsubnet", ("10.0.0.0/8", 8, 3), "10.3.0.0/16"),
    ("cidrsubnet", ("10.1.0.0/16", 4, 15), "10.1.240.0/20"),
    ("cidrsubnet", ("10.1.2.3/16", 8, 2), "10.1.2.0/24"),
    ("cidrsubnet", ("fd00::/56", 8, 1), "fd00:0:0:1::/64"),
    ("cidrhost", ("10.0.0.0/24", 5), "10.0.0.5"),
    ("cidrhost", ("10.0.0.0/24", -1), "10.0.0.255"),
    ("cidrhost", ("10.1.2.240/28", 2), "10.1.2.242"),
    ("cidrnetmask", ("172.16.0.0/12",), "255.240.0.0"),
    ("cidrsubnets", ("10.1.0.0/16", 4, 4, 8, 4), ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]),
    ("cidrsubnets", ("10.0.0.0/8", 8, 4), ["10.0.0.0/16", "10.16.0.0/12"]),
    # format
    ("format", ("%s-%03d", "a", 7), "a-007"),
    ("format", ("%q", "x"), '"x"'),
    ("format", ("%q", 'a"b'), '"a\\"b"'),
    ("format", ("%5s|%-5s|", "ab", "cd"), "   ab|cd   |"),
    ("format", ("%.2f", 3.14159), "3.14"),
    ("format", ("%d%%", 50), "50%"),
    ("format", ("%t", True), "true"),
    ("format", ("%x", 255), "ff"),
    ("format", ("%s", 1.5), "1.5"),
    ("format", ("%.3s", "abcdef"), "abc"),
    ("format", ("%+d", 5), "+5"),
    ("format", ("%05.1f", 3.14159), "003.1"),
    ("format", ("%e", 1234.5), "1.234500e+03"),
    ("format", ("%d", 3.0), "3"),
    ("format", ("%v", [1, 2]), "[1,2]"),
    # strings
    ("replace", ("hello-world", "/o(.)/", "0$1"), "hell0-w0rld"),
    ("replace", ("a.b.c", ".", "-"), "a-b-c"),
    ("replace", ("abc123", "/[0-9]+/", ""), "abc"),
    ("join", ("-", ["a", "b", "c"]), "a-b-c"),
    ("join", (",", ["a"], ["b", "c"]), "a,b,c"),
    ("join", (",", [1, True]), "1,true"),
    ("split", (",", "a,b,,c"), ["a", "b", "", "c"]),
    ("split", (",", ""), [""]),
    ("split", ("", "abc"), ["a", "b", "c"]),
    ("substr", ("hello world", 1, 4), "ello"),
    ("substr", ("hello", -3, -1), "llo"),
    ("substr", ("hello", 0, 10), "hello"),
    ("substr", ("hello", 1, -1), "ello"),
    ("lower", ("ABC",), "abc"),
    ("upper", ("abc",), "ABC"),
    ("upper", (1,), "1"),
    ("title", ("hello world-foo",), "Hello World-Foo"),
    ("trimspace", ("  x  ",), "x"),
    ("trim", ("?!hello?!", "!?"), "hello"),
    ("trimprefix", ("helloworld", "hello"), "world"),
    ("trimsuffix", ("helloworld", "world"), "hello"),
    ("startswith", ("hello", "he"), True),
    ("endswith", ("hello", "lo"), True),
    ("strcontains", ("hello", "ell"), True),
    ("strcontains", ("hello", "xyz"), False),
    ("tostring", (5,), "5"),
    ("tostring", (True,), "true"),
    ("tostring", (None,), None),
    ("tonumber", ("5",), 5),
    ("tonumber", ("1.5",), 1.5),
    ("tobool", ("true",), True),
    ("tobool", ("false",), False),
    # collections
    ("merge", ({"a": 1, "b": 2}, {"b": 3, "c": 4}), {"a": 1, "b": 3, "c": 4}),
    ("merge", (), {}),
    ("lookup", ({"a": "x"}, "a", "d"), "x"),
    ("lookup", ({"a": "x"}, "b", "d"), "d"),
    ("lookup", ({"a": "x"}, "a"), "x"),
    ("range", (3,), [0, 1, 2]),
    ("range", (1, 4), [1, 2, 3]),
    ("range", (1, 10, 3), [1, 4, 7]),
    ("range", (5, 1), [5, 4, 3, 2]),
    ("range", (0, 1, 0.25), [0, 0.25, 0.5, 0.75]),
    ("range", (0,), []),
    ("range", (-3,), [0, -1, -2]),
    ("zipmap", (["a", "b"], [1, 2]), {"a": 1, "b": 2}),
    ("coalesce", ("", "b", "c"), "b"),
    ("coalesce", (None, 1), 1),
    ("flatten", ([[1, [2]], [], 3],), [1, 2, 3]),
    ("distinct", ([1, 2, 1, 3, 2],), [1, 2, 3]),
    ("element", (["a", "b", "c"], 4), "b"),
    ("length", ("héllo",), 5),
    ("length", ([1, 2],), 2),
    ("length", ({"a": 1},), 1),
    ("concat", ([1], [2, 3]), [1, 2, 3]),
    ("contains", (["a", "b"], "b"), True),
    ("contains", (["a", "b"], "z"), False),
    ("index", (["a", "b"], "b"), 1),
    ("compact", (["a", "", None, "b"],), ["a", "b"]),
    ("keys", ({"b": 1, "a": 2},), ["a", "b"]),
    ("keys", ({},), []),
    ("values", ({"b": 1, "a": 2},), [2, 1]),
    ("slice", (["a", "b", "c", "d"], 1, 3), ["b", "c"]),
    ("sort", (["b", "a", "c"],), ["a", "b", "c"]),
    ("sort", ([3, 10, 1],), ["1", "10", "3"]),
    ("reverse", ([1, 2, 3],), [3, 2, 1]),
    ("tolist", (["a"],), ["a"]),
    ("toset", (["b", "a", "b"],), ["a", "b"]),
    ("tomap", ({"a": "x"},), {"a": "x"}),
    ("alltrue", ([True, True],), True),
    ("alltrue", ([True, False],), False),
    ("alltrue", ([],), True),
    ("anytrue", ([False, True],), True),
    ("anytrue", ([],), False),
    # numbers
    ("min", (3, 1, 2), 1),
    ("min", ("3", 1), 1),
    ("max", (3, 1, 2), 3),
    ("abs", (-3.5,), 3.5),
    ("ceil", (1.2,), 2),
    ("floor", (-1.2,), -2),
    # encoding and hashing
    ("jsonencode", ({"b": [1, True, None], "a": "x"},), '{"a":"x","b":[1,true,null]}'),
    ("jsonencode", (1.5,), "1.5"),
    ("jsonencode", ("a<b>",), '"a\\u003cb\\u003e"'),
    ("jsondecode", ('{"a": [1, 2.5, "x"]}',), {"a": [1, 2.5, "x"]}),
    ("base64encode", ("hello",), "aGVsbG8="),
    ("base64decode", ("aGVsbG8=",), "hello"),
    ("md5", ("hello",), "5d41402abc4b2a76b9719d911017c592"),
    ("sha1", ("hello",), "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
    ("sha256", ("hello",), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
    # paths
    ("basename", ("a/b/c.txt",), "c.txt"),
    ("dirname", ("a/b/c.txt",), "a/b"),
]


@pytest.mark.parametrize(("name", "args", "expected"), TERRAFORM_RESULTS,
                         ids=[f"{n}{json.dumps(list(a))[:40]}" for n, a, _ in TERRAFORM_RESULTS])
def test_terraform_results(name: str, args: tuple[Any, ...], expected: Any) -> None:
    result = call(name, *args)
    assert result == expected
    if isinstance(expected, bool) or expected is None:
        assert result is expected
    else:
        assert type_name(result) == type_name(expected)


def test_every_function_is_covered_by_the_table() -> None:
    covered = {name for name, _, _ in TERRAFORM_RESULTS}
    assert set(FUNCTIONS) - covered == set()


def test_function_names_list_the_special_ones() -> None:
    names = function_names()
    assert names == sorted(names)
    for special in SPECIAL_FUNCTIONS:
        assert special in names and is_function(special)
    assert is_function("cidrsubnet") and not is_function("cidr_subnet")


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count", "wanted"), [
    ("lower", 0, "lower() takes 1 argument, got 0"),
    ("lower", 2, "lower() takes 1 argument, got 2"),
    ("replace", 2, "replace() takes 3 arguments, got 2"),
    ("lookup", 1, "lookup() takes 2 to 3 arguments, got 1"),
    ("lookup", 4, "lookup() takes 2 to 3 arguments, got 4"),
    ("range", 0, "range() takes 1 to 3 arguments, got 0"),
    ("max", 0, "max() takes at least 1 argument, got 0"),
    ("format", 0, "format() takes at least 1 argument, got 0"),
    ("join", 1, "join() takes at least 2 arguments, got 1"),
    ("cidrsubnet", 2, "cidrsubnet() takes 3 arguments, got 2"),
])
def test_wrong_number_of_arguments(name: str, count: int, wanted: str) -> None:
    assert fails(name, *(["x"] * count)) == wanted


def test_cidr_errors() -> None:
    assert "netnum 256 does not fit in 8 bits" in fails("cidrsubnet", "10.0.0.0/8", 8, 256)
    assert "netnum -1" in fails("cidrsubnet", "10.0.0.0/8", 8, -1)
    assert "no room for 4 more bits" in fails("cidrsubnet", "10.0.0.0/30", 4, 0)
    assert "is not a CIDR prefix" in fails("cidrsubnet", "notacidr", 8, 0)
    assert "'notacidr'" in fails("cidrsubnet", "notacidr", 8, 0)
    assert "outside 10.0.0.0/30" in fails("cidrhost", "10.0.0.0/30", 4)
    assert "IPv4" in fails("cidrnetmask", "fd00::/56")
    assert "not enough room in 10.0.0.0/24" in fails("cidrsubnets", "10.0.0.0/24", 1, 1, 1)
    assert "newbits must be a number" in fails("cidrsubnet", "10.0.0.0/8", "eight", 1)


def test_format_errors() -> None:
    assert "must be a number, got 'x'" in fails("format", "%d", "x")
    assert "not enough arguments for '%s'" in fails("format", "%s")
    assert "too many arguments (2 given, 1 used)" in fails("format", "%s", "a", "b")
    assert "%t needs a bool" in fails("format", "%t", "yes")
    assert "null" in fails("format", "%s", None)
    assert "unsupported verb %y" in fails("format", "%y", 1)


def test_collection_errors() -> None:
    assert "no key 'b' and no default" in fails("lookup", {"a": 1}, "b")
    assert "must be a map or object, got list" in fails("lookup", [1], "b")
    assert "empty list" in fails("element", [], 0)
    assert "no non-null, non-empty argument" in fails("coalesce")
    assert "no non-null, non-empty argument" in fails("coalesce", None, "")
    assert "must be a list, got string" in fails("join", ",", "a")
    assert "must be a list, got string" in fails("flatten", "x")
    assert "different lengths" in fails("zipmap", ["a"], [1, 2])
    assert "out of range for a list of 2" in fails("slice", [1, 2], 1, 5)
    assert "not in the list" in fails("index", ["a"], "z")
    assert "must be a map or object, got string" in fails("keys", "x")
    assert "cannot take the length of number" in fails("length", 5)
    assert "merge: argument 2 must be a map or object, got list" in fails("merge", {}, [1])
    assert "concat: argument 1 must be a list, got string" in fails("concat", "x")
    assert "step must not be zero" in fails("range", 0, 5, 0)
    assert "more than 1024" in fails("range", 5000)


def test_type_errors() -> None:
    assert "must be a number, got 'abc'" in fails("tonumber", "abc")
    assert "cannot convert 'yes' to bool" in fails("tobool", "yes")
    assert "must be a string, got list" in fails("upper", ["a"])
    assert "is null" in fails("lower", None)
    assert "must be a whole number, got 1.5" in fails("substr", "hello", 1.5, 1)
    assert "must be a number, got bool" in fails("abs", True)
    assert "invalid JSON" in fails("jsondecode", "{")
    assert "not valid base64" in fails("base64decode", "!!")
    assert "invalid regular expression" in fails("replace", "x", "/(/", "y")


def test_conversions() -> None:
    assert to_string(1.0) == "1"
    assert to_string(2.5) == "2.5"
    assert to_string(False) == "false"
    assert to_number("10") == 10 and isinstance(to_number("10"), int)
    assert to_number("1e2") == 100.0
    with pytest.raises(FunctionError, match="must be a string, got object"):
        to_string({})
    samples: tuple[Any, ...] = (None, True, 1, 1.5, "s", [], {})
    assert [type_name(v) for v in samples] == [
        "null", "bool", "number", "number", "string", "list", "object"]


def test_replace_with_a_catastrophic_pattern_is_linear() -> None:
    # Python's backtracking engine takes exponential time on this; RE2 (as in Terraform) does not
    text = "a" * 200_000 + "b"
    started = time.process_time()
    assert call("replace", text, "/(a+)+$/", "") == text
    assert call("replace", "a" * 40 + "!", "/(a|aa)+$/", "x") == "a" * 40 + "!"
    assert time.process_time() - started < 5  # a guard against a hang, ~100x the expected


def test_replace_refuses_a_result_too_big_to_build() -> None:
    big = "x" * 100_000
    assert "too long" in fails("replace", big, "", big)
    assert "too long" in fails("replace", big, "/x/", big)
    assert "too long" in fails("replace", big, "/(x)/", "$1" * 50)
    assert call("replace", "abc", "", "-") == "-a-b-c-"
    assert call("replace", "abc", "//", "-") == "-a-b-c-"


def test_replace_with_an_invalid_pattern_prints_nothing_itself(capfd: pytest.CaptureFixture[str]) -> None:
    assert "missing )" in fails("replace", "x", "/(/", "y")
    assert capfd.readouterr().err == ""  # RE2 logs its errors to stderr unless told not to
