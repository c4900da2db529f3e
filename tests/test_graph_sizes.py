"""strata graph at real sizes: a focused picture (--include-dependencies/--include-dependents), one node per
group (--group-by), JSON, and a warning naming the size and the limit when a picture is past what GitHub or
Graphviz can show (on the 1,200-stack repository benchmarks/generate_repo.py makes)."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, Result, write_tree

SMALL = {
    "strata.hcl": "strata {}\n",
    "dev/eu-west-1/01-net/strata.hcl": "stack {}\n",
    "dev/eu-west-1/02-eks/strata.hcl": 'stack {}\ndependencies = ["../01-net"]\n',
    "dev/eu-west-1/03-app/strata.hcl": 'stack {}\ndependencies = ["../02-eks"]\n',
    "dev/eu-west-1/03-web/strata.hcl": 'stack {}\ndependencies = ["../01-net"]\n',
    "dev/eu-west-1/04-other/strata.hcl": "stack {}\n",
}


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 stacks: 3 environments x (50 VPCs, 150 clusters, 200 services), ~1,500 dependencies."""
    root = tmp_path_factory.mktemp("estate") / "repo"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "generate_repo.py"), "--out", str(root)],
                   check=True, capture_output=True)
    return root


def _edges(dot: str) -> set[tuple[str, str]]:
    return set(re.findall(r'^  "([^"]+)" -> "([^"]+)"', dot, re.MULTILINE))


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return int(width), int(height)


def _ok(result: Result) -> Result:
    assert result.code == 0, result.output
    return result


# -- a focused picture --------------------------------------------------------------------------------

def test_include_dependencies_draws_what_the_selection_depends_on(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, SMALL)
    dot = _ok(strata("graph", "dev/eu-west-1/03-app", "--include-dependencies", cwd=tmp_path)).stdout
    assert _edges(dot) == {("dev/eu-west-1/01-net", "dev/eu-west-1/02-eks"),
                           ("dev/eu-west-1/02-eks", "dev/eu-west-1/03-app")}
    assert "03-web" not in dot and "04-other" not in dot
    # the stack asked for stands out from the ones drawn for context
    assert '"dev/eu-west-1/03-app" [label="03-app", style=bold];' in dot
    assert '"dev/eu-west-1/01-net" [label="01-net"];' in dot


def test_include_dependents_draws_what_depends_on_the_selection(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, SMALL)
    result = _ok(strata("graph", "dev/eu-west-1/01-net", "--include-dependents", "--format", "mermaid",
                        cwd=tmp_path))
    assert result.stdout.splitlines() == [
        "flowchart LR",
        '  s0["dev/eu-west-1/01-net"]',
        '  s1["dev/eu-west-1/02-eks"]',
        '  s2["dev/eu-west-1/03-app"]',
        '  s3["dev/eu-west-1/03-web"]',
        "  s0 --> s1",
        "  s0 --> s3",
        "  s1 --> s2",
        "  classDef selected stroke-width:3px",
        "  class s0 selected",
    ]


def test_without_include_options_only_the_selection_is_drawn_and_nothing_is_bold(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, SMALL)
    dot = _ok(strata("graph", "dev/eu-west-1/02-eks", "dev/eu-west-1/03-app", cwd=tmp_path)).stdout
    assert _edges(dot) == {("dev/eu-west-1/02-eks", "dev/eu-west-1/03-app")}
    assert "bold" not in dot


# -- one node per group -------------------------------------------------------------------------------

def test_group_by_draws_one_node_per_group_with_dependency_counts(strata, estate: Path) -> None:
    dot = _ok(strata("graph", "--group-by", "environment,layer", cwd=estate)).stdout
    assert '"dev / 02-compute" [label="dev / 02-compute\\n150 stacks"];' in dot
    assert '"dev / 01-networking" [label="dev / 01-networking\\n50 stacks, 49 dependencies inside"];' in dot
    assert '"dev / 02-compute" -> "dev / 03-applications" [label="200"];' in dot
    assert _edges(dot) == {(f"{env} / {a}", f"{env} / {b}") for env in ("dev", "prod", "qa")
                           for a, b in (("01-networking", "02-compute"), ("01-networking", "03-applications"),
                                        ("02-compute", "03-applications"))}
    # repeated --group-by is the same as the comma form
    assert _ok(strata("graph", "--group-by", "environment", "--group-by", "layer", cwd=estate)).stdout == dot


def test_group_by_mermaid_fits_github(strata, estate: Path) -> None:
    result = _ok(strata("graph", "--group-by", "environment,region,layer", "--format", "mermaid", cwd=estate))
    lines = result.stdout.splitlines()
    assert lines[1] == '  g0["dev / eu-east-1 / 01-networking<br/>50 stacks, 49 dependencies inside"]'
    assert "  g1 -->|200| g2" in lines
    assert len(result.stdout) < 1_000 and result.stderr == ""


def test_group_by_json_gives_each_group_its_values_and_stacks(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, {**SMALL, "prod/eu-west-1/01-net/strata.hcl": "stack {}\n"})
    document = json.loads(_ok(strata("graph", "--group-by", "environment", "--json", cwd=tmp_path)).stdout)
    assert document["format_version"] == "1.0" and document["group_by"] == ["environment"]
    assert [(n["id"], n["group"], len(n["stacks"])) for n in document["nodes"]] == [
        ("dev", {"environment": "dev"}, 5), ("prod", {"environment": "prod"}, 1)]
    assert document["edges"] == [{"from": "dev", "to": "dev", "dependencies": 3}]


def test_json_lists_stacks_and_dependencies(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, SMALL)
    document = json.loads(_ok(strata("graph", "dev/eu-west-1/02-eks", "--include-dependencies", "--json",
                                     cwd=tmp_path)).stdout)
    assert document == {
        "format_version": "1.0",
        "group_by": [],
        "nodes": [{"id": "dev/eu-west-1/01-net", "stacks": ["dev/eu-west-1/01-net"], "selected": False},
                  {"id": "dev/eu-west-1/02-eks", "stacks": ["dev/eu-west-1/02-eks"], "selected": True}],
        "edges": [{"from": "dev/eu-west-1/01-net", "to": "dev/eu-west-1/02-eks", "dependencies": 1}],
    }


@pytest.mark.parametrize("args, message", [
    (("--group-by", "enviroment"), "--group-by enviroment: not a dimension; use one or more of environment"),
    (("--json", "-o", "graph.png"), "--json writes text, not a drawing"),
])
def test_bad_graph_options_are_usage_errors(strata, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    write_tree(tmp_path, SMALL)
    result = strata("graph", *args, cwd=tmp_path)
    assert result.code == 64 and message in result.stderr
    assert not (tmp_path / "graph.png").exists()


# -- warnings at real sizes ---------------------------------------------------------------------------

def test_mermaid_past_what_github_renders_warns_with_the_size_and_a_smaller_picture(strata, estate: Path) -> None:
    result = _ok(strata("graph", "--format", "mermaid", cwd=estate))
    assert len(result.stdout) > 50_000  # the whole graph is still printed
    warning = result.stderr.strip()
    assert warning.startswith("warning: the Mermaid graph has 89,097 characters (at most 50,000) and 1,497 edges "
                              "(at most 500), more than GitHub renders")
    assert "`--env dev`" in warning and "--include-dependencies" in warning
    assert "`--group-by environment,layer`" in warning
    # the suggested selection fits
    assert _ok(strata("graph", "--format", "mermaid", "--env", "dev", cwd=estate)).stderr == ""


def test_mermaid_of_a_small_repository_does_not_warn(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, SMALL)
    assert _ok(strata("graph", "--format", "mermaid", cwd=tmp_path)).stderr == ""


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing (scripts/test installs graphviz)")
def test_png_shrunk_by_graphviz_warns_and_grouping_fits(strata, estate: Path) -> None:
    whole = _ok(strata("graph", "-o", "whole.png", cwd=estate))
    width, height = _png_size(estate / "whole.png")
    assert height == 32_767
    assert (f"warning: whole.png is {width:,}x32,767 pixels for 1,200 stacks: Graphviz shrank the drawing to its "
            "limit of 32,767 pixels") in whole.stderr
    assert "--group-by environment,layer" in whole.stderr
    grouped = _ok(strata("graph", "--group-by", "environment,region,layer", "-o", "grouped.png", cwd=estate))
    assert "warning" not in grouped.stderr
    assert max(_png_size(estate / "grouped.png")) < 2_000


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing (scripts/test installs graphviz)")
def test_svg_larger_than_a_page_warns_with_its_size(strata, estate: Path) -> None:
    result = _ok(strata("graph", "-o", "whole.svg", cwd=estate))
    assert (estate / "whole.svg").read_bytes().startswith(b"<?xml")
    assert re.search(r"warning: whole\.svg is \d+x\d\d,\d\d\d pt for 1,200 stacks", result.stderr), result.stderr
    assert "more than 14,400 pt (200 inches)" in result.stderr
    assert "warning" not in _ok(strata("graph", "--env", "dev", "--layer", "networking", "-o", "few.svg",
                                       cwd=estate)).stderr


def test_a_focused_picture_of_one_cluster_is_its_vpc_and_services(strata, estate: Path) -> None:
    cluster = "dev/eu-east-1/02-compute/eks-clusters/cluster-1"
    document = json.loads(_ok(strata("graph", cluster, "--include-dependencies", "--include-dependents", "--json",
                                     cwd=estate)).stdout)
    # not the VPC's other clusters and their services (dependencies of dependents): those were not asked for
    assert [(n["id"], n["selected"]) for n in document["nodes"]] == [
        ("dev/eu-east-1/01-networking/vpc-1", False), (cluster, True),
        ("dev/eu-east-1/03-applications/service-1", False), ("dev/eu-east-1/03-applications/service-101", False)]
