"""`pip install .` (not editable) finds packages by their __init__.py: a folder without one is left out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from strata import __version__

SRC = Path(__file__).resolve().parent.parent / "src" / "strata"


def test_every_source_folder_is_a_package() -> None:
    folders = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == [], f"folders a wheel would leave out: {missing}"


def test_the_wheel_is_tfstrata_and_provides_the_strata_command(tmp_path: Path) -> None:
    """`pip install strata` is someone else's project: the distribution is tfstrata, its command `strata`, and it
    carries the licence pyproject promises. Built offline from the repository's files (a copy: no build/ here)."""
    repo = SRC.parent.parent
    files = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    source = tmp_path / "source"
    for name in files.decode().split("\0"):
        if name and (repo / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith(f"tfstrata-{__version__}-"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"tfstrata-{__version__}.dist-info"
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert "strata = strata.main:main" in entry_points
    assert "Name: tfstrata" in metadata
    assert any(n.startswith(info) and n.endswith("LICENSE") for n in names), names
    assert "strata/main.py" in names and "strata/py.typed" in names

    target = tmp_path / "installed"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                                "--disable-pip-version-check", "-q", "--target", str(target), str(wheel)],
                               capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    script = (target / "bin" / "strata").read_text()
    assert "from strata.main import main" in script
    # the installed copy runs (its dependencies come from this environment)
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run([sys.executable, "-c", "import strata, sys; print(strata.__file__)"],
                           env=env, capture_output=True, text=True, check=False)
    assert shown.stdout.startswith(str(target)), shown.stdout + shown.stderr


def test_the_readme_installs_tfstrata_at_this_version() -> None:
    readme = (SRC.parent.parent / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "pip install" in line or "tool install" in line]
    assert any("pipx install tfstrata" in line for line in lines) and any("uv tool install tfstrata" in line
                                                                            for line in lines)
    for line in lines:
        assert "pip install strata" not in line.replace("`pip install strata` does not", ""), line
        if "tfstrata" in line and "==" in line:
            assert f"=={__version__}" in line, line
    assert (SRC.parent.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
