"""Parse every strata.hcl once per run, and cache the syntax trees by content hash between runs.

The cache is one pickle file under ``.strata/cache``. A file whose bytes are unchanged is never
parsed again; the cache holds only the files seen by the last run, so it does not grow without end.
When many files are new (a cold run on a large repository), they are parsed by a pool of worker
processes, one per CPU.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from strata import __version__
from strata.config import ast
from strata.config.parse import parse_text
from strata.errors import ConfigError, Source

CACHE_FORMAT = 2
PARALLEL_THRESHOLD = 150  # below this many uncached files, a process pool costs more than it saves

ParseResult = ast.Body | ConfigError


def _format_key() -> tuple[object, ...]:
    """Trees from another strata, or from an edited parser (an editable install), are never reused."""
    here = Path(__file__).parent
    stamps = []
    for name in ("ast.py", "parse.py"):
        try:
            st = (here / name).stat()
            stamps.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stamps.append((0, 0))
    return (CACHE_FORMAT, __version__, *stamps)


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class ParseCache:
    """Syntax trees keyed by the content hash of the file they were parsed from."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[bytes, ast.Body] = {}
        self.used: dict[bytes, ast.Body] = {}
        self.dirty = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            with path.open("rb") as handle:
                data = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
            return
        if isinstance(data, dict) and data.get("format") == _format_key():
            entries = data.get("entries")
            if isinstance(entries, dict):
                self.entries = entries

    def parse_all(self, files: list[tuple[str, bytes]]) -> list[ParseResult]:
        """Parse ``(display_name, content)`` pairs; results in the same order."""
        results: list[ParseResult | None] = [None] * len(files)
        misses: list[int] = []
        keys = [digest(content) for _, content in files]
        for i, key in enumerate(keys):
            body = self.entries.get(key)
            if body is None:
                misses.append(i)
            else:
                results[i] = body
                self.used[key] = body
        if misses:
            todo = [(files[i][0], files[i][1]) for i in misses]
            for i, parsed in zip(misses, _parse_many(todo), strict=True):
                results[i] = parsed
                if isinstance(parsed, ast.Body):
                    self.used[keys[i]] = parsed
                    self.dirty = True
        if len(self.used) != len(self.entries):
            self.dirty = True
        return [r for r in results if r is not None]

    def save(self) -> None:
        """Write the trees used by this run (atomically); a read-only repository is not an error."""
        if self.path is None or not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".parse-", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                pickle.dump({"format": _format_key(), "entries": self.used}, handle,
                            protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except OSError:
            return


def _parse_one(item: tuple[str, bytes]) -> tuple[str, Any, int]:
    name, content = item
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return ("error", "the file is not UTF-8 text", 1)
    try:
        return ("ok", parse_text(text, name), 0)
    except ConfigError as exc:
        return ("error", exc.message, exc.source.line)


def _parse_many(items: list[tuple[str, bytes]]) -> list[ParseResult]:
    raw: list[tuple[str, Any, int]]
    workers = min(os.cpu_count() or 1, 8)
    if len(items) >= PARALLEL_THRESHOLD and workers > 1 and _can_fork():
        import multiprocessing

        from strata.config.parse import _lark_parser

        _lark_parser()  # load the grammar once, before forking, so every worker inherits it
        chunk = max(16, len(items) // (workers * 4))
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            raw = pool.map(_parse_one, items, chunksize=chunk)
    else:
        raw = [_parse_one(item) for item in items]
    out: list[ParseResult] = []
    for (name, _), (status, value, line) in zip(items, raw, strict=True):
        out.append(value if status == "ok" else ConfigError(value, Source(name, line or 1)))
    return out


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods() and os.environ.get("STRATA_NO_FORK") != "1"
