"""Parse every strata.hcl once per run, and cache the syntax trees by content hash between runs.

The cache is one JSON file, ``.strata/cache/parse.json``: data only, never code, because the folder
sits inside the repository and a pull request can plant a file there. Each tree is encoded as nested
lists with a type tag (see :func:`encode`), and decoding checks every field's type, so a file that is
damaged, hostile or from another version of strata is ignored and rebuilt, never trusted.
A file whose bytes are unchanged is never parsed again; the cache holds only the files seen by the
last run, so it does not grow without end. When many files are new (a cold run on a large
repository), they are parsed by a pool of worker processes, one per CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from strata import __version__
from strata.atomic import SECRET, private_dir, write_atomic
from strata.config import ast
from strata.config.limits import MAX_NESTING, MAX_NUMBER_BITS
from strata.config.parse import parse_text
from strata.errors import ConfigError, Source

CACHE_NAME = "parse.json"
CACHE_FORMAT = 3  # 2 was the pickle file, which is no longer read
MAX_CACHE_SIZE = 512 * 1024 * 1024  # bytes; a bigger file is not read at all
PARALLEL_THRESHOLD = 150  # below this many uncached files, a process pool costs more than it saves

ParseResult = ast.Body | ConfigError


def _format_key() -> list[object]:
    """Trees from another strata, or from an edited parser (an editable install), are never reused."""
    here = Path(__file__).parent
    stamps: list[object] = []
    for name in ("ast.py", "parse.py", "cache.py"):
        try:
            st = (here / name).stat()
            stamps.append([st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append([0, 0])
    return [CACHE_FORMAT, __version__, *stamps]


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ParseCache:
    """Syntax trees keyed by the content hash of the file they were parsed from."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, Any] = {}  # digest -> the encoded tree, decoded when first used
        self.used: dict[str, Any] = {}
        self.dirty = False
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        """Read the cache; anything unexpected leaves it empty (every file is parsed again)."""
        from strata.config.discover import read_config

        try:
            data = json.loads(read_config(path, str(path), MAX_CACHE_SIZE))
        except (ConfigError, ValueError, RecursionError):
            return
        if not isinstance(data, dict) or data.get("format") != _format_key():
            return
        entries = data.get("entries")
        if isinstance(entries, dict):
            self.entries = entries

    def parse_all(self, files: list[tuple[str, bytes]]) -> list[ParseResult]:
        """Parse ``(display_name, content)`` pairs; results in the same order."""
        results: list[ParseResult | None] = [None] * len(files)
        misses: list[int] = []
        keys = [digest(content) for _, content in files]
        for i, key in enumerate(keys):
            encoded = self.entries.get(key)
            body = decode(encoded) if encoded is not None else None
            if body is None:
                misses.append(i)
            else:
                results[i] = body
                self.used[key] = encoded
        if misses:
            todo = [(files[i][0], files[i][1]) for i in misses]
            for i, parsed in zip(misses, _parse_many(todo), strict=True):
                results[i] = parsed
                if isinstance(parsed, ast.Body):
                    self.used[keys[i]] = encode(parsed)
                    self.dirty = True
        if len(self.used) != len(self.entries):
            self.dirty = True
        return [r for r in results if r is not None]

    def save(self) -> None:
        """Write the trees used by this run (atomically); a read-only repository is not an error."""
        if self.path is None or not self.dirty:
            return
        data = json.dumps({"format": _format_key(), "entries": self.used}, separators=(",", ":"))
        try:
            write_atomic(private_dir(self.path.parent) / self.path.name, data.encode("utf-8"),
                         mode=SECRET, durable=False)
        except OSError:
            return


# -- the encoding ------------------------------------------------------------------------------------
#
# Body        [attributes, blocks]
# Attribute   [name, expr, line, reads_dependency]
# Block       [type, labels, body, line]
# expression  [tag, line, fields...] in the order of the dataclass (see _FIELDS)

_TAGS: dict[type, int] = {
    ast.Literal: 0, ast.Template: 1, ast.TupleExpr: 2, ast.ObjectExpr: 3, ast.Traversal: 4, ast.GetAttr: 5,
    ast.Index: 6, ast.Splat: 7, ast.Call: 8, ast.Unary: 9, ast.Binary: 10, ast.Conditional: 11, ast.ForExpr: 12,
}
_UNARY_OPS = frozenset({"!", "-"})
_BINARY_OPS = frozenset({"+", "-", "*", "/", "%", "==", "!=", "<", ">", "<=", ">=", "&&", "||"})


class _Corrupt(Exception):
    """The cached data is not a tree this version of strata wrote."""


def encode(body: ast.Body) -> list[Any]:
    return [[[a.name, _enc(a.expr), a.line, a.reads_dependency] for a in body.attributes],
            [[b.type, b.labels, encode(b.body), b.line] for b in body.blocks]]


def _enc(e: ast.Expr) -> list[Any]:
    if isinstance(e, ast.Literal):
        return [0, e.line, e.value]
    if isinstance(e, ast.Template):
        return [1, e.line, [p if isinstance(p, str) else _enc(p) for p in e.parts]]
    if isinstance(e, ast.TupleExpr):
        return [2, e.line, [_enc(i) for i in e.items]]
    if isinstance(e, ast.ObjectExpr):
        return [3, e.line, [[i.key if isinstance(i.key, str) else _enc(i.key), _enc(i.value), i.line,
                             i.reads_dependency] for i in e.items]]
    if isinstance(e, ast.Traversal):
        return [4, e.line, e.root, _enc_steps(e.steps)]
    if isinstance(e, ast.GetAttr):
        return [5, e.line, _enc(e.obj), e.name]
    if isinstance(e, ast.Index):
        return [6, e.line, _enc(e.obj), _enc(e.key)]
    if isinstance(e, ast.Splat):
        return [7, e.line, _enc(e.obj), _enc_steps(e.steps)]
    if isinstance(e, ast.Call):
        return [8, e.line, e.name, [_enc(a) for a in e.args], e.expand_last]
    if isinstance(e, ast.Unary):
        return [9, e.line, e.op, _enc(e.operand)]
    if isinstance(e, ast.Binary):
        return [10, e.line, e.op, _enc(e.left), _enc(e.right)]
    if isinstance(e, ast.Conditional):
        return [11, e.line, _enc(e.condition), _enc(e.true), _enc(e.false)]
    assert isinstance(e, ast.ForExpr)
    return [12, e.line, e.key_var, e.value_var, _enc(e.collection), None if e.key is None else _enc(e.key),
            _enc(e.value), None if e.condition is None else _enc(e.condition), e.grouping]


def _enc_steps(steps: list[str | ast.Expr]) -> list[Any]:
    return [s if isinstance(s, str) else _enc(s) for s in steps]


def decode(data: Any) -> ast.Body | None:
    """The tree encoded in ``data``, or None when ``data`` is not exactly what :func:`encode` writes."""
    try:
        return _Decoder().body(data, 0)
    except (_Corrupt, RecursionError):
        return None


class _Decoder:
    """Checks every field while it rebuilds the nodes: a cache file is never trusted."""

    def body(self, data: Any, depth: int) -> ast.Body:
        if depth > MAX_NESTING or type(data) is not list or len(data) != 2:
            raise _Corrupt
        attributes, blocks = _list(data[0]), _list(data[1])
        out = ast.Body([], [])
        for item in attributes:
            name, expr, line, reads = _fields(item, 4)
            out.attributes.append(ast.Attribute(_str(name), self.expr(expr, depth + 1), _int(line), _bool(reads)))
        for item in blocks:
            kind, labels, body, line = _fields(item, 4)
            out.blocks.append(ast.Block(_str(kind), [_str(x) for x in _list(labels)], self.body(body, depth + 1),
                                        _int(line)))
        return out

    def expr(self, data: Any, depth: int) -> ast.Expr:
        if depth > MAX_NESTING or type(data) is not list or len(data) < 3:
            raise _Corrupt
        tag, line, *rest = data
        line = _int(line)
        inner = depth + 1
        if tag == 0 and len(rest) == 1:
            value = rest[0]
            if value is not None and type(value) not in (str, int, float, bool):
                raise _Corrupt
            if type(value) is int and value.bit_length() > MAX_NUMBER_BITS:
                raise _Corrupt
            return ast.Literal(value, line)
        if tag == 1 and len(rest) == 1:
            return ast.Template([p if type(p) is str else self.expr(p, inner) for p in _list(rest[0])], line)
        if tag == 2 and len(rest) == 1:
            return ast.TupleExpr([self.expr(i, inner) for i in _list(rest[0])], line)
        if tag == 3 and len(rest) == 1:
            items = []
            for item in _list(rest[0]):
                key, value, item_line, reads = _fields(item, 4)
                items.append(ast.ObjectItem(key if type(key) is str else self.expr(key, inner),
                                            self.expr(value, inner), _int(item_line), _bool(reads)))
            return ast.ObjectExpr(items, line)
        if tag == 4 and len(rest) == 2:
            return ast.Traversal(_str(rest[0]), self.steps(rest[1], inner), line)
        if tag == 5 and len(rest) == 2:
            return ast.GetAttr(self.expr(rest[0], inner), _str(rest[1]), line)
        if tag == 6 and len(rest) == 2:
            return ast.Index(self.expr(rest[0], inner), self.expr(rest[1], inner), line)
        if tag == 7 and len(rest) == 2:
            return ast.Splat(self.expr(rest[0], inner), self.steps(rest[1], inner), line)
        if tag == 8 and len(rest) == 3:
            return ast.Call(_str(rest[0]), [self.expr(a, inner) for a in _list(rest[1])], _bool(rest[2]), line)
        if tag == 9 and len(rest) == 2 and rest[0] in _UNARY_OPS:
            return ast.Unary(rest[0], self.expr(rest[1], inner), line)
        if tag == 10 and len(rest) == 3 and rest[0] in _BINARY_OPS:
            return ast.Binary(rest[0], self.expr(rest[1], inner), self.expr(rest[2], inner), line)
        if tag == 11 and len(rest) == 3:
            return ast.Conditional(self.expr(rest[0], inner), self.expr(rest[1], inner), self.expr(rest[2], inner),
                                   line)
        if tag == 12 and len(rest) == 7:
            key_var, value_var, coll, key, value, cond, grouping = rest
            if key_var is not None:
                _str(key_var)
            return ast.ForExpr(key_var, _str(value_var), self.expr(coll, inner),
                               None if key is None else self.expr(key, inner), self.expr(value, inner),
                               None if cond is None else self.expr(cond, inner), _bool(grouping), line)
        raise _Corrupt

    def steps(self, data: Any, depth: int) -> list[str | ast.Expr]:
        return [s if type(s) is str else self.expr(s, depth) for s in _list(data)]


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _Corrupt
    return value


def _fields(value: Any, count: int) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise _Corrupt
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise _Corrupt
    return value


def _int(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 31:
        raise _Corrupt
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Corrupt
    return value


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
