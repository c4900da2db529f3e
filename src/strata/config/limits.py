"""The bounds on what a strata.hcl may ask for, in one place.

A configuration comes from the repository, and in CI from an untrusted pull request, so every size
strata works with is bounded: a file that is too big, an expression nested too deeply or a value
that grows without end is a :class:`~strata.errors.ConfigError` naming the file and line, never a
hang, a crash or an exhausted machine.
"""

from __future__ import annotations

import os
import re

from strata.errors import UsageError

ENV_MAX_FILE_SIZE = "STRATA_MAX_FILE_SIZE"
DEFAULT_MAX_FILE_SIZE = 1024 * 1024  # bytes: a strata.hcl, or a file read with file() (parsing is ~10 s/MiB at worst)
MAX_NESTING = 100  # brackets, calls, operators, conditionals, for and ${ } inside one another
MAX_LOCAL_CHAIN = 100  # locals that read locals that read locals...
MAX_STRING = 4 * 1024 * 1024  # characters in a string value
MAX_ITEMS = 1_000_000  # elements in a list or object value
MAX_ITERATIONS = 1_000_000  # for-expression iterations while one stack is evaluated
MAX_FORMAT_WIDTH = 10_000  # width and precision in format() verbs
MAX_NUMBER_BITS = 1024  # about 308 decimal digits, the range of a double
MAX_CODE_SIZE = 64 * 1024 * 1024  # bytes in one Terraform code file strata reads or hashes (.tf, .tfvars, lock file)
MAX_STATE_SIZE = 512 * 1024 * 1024  # bytes: far above any real state, far below what would exhaust the memory
ECHO_LIMIT = 80  # characters of the user's text repeated in a message

_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def max_file_size() -> int:
    """The largest strata.hcl (or file() argument) strata reads: ``$STRATA_MAX_FILE_SIZE`` or 1 MiB."""
    text = os.environ.get(ENV_MAX_FILE_SIZE, "")
    if not text:
        return DEFAULT_MAX_FILE_SIZE
    match = _SIZE.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise UsageError(f"${ENV_MAX_FILE_SIZE} must be a size in bytes, e.g. 2097152 or 2M; got {shorten(text)!r}")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _UNITS[unit]


def describe_size(size: int) -> str:
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} bytes"


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` as repeated in a message: at most ``limit`` characters, with how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def one_line(text: str) -> str:
    """``text`` without line breaks or control characters, for text from the repository (a skip's reason, a
    policy check's name) printed in CI logs, where a line of its own could be read as a command (``::error::``,
    ``##vso[...]``) and an escape sequence could rewrite the screen."""
    return " ".join(_CONTROL.sub(" ", text).split())
