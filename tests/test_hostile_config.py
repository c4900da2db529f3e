"""A repository strata must survive: in CI it comes from an untrusted pull request.

Every hostile input below ends in a message naming the file (and line, where there is one) and an
exit code, never in code execution, a traceback, "internal error", a hang or an exhausted machine:
- a parse cache planted in ``.strata/cache`` is data, checked on load, never code (pickle);
- expressions nested 10,000 deep, self-references, characters that are not characters, huge
  numbers, function results that grow without end;
- heredocs and blank lines a megabyte long parse in linear time;
- a strata.hcl that is a folder, a FIFO, a link to /dev/zero, a dangling link or too big.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.config.cache import CACHE_NAME, ParseCache, decode, encode
from strata.config.limits import MAX_NESTING
from strata.config.parse import _grammar_cache, parse_text
from strata.errors import ConfigError
from strata.model.loader import load
from strata.terraform.binary import find_binary

Strata = Callable[..., Result]

ROOT = "strata {}\n"
STACK = "stack {}\n"
DEEP = 10_000


def errors_of(result: Result) -> dict[str, str]:
    """``{"file:line": message}`` of every error line printed by validate."""
    out: dict[str, str] = {}
    for line in result.output.splitlines():
        m = re.match(r"^(\S+?:\d+): error: (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


# -- 7: the parse cache is data, never code ----------------------------------------------------------


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what a planted cache would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_in_the_cache_is_never_executed(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path / "repo", {"strata.hcl": ROOT, "app/strata.hcl": STACK})
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"format": None, "entries": _Payload(marker)})
    cache = repo / ".strata" / "cache"
    cache.mkdir(parents=True)
    for name in ("parse.pickle", CACHE_NAME):  # the old name, and the new one
        (cache / name).write_bytes(payload)
    result = strata("ls", cwd=repo)
    assert result.code == 0, result.output
    assert "app" in result.stdout
    assert not marker.exists()
    assert json.loads((cache / CACHE_NAME).read_text())["entries"]  # rebuilt as data
    assert (repo / ".strata" / ".gitignore").read_text().splitlines()[-1] == "*"


def _valid_cache(repo: Path) -> dict[str, object]:
    load(repo, repo)
    data: dict[str, object] = json.loads((repo / ".strata" / "cache" / CACHE_NAME).read_text())
    return data


def _first_attribute(data: dict[str, object]) -> list[object]:
    entries = data["entries"]
    assert isinstance(entries, dict)
    for body in entries.values():
        if body[0]:
            return body[0][0]  # type: ignore[no-any-return]
    raise AssertionError("no attribute in the cache")


def _wrong_type(what: str) -> Callable[[dict[str, object]], object]:
    def damage(data: dict[str, object]) -> object:
        attribute = _first_attribute(data)
        expr = attribute[1]
        assert isinstance(expr, list)
        if what == "tag":
            expr[0] = 99
        elif what == "line":
            expr[1] = "1"
        elif what == "operator":
            attribute[1] = [10, 1, "**", [0, 1, 2], [0, 1, 3]]
        elif what == "literal":
            attribute[1] = [0, 1, {"a": 1}]
        elif what == "name":
            attribute[0] = 7
        elif what == "deep":
            deep: list[object] = [0, 1, 1]
            for _ in range(MAX_NESTING + 5):
                deep = [2, 1, [deep]]
            attribute[1] = deep
        return data
    return damage


@pytest.mark.parametrize("damage", [
    pytest.param(lambda data: b"\x80\x04garbage", id="not-json"),
    pytest.param(lambda data: b"[" * 200_000, id="json-nested-200000-deep"),
    pytest.param(lambda data: [1, 2, 3], id="a-list"),
    pytest.param(lambda data: {**data, "entries": [1]}, id="entries-not-an-object"),
    pytest.param(lambda data: {**data, "entries": {k: "x" for k in data["entries"]}}, id="trees-are-strings"),
    pytest.param(_wrong_type("tag"), id="unknown-node-tag"),
    pytest.param(_wrong_type("line"), id="line-is-a-string"),
    pytest.param(_wrong_type("operator"), id="unknown-operator"),
    pytest.param(_wrong_type("literal"), id="literal-is-an-object"),
    pytest.param(_wrong_type("name"), id="attribute-name-is-a-number"),
    pytest.param(_wrong_type("deep"), id="tree-deeper-than-the-parser-allows"),
])
def test_a_damaged_or_hostile_cache_is_ignored_and_rebuilt(
        tmp_path: Path, damage: Callable[[dict[str, object]], object]) -> None:
    write_tree(tmp_path, {"strata.hcl": ROOT + 'locals { a = 1 + 2 }\n', "app/strata.hcl": STACK +
                          'inputs = { x = local.a, y = "${local.a}-z" }\n'})
    data = _valid_cache(tmp_path)
    damaged = damage(data)
    cache_file = tmp_path / ".strata" / "cache" / CACHE_NAME
    cache_file.write_bytes(damaged if isinstance(damaged, bytes) else json.dumps(damaged).encode())
    repo = load(tmp_path, tmp_path)
    assert repo.errors == []
    assert repo.stacks["app"].inputs["x"].plain() == 3
    assert repo.stacks["app"].inputs["y"].plain() == "3-z"
    assert ParseCache(cache_file).entries  # rewritten, and readable again


def test_a_cache_that_is_a_fifo_or_a_device_is_not_read(tmp_path: Path, strata: Strata) -> None:
    repo = write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK})
    (repo / ".strata" / "cache").mkdir(parents=True)
    os.mkfifo(repo / ".strata" / "cache" / CACHE_NAME)
    result = strata("ls", cwd=repo, timeout=30)
    assert result.code == 0, result.output
    assert "app" in result.stdout


def test_the_built_parser_is_cached_only_in_a_folder_of_the_users_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lark's default is a pickle in the shared temporary folder, under a name anyone can predict
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = _grammar_cache("grammar")
    assert path is not None and path.parent == tmp_path / "strata"
    assert (tmp_path / "strata").stat().st_mode & 0o777 == 0o700
    path.write_bytes(b"planted")
    path.chmod(0o666)
    assert _grammar_cache("grammar") is None  # a file others can write is not loaded
    path.chmod(0o600)
    (tmp_path / "strata").chmod(0o777)
    assert _grammar_cache("grammar") is None  # nor one in a folder others can write to
    (tmp_path / "strata").chmod(0o700)
    assert _grammar_cache("grammar") == path


def test_the_encoding_gives_back_the_same_tree() -> None:
    text = ('a = [for k, v in local.m : "${k}=${v}" if v != null]\nb = {for x in y : x.n => x... }\n'
            'c = !true ? -1 : (2 * 3 % 4)\nd = f(g.h[0]["k"], i[*].j, l.*.m...)\ne = <<EOT\nx ${1}\nEOT\n'
            'f = { (local.k) = 1, "s" = 2.5, t = null }\nblk "l1" "l2" { inner { z = 1 } }\n')
    body = parse_text(text, "t.hcl")
    assert decode(json.loads(json.dumps(encode(body)))) == body


# -- 9: every input ends in a message with file:line ------------------------------------------------

NESTINGS = {
    "parentheses": ("(" * DEEP) + "1" + (")" * DEEP),
    "objects": ("{a = " * DEEP) + "1" + ("}" * DEEP),
    "lists": ("[" * DEEP) + "1" + ("]" * DEEP),
    "interpolations": ('"${' * DEEP) + "1" + ('}"' * DEEP),
    "conditionals": ("true ? " * DEEP) + "1" + (" : 2" * DEEP),
    "for": ("[for a in " * DEEP) + "[1]" + (" : a]" * DEEP),
    "calls": ("abs(" * DEEP) + "1" + (")" * DEEP),
    "plus": ("1 + " * DEEP) + "1",
    "index": "local.a" + ("[0]" * DEEP),
    "heredoc": "<<EOT\n${" + ("(" * DEEP) + "1" + (")" * DEEP) + "}\nEOT",
}


def test_expressions_nested_10000_deep_are_an_error_at_their_line(tmp_path: Path, strata: Strata) -> None:
    files = {"strata.hcl": ROOT}
    for name, expr in NESTINGS.items():
        files[f"{name}/strata.hcl"] = f"stack {{}}\nlocals {{\n  unused = {expr}\n}}\n"
    files["blocks/strata.hcl"] = "stack {}\n" + "a {\n" * DEEP + "}\n" * DEEP
    write_tree(tmp_path, files)
    result = strata("validate", cwd=tmp_path)
    assert result.code == 1
    errors = errors_of(result)
    for name in NESTINGS:
        line = 4 if name == "heredoc" else 3  # the heredoc's interpolation is on the line below
        assert f"nested too deeply (more than {MAX_NESTING} levels)" in errors.get(f"{name}/strata.hcl:{line}", ""), \
            (name, result.output)
    assert "nested too deeply" in errors["blocks/strata.hcl:102"]


def test_values_that_cannot_be_handled_are_an_error_at_their_line(tmp_path: Path, strata: Strata) -> None:
    deep_json = "[" * 3000 + "]" * 3000
    cases = {
        "self-name": ('stack { name = strata.stack.name }\n', 1, "the stack name depends on itself"),
        "flatten-json": (f'stack {{}}\nlocals {{ x = flatten(jsondecode("{deep_json}")) }}\n', 2,
                         "nested too deeply"),
        "flatten-deep": ('stack {}\nlocals { x = flatten(jsondecode("' + "[" * 150 + "]" * 150 + '")) }\n', 2,
                         "nested too deeply"),
        "beyond-unicode": ('stack {}\nlocals { x = "\\U00110000" }\n', 2, "is not a Unicode character"),
        "lone-surrogate": ('stack {}\ninputs = { x = "\\uD800" }\n', 2, "half of a surrogate pair"),
        "json-surrogate": ('stack {}\ninputs = { x = jsondecode("\\"\\\\ud800\\"") }\n', 2,
                           "half of a surrogate pair"),
        "huge-integer": ("stack {}\nlocals { x = " + "9" * 5000 + " }\n", 2, "too large"),
        "huge-index": ("stack {}\nlocals { x = [1][1e999] }\n", 2, "the number 1e999 is too large"),
        "not-finite": ('stack {}\ninputs = { x = tonumber("1e999"), y = 1 }\n', 2, "not finite"),
        "huge-product": ("stack {}\nlocals {\n x = " + " * ".join(["99999999999999999999"] * 60) + "\n}\n", 3,
                         "too large"),
        "huge-format": ('stack {}\nlocals { x = format("%.999999999f", 1) }\n', 2, "not supported"),
        "long-chain": ("stack {}\nlocals {\n" + "".join(f"  a{i} = local.a{i + 1}\n" for i in range(3000))
                       + "  a3000 = 1\n}\n", 102, "more than 100 levels deep"),
        "doubling-string": ('stack {}\nlocals {\n  a0 = "xxxxxxxxxxxxxxxx"\n'
                            + "".join(f'  a{i + 1} = "${{local.a{i}}}${{local.a{i}}}"\n' for i in range(40))
                            + "}\n", 22, "too long"),
        "nested-for": ("stack {}\nlocals {\n  cube = [for a in range(1000) : [for b in range(1000) : "
                       "[for c in range(1000) : c]]]\n}\n", 3, "iterate more than 1000000 times"),
        "doubling-list": ("stack {}\nlocals {\n  a0 = [1, 2, 3, 4]\n"
                          + "".join(f"  a{i + 1} = concat(local.a{i}, local.a{i})\n" for i in range(40))
                          + "}\n", 21, "too big"),
    }
    files = {"strata.hcl": ROOT, **{f"{name}/strata.hcl": text for name, (text, _, _) in cases.items()}}
    write_tree(tmp_path, files)
    result = strata("validate", cwd=tmp_path, timeout=120)
    assert result.code == 1
    errors = errors_of(result)
    for name, (_, line, words) in cases.items():
        assert words in errors.get(f"{name}/strata.hcl:{line}", ""), (name, result.output)
    generated = strata("generate", cwd=tmp_path)  # the surrogate used to pass validate and crash here
    assert generated.code == 1
    assert "lone-surrogate/strata.hcl:2" in generated.output


def test_a_surrogate_pair_written_as_two_escapes_is_one_character() -> None:
    body = parse_text('a = "\\uD83D\\uDE00"\n', "t.hcl")
    expr = body.attributes[0].expr
    assert getattr(expr, "value", None) == "\U0001F600"


def test_a_corrupt_version_in_the_binary_cache_is_read_again(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    real = os.path.realpath(terraform)
    st = os.stat(real)
    key = f"{real}:{st.st_size}:{st.st_mtime_ns}"
    expected = find_binary("terraform", None).version
    for corrupt in (["not a version", "terraform"], ["1.2", 7], "1.5.0", ["9" * 5000 + ".1", "terraform"],
                    ["1.5.0", "evil"], None):
        (tmp_path / "binaries.json").write_text(json.dumps({key: corrupt}))
        assert find_binary("terraform", tmp_path).version == expected
        assert _cached(tmp_path, key)[0] == ".".join(map(str, expected))
    (tmp_path / "binaries.json").write_text("[1, 2]")
    assert find_binary("terraform", tmp_path).version == expected


def _cached(folder: Path, key: str) -> list[str]:
    entry: list[str] = json.loads((folder / "binaries.json").read_text())[key]
    return entry


# -- 10: no hang, no exhaustion ----------------------------------------------------------------------


def test_a_megabyte_heredoc_and_a_megabyte_of_blank_lines_parse_in_linear_time() -> None:
    parse_text("a = 1\n", "warm.hcl")  # load the grammar first
    heredoc = "a = <<EOT\n" + ("x" * 63 + "\n") * (1024 * 1024 // 64) + "EOT\nb = 2\n"
    blank = "\n" * (2 * 1024 * 1024) + "a = 1\nb = c\n"
    started = time.perf_counter()
    body = parse_text(heredoc, "heredoc.hcl")
    heredoc_time = time.perf_counter() - started
    assert body.attributes[1].line == 1024 * 1024 // 64 + 3
    started = time.perf_counter()
    body = parse_text(blank, "blank.hcl")
    blank_time = time.perf_counter() - started
    assert [a.line for a in body.attributes] == [2 * 1024 * 1024 + 1, 2 * 1024 * 1024 + 2]
    # generous guards against the quadratic parse (14 s and 15 s before the fix; about 0.2 s after)
    assert heredoc_time < 5, heredoc_time
    assert blank_time < 5, blank_time


def test_a_big_file_nested_too_deeply_fails_before_the_long_parse() -> None:
    parse_text("a = 1\n", "warm.hcl")
    text = "a = 1\nb = " + "(" * 1_000_000 + "1" + ")" * 1_000_000 + "\n"
    started = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "deep.hcl")
    elapsed = time.perf_counter() - started
    assert str(caught.value) == f"deep.hcl:2: expressions are nested too deeply (more than {MAX_NESTING} levels)"
    assert elapsed < 10, elapsed  # a generous guard: 30 s when the parser had to get through it first
    wide = "x = [\n" + "  [[[1]]],\n" * 10_000 + "]\n" + "y = " + '"${"${"${1}"}"}"' + "\n"
    assert len(parse_text(wide, "wide.hcl").attributes) == 2  # long and shallow is fine


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-zero", "dangling-link"])
def test_a_stack_strata_hcl_that_is_not_a_regular_file_is_an_error(
        tmp_path: Path, strata: Strata, kind: str) -> None:
    write_tree(tmp_path, {"strata.hcl": ROOT, "app/web/strata.hcl": STACK,
                          "app/strata.hcl": "dependencies = []\n"})
    config = tmp_path / "app" / "strata.hcl"
    config.unlink()
    words = {"folder": "it is a folder", "fifo": "it is a named pipe (FIFO)", "dev-zero": "it is a device",
             "dangling-link": "it is a symbolic link to 'nowhere', which does not exist"}[kind]
    if kind == "folder":
        config.mkdir()
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "dev-zero":
        config.symlink_to("/dev/zero")
    else:
        config.symlink_to("nowhere")
    result = strata("validate", cwd=tmp_path, timeout=30)
    assert result.code == 1
    assert f"app/strata.hcl: error: cannot read: {words}" in result.output
    listed = strata("ls", cwd=tmp_path, timeout=30)
    assert listed.code == 1
    assert "app/strata.hcl" in listed.output


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_root_strata_hcl_that_is_not_a_regular_file_says_so(tmp_path: Path, strata: Strata, kind: str) -> None:
    config = tmp_path / "strata.hcl"
    if kind == "folder":
        config.mkdir()
    else:
        os.mkfifo(config)
    result = strata("ls", cwd=tmp_path, timeout=30)
    assert result.code == 1
    assert "not inside a strata repository" not in result.output
    assert f"{config}: cannot read: it is a" in result.output


def test_a_file_over_the_size_limit_is_an_error_that_names_the_setting(tmp_path: Path, strata: Strata) -> None:
    write_tree(tmp_path, {"strata.hcl": ROOT, "app/strata.hcl": STACK + "# " + "x" * 2000 + "\n",
                          "small/strata.hcl": STACK})
    result = strata("validate", cwd=tmp_path, env={"STRATA_MAX_FILE_SIZE": "1K"})
    assert result.code == 1
    assert ("app/strata.hcl: error: the file is too big (2012 bytes; the limit is 1 KiB, set "
            "STRATA_MAX_FILE_SIZE to change it)") in result.output, result.output
    assert "small" not in errors_of(result)
    assert strata("validate", cwd=tmp_path, env={"STRATA_MAX_FILE_SIZE": "lots"}).code == 64
    read = write_tree(tmp_path / "file", {"strata.hcl": ROOT, "app/strata.hcl": STACK +
                                          'locals { z = file("/dev/zero") }\n'})
    result = strata("validate", cwd=read, timeout=30)
    assert "app/strata.hcl:2: error: file(): cannot read '/dev/zero': it is a device" in result.output


def test_a_ten_megabyte_name_is_not_echoed_whole(tmp_path: Path, strata: Strata) -> None:
    name = "x" * 10_000_000
    write_tree(tmp_path, {"strata.hcl": ROOT, "a/strata.hcl": f"stack {{}}\n{name} = 1\n",
                          "b/strata.hcl": f"stack {{}}\nlocals {{ y = local.{name} }}\n",
                          "c/strata.hcl": f"stack {{}}\nlocals {{ y = {name}(1) }}\n",
                          "d/strata.hcl": f"stack {{}}\n{name}\n"})
    result = strata("validate", cwd=tmp_path, env={"STRATA_MAX_FILE_SIZE": "16M"})
    assert result.code == 1
    assert len(result.output) < 4000, result.output[:4000]
    assert set(errors_of(result)) == {"a/strata.hcl:2", "b/strata.hcl:2", "c/strata.hcl:2", "d/strata.hcl:2"}
