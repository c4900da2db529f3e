"""`pip install .` (not editable) finds packages by their __init__.py: a folder without one is left out."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "strata"


def test_every_source_folder_is_a_package() -> None:
    folders = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == [], f"folders a wheel would leave out: {missing}"
