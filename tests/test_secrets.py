"""Sensitive dependency outputs never reach what strata prints or writes; the files that hold them are private.

The repository: ``db`` has sensitive outputs (a string, a map with a list, a number); ``app`` reads them
into variables it does NOT mark sensitive, so terraform itself prints them in clear; ``broken`` fails its
plan with ``var.db_password is "..."`` in the error. db is applied first, then only the dependents are
planned (by name, and through ``--changed``): db is not selected, so its outputs are read from its state
and nothing in the plans of the selected stacks says they are secret.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.migrate.verify import verify
from strata.run.display import PrefixedLines
from strata.run.engine import Runner, RunOptions
from strata.run.redact import REDACTED, Secrets, open_log
from strata.workspace import Workspace

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

PASSWORD = "s3cr3t-Pa55word-42"
KEY = "k3y-primary-7781"
LISTED = "l1st-secret-551"
PORT = 54321
SECRETS = (PASSWORD, KEY, LISTED, str(PORT))
VISIBLE_HOST = "db.internal.example"  # a plain output of db: must still be shown

DB = {
    "strata.hcl": "stack {}\n",
    "main.tf": f"""
        resource "null_resource" "db" {{}}
        output "db_password" {{
          value     = "{PASSWORD}"
          sensitive = true
        }}
        output "db_keys" {{
          value     = {{ primary = "{KEY}", list = ["{LISTED}"] }}
          sensitive = true
        }}
        output "db_port" {{
          value     = {PORT}
          sensitive = true
        }}
        output "db_host" {{
          value = "{VISIBLE_HOST}"
        }}
        """,
}

DEPENDENT_HCL = """
    stack {}
    dependency "db" {
      path = "../db"
    }
    inputs = {
      db_password = dependency.db.outputs.db_password
      db_keys     = dependency.db.outputs.db_keys
      db_port     = dependency.db.outputs.db_port
      db_host     = dependency.db.outputs.db_host
    }
    """

VARIABLES = """
    variable "db_password" {
      type = string
    }
    variable "db_keys" {
      type = object({ primary = string, list = list(string) })
    }
    variable "db_port" {
      type = number
    }
    variable "db_host" {
      type = string
    }
    """

APP = {
    "strata.hcl": DEPENDENT_HCL,
    "main.tf": VARIABLES + """
    resource "null_resource" "app" {
      triggers = {
        password = var.db_password
        primary  = var.db_keys.primary
        listed   = join(",", var.db_keys.list)
        port     = tostring(var.db_port)
        host     = var.db_host
      }
    }
    output "connection" {
      value = "postgres://app:${var.db_password}@${var.db_host}:${var.db_port}"
    }
    output "keys" {
      value = var.db_keys
    }
    """,
}

BROKEN = {
    "strata.hcl": DEPENDENT_HCL,
    "main.tf": VARIABLES + """
    output "as_number" {
      value = tonumber(var.db_password)
    }
    """,
}


def secret_repo(root: Path) -> Path:
    files = {"strata.hcl": 'strata {}\nbackend "local" {}\n'}
    for name, stack in (("db", DB), ("app", APP), ("broken", BROKEN)):
        files.update({f"{name}/{rel}": text for rel, text in stack.items()})
    return write_tree(root, files)


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}:\n{text[-3000:]}"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(folder: Path) -> list[Path]:
    """``folder`` and every folder below it are 0700, every file 0600 (but the ``*`` of a ``.strata/.gitignore``);
    returns the files."""
    assert folder.is_dir(), folder
    assert mode(folder) == 0o700, f"{folder}: {oct(mode(folder))}"
    files = []
    for path in sorted(folder.rglob("*")):
        if path.name == ".gitignore" and path.parent.name == ".strata":
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path}: {oct(mode(path))}, expected {oct(expected)}"
        if path.is_file():
            files.append(path)
    return files


def plan_and_check(strata: Strata, repo: Path, env: dict[str, str], tmp_path: Path, *selection: str) -> None:
    """Plan the dependents of db (db itself not selected) and look for the secrets everywhere strata writes."""
    summary = tmp_path / "out.md"
    report_file = tmp_path / "report.json"
    result = strata("plan", *selection, "--summary-md", str(summary), "--json", str(report_file), cwd=repo,
                    env=env)
    assert result.code == 1, result.output  # broken fails, app has changes
    report = json.loads(report_file.read_text())
    assert {s["path"]: s["status"] for s in report["stacks"]} == {"app": "changes", "broken": "failed"}

    # the terminal shows terraform's lines (the plain output is there), with every secret redacted
    assert_no_secret("stdout", result.stdout)
    assert_no_secret("stderr", result.stderr)
    assert VISIBLE_HOST in result.stdout and REDACTED in result.stdout, result.stdout
    assert "tonumber" in result.stdout  # the failing plan's error text was printed
    assert_no_secret("the JSON report", report_file.read_text())
    text = summary.read_text()
    assert "null_resource.app" in text and "plan failed" in text and REDACTED in text, text
    assert VISIBLE_HOST in text
    assert_no_secret("the Markdown summary", text)

    # logs: private, and what strata writes into them is redacted too
    run_dir = repo / ".strata" / "logs" / Path(report["log_dir"]).name
    logs = assert_private(run_dir)
    assert {p.relative_to(run_dir).as_posix() for p in logs} >= {"app/terraform.log", "broken/terraform.log"}
    for log in logs:
        assert_no_secret(str(log), log.read_text())
    assert f'var.db_password is "{REDACTED}"' in (run_dir / "broken" / "terraform.log").read_text()

    # the saved plan holds the secret in clear (terraform's format): private, in a private folder
    plans = assert_private(repo / ".strata" / "plans")
    assert {p.relative_to(repo / ".strata" / "plans").as_posix() for p in plans} >= {"app/plan.tfplan",
                                                                                      "app/plan.json"}
    shown = subprocess.run([env["STRATA_TERRAFORM"], "show", "-no-color", str(repo / ".strata/plans/app/plan.tfplan")],
                           cwd=repo / "app", env={**os.environ, **env}, capture_output=True, text=True, check=False)
    assert PASSWORD in shown.stdout, shown.stdout + shown.stderr  # the premise: terraform prints it in clear


def test_secrets_of_an_unselected_dependency_are_redacted_everywhere(
        strata: Strata, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = secret_repo(tmp_path / "repo")
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary, "STRATA_NO_LIVE": "1"}
    applied = strata("apply", "db", "--yes", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert_no_secret("the output of applying db", applied.output)
    plan_and_check(strata, repo, env, tmp_path, "app", "broken")
    assert mode(repo / ".strata") == 0o700

    # applying app prints its outputs; `strata output` shows them from its state: both redacted
    applied = strata("apply", "app", "--yes", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert_no_secret("the output of applying app", applied.output)
    shown = strata("output", "app", cwd=repo, env=env)
    assert shown.code == 0, shown.output
    assert f"postgres://app:{REDACTED}@{VISIBLE_HOST}:{REDACTED}" in shown.stdout, shown.stdout
    assert_no_secret("strata output", shown.output)
    assert_private(repo / ".strata" / "history")  # the states before and after each apply


def test_plan_changed_redacts_the_secrets_of_a_dependency_it_does_not_plan(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = secret_repo(tmp_path / "repo")
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env=env).code == 0
    (repo / ".gitignore").write_text(".terraform/\nstrata_*\n.terraform.lock.hcl\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    for name in ("app", "broken"):
        main = repo / name / "main.tf"
        main.write_text(main.read_text() + "\n# a reviewed change\n")
    plan_and_check(strata, repo, env, tmp_path, "--changed")


def test_history_and_backups_are_private(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                         tmp_path: Path) -> None:
    repo = secret_repo(tmp_path / "repo")
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env=env).code == 0
    versions = strata("state", "versions", "db", "--json", cwd=repo, env=env)
    assert versions.code == 0, versions.output
    listed = json.loads(versions.stdout)
    entries = listed["versions"] if isinstance(listed, dict) else listed
    restored = strata("state", "restore", "db", "--version", str(entries[-1]["id"]), "--yes", cwd=repo, env=env)
    assert restored.code == 0, restored.output
    assert_private(repo / ".strata" / "history")
    assert any(PASSWORD in p.read_text() for p in assert_private(repo / ".strata" / "backups"))
    copy = tmp_path / "copy"
    assert strata("state", "backup", "db", "--to", str(copy), cwd=repo, env=env).code == 0
    states = [p for p in copy.rglob("*.tfstate")]
    assert states and all(mode(p) == 0o600 for p in states), [(p, oct(mode(p))) for p in states]


def test_the_terraform_output_fallback_logs_what_it_reveals_redacted(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Backends strata cannot read itself (azurerm, gcs: no emulator here) go through ``terraform output
    -json``, which prints sensitive values in clear. Here the same path runs on db's local state."""
    repo = secret_repo(tmp_path / "repo")
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env={**provider_mirror, "STRATA_TERRAFORM": tf_111}).code == 0
    for name, value in {**provider_mirror, "STRATA_TERRAFORM": tf_111}.items():
        monkeypatch.setenv(name, value)
    ws = Workspace(cwd=repo)
    model = ws.repository()
    runner = Runner(model, ws.terraform(), RunOptions("plan", 1), PrefixedLines())
    runner.base_env = {**os.environ, **runner.providers.prepare()}
    outputs = runner.outputs.fallback(model.stacks["db"]) if runner.outputs.fallback else None
    assert outputs is not None and outputs["db_password"]["value"] == PASSWORD
    assert set(SECRETS) <= {str(v) for v in runner.secrets.values}
    [log] = assert_private(runner.log_dir)
    text = log.read_text()
    assert '"db_password"' in text and REDACTED in text, text
    assert_no_secret(str(log), text)


def test_migration_verification_logs_are_private_and_redacted(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration's verification refreshes app in a copy: terraform prints app's outputs, secrets in clear."""
    repo = secret_repo(tmp_path / "repo")
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    assert strata("apply", "db", "app", "--yes", "-q", cwd=repo, env=env).code == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ws = Workspace(cwd=repo)
    state = next((repo / ".strata" / "state").rglob("app/terraform.tfstate")).read_bytes()
    work = tmp_path / "verification"
    verification = verify(ws.repository(), ws.terraform(), {"app": state}, work=work)
    assert verification.ok(), verification.verdicts
    [log] = assert_private(work / "logs")
    text = log.read_text()
    assert "connection" in text and REDACTED in text, text
    assert_no_secret(str(log), text)


# -- the mechanism on its own -----------------------------------------------------------------------------

def test_secrets_redact_nested_values_numbers_and_escaped_forms() -> None:
    secrets = Secrets()
    secrets.add_outputs({"plain": {"value": "visible-value", "sensitive": False},
                         "keys": {"value": {"a": ["n3sted-secret"], "b": 'quo"te-secret', "flag": True},
                                  "sensitive": True},
                         "port": {"value": 5432, "sensitive": True},
                         "short": {"value": ["abc", 7], "sensitive": True}})
    assert secrets.redact('a = "n3sted-secret", b = "quo\\"te-secret"') == f'a = "{REDACTED}", b = "{REDACTED}"'
    assert secrets.redact("port 5432, not 154320") == f"port {REDACTED}, not 154320"
    assert secrets.redact("visible-value; abc and 7 are too short to hide; true") == (
        "visible-value; abc and 7 are too short to hide; true")


def test_logs_are_created_private_and_redacted(tmp_path: Path) -> None:
    secrets = Secrets(["l0g-secret-value"])
    path = tmp_path / "terraform.log"
    path.write_text("old\n")
    path.chmod(0o644)
    with open_log(path, secrets) as log:
        log.write("token = l0g-secret-value\n")
    assert mode(path) == 0o600
    assert path.read_text() == f"token = {REDACTED}\n"
    with open_log(path, secrets, append=True) as log:
        log.write("more\n")
    assert path.read_text() == f"token = {REDACTED}\nmore\n"
