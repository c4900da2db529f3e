"""Every backend setting has a declared type (issue 10, item 12): a value of the wrong type is an error at its
file:line, through the real CLI, for each kind of type; values of the right type pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.backends import BACKEND_TYPES, get_backend
from strata.backends.base import Kind, SettingType

Strata = Callable[..., Result]

STACK = "dev/us-east-1/01-foundation"
REQUIRED = {
    "s3": 'bucket = "acme-state"\n  region = "us-east-1"\n  encrypt = true',
    "pg": 'conn_str = "postgres://db/state"',
    "gcs": 'bucket = "acme-state"',
    "azurerm": 'storage_account_name = "acme"\n  container_name = "state"',
    "local": "",
}


def repo_with(tmp_path: Path, backend: str, setting: str) -> Path:
    """A repository whose root backend block has the required settings, then ``setting`` on the last line
    before the closing brace (line 3 + number of required lines)."""
    body = "\n".join(line for line in (REQUIRED[backend] and f"  {REQUIRED[backend]}", f"  {setting}") if line)
    return write_tree(tmp_path / "repo", {
        "strata.hcl": f'strata {{}}\nbackend "{backend}" {{\n{body}\n}}\n',
        f"{STACK}/strata.hcl": "stack {}\n",
    })


def setting_line(backend: str) -> int:
    return 3 + (REQUIRED[backend].count("\n") + 1 if REQUIRED[backend] else 0)


@pytest.mark.parametrize(("backend", "setting", "message"), [
    # string
    ("pg", "schema_name = 1", 'backend "pg": schema_name must be a string, got number'),
    ("local", "path = true", 'backend "local": path must be a string, got bool'),
    # bool (no more guessing from a skip_ prefix: use_msi is a bool too)
    ("pg", 'skip_table_creation = "yes"', "skip_table_creation must be true or false, got string"),
    ("azurerm", "use_msi = 1", "use_msi must be true or false, got number"),
    # whole number
    ("s3", 'max_retries = "5"', "max_retries must be a whole number, got string"),
    ("s3", "max_retries = 2.5", "max_retries must be a whole number, got number"),
    # list of strings
    ("gcs", 'impersonate_service_account_delegates = "sa@x"', "must be a list of strings, got string"),
    ("s3", 'allowed_account_ids = ["111111111111", 2]', "allowed_account_ids[1] must be a string, got number"),
    # map of strings
    ("s3", 'assume_role_tags = ["a"]', "assume_role_tags must be a map of strings, got list"),
    ("s3", "assume_role_tags = { team = 1 }", "assume_role_tags.team must be a string, got number"),
    # block (a nested block written as a map)
    ("s3", 'endpoints = "http://127.0.0.1:5000"', "endpoints must be a block, written as a map"),
    ("s3", 'endpoints = { s4 = "http://x" }', "unknown setting 's4' in endpoints (known: dynamodb, iam, s3, sso, "
                                              "sts)"),
    ("s3", "endpoints = { s3 = 5000 }", "endpoints.s3 must be a string, got number"),
    ("s3", 'assume_role = { role_arn = "arn:x", policy_arns = "arn:p" }',
     "assume_role.policy_arns must be a list of strings, got string"),
    # duration: a string like "1h" or a number of seconds
    ("s3", 'assume_role = { role_arn = "arn:x", duration = true }', "assume_role.duration must be a duration"),
])
def test_a_setting_of_the_wrong_type_is_an_error_at_its_line(strata: Strata, tmp_path: Path, backend: str,
                                                             setting: str, message: str) -> None:
    root = repo_with(tmp_path, backend, setting)
    result = strata("validate", cwd=root)
    assert result.code == 1, result.output
    errors = [line for line in result.output.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(f"strata.hcl:{setting_line(backend)}: error: "), result.output
    assert message in errors[0], result.output


def test_the_issue_example(strata: Strata, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "pg" {\n  conn_str = 1\n}\n',
        f"{STACK}/strata.hcl": "stack {}\n",
    })
    result = strata("validate", cwd=root)
    assert result.code == 1
    assert 'strata.hcl:3: error: backend "pg": conn_str must be a string, got number' in result.output


@pytest.mark.parametrize(("backend", "setting"), [
    ("s3", "max_retries = 5"),
    ("s3", 'endpoints = { s3 = "http://127.0.0.1:5000", dynamodb = "http://127.0.0.1:5000" }'),
    ("s3", 'assume_role = { role_arn = "arn:x", duration = "1h", tags = { team = "a" }, policy_arns = [] }'),
    ("s3", 'assume_role = { role_arn = "arn:x", duration = 3600 }'),
    ("s3", 'shared_config_files = ["~/.aws/config"]'),
    ("pg", "skip_index_creation = true"),
    ("gcs", 'impersonate_service_account_delegates = ["a@b", "c@d"]'),
    ("azurerm", "use_azuread_auth = true"),
    ("local", 'workspace_dir = "ws"'),
])
def test_settings_of_the_right_type_pass(strata: Strata, tmp_path: Path, backend: str, setting: str) -> None:
    root = repo_with(tmp_path, backend, setting)
    result = strata("validate", cwd=root)
    assert ": error: " not in result.output, result.output


@pytest.mark.parametrize("name", BACKEND_TYPES)
def test_every_setting_of_every_backend_has_a_type(name: str) -> None:
    backend = get_backend(name)
    assert backend is not None
    assert backend.schema and all(isinstance(t, SettingType) for t in backend.schema.values())
    assert backend.attributes == frozenset(backend.schema)
    assert set(backend.required) <= backend.attributes and set(backend.since) <= backend.attributes
    for setting, kind in backend.schema.items():
        if setting.startswith(("skip_", "use_")):
            assert kind.kind is Kind.BOOL, setting
