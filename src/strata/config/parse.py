"""Parse HCL text into strata's syntax tree.

python-hcl2 provides the grammar and the LALR parser (Lark). Its dict output loses line numbers and
turns expressions back into strings, so strata walks the Lark tree itself and builds the nodes of
:mod:`strata.config.ast`, keeping the line of every attribute, block and expression.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

from strata.config import ast
from strata.config.limits import MAX_NESTING, MAX_NUMBER_BITS, shorten
from strata.errors import ConfigError, Source, StrataError

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")
_TOKEN_WORDS = {
    "RBRACE": "}", "LBRACE": "{", "RSQB": "]", "LSQB": "[", "RPAR": ")", "LPAR": "(",
    "EQ": "=", "COLON": ":", "COMMA": ",", "DOT": ".", "DBLQUOTE": '"', "NAME": "a name",
    "NL_OR_COMMENT": "a new line", "QMARK": "?", "$END": "end of file",
}


@functools.lru_cache(maxsize=1)
def _lark_parser() -> Any:
    """python-hcl2's grammar and post-lexer, without position propagation.

    Positions on every tree node cost about 40% of the parse time; the tokens keep their lines,
    which is all strata needs (a node's line is the line of its first token). One change to the
    grammar: a run of blank lines is one token, not one per line (a megabyte of blank lines took
    seconds); the lines of the tokens after it are still counted.
    """
    import hcl2.parser
    from hcl2.postlexer import PostLexer
    from lark import Lark

    version = str(getattr(hcl2, "__version__", ""))
    if not version.startswith("8."):  # pyproject.toml pins python-hcl2 8: its grammar and tree are what strata reads
        raise StrataError(
            f"this environment's hcl2 module is version {version or 'unknown'}, not python-hcl2 8 (checkov's "
            "bc-python-hcl2 takes its place when both are installed in one environment): install checkov in its "
            "own venv or with pipx (see docs/policy.md), then `pip install --force-reinstall 'python-hcl2>=8.1,<9'`")
    grammar_file = Path(hcl2.parser.__file__).parent / "hcl2.lark"
    grammar = grammar_file.read_text(encoding="utf-8")
    one_newline = "NL_OR_COMMENT: /\\n[ \\t]*/ |"
    if one_newline in grammar:
        grammar = grammar.replace(one_newline, "NL_OR_COMMENT: /\\n(?:[ \\t\\r]*\\n)*[ \\t]*/ |", 1)
    cache = _grammar_cache(grammar)
    return Lark(grammar, parser="lalr", propagate_positions=False, postlex=PostLexer(),
                cache=str(cache) if cache else False, import_paths=[str(grammar_file.parent)])


def _grammar_cache(grammar: str) -> Path | None:
    """Where Lark may keep the built parser (about 1.7 s to build), or None to build it every time.

    Lark's cache is a pickle, and by default it sits in the shared temporary folder under a name
    anyone can predict and plant. strata keeps it in the user's own cache folder instead
    (``$XDG_CACHE_HOME/strata`` or ``~/.cache/strata``), and uses it only while that folder and the
    file belong to the user and nobody else can write to them.
    """
    import lark

    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "strata"
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:32]
        path = base / f"hcl2-parser-{digest}-lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}.pickle"
        for item, kind in ((base, stat.S_ISDIR), (path, stat.S_ISREG)):
            try:
                info = os.lstat(item)
            except FileNotFoundError:
                continue  # the file is written on first use
            if not kind(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
                return None
    except (OSError, RuntimeError):  # no home folder, or a read-only one
        return None
    return path


def parse_text(text: str, file: str, depth: int = 0) -> ast.Body:
    """Parse the HCL ``text`` of ``file`` (used in messages) into a :class:`ast.Body`.

    ``depth`` is the nesting the text starts at (a heredoc's interpolation); an expression nested
    more than :data:`~strata.config.limits.MAX_NESTING` levels is an error at its line.
    """
    from lark.exceptions import UnexpectedInput

    if not text.endswith("\n"):
        text += "\n"  # the grammar needs a final newline after the last attribute
    if len(text) > _PRESCAN_SIZE:  # a big file nested too deeply fails now, not after a long parse
        located = _locate_unbalanced(text, max_depth=MAX_NESTING - depth)
        if located is not None and located[1] == _too_deep():
            raise ConfigError(located[1], Source(file, located[0]))
    try:
        tree = _lark_parser().parse(text)
    except UnexpectedInput as exc:
        located = _locate_unbalanced(text)
        if located is not None:
            raise ConfigError(f"syntax error: {located[1]}", Source(file, located[0])) from None
        raise ConfigError(_syntax_message(exc, text), Source(file, exc.line if exc.line > 0 else 1)) from None
    except RecursionError:
        raise ConfigError(_too_deep(), Source(file, 1)) from None
    converter = _Converter(file, text, depth=depth)
    try:
        return converter.body(tree.children[0])
    except RecursionError:  # the depth is counted, so this is only a safety net
        raise ConfigError(_too_deep(), Source(file, converter.last_line or 1)) from None


def _too_deep() -> str:
    return f"expressions are nested too deeply (more than {MAX_NESTING} levels)"


def _syntax_message(exc: Any, text: str) -> str:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedToken):
        token = exc.token
        found = "end of file" if token.type == "$END" else repr(shorten(str(token).strip() or str(token)))
        names = {e for e in exc.expected if not e.startswith("__")}
        hint = ""
        if names and names <= _TOKEN_WORDS.keys() and len(names) <= 6:
            hint = f"; expected {', '.join(sorted(_TOKEN_WORDS[e] for e in names))}"
        if "EQ" in names:
            hint += " (is the = between a name and its value missing?)"
        elif "LBRACE" in names:
            hint += " (a block needs { ... }; an attribute needs name = value)"
        return f"syntax error: unexpected {found}{hint}"
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedEOF):
        return "syntax error: unexpected end of file (is a block or bracket not closed?)"
    return f"syntax error: {shorten(str(exc), 200)}"


_TEMPLATE_SIGN = re.compile(r"\$\$\{|%%\{|\$\{|%\{")
_CLOSERS = {"{": "}", "[": "]", "(": ")", "${": "}"}
_HEREDOC_START = re.compile(r"<<-?([A-Za-z][A-Za-z0-9._-]*)[ \t]*\r?\n")


_PRESCAN_SIZE = 64 * 1024  # characters; smaller files are parsed at once


def _locate_unbalanced(text: str, max_depth: int | None = None) -> tuple[int, str] | None:
    """After a parse failure: the line and reason of an unclosed string or bracket, where it was opened.

    The LALR parser only notices these at the end of the file or far below; Terraform, and users,
    want the line where the string or block starts. With ``max_depth``, brackets and interpolations
    open more than that deep are reported too (each is at least one level of the syntax tree, so this
    never refuses what the parser would accept).
    """
    opened: list[tuple[str, int]] = []  # '"', '${', '{', '[', '(' with their line
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if opened and opened[-1][0] == '"':  # inside a quoted string
            if c == "\\":
                i += 2
                continue
            if c == "\n":
                return opened[-1][1], 'this string is not closed: its closing quote (") is missing on this line'
            if text.startswith(("$${", "%%{"), i):
                i += 3
                continue
            if text.startswith(("${", "%{"), i):
                opened.append(("${", line))
                if max_depth is not None and _too_many(opened, max_depth):
                    return line, _too_deep()
                i += 2
                continue
            if c == '"':
                opened.pop()
            i += 1
            continue
        if c == "\n":
            line += 1
        elif c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return line, "this /* comment is never closed"
            line += text.count("\n", i, end)
            i = end + 2
            continue
        elif text.startswith("<<", i) and (m := _HEREDOC_START.match(text, i)):
            marker = m.group(1)
            closing = re.compile(rf"^[ \t]*{re.escape(marker)}[ \t]*\r?$", re.M).search(text, m.end())
            if closing is None:
                return line, f"this heredoc is never closed: add a line with {marker}"
            line += text.count("\n", i, closing.end())
            i = closing.end()
            continue
        elif c in '"{[(':
            opened.append((c, line))
            if max_depth is not None and _too_many(opened, max_depth):
                return line, _too_deep()
        elif c in "}])":
            if not opened:
                return line, f"unexpected {c}: nothing is open here"
            kind, start = opened[-1]
            if c != _CLOSERS[kind]:
                return line, f"unexpected {c}: the {kind} opened at line {start} must be closed first"
            opened.pop()
        i += 1
    for kind, start in opened:
        if kind == '"':
            return start, 'this string is not closed: its closing quote (") is missing'
    if opened:
        kind, start = opened[0]
        return start, f"this {kind} is never closed: add the missing {_CLOSERS[kind]}"
    return None


def _too_many(opened: list[tuple[str, int]], max_depth: int) -> bool:
    """More than ``max_depth`` brackets and interpolations open (quotes not counted: the string and
    the interpolation inside it are one level each)."""
    return len(opened) > max_depth and sum(1 for kind, _ in opened if kind != '"') > max_depth


def _unescape(raw: str) -> str:
    """Resolve the escapes of a quoted string; ValueError names an escape that is not a character."""
    if "\\" not in raw:
        return raw

    def sub(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "uU" and len(code) > 1:
            number = int(code[1:], 16)
            if number > 0x10FFFF:
                raise ValueError(f"\\{code} is not a Unicode character (the largest is \\U0010FFFF)")
            return chr(number)
        return _ESCAPES.get(code, "\\" + code)

    text = _ESCAPE_RE.sub(sub, raw)
    if any("\ud800" <= c <= "\udfff" for c in text):
        try:  # a surrogate pair written as two escapes is one character
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
        except UnicodeDecodeError:
            raise ValueError("a \\u escape (\\uD800 to \\uDFFF) is half of a surrogate pair, not a "
                             "character; write the character itself or its \\U escape") from None
    return text


def _is_tree(node: Any) -> bool:
    return hasattr(node, "data")


class _Converter:
    """Turns a Lark tree from python-hcl2's grammar into strata ast nodes."""

    def __init__(self, file: str, text: str, line_offset: int = 0, depth: int = 0) -> None:
        self.file = file
        self.text = text
        self.line_offset = line_offset
        self.depth = depth  # expressions and blocks open around the node being converted
        self.last_line = 0

    def error(self, message: str, line: int) -> ConfigError:
        return ConfigError(message, Source(self.file, line))

    def line(self, node: Any) -> int:
        """The line of the first token under ``node``."""
        while _is_tree(node):
            if not node.children:
                return 0
            node = node.children[0]
        line = int(getattr(node, "line", 0) or 0) + self.line_offset
        self.last_line = line or self.last_line
        return line

    # -- structure ---------------------------------------------------------------------------------

    def body(self, tree: Any) -> ast.Body:
        attributes: list[ast.Attribute] = []
        blocks: list[ast.Block] = []
        seen: dict[str, int] = {}
        for child in tree.children:
            if not _is_tree(child):
                continue
            if child.data == "attribute":
                name = self.name(child.children[0])
                line = self.line(child)
                if name in seen:
                    raise self.error(
                        f"attribute {name!r} is set twice in this block (first at line {seen[name]})", line
                    )
                seen[name] = line
                expr = self.expr(child.children[2])
                attributes.append(ast.Attribute(name, expr, line, bool(ast.traversals(expr, "dependency"))))
            elif child.data == "block":
                blocks.append(self.block(child))
        return ast.Body(attributes, blocks)

    def block(self, tree: Any) -> ast.Block:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise self.error(f"blocks are nested too deeply (more than {MAX_NESTING} levels)", self.line(tree))
            return self._block(tree)
        finally:
            self.depth -= 1

    def _block(self, tree: Any) -> ast.Block:
        kids = [c for c in tree.children if _is_tree(c) and c.data != "new_line_or_comment"]
        block_type = self.name(kids[0])
        labels: list[str] = []
        body: ast.Body | None = None
        for kid in kids[1:]:
            if kid.data == "body":
                body = self.body(kid)
            elif kid.data == "string":
                value = self.string(kid)
                if not isinstance(value, ast.Literal):
                    raise self.error("block labels cannot contain interpolation", self.line(kid))
                labels.append(str(value.value))
            else:
                labels.append(self.name(kid))
        return ast.Block(block_type, labels, body or ast.Body([], []), self.line(tree))

    def name(self, tree: Any) -> str:
        token = tree.children[0] if _is_tree(tree) else tree
        return str(token)

    # -- expressions -------------------------------------------------------------------------------

    def expr(self, tree: Any) -> ast.Expr:
        method = getattr(self, "x_" + str(tree.data), None)
        if method is None:
            raise self.error(f"unsupported expression ({tree.data})", self.line(tree))
        # a level is a node of the syntax tree; expr_term only wraps one, unless it is ( ... )
        level = 0 if tree.data == "expr_term" and _is_tree(tree.children[0]) else 1
        self.depth += level
        try:
            if self.depth > MAX_NESTING:
                raise self.error(_too_deep(), self.line(tree))
            result: ast.Expr = method(tree)
        finally:
            self.depth -= level
        return result

    def exprs(self, tree: Any) -> list[ast.Expr]:
        return [self.expr(c) for c in tree.children if _is_tree(c) and c.data != "new_line_or_comment"]

    def x_expr_term(self, tree: Any) -> ast.Expr:
        kids = tree.children
        if not _is_tree(kids[0]):  # parenthesized: ( expression )
            return self.expr(next(c for c in kids if _is_tree(c) and c.data != "new_line_or_comment"))
        return self.expr(kids[0])

    def x_int_lit(self, tree: Any) -> ast.Expr:
        return ast.Literal(self.integer(tree.children[0], tree), self.line(tree))

    def integer(self, token: Any, tree: Any) -> int:
        digits = str(token)
        if len(digits) > 310 or int(digits).bit_length() > MAX_NUMBER_BITS:
            raise self.error(f"the number {shorten(digits, 20)} is too large (more than {MAX_NUMBER_BITS} bits)",
                             self.line(tree))
        return int(digits)

    def x_float_lit(self, tree: Any) -> ast.Expr:
        text = str(tree.children[0])
        value = float(text)
        if not math.isfinite(value):
            raise self.error(f"the number {shorten(text, 20)} is too large", self.line(tree))
        mantissa = re.split("[eE]", text)[0]
        if abs(value) < sys.float_info.min and mantissa.strip("0.") != "":  # 1e-400 would silently be 0
            raise self.error(f"the number {shorten(text, 20)} is too small (the smallest is about "
                             f"{sys.float_info.min:.1e}); write 0 if zero is meant", self.line(tree))
        return ast.Literal(int(value) if value.is_integer() and "e" not in str(tree.children[0]).lower()
                           else value, self.line(tree))

    def x_literal_value(self, tree: Any) -> ast.Expr:
        word = str(tree.children[0])
        return ast.Literal({"true": True, "false": False, "null": None}[word], self.line(tree))

    def x_identifier(self, tree: Any) -> ast.Expr:
        return ast.Traversal(str(tree.children[0]), [], self.line(tree))

    def x_keyword(self, tree: Any) -> ast.Expr:
        return ast.Traversal(str(tree.children[0]), [], self.line(tree))

    def x_string(self, tree: Any) -> ast.Expr:
        return self.string(tree)

    def string(self, tree: Any) -> ast.Expr:
        parts: list[str | ast.Expr] = []
        for part in tree.children:
            if not _is_tree(part):
                continue  # the quotes
            for item in part.children:
                if _is_tree(item):
                    if item.data == "interpolation":
                        parts.append(self.expr(item.children[1]))
                    else:
                        raise self.error(
                            "template directives (%{ if } / %{ for }) are not supported in strata.hcl; "
                            "use a conditional or a for expression",
                            self.line(item),
                        )
                else:
                    text = str(item)
                    if item.type == "ESCAPED_INTERPOLATION" or item.type == "ESCAPED_DIRECTIVE":
                        text = text[1:]
                    else:
                        try:
                            text = _unescape(text)
                        except ValueError as exc:
                            raise self.error(str(exc), self.line(tree)) from None
                    if parts and isinstance(parts[-1], str):
                        parts[-1] += text
                    else:
                        parts.append(text)
        return _template(parts, self.line(tree))

    def x_heredoc_template(self, tree: Any) -> ast.Expr:
        return self.heredoc(tree, trim=False)

    def x_heredoc_template_trim(self, tree: Any) -> ast.Expr:
        return self.heredoc(tree, trim=True)

    def heredoc(self, tree: Any, trim: bool) -> ast.Expr:
        raw = str(tree.children[0])
        first_nl = raw.index("\n")
        lines = raw[first_nl + 1:].split("\n")
        lines = lines[:-2]  # drop the closing marker line and the empty string after its newline
        if trim:
            indents = [len(ln) - len(ln.lstrip(" \t")) for ln in lines if ln.strip()]
            cut = min(indents) if indents else 0
            lines = [ln[cut:] for ln in lines]
        content = "\n".join(lines) + ("\n" if lines else "")
        return self.template_text(content, self.line(tree) + 1)

    def template_text(self, content: str, line: int) -> ast.Expr:
        """Parse a heredoc body: literal text with ``${ expr }`` interpolations.

        Literal text is copied in slices between the ``$`` and ``%`` signs, so the time is linear
        in the size of the heredoc.
        """
        parts: list[str | ast.Expr] = []
        literal: list[str] = []
        pos = 0
        counted, lines = 0, line  # lines: the line number at offset ``counted``

        def line_at(offset: int) -> int:
            nonlocal counted, lines
            lines += content.count("\n", counted, offset)
            counted = offset
            return lines

        for m in _TEMPLATE_SIGN.finditer(content):
            start = m.start()
            if start < pos:
                continue  # inside an interpolation already consumed
            literal.append(content[pos:start])
            sign = m.group(0)
            if sign in ("$${", "%%{"):
                literal.append(sign[1:])
                pos = start + 3
            elif sign == "%{":
                raise self.error("template directives (%{ ... }) are not supported in strata.hcl", line_at(start))
            else:
                end = _matching_brace(content, start + 2)
                if end < 0:
                    raise self.error("unclosed ${ in heredoc", line_at(start))
                text = "".join(literal)
                if text:
                    parts.append(text)
                literal = []
                parts.append(self.sub_expression(content[start + 2:end], line_at(start)))
                pos = end + 1
        literal.append(content[pos:])
        text = "".join(literal)
        if text:
            parts.append(text)
        return _template(parts, line)

    def sub_expression(self, text: str, line: int) -> ast.Expr:
        if not text.strip():
            raise self.error("empty interpolation", line)
        try:
            body = parse_text(f"_ = {text.strip()}\n", self.file, self.depth + 1)
        except ConfigError as exc:
            raise self.error(exc.message, line) from None
        expr = body.attributes[0].expr
        for node in ast.walk(expr):  # report everything inside at the interpolation's own line
            node.line = line
        return expr

    def x_template_string(self, tree: Any) -> ast.Expr:
        raise self.error("template directives are not supported in strata.hcl", self.line(tree))

    def x_tuple(self, tree: Any) -> ast.Expr:
        return ast.TupleExpr(self.exprs(tree), self.line(tree))

    def x_object(self, tree: Any) -> ast.Expr:
        items: list[ast.ObjectItem] = []
        for elem in tree.children:
            if not _is_tree(elem) or elem.data != "object_elem":
                continue
            key_tree = elem.children[0].children[0]
            value = self.expr(elem.children[2])
            items.append(ast.ObjectItem(self.object_key(key_tree), value, self.line(elem),
                                        bool(ast.traversals(value, "dependency"))))
        return ast.ObjectExpr(items, self.line(tree))

    def object_key(self, key_tree: Any) -> str | ast.Expr:
        if key_tree.data == "keyword":
            return str(key_tree.children[0])
        # expr_term wrapping an identifier, a string, or a parenthesized expression
        inner = key_tree.children[0] if key_tree.data == "expr_term" else key_tree
        if _is_tree(inner) and inner.data == "identifier":
            return str(inner.children[0])
        expr = self.expr(key_tree)
        if isinstance(expr, ast.Literal) and expr.value is not None:
            return str(expr.value) if not isinstance(expr.value, bool) else str(expr.value).lower()
        return expr

    def x_function_call(self, tree: Any) -> ast.Expr:
        names = [str(c.children[0]) for c in tree.children if _is_tree(c) and c.data == "identifier"]
        args: list[ast.Expr] = []
        expand = False
        for c in tree.children:
            if _is_tree(c) and c.data == "arguments":
                for a in c.children:
                    if _is_tree(a) and a.data != "new_line_or_comment":
                        args.append(self.expr(a))
                    elif not _is_tree(a) and a.type == "ELLIPSIS":
                        expand = True
        return ast.Call("::".join(names), args, expand, self.line(tree))

    def _append_step(self, base: ast.Expr, step: str | ast.Expr, line: int) -> ast.Expr:
        if isinstance(base, ast.Traversal):
            base.steps.append(step)
            return base
        if isinstance(step, str):
            return ast.GetAttr(base, step, line)
        return ast.Index(base, step, line)

    def step(self, tree: Any) -> str | ast.Expr:
        if tree.data == "get_attr":
            return self.name(tree.children[1])
        if tree.data == "short_index":
            return ast.Literal(self.integer(tree.children[1], tree), self.line(tree))
        # braces_index
        return self.exprs(tree)[0]

    def x_get_attr_expr_term(self, tree: Any) -> ast.Expr:
        base = self.expr(tree.children[0])
        return self._append_step(base, self.step(tree.children[1]), self.line(tree))

    def x_index_expr_term(self, tree: Any) -> ast.Expr:
        base = self.expr(tree.children[0])
        return self._append_step(base, self.step(tree.children[1]), self.line(tree))

    def _splat(self, tree: Any) -> ast.Expr:
        base = self.expr(tree.children[0])
        splat = tree.children[1]
        steps = [self.step(c) for c in splat.children if _is_tree(c)]
        return ast.Splat(base, steps, self.line(tree))

    x_attr_splat_expr_term = _splat
    x_full_splat_expr_term = _splat

    def x_unary_op(self, tree: Any) -> ast.Expr:
        return ast.Unary(str(tree.children[0]).strip(), self.expr(tree.children[1]), self.line(tree))

    def x_binary_op(self, tree: Any) -> ast.Expr:
        left = self.expr(tree.children[0])
        term = tree.children[1]
        op_tree = next(c for c in term.children if _is_tree(c) and c.data == "binary_operator")
        op = str(op_tree.children[0]).strip()
        right = next(c for c in term.children if _is_tree(c) and c is not op_tree
                     and c.data != "new_line_or_comment")
        return ast.Binary(op, left, self.expr(right), self.line(tree))

    def x_conditional(self, tree: Any) -> ast.Expr:
        cond, yes, no = self.exprs(tree)
        return ast.Conditional(cond, yes, no, self.line(tree))

    def _for_intro(self, tree: Any) -> tuple[str | None, str, ast.Expr]:
        names = [str(c.children[0]) for c in tree.children if _is_tree(c) and c.data == "identifier"]
        coll = next(c for c in tree.children if _is_tree(c) and c.data not in ("identifier", "new_line_or_comment"))
        if len(names) == 2:
            return names[0], names[1], self.expr(coll)
        return None, names[0], self.expr(coll)

    def x_for_tuple_expr(self, tree: Any) -> ast.Expr:
        kids = [c for c in tree.children if _is_tree(c) and c.data != "new_line_or_comment"]
        key_var, value_var, coll = self._for_intro(kids[0])
        value = self.expr(kids[1])
        cond = self.for_cond(kids[2]) if len(kids) > 2 else None
        return ast.ForExpr(key_var, value_var, coll, None, value, cond, False, self.line(tree))

    def x_for_object_expr(self, tree: Any) -> ast.Expr:
        kids = [c for c in tree.children if _is_tree(c) and c.data != "new_line_or_comment"]
        grouping = any(not _is_tree(c) and c.type == "ELLIPSIS" for c in tree.children)
        key_var, value_var, coll = self._for_intro(kids[0])
        key = self.expr(kids[1])
        value = self.expr(kids[2])
        cond = self.for_cond(kids[3]) if len(kids) > 3 else None
        return ast.ForExpr(key_var, value_var, coll, key, value, cond, grouping, self.line(tree))

    def for_cond(self, tree: Any) -> ast.Expr:
        return self.exprs(tree)[0]


def _template(parts: list[str | ast.Expr], line: int) -> ast.Expr:
    if not parts:
        return ast.Literal("", line)
    if len(parts) == 1 and isinstance(parts[0], str):
        return ast.Literal(parts[0], line)
    return ast.Template(parts, line)


def _matching_brace(text: str, start: int) -> int:
    depth = 1
    pos = start
    in_string = False
    while pos < len(text):
        ch = text[pos]
        if in_string:
            if ch == "\\":
                pos += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    return -1
