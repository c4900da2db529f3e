"""What the user sees while stacks run: a live view on a terminal, whole prefixed lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol

from strata.scheduler import Outcome


class Display(Protocol):
    def start(self, path: str) -> None: ...
    def line(self, path: str, text: str) -> None: ...
    def finish(self, path: str, outcome: Outcome) -> None: ...
    def close(self) -> None: ...


class PrefixedLines:
    """Every terraform line as ``<stack>: <line>``, one whole line at a time (never interleaved)."""

    def __init__(self, quiet: bool = False) -> None:
        self._lock = threading.Lock()
        self.quiet = quiet

    def _write(self, text: str) -> None:
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def start(self, path: str) -> None:
        self._write(f"{path or '.'}: strata: started")

    def line(self, path: str, text: str) -> None:
        if not self.quiet:
            self._write(f"{path or '.'}: {text}")

    def finish(self, path: str, outcome: Outcome) -> None:
        detail = f" ({outcome.detail})" if outcome.detail else ""
        self._write(f"{path or '.'}: strata: {outcome.status} in {outcome.duration:.1f}s{detail}")

    def close(self) -> None:
        pass


class LiveView:
    """On a terminal: the running stacks with their elapsed time, and how many wait or are done."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.live import Live

        self.total = total
        self.running: dict[str, float] = {}
        self.finished: dict[str, Outcome] = {}
        self._lock = threading.Lock()
        self.console = Console(stderr=True)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=True,
                         get_renderable=self._render)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        with self._lock:
            table = Table(box=None, show_header=False, pad_edge=False)
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
        pass  # the full output is in the stack's log file

    def finish(self, path: str, outcome: Outcome) -> None:
        with self._lock:
            self.running.pop(path, None)
            self.finished[path] = outcome
        color = {"ok": "green", "changes": "yellow", "skipped": "dim"}.get(outcome.status, "red")
        detail = f" ({outcome.detail})" if outcome.detail else ""
        self.console.print(f"[{color}]{outcome.status:>11}[/] {path or '.'} [dim]{outcome.duration:.1f}s{detail}[/]")

    def close(self) -> None:
        self.live.stop()
