"""The example repository as the pipeline run tests (tests/test_ci_pipeline_run*.py) set it up: a copy with its
state in a real backend, published to a bare origin with a developer's clone on a feature branch, and a ``pip``
that only records what it was asked (strata under test is already installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import EXAMPLE

GITIGNORE = ".strata/\n.terraform/\nstrata_*\n.terraform.lock.hcl\n"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def example_copy(tmp_path: Path, backend: str, *, ci_block: str | None = None, gitignore: str = GITIGNORE) -> Path:
    """The example at ``tmp_path/seed`` with ``backend`` for its ``backend "local" {}`` and, when given,
    ``ci_block`` opening its ``ci {`` block (settings added to the example's)."""
    repo = tmp_path / "seed"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".strata", ".terraform", "strata_backend.tf",
                                                                 "strata_inputs.auto.tfvars"))
    root = repo / "strata.hcl"
    text = root.read_text()
    assert 'backend "local" {}' in text and (ci_block is None or "\nci {\n" in text)
    text = text.replace('backend "local" {}', backend)
    if ci_block is not None:
        text = text.replace("\nci {\n", "\n" + ci_block, 1)
    root.write_text(text)
    (repo / ".gitignore").write_text(gitignore)
    return repo


def publish(tmp_path: Path, repo: Path, message: str) -> tuple[Path, Path]:
    """``repo`` committed and pushed to a bare ``origin.git``; (origin, a developer's clone on branch feature)."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    git(repo, "push", "-q", str(origin), "main")
    dev = tmp_path / "dev"
    git(tmp_path, "clone", "-q", str(origin), str(dev))
    git(dev, "checkout", "-q", "-b", "feature")
    return origin, dev


def change(dev: Path, stack: str, old: str, new: str, message: str) -> str:
    """Commit a change of ``stack``'s strata.hcl on the feature branch and push it; the new head SHA."""
    hcl = dev / stack / "strata.hcl"
    assert old in hcl.read_text()
    hcl.write_text(hcl.read_text().replace(old, new))
    git(dev, "commit", "-q", "-am", message)
    git(dev, "push", "-q", "origin", "feature")
    return git(dev, "rev-parse", "HEAD")


def pip_shim(tmp_path: Path) -> Path:
    """A folder holding a ``pip`` that records its arguments in ``tmp_path/pip-installs.log``."""
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "pip").write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path / "pip-installs.log"}"\n')
    (shims / "pip").chmod(0o755)
    return shims
