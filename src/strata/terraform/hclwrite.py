"""Write Python values as HCL the way ``terraform fmt`` would lay them out. Deterministic."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def hcl_string(text: str) -> str:
    # JSON escaping covers quotes, backslashes and control characters; HCL also needs ${ and %{ escaped.
    return json.dumps(text, ensure_ascii=False).replace("${", "$${").replace("%{", "%%{")


def hcl_key(key: str) -> str:
    return key if _IDENT.match(key) else hcl_string(key)


def _object_key(key: str) -> str:
    # `{ for = 1 }` starts a for expression: an object's key `for` must be quoted (a body's attribute may not be)
    return hcl_string(key) if key == "for" else hcl_key(key)


def hcl_value(value: Any, indent: int = 0) -> str:
    """An HCL expression for ``value`` (str, number, bool, None, list, dict)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return hcl_string(value)
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [hcl_value(v, indent + 1) for v in value]
        one_line = "[" + ", ".join(items) + "]"
        if len(one_line) <= 80 and "\n" not in one_line:
            return one_line
        return "[\n" + "".join(f"{pad}{item},\n" for item in items) + end + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{\n" + _attribute_lines(value, indent + 1, _object_key) + end + "}"
    raise TypeError(f"cannot write {type(value).__name__} as HCL")


def attributes(values: dict[str, Any], indent: int = 0) -> str:
    """``name = value`` lines, with the ``=`` of consecutive one-line attributes aligned."""
    return _attribute_lines(values, indent, hcl_key)


def _attribute_lines(values: dict[str, Any], indent: int, key_text: Callable[[str], str]) -> str:
    pad = "  " * indent
    rendered = [(key_text(k), hcl_value(v, indent)) for k, v in values.items()]
    lines: list[str] = []
    group: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(k) for k, _ in group), default=0)
        lines.extend(f"{pad}{k.ljust(width)} = {v}\n" for k, v in group)
        group.clear()

    for key, text in rendered:
        if "\n" in text:
            flush()
            lines.append(f"{pad}{key} = {text}\n")
        else:
            group.append((key, text))
    flush()
    return "".join(lines)
