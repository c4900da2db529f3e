"""What the user sees while stacks run.

- One stack: terraform's output as terraform prints it (:class:`Passthrough`), strata's own lines on stderr.
- Many stacks on a terminal: the live view of what runs (:class:`LiveView`), and each stack's diff or error
  printed whole once it finishes, never interleaved with another stack's.
- Many stacks otherwise (CI, a pipe): every line as ``<stack>: <line>``, one whole line at a time.

Terraform's ``init``, which strata runs by itself before a stack's first command, is shown only when it fails.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from typing import Any, Protocol, TextIO

from strata.scheduler import Outcome

# Lines of a plan that say nothing about what will change (one per resource read back from the world).
_NOISE = re.compile(r"^\S.*: (Refreshing state\.\.\.|Reading\.\.\.|Read complete after |Still reading\.\.\.)")
# What makes a stack's output worth printing once it finishes: a diff, an apply's result, an error.
_WORTH_SHOWING = ("will perform the following actions", "Changes to Outputs:", "Objects have changed outside",
                  "Apply complete!", "Destroy complete!", "Error: ", "Warning: ")


def write_line(stream: TextIO, text: str) -> bool:
    """Write one line; False once the reader went away (``strata ... | head``): terraform goes on and its
    state is saved, the rest of its output is in the log, and the stack is not failed for it."""
    try:
        stream.write(text + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):
        return False
    return True


class Display(Protocol):
    def start(self, path: str) -> None: ...
    def line(self, path: str, text: str) -> None: ...
    def init_line(self, path: str, text: str) -> None: ...
    def finish(self, path: str, outcome: Outcome) -> None: ...
    def close(self) -> None: ...


def shown_lines(lines: list[str]) -> list[str]:
    """A stack's output as printed after it finishes: without the per-resource refresh lines and the blank
    lines they leave at the start."""
    kept = [line for line in lines if not _NOISE.match(re.sub(r"\x1b\[[0-9;]*m", "", line))]
    while kept and not kept[0].strip():
        kept.pop(0)
    while kept and not kept[-1].strip():
        kept.pop()
    return kept


class PrefixedLines:
    """Every terraform line as ``<stack>: <line>``, one whole line at a time (never interleaved)."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._lock = threading.Lock()
        self.stream = stream or sys.stdout
        self.quiet = quiet

    def _write(self, text: str) -> None:
        with self._lock:
            write_line(self.stream, text)

    def start(self, path: str) -> None:
        self._write(f"{path or '.'}: strata: started")

    def line(self, path: str, text: str) -> None:
        if not self.quiet:
            self._write(f"{path or '.'}: {text}")

    def init_line(self, path: str, text: str) -> None:
        self.line(path, text)

    def finish(self, path: str, outcome: Outcome) -> None:
        detail = f" ({outcome.detail})" if outcome.detail else ""
        self._write(f"{path or '.'}: strata: {outcome.status} in {outcome.duration:.1f}s{detail}")

    def close(self) -> None:
        pass


class Passthrough:
    """One stack: terraform's output on stdout exactly as terraform writes it (so ``strata run STACK --
    output -json | jq`` works), strata's own words on stderr; ``init`` only when it fails. ``stream`` is
    stderr when stdout carries the JSON report."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self._init: list[str] = []
        self._shown = False

    def start(self, path: str) -> None:
        pass

    def line(self, path: str, text: str) -> None:
        self._shown = True
        write_line(self.stream, text)

    def init_line(self, path: str, text: str) -> None:
        self._init.append(text)

    def finish(self, path: str, outcome: Outcome) -> None:
        if outcome.status == "failed" and not self._shown and self._init:
            write_line(self.stream, "\n".join(shown_lines(self._init)))

    def close(self) -> None:
        pass


class LiveView:
    """On a terminal: the running stacks with their elapsed time and how many wait or are done; each
    finished stack's diff or error, whole, above it."""

    def __init__(self, total: int, *, color: bool = True, everything: bool = False) -> None:
        from rich.console import Console
        from rich.live import Live

        self.total = total
        self.everything = everything  # `strata run`: whatever terraform printed is what was asked for
        self.running: dict[str, float] = {}
        self.finished: dict[str, Outcome] = {}
        self.output: dict[str, list[str]] = {}
        self.init_output: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self.console = Console(stderr=True, highlight=False, no_color=not color)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True,
                         get_renderable=self._render)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        with self._lock:
            table = Table(box=None, show_header=False, pad_edge=False)
            table.add_column(justify="right", width=11)
            table.add_column()
            table.add_column(justify="right")
            now = time.monotonic()
            for path, since in sorted(self.running.items()):
                table.add_row("[cyan]running[/]", path or ".", f"{now - since:5.1f}s")
            failed = sum(1 for o in self.finished.values() if o.status in ("failed", "interrupted"))
            waiting = self.total - len(self.running) - len(self.finished)
            table.add_row("", f"[dim]{waiting} waiting, {len(self.finished)} done"
                              f"{f', [red]{failed} failed[/]' if failed else ''}[/]", "")
            return table

    def start(self, path: str) -> None:
        with self._lock:
            self.running[path] = time.monotonic()

    def line(self, path: str, text: str) -> None:
        with self._lock:
            self.output.setdefault(path, []).append(text)

    def init_line(self, path: str, text: str) -> None:
        with self._lock:
            self.init_output.setdefault(path, []).append(text)

    def finish(self, path: str, outcome: Outcome) -> None:
        from rich.text import Text

        with self._lock:
            self.running.pop(path, None)
            self.finished[path] = outcome
            lines = self.output.pop(path, [])
            init = self.init_output.pop(path, [])
        if outcome.status == "failed" and not lines:
            lines = init
        color = {"ok": "green", "changes": "yellow", "skipped": "dim"}.get(outcome.status, "red")
        shown = shown_lines(lines)
        if shown and (self.everything or any(marker in line for line in lines for marker in _WORTH_SHOWING)):
            self.console.rule(Text(f" {path or '.'} ", style="bold"), align="left")
            self.console.print(Text.from_ansi("\n".join(shown)), soft_wrap=True)
        detail = f" ({outcome.detail})" if outcome.detail else ""
        self.console.print(Text.assemble((f"{outcome.status:>11}", color), f" {path or '.'} ",
                                         (f"{outcome.duration:.1f}s{detail}", "dim")))

    def close(self) -> None:
        self.live.stop()
