"""Fuzzing the configuration: seeded mutations of the example's strata.hcl files.

Each case mutates one strata.hcl of a copy of ``examples/layered`` (lines deleted, duplicated or
swapped, tokens inserted, truncation, byte flips, names replaced, lines borrowed from other files...)
and runs ``strata validate --json`` and ``strata generate --check`` in this process through
:func:`strata.main.main`, the one place that turns errors into output. Whatever the mutation:
- no traceback and no "internal error" (main prints that for anything that is not a StrataError),
- no case runs longer than 10 s,
- every error names a file.

The seed is fixed, so a run is repeatable; ``STRATA_FUZZ_SEED=<n>`` explores other mutations and
``STRATA_FUZZ_CASES=<n>`` changes their number (300 by default). A failure prints the seed, the case
and the mutated text. Crashers found this way are kept below as fixed regression cases.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from conftest import EXAMPLE
from strata.main import main

SEED = int(os.environ.get("STRATA_FUZZ_SEED", "20261203"))
CASES = int(os.environ.get("STRATA_FUZZ_CASES", "300"))
TIME_LIMIT = 10  # seconds per case

TOKENS = [
    "${", "}", "{", "[", "]", "(", ")", '"', "\\", "\\u", "\\uD800", "\\U00110000", "\\x", "%", "%{", "%%{",
    "$${", "=", "==", ",", ":", "?", "=>", "...", ".", "*", "[*]", "/", "-", "!", "&&", "||", "#", "//",
    "/*", "*/", "\n", "\t", "\r", "\r\n", " ", "\x00", "\ufeff", "é", "🙂", "\u2028",
    "<<EOT\n", "\nEOT\n", "<<-EOT\n  x\n  EOT\n", "9" * 400, "1e999", "-1e999", "0x10", "1.5e", "007",
    "null", "true", "false", "local.", "local.missing", "strata.stack.name", "strata.stack.state_key",
    "strata.environment", "dependency.vpc.outputs.id", "dependency", "var.x", "each.value",
    "nosuchfunction(1)", 'format("%.999999999f", 1)', 'format("%999999999d", 1)', 'format("%s")',
    'jsondecode("[[[[")', 'jsondecode("\\"\\\\ud800\\"")', 'file("/dev/zero")', 'file("../../../etc/passwd")',
    'file("nope")', "try(", "can(", "[for x in range(3) : x]", "{for k, v in {} : k => v}",
    "range(1e9)", "range(0, 10, 0)", "element([], 0)", "lookup({}, \"k\")", "cidrsubnet(\"10.0.0.0/8\", 99, 1)",
    "flatten(", "merge(", "concat(", "split(", "replace(", "jsonencode(", "base64decode(\"!!\")",
    "(" * 150 + "1" + ")" * 150, "[" * 120, "{a=" * 120 + "1" + "}" * 120, '"${' * 120,
    "stack {}", "strata {}", "locals {", "backend \"s3\" {", "dependency \"x\" {", "inputs = {",
    "dependencies = [\"../..\"]", "name = \"\"", "tags = [1]", "environment = 1", "region = null",
]
# Right-hand sides: valid syntax that evaluation must refuse politely (or accept).
EXPRESSIONS = [
    "local", "strata", "strata.stack", "dependency", "local.missing", "strata.nope", "strata.stack.nope",
    "strata.stack.name", "strata.stack.state_key", "strata.environment", "local.environment_netnum",
    "null", "true", "1e999", "-1e999", "9" * 300, '"\\uDFFF"', '"\\U0010FFFF"', "[]", "{}", "[null]",
    "{ (null) = 1 }", "{ (local) = 1 }", "[1][1e999]", "[1][-1]", '{a = 1}["b"]', "{a = 1}.b", "null.a",
    "null[*].a", "1 / 0", "1 % 0", "-true", "!1", "true && 1", '"a" + 1', "1 == true", "1 < null",
    "[for x in null : x]", "[for x in 1 : x]", "{for x in [1, 1] : x => x}", "[for x in [1] : x if 1]",
    "merge(1)", "merge(null, {})", "concat([], 1)", "flatten(1)", "join(\",\", [[1]])", "keys([])",
    "lookup(1, 2)", "element([1], 1e999)", "slice([1], 2, 1)", "range(1e9)", "range(-1e999)",
    "cidrsubnet(\"x\", 1, 1)", "cidrsubnet(\"10.0.0.0/8\", -1, 0)", "cidrhost(\"10.0.0.0/8\", 1e999)",
    "cidrsubnets(\"10.0.0.0/8\", 99)", "cidrnetmask(\"::/0\")", 'format("%d", 1.5)', 'format("%q", [])',
    'format("%.99999999999999999999f", 1)', 'format("%t", 1)', 'format("%z", 1)', "substr(\"abc\", 1e999, 1)",
    "tonumber(\"x\")", "tonumber(\"1e999\")", "tobool(1)", "jsondecode(\"x\")", "jsondecode(1)",
    "jsondecode(\"1e999\")", "jsondecode(\"" + "9" * 5000 + "\")", "base64decode(\"/w==\")",
    'replace("a", "/(/", "")', 'regex("a")', "abs(\"x\")", "ceil(1e999)", "floor(-1e999)", "max()",
    "min([])", "sort([[]])", "distinct(1)", "zipmap([1], [])", "coalesce()", "toset([[], []])",
    "try()", "try(local.missing)", "can(nosuch())", "try(nosuch(), 1)", "file(1)", "file(\"/\")",
    "fileexists(\"/dev/zero\")", "length(1)", "reverse(null)", "tomap([])", "upper([])", "x...",
    "f(1...)", "merge([]...)", "concat([[1], [2]]...)", "split(\"\", \"abc\")", "title(1)",
]
WORDS = ["local", "strata", "stack", "locals", "inputs", "backend", "dependency", "dependencies", "path",
         "name", "environment", "region", "layer", "client", "account_id", "cloud", "mock_outputs", "outputs",
         "bucket", "key", "merge", "lookup", "format", "try", "for", "in", "if", "null", "x" * 300, "_", "a-b"]


class Hang(Exception):
    """A case ran longer than the time limit."""


def _mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = data.split(b"\n")
    kind = rng.randrange(12)
    if kind == 0 and len(lines) > 1:  # delete a line
        del lines[rng.randrange(len(lines))]
        return b"\n".join(lines)
    if kind == 1:  # duplicate a line
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        return b"\n".join(lines)
    if kind == 2 and len(lines) > 1:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    if kind in (3, 4):  # insert a token
        at = rng.randrange(len(data) + 1)
        return data[:at] + rng.choice(TOKENS).encode("utf-8") + data[at:]
    if kind == 5:  # truncate
        return data[:rng.randrange(len(data) + 1)]
    if kind == 6 and data:  # flip bytes
        out = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out)
    if kind == 7:  # replace a word
        words = [w for w in data.replace(b"\n", b" ").split(b" ") if w.isalnum()]
        if words:
            word = rng.choice(words)
            return data.replace(word, rng.choice(WORDS).encode(), rng.choice((1, -1)))
    if kind == 8:  # borrow a line from another file
        donor = rng.choice(corpus).split(b"\n")
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(donor))
        return b"\n".join(lines)
    if kind in (10, 11):  # a valid expression that evaluation must refuse politely (or accept)
        assigned = [i for i, line in enumerate(lines) if b" = " in line]
        if assigned:
            i = rng.choice(assigned)
            lines[i] = lines[i].split(b" = ", 1)[0] + b" = " + rng.choice(EXPRESSIONS).encode("utf-8")
            return b"\n".join(lines)
    if kind == 9:  # a whole token soup line
        soup = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 6)))
        lines.insert(rng.randrange(len(lines) + 1), soup.encode("utf-8"))
        return b"\n".join(lines)
    return data + rng.choice(TOKENS).encode("utf-8")


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _strata(*args: str) -> tuple[int, str, str]:
    """``strata ARGS`` in this process, as the console script runs it: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "layered"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".strata", ".terraform*", "strata_*"))
    return root


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATA_DEBUG", raising=False)  # it makes main() raise instead of reporting
    monkeypatch.setenv("NO_COLOR", "1")


def check_case(root: Path, what: str) -> str:
    """Validate and generate the repository at ``root``; assert what main() guarantees.

    Returns how far the case got: "no repository", "syntax" (a file did not parse), "evaluation"
    (errors found while evaluating) or "valid".
    """
    started = time.perf_counter()
    with _time_limit(TIME_LIMIT):
        code, stdout, stderr = _strata("-C", str(root), "validate", "--json")
        gen_code, gen_stdout, gen_stderr = _strata("-C", str(root), "generate", "--check")
    elapsed = time.perf_counter() - started
    for text in (stdout + stderr, gen_stdout + gen_stderr):
        assert "Traceback" not in text, f"{what}\n{text}"
        assert "internal error" not in text, f"{what}\n{text}"
    assert elapsed < TIME_LIMIT, what
    assert code in (0, 1, 64) and gen_code in (0, 1, 64), f"{what}\n{stderr}{gen_stderr}"
    if not stdout.startswith("{"):  # no repository: the root strata.hcl lost its block, or cannot be read
        assert code in (1, 64) and "strata.hcl" in stderr, f"{what}\n{stdout}{stderr}"
        return "no repository"
    report = json.loads(stdout)
    for diag in report["diagnostics"]:
        if diag["severity"] == "error":
            assert diag["file"], f"{what}\nan error without a file: {diag}"
    for line in gen_stdout.splitlines() + gen_stderr.splitlines():
        if ": error: " in line:
            where = line.split(": error: ")[0]  # a strata.hcl, or the .tf declaring a variable nothing sets
            assert re.search(r"(strata\.hcl|\.tf(\.json)?):\d+$", where), f"{what}\nan error without a file: {line}"
    if not report["errors"]:
        return "valid"
    return "syntax" if any("syntax error" in d["message"] for d in report["diagnostics"]) else "evaluation"


def test_seeded_mutations_of_the_example_never_crash(example: Path) -> None:
    files = sorted(example.rglob("strata.hcl"))
    originals = {path: path.read_bytes() for path in files}
    corpus = list(originals.values())
    rng = random.Random(SEED)
    assert check_case(example, "the example itself") == "valid"
    reached: Counter[str] = Counter()
    for case in range(CASES):
        path = rng.choice(files)
        data = originals[path]
        for _ in range(rng.randint(1, 3)):
            data = _mutate(rng, data, corpus)
        path.write_bytes(data)
        try:
            what = (f"STRATA_FUZZ_SEED={SEED} case {case}: {path.relative_to(example)} became:\n"
                    f"{data[:2000]!r}")
            reached[check_case(example, what)] += 1
        finally:
            path.write_bytes(originals[path])
    print(f"STRATA_FUZZ_SEED={SEED}: {CASES} cases: {dict(reached)}")
    # the mutations must reach past the parser, or the evaluator goes untested
    assert reached["evaluation"] + reached["valid"] >= CASES // 4, dict(reached)


# Crashers found by the fuzzer (and by hand), kept as fixed cases: (file, text).
REGRESSIONS: list[tuple[str, str]] = [
    ("production/strata.hcl", 'environment = "production"\nlocals { x = "\\uD800" }\n'),
    # seed 3, case 33: `strata` alone was a value, and generate could not write it
    ("production/strata.hcl", 'environment = "production"\ninputs = { multi_az = strata }\n'),
    ("production/strata.hcl", 'environment = "production"\ninputs = { all = local, info = strata.stack }\n'),
]


@pytest.mark.parametrize(("rel", "text"), REGRESSIONS)
def test_crashers_found_by_fuzzing_stay_fixed(example: Path, rel: str, text: str) -> None:
    path = example / rel
    original = path.read_bytes()
    path.write_text(text, encoding="utf-8")
    try:
        check_case(example, f"{rel} became:\n{text}")
    finally:
        path.write_bytes(original)

