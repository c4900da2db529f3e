"""strata graph -o FILE.png|svg draws with Graphviz; without it, a clear message and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import write_tree

REPO = {
    "strata.hcl": "strata {}\n",
    "dev/eu-west-1/01-net/strata.hcl": "stack {}\n",
    "dev/eu-west-1/02-eks/strata.hcl": 'stack {}\ndependencies = ["../01-net"]\n',
}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` missing (scripts/test installs graphviz)")
@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_image_is_drawn_with_graphviz(strata, tmp_path: Path, suffix: str, magic: bytes) -> None:
    write_tree(tmp_path, REPO)
    result = strata("graph", "-o", f"graph{suffix}", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert (tmp_path / f"graph{suffix}").read_bytes().startswith(magic)


def test_image_without_graphviz_is_a_clear_usage_error(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, REPO)
    result = strata("graph", "-o", "graph.png", cwd=tmp_path, env={"PATH": str(tmp_path / "no-bin")})
    assert result.code == 64
    assert "Graphviz" in result.stderr and "--format dot" in result.stderr
    assert not (tmp_path / "graph.png").exists()


def test_dot_text_to_file(strata, tmp_path: Path) -> None:
    write_tree(tmp_path, REPO)
    result = strata("graph", "-o", "graph.dot", cwd=tmp_path)
    assert result.code == 0
    text = (tmp_path / "graph.dot").read_text()
    assert '"dev/eu-west-1/01-net" -> "dev/eu-west-1/02-eks";' in text
