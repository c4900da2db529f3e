"""strata graph: the stack dependency graph as DOT, Mermaid or JSON, or an image drawn by Graphviz.

At real sizes (a thousand stacks and more) one node per stack cannot be read, so the picture can be focused
(a selection widened with --include-dependencies/--include-dependents, the stacks asked for drawn bold) or
grouped (--group-by: one node per environment/region/layer..., edges counting the dependencies between
groups). When a picture passes the size its reader can show, a warning names the size, the limit and a
smaller picture to ask for.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import StrataError, UsageError
from strata.model.repository import Repository
from strata.model.selection import Selection
from strata.output import err, json_document, json_on_stdout, out, print_json
from strata.workspace import Workspace

IMAGE_FORMATS = ("png", "svg", "pdf")

# --group-by name -> (stack dimension, selection flag)
DIMENSIONS = {
    "environment": ("environment", "--env"),
    "region": ("region", "--region"),
    "layer": ("layer", "--layer"),
    "client": ("client", "--client"),
    "account": ("account_id", "--account"),
    "cloud": ("cloud", "--cloud"),
}

# What GitHub (and Mermaid's defaults, maxTextSize and maxEdges) will render.
MERMAID_MAX_CHARACTERS = 50_000
MERMAID_MAX_EDGES = 500
# Graphviz shrinks a bitmap larger than this (pixels, either side) to fit; its text then cannot be read.
PNG_MAX_PIXELS = 32_767
# 200 inches: the largest page a PDF reader opens, and already far past what a screen shows whole.
PAGE_MAX_POINTS = 14_400


@dataclass(slots=True)
class Node:
    """A stack, or with --group-by the stacks sharing the grouped dimension values."""

    id: str  # the stack path, or the group's values joined by " / "
    label: str
    stacks: list[str]
    cluster: tuple[str, str] = ("", "")  # environment and region: DOT draws one box per pair
    selected: bool = True  # False for a node only there through --include-dependencies/--include-dependents
    group: dict[str, str | None] | None = None  # with --group-by: the values the stacks share


@dataclass(slots=True)
class Picture:
    """What is drawn: nodes, and edges from dependency to dependent counting the stack dependencies."""

    nodes: list[Node]
    edges: dict[tuple[str, str], int]
    group_by: list[str] = field(default_factory=list)
    focused: bool = False  # widened from a selection: the stacks asked for are drawn bold

    def outer_edges(self) -> list[tuple[str, str, int]]:
        return [(a, b, n) for (a, b), n in sorted(self.edges.items()) if a != b]


def parse_group_by(values: tuple[str, ...] | list[str]) -> list[str]:
    """``--group-by environment,region`` and ``--group-by environment --group-by region`` alike."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    for name in names:
        if name not in DIMENSIONS:
            raise UsageError(f"--group-by {name}: not a dimension; use one or more of {', '.join(DIMENSIONS)}")
    return list(dict.fromkeys(names))


def run(ws: Workspace, selection: Selection, *, fmt: str, output: Path | None,
        include_dependencies: bool = False, include_dependents: bool = False,
        group_by: list[str] | None = None) -> int:
    repo = ws.repository()
    repo.require_valid()
    asked = [s.path for s in selection.apply(repo, ws.cwd)]
    paths = asked
    if include_dependencies or include_dependents:
        paths = sorted(repo.graph.closure(asked, dependencies=include_dependencies, dependents=include_dependents))
    picture = build(repo, paths, group_by or [], asked=set(asked) if paths != asked else None)
    image = output.suffix.lstrip(".").lower() if output is not None else ""
    if output is not None and image in IMAGE_FORMATS:
        if fmt == "json":
            raise UsageError(f"--json writes text, not a drawing: name a .json file rather than {output.name}")
        size = _draw(dot(picture), output, image)
        _warn_image(repo, picture, output, image, size)
        return 0
    if fmt == "json" and output is None:
        print_json(to_json(picture))  # where --json said
        return 0
    if fmt == "json" and not json_on_stdout():
        raise UsageError("--json FILE and -o FILE both name where the JSON goes: give one")
    text = json_document(to_json(picture)) if fmt == "json" else {"dot": dot, "mermaid": mermaid}[fmt](picture)
    if fmt == "mermaid":
        _warn_mermaid(repo, picture, text)
    if output is None:
        out(text.rstrip("\n"))
    else:
        output.write_text(text, encoding="utf-8")
        err(f"wrote {output}")
    return 0


def build(repo: Repository, paths: list[str], group_by: list[str], *, asked: set[str] | None = None) -> Picture:
    """The picture of ``paths``: one node per stack, or per group of stacks with ``group_by``."""
    chosen = set(paths)
    stack_edges = [(dep, path) for path in paths for dep in repo.graph.depends_on[path] if dep in chosen]
    if not group_by:
        nodes = [Node(path, repo.stacks[path].name, [path],
                      (repo.stacks[path].environment or "", repo.stacks[path].region or ""),
                      asked is None or path in asked) for path in paths]
        return Picture(nodes, dict.fromkeys(sorted(stack_edges), 1), focused=asked is not None)
    group_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    values: dict[str, dict[str, str | None]] = {}
    for path in paths:
        shared = {name: repo.stacks[path].dimension(DIMENSIONS[name][0]) for name in group_by}
        key = " / ".join(value or f"(no {name})" for name, value in shared.items())
        group_of[path] = key
        members.setdefault(key, []).append(path)
        values[key] = shared
    nodes = [Node(key, key, stacks, selected=asked is None or any(p in asked for p in stacks), group=values[key])
             for key, stacks in sorted(members.items())]
    counts = Counter((group_of[dep], group_of[path]) for dep, path in stack_edges)
    return Picture(nodes, dict(sorted(counts.items())), group_by=list(group_by), focused=asked is not None)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _group_label(picture: Picture, node: Node) -> str:
    """``dev / eu-west-1``, the number of stacks and of dependencies between them (self edges are not drawn)."""
    inside = picture.edges.get((node.id, node.id), 0)
    count = f"{len(node.stacks)} stack{'s' if len(node.stacks) != 1 else ''}"
    return f"{node.label}\n{count}" + (f", {inside} dependenc{'ies' if inside != 1 else 'y'} inside" if inside else "")


def dot(picture: Picture) -> str:
    """Graphviz DOT, edges from dependency to dependent. Stacks are boxed by environment/region; groups are
    labelled with their size and edges between groups with the number of dependencies."""
    lines = ["digraph strata {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    bold = ", style=bold" if picture.focused else ""
    if picture.group_by:
        lines.append('  edge [fontname="Helvetica"];')
        for node in picture.nodes:
            label = _quote(_group_label(picture, node)).replace("\n", "\\n")
            lines.append(f"  {_quote(node.id)} [label={label}"
                         f"{bold if node.selected else ''}];")
        for dep, path, count in picture.outer_edges():
            lines.append(f"  {_quote(dep)} -> {_quote(path)} [label={_quote(str(count))}];")
    else:
        clusters: dict[tuple[str, str], list[Node]] = {}
        for node in picture.nodes:
            clusters.setdefault(node.cluster, []).append(node)
        for i, (key, nodes) in enumerate(sorted(clusters.items())):
            label = " / ".join(k for k in key if k)
            indent = "  "
            if label:
                lines.append(f"  subgraph cluster_{i} {{")
                lines.append(f"    label={_quote(label)};")
                indent = "    "
            for node in nodes:
                lines.append(f"{indent}{_quote(node.id)} [label={_quote(node.label)}{bold if node.selected else ''}];")
            if label:
                lines.append("  }")
        for dep, path, _ in picture.outer_edges():
            lines.append(f"  {_quote(dep)} -> {_quote(path)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def mermaid(picture: Picture) -> str:
    """A Mermaid flowchart; node ids are s0, s1, ... (g0, g1, ... for groups) in path order."""
    prefix = "g" if picture.group_by else "s"
    ids = {node.id: f"{prefix}{i}" for i, node in enumerate(picture.nodes)}
    lines = ["flowchart LR"]
    for node in picture.nodes:
        if picture.group_by:
            label = _group_label(picture, node).replace('"', "'").replace("\n", "<br/>")
        else:
            label = node.id.replace('"', "'") or "."
        lines.append(f'  {ids[node.id]}["{label}"]')
    for dep, path, count in picture.outer_edges():
        lines.append(f"  {ids[dep]} -->|{count}| {ids[path]}" if picture.group_by else f"  {ids[dep]} --> {ids[path]}")
    if picture.focused:
        lines.append("  classDef selected stroke-width:3px")
        lines.append("  class " + ",".join(ids[n.id] for n in picture.nodes if n.selected) + " selected")
    return "\n".join(lines) + "\n"


def to_json(picture: Picture) -> dict[str, Any]:
    """The picture as data: nodes with their stacks, edges with the number of stack dependencies they stand
    for (with --group-by, an edge from a group to itself counts the dependencies inside it)."""
    return {
        "group_by": picture.group_by,
        "nodes": [{"id": n.id, **({"group": n.group} if n.group is not None else {}), "stacks": n.stacks,
                   "selected": n.selected} for n in picture.nodes],
        "edges": [{"from": a, "to": b, "dependencies": n} for (a, b), n in sorted(picture.edges.items())],
    }


def _smaller(repo: Repository, picture: Picture) -> str:
    """A smaller picture to ask for, in terms of this selection's own dimension values."""
    stacks = [repo.stacks[p] for node in picture.nodes for p in node.stacks]
    hints = []
    for dim, flag in DIMENSIONS.values():
        values = sorted({v for s in stacks if (v := s.dimension(dim))})
        if len(values) > 1:
            hints.append(f"`{flag} {values[0]}`")
            break
    hints.append("`STACK --include-dependencies --include-dependents`")
    text = "select fewer stacks (" + " or ".join(hints) + ")"
    if picture.group_by:
        return text + " or group by fewer dimensions"
    # each dimension that splits the stacks further than the ones before it (region often follows environment)
    grouping: list[str] = []
    groups = 1
    for name in DIMENSIONS:
        split = len({tuple(s.dimension(DIMENSIONS[g][0]) for g in [*grouping, name]) for s in stacks})
        if split > groups:
            grouping.append(name)
            groups = split
    return text + (f" or draw one node per group (`--group-by {','.join(grouping)}`)" if grouping else "")


def _warn_mermaid(repo: Repository, picture: Picture, text: str) -> None:
    edges = len(picture.outer_edges())
    over = []
    if len(text) > MERMAID_MAX_CHARACTERS:
        over.append(f"{len(text):,} characters (at most {MERMAID_MAX_CHARACTERS:,})")
    if edges > MERMAID_MAX_EDGES:
        over.append(f"{edges:,} edges (at most {MERMAID_MAX_EDGES:,})")
    if over:
        err(f"warning: the Mermaid graph has {' and '.join(over)}, more than GitHub renders (Mermaid's default "
            f"maxTextSize and maxEdges); {_smaller(repo, picture)}")


def _warn_image(repo: Repository, picture: Picture, output: Path, image: str,
                size: tuple[float, float]) -> None:
    """Warn when the drawing is beyond what can be read: shrunk by Graphviz (PNG) or larger than a page."""
    width, height = size  # inches, as laid out
    stacks = sum(len(n.stacks) for n in picture.nodes)
    if image == "png":
        if max(width, height) * 96 <= PNG_MAX_PIXELS:
            return
        shown = _png_size(output)
        err(f"warning: {output.name} is {shown[0]:,}x{shown[1]:,} pixels for {stacks:,} stacks: Graphviz shrank "
            f"the drawing to its limit of {PNG_MAX_PIXELS:,} pixels and it cannot be read; {_smaller(repo, picture)}")
    elif max(width, height) * 72 > PAGE_MAX_POINTS:
        err(f"warning: {output.name} is {round(width * 72):,}x{round(height * 72):,} pt for {stacks:,} stacks, "
            f"more than {PAGE_MAX_POINTS:,} pt (200 inches), too large to read whole; {_smaller(repo, picture)}")


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    with path.open("rb") as f:
        header = f.read(24)
    width, height = struct.unpack(">II", header[16:24])
    return int(width), int(height)


def _draw(source: str, output: Path, image: str) -> tuple[float, float]:
    """Draw ``output`` with Graphviz; the drawing's laid-out width and height in inches."""
    binary = shutil.which("dot")
    if binary is None:
        raise UsageError(f"drawing {output.name} needs Graphviz's `dot` on PATH (apt-get install graphviz); "
                         "without it use --format dot or --format mermaid")
    # the layout's plain form on stdout gives the drawing's size (first line: graph SCALE WIDTH HEIGHT)
    proc = subprocess.run([binary, f"-T{image}", "-o", str(output), "-Tplain"], input=source.encode(),
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise StrataError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    err(f"wrote {output}")
    first = proc.stdout.decode(errors="replace").split("\n", 1)[0].split()
    try:
        return float(first[2]), float(first[3])
    except (IndexError, ValueError):  # no layout to measure: nothing to warn about
        return 0.0, 0.0
