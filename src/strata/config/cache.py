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
from collections.abc import Callable
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
    """The tree encoded in ``data``, or None when ``data`` is not exactly what :func:`encode` writes.

    Every field's type is checked while the nodes are rebuilt: a cache file is never trusted.
    """
    try:
        return _body(data, 0)
    except (_Corrupt, RecursionError):
        return None


def _body(data: Any, depth: int) -> ast.Body:
    if depth > MAX_NESTING or type(data) is not list or len(data) != 2:
        raise _Corrupt
    out = ast.Body([], [])
    for item in _list(data[0]):
        name, expr, line, reads = _fields(item, 4)
        out.attributes.append(ast.Attribute(_str(name), _expr(expr, depth + 1), _int(line), _bool(reads)))
    for item in _list(data[1]):
        kind, labels, body, line = _fields(item, 4)
        out.blocks.append(ast.Block(_str(kind), [_str(x) for x in _list(labels)], _body(body, depth + 1),
                                    _int(line)))
    return out


def _expr(data: Any, depth: int) -> ast.Expr:
    if type(data) is not list or depth > MAX_NESTING:
        raise _Corrupt
    try:
        build = _DECODERS[data[0], len(data)]
    except (KeyError, TypeError, IndexError):
        raise _Corrupt from None
    line = data[1]
    if type(line) is not int or line < 0:
        raise _Corrupt
    return build(data, line, depth + 1)


def _literal(d: list[Any], line: int, inner: int) -> ast.Expr:
    value = d[2]
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        return ast.Literal(value, line)
    if kind is not int or value.bit_length() > MAX_NUMBER_BITS:
        raise _Corrupt
    return ast.Literal(value, line)


def _object(d: list[Any], line: int, inner: int) -> ast.Expr:
    items = []
    item_type = ast.ObjectItem
    for item in _list(d[2]):
        if type(item) is not list or len(item) != 4:
            raise _Corrupt
        key, value, item_line, reads = item
        if type(item_line) is not int or item_line < 0 or type(reads) is not bool:
            raise _Corrupt
        items.append(item_type(key if type(key) is str else _expr(key, inner), _expr(value, inner), item_line,
                               reads))
    return ast.ObjectExpr(items, line)


def _steps(data: Any, inner: int) -> list[str | ast.Expr]:
    return [s if type(s) is str else _expr(s, inner) for s in _list(data)]


def _operator(value: Any, allowed: frozenset[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise _Corrupt
    return value


def _for(d: list[Any], line: int, inner: int) -> ast.Expr:
    key_var, value_var, coll, key, value, cond, grouping = d[2:]
    return ast.ForExpr(None if key_var is None else _str(key_var), _str(value_var), _expr(coll, inner),
                       None if key is None else _expr(key, inner), _expr(value, inner),
                       None if cond is None else _expr(cond, inner), _bool(grouping), line)


# (tag, length of the encoded list) -> the function that rebuilds the node
_DECODERS: dict[tuple[int, int], Callable[[list[Any], int, int], ast.Expr]] = {
    (0, 3): _literal,
    (1, 3): lambda d, line, inner: ast.Template([p if type(p) is str else _expr(p, inner) for p in _list(d[2])],
                                                line),
    (2, 3): lambda d, line, inner: ast.TupleExpr([_expr(i, inner) for i in _list(d[2])], line),
    (3, 3): _object,
    (4, 4): lambda d, line, inner: ast.Traversal(_str(d[2]), _steps(d[3], inner), line),
    (5, 4): lambda d, line, inner: ast.GetAttr(_expr(d[2], inner), _str(d[3]), line),
    (6, 4): lambda d, line, inner: ast.Index(_expr(d[2], inner), _expr(d[3], inner), line),
    (7, 4): lambda d, line, inner: ast.Splat(_expr(d[2], inner), _steps(d[3], inner), line),
    (8, 5): lambda d, line, inner: ast.Call(_str(d[2]), [_expr(a, inner) for a in _list(d[3])], _bool(d[4]), line),
    (9, 4): lambda d, line, inner: ast.Unary(_operator(d[2], _UNARY_OPS), _expr(d[3], inner), line),
    (10, 5): lambda d, line, inner: ast.Binary(_operator(d[2], _BINARY_OPS), _expr(d[3], inner),
                                               _expr(d[4], inner), line),
    (11, 5): lambda d, line, inner: ast.Conditional(_expr(d[2], inner), _expr(d[3], inner), _expr(d[4], inner),
                                                    line),
    (12, 9): _for,
}


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
