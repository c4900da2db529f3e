"""strata render: a stack's effective configuration, every value with the file:line it came from."""

from __future__ import annotations

import json
from typing import Any

from strata.model.stack import Deferred, Setting, Stack
from strata.output import out, print_json, table
from strata.workspace import Workspace


def run(ws: Workspace, stack_arg: str, *, as_json: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stack = repo.resolve_stack(stack_arg, ws.cwd)
    if as_json:
        print_json(to_json(stack))
        return 0
    out(f"stack {stack.path or '.'}  ({stack.source})")
    out(f"  name: {stack.name}")
    if stack.description:
        out(f"  description: {stack.description}")
    if stack.tags:
        out(f"  tags: {', '.join(stack.tags)}")
    out(f"  inherits: {', '.join(stack.config_chain)}")
    out(f"  state key: {stack.state_key}")
    _section("dimensions", {k: v for k, v in stack.dimensions.items()})
    _section("locals", stack.locals, prefix="local.")
    if stack.backend is not None:
        title = f'backend "{stack.backend.type}"  ({stack.backend.source})'
        _section(title, stack.backend.settings, always=True)
    _section("inputs", stack.inputs)
    if stack.dependencies:
        out("")
        out("dependencies")
        rows = []
        for dep in stack.dependencies:
            mocks = f"mock_outputs: {', '.join(sorted(dep.mock_outputs))}" if dep.mock_outputs else ""
            rows.append([f"  {dep.name or '(order only)'}", f"-> {repo.display(dep.path)}", str(dep.source), mocks])
        out(_rows(rows))
    return 0


def _section(title: str, settings: dict[str, Setting], prefix: str = "", always: bool = False) -> None:
    """``name = value  # file:line`` lines, the ``=`` aligned, like the HCL the values came from."""
    entries = [(f"{prefix}{name}", _text(value), str(source)) for name, value, source in _flatten(settings)]
    if not entries and not always:
        return
    out("")
    out(title)
    width = max((len(name) for name, _, _ in entries), default=0)
    for name, text, source in entries:
        out(f"  {name.ljust(width)} = {text}  # {source}")


def _rows(rows: list[list[str]]) -> str:
    return table(None, rows)


def _flatten(settings: dict[str, Setting], prefix: str = "") -> list[tuple[str, Any, Any]]:
    out_rows: list[tuple[str, Any, Any]] = []
    for name, setting in settings.items():
        key = f"{prefix}{name}"
        if setting.children is not None:
            out_rows.extend(_flatten(setting.children, key + "."))
        else:
            out_rows.append((key, setting.value, setting.source))
    return out_rows


def _text(value: Any) -> str:
    if isinstance(value, Deferred):
        return f"{value!r} (read when the stack runs)"
    return json.dumps(value, default=repr)


def _json_value(value: Any) -> Any:
    if isinstance(value, Deferred):
        return {"from_dependency_outputs": value.references}
    return value


def _settings_json(settings: dict[str, Setting]) -> dict[str, Any]:
    return {key: {"value": _json_value(value), "source": str(source)}
            for key, value, source in _flatten(settings)}


def to_json(stack: Stack) -> dict[str, Any]:
    return {
        "path": stack.path,
        "name": stack.name,
        "description": stack.description,
        "tags": list(stack.tags),
        "source": str(stack.source),
        "inherits": list(stack.config_chain),
        "state_key": stack.state_key,
        "dimensions": _settings_json(stack.dimensions),
        "locals": _settings_json(stack.locals),
        "backend": None if stack.backend is None else {
            "type": stack.backend.type,
            "source": str(stack.backend.source),
            "embedded_default": stack.backend.embedded,
            "settings": _settings_json(stack.backend.settings),
        },
        "inputs": _settings_json(stack.inputs),
        "dependencies": [
            {"name": d.name, "path": d.path, "source": str(d.source), "mock_outputs": d.mock_outputs}
            for d in stack.dependencies
        ],
    }
