"""Printing: colour only on a terminal and never with NO_COLOR/--no-color, JSON, aligned tables.

Every JSON document strata prints goes through :func:`print_json`: it starts with ``format_version``
(:data:`FORMAT_VERSION`, the shapes published in ``docs/schemas/``) and goes where ``--json`` said, stdout
(``--json``, ``--json -``) or a file (``--json FILE``), the same on every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from strata.atomic import SECRET, write_atomic
from strata.errors import Diagnostic, StrataError

_color_disabled = False

# The version of every JSON document strata prints: the minor number grows when fields are added, the major
# one when a field is renamed, retyped or removed. The shapes are docs/schemas/*.schema.json.
FORMAT_VERSION = "1.0"
STDOUT = "-"

# Where --json sends this command's document: None without --json, STDOUT, or a file's path.
_json_target: str | None = None


def disable_color() -> None:
    global _color_disabled
    _color_disabled = True


def color_enabled(stream: TextIO) -> bool:
    if _color_disabled or "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def style(text: str, color: str, stream: TextIO, bold: bool = False) -> str:
    if not color_enabled(stream):
        return text
    codes = {"red": "31", "yellow": "33", "green": "32", "cyan": "36", "dim": "2"}
    prefix = "1;" if bold else ""
    return f"\033[{prefix}{codes[color]}m{text}\033[0m"


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str = "") -> None:
    sys.stderr.write(text + "\n")


def confirm(reason: str, question: str, cancelled: str = "cancelled") -> None:
    """Ask for 'yes' on the terminal; without a terminal, a usage error that says to pass --yes."""
    from strata.errors import UsageError

    if not sys.stdin.isatty():
        raise UsageError(f"{reason}: pass --yes to confirm (there is no terminal to ask)")
    prompt = f"{question} Type 'yes' to go on: "
    if json_on_stdout():  # stdout holds only the JSON document
        sys.stderr.write(prompt)
        sys.stderr.flush()
        prompt = ""
    if input(prompt).strip() != "yes":
        raise UsageError(cancelled)


def send_json_to(target: str | None) -> None:
    """Where :func:`print_json` writes: None (no --json) and ``-`` mean stdout, anything else is a file."""
    global _json_target
    _json_target = target


def json_on_stdout() -> bool:
    """Whether this command's JSON document goes to stdout, so that nothing else may."""
    return _json_target == STDOUT


def json_document(data: dict[str, Any]) -> str:
    """``data`` as strata's JSON text, ``format_version`` first."""
    return json.dumps({"format_version": FORMAT_VERSION, **data}, indent=2) + "\n"


def print_json(data: dict[str, Any]) -> None:
    """The command's JSON document, on stdout or in the --json FILE (0600, written atomically: some documents
    hold values strata otherwise redacts, e.g. `output --json`)."""
    text = json_document(data)
    if _json_target in (None, STDOUT):
        sys.stdout.write(text)
        return
    path = Path(_json_target)
    try:
        write_atomic(path, text.encode("utf-8"), mode=SECRET)
    except OSError as exc:
        raise StrataError(f"cannot write the JSON document to {path}: {exc.strerror or exc}") from None


def print_diagnostics(diagnostics: Iterable[Diagnostic], stream: TextIO | None = None) -> tuple[int, int]:
    """Print ``file:line: severity: message`` lines; returns (errors, warnings)."""
    stream = stream or sys.stderr
    errors = warnings = 0
    for d in diagnostics:
        where = f"{d.source}: " if (d.source.file or d.source.note) else ""
        label = style(d.severity, "red" if d.severity == "error" else "yellow", stream, bold=True)
        stream.write(f"{where}{label}: {d.message}\n")
        if d.severity == "error":
            errors += 1
        else:
            warnings += 1
    return errors, warnings


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; with ``headers=None`` only the rows are printed."""
    columns = len(headers) if headers is not None else max((len(r) for r in rows), default=0)
    widths = [len(h) for h in headers] if headers is not None else [0] * columns
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = [] if headers is None else ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


# Seconds before a slow read gets a note on stderr (a stalled endpoint otherwise looks like a hang).
SLOW_NOTE_AFTER = 3.0


@contextlib.contextmanager
def slow_note(note: str, after: float = SLOW_NOTE_AFTER) -> Iterator[None]:
    """Print ``note`` on stderr if the block is still running after ``after`` seconds."""
    timer = threading.Timer(after, err, args=(f"{note} (still waiting after {after:g} s)",))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
