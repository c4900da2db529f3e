"""strata graph: the stack dependency graph as DOT or Mermaid, or an image drawn by Graphviz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from strata.errors import StrataError, UsageError
from strata.model.repository import Repository
from strata.model.selection import Selection
from strata.output import err, out
from strata.workspace import Workspace

IMAGE_FORMATS = ("png", "svg", "pdf")


def run(ws: Workspace, selection: Selection, *, fmt: str, output: Path | None) -> int:
    repo = ws.repository()
    repo.require_valid()
    paths = [s.path for s in selection.apply(repo, ws.cwd)]
    image = output.suffix.lstrip(".").lower() if output is not None else ""
    if image in IMAGE_FORMATS:
        return _draw(dot(repo, paths), output, image)  # type: ignore[arg-type]
    text = dot(repo, paths) if fmt == "dot" else mermaid(repo, paths)
    if output is None:
        out(text.rstrip("\n"))
    else:
        output.write_text(text, encoding="utf-8")
        err(f"wrote {output}")
    return 0


def _edges(repo: Repository, paths: list[str]) -> list[tuple[str, str]]:
    chosen = set(paths)
    return sorted((dep, path) for path in paths for dep in repo.graph.depends_on[path] if dep in chosen)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(repo: Repository, paths: list[str]) -> str:
    """Graphviz DOT; stacks grouped by environment/region, edges from dependency to dependent."""
    lines = ["digraph strata {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        stack = repo.stacks[path]
        groups.setdefault((stack.environment or "", stack.region or ""), []).append(path)
    for i, (key, members) in enumerate(sorted(groups.items())):
        label = " / ".join(k for k in key if k)
        indent = "  "
        if label:
            lines.append(f"  subgraph cluster_{i} {{")
            lines.append(f"    label={_quote(label)};")
            indent = "    "
        for path in members:
            lines.append(f"{indent}{_quote(path)} [label={_quote(repo.stacks[path].name)}];")
        if label:
            lines.append("  }")
    for dep, path in _edges(repo, paths):
        lines.append(f"  {_quote(dep)} -> {_quote(path)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid(repo: Repository, paths: list[str]) -> str:
    """A Mermaid flowchart; node ids are s0, s1, ... in path order."""
    ids = {path: f"s{i}" for i, path in enumerate(paths)}
    lines = ["flowchart LR"]
    for path in paths:
        label = path.replace('"', "'") or "."
        lines.append(f'  {ids[path]}["{label}"]')
    for dep, path in _edges(repo, paths):
        lines.append(f"  {ids[dep]} --> {ids[path]}")
    return "\n".join(lines) + "\n"


def _draw(source: str, output: Path, image: str) -> int:
    binary = shutil.which("dot")
    if binary is None:
        raise UsageError(f"drawing {output.name} needs Graphviz's `dot` on PATH (apt-get install graphviz); "
                         "without it use --format dot or --format mermaid")
    proc = subprocess.run([binary, f"-T{image}", "-o", str(output)], input=source.encode(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise StrataError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    err(f"wrote {output}")
    return 0
