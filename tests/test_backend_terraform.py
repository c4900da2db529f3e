"""Generated backend configuration is accepted by real Terraform 1.0.3 and 1.11.

Each test builds a small repository, runs ``strata generate`` with ``STRATA_TERRAFORM`` naming the
binary (so strata renders for that version), then runs that binary: ``init`` + ``apply`` against real
storage (local files, moto for s3, a PostgreSQL cluster for pg), and ``init`` alone for azurerm and gcs,
which have no emulator Terraform can use offline: there it must fail only for lack of credentials,
never because a setting is not accepted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hcl2
import pytest

from conftest import Result, snapshot, write_tree

if TYPE_CHECKING:  # imported for real by pytest_plugins, which also rewrites its asserts
    from servers import MotoServer, PostgresServer

pytest_plugins = ["servers"]
pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

ENV = "dev"
STACK_TF = """
variable "name" {
  type = string
}

resource "null_resource" "this" {
  triggers = {
    name = var.name
  }
}

output "name" {
  value = var.name
}
"""
STACK_HCL = 'stack {}\ninputs = { name = "${strata.layer}-${strata.environment}" }\n'
# Texts in terraform's output that mean a backend setting was refused (not a credentials or network problem).
REFUSED = ("Unsupported argument", "An argument named", "Invalid backend configuration", "not expected here")
TF_TIMEOUT = 120.0


@functools.cache
def version_of(binary: str) -> tuple[int, ...]:
    proc = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    return tuple(int(n) for n in json.loads(proc.stdout)["terraform_version"].split("-")[0].split("."))


def terraform_env(provider_mirror: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    """The environment for terraform: the offline mirror, no credentials or settings from this machine."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "ARM_", "GOOGLE_", "TF_", "PG", "STRATA_"))}
    home.mkdir(parents=True, exist_ok=True)
    no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY"), "127.0.0.1", "localhost") if p)
    env.update(provider_mirror, HOME=str(home), NO_PROXY=no_proxy, no_proxy=no_proxy, **extra)
    return env


def terraform(binary: str, *args: str, cwd: Path, env: dict[str, str], timeout: float = TF_TIMEOUT) -> Result:
    try:
        proc = subprocess.run([binary, *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        def text(data: bytes | str | None) -> str:
            return data.decode(errors="replace") if isinstance(data, bytes) else data or ""

        pytest.fail(f"terraform {' '.join(args)} did not finish within {timeout:.0f} s in {cwd}:\n"
                    f"{text(exc.stdout)}{text(exc.stderr)}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def init_and_apply(binary: str, stack: Path, env: dict[str, str]) -> None:
    init = terraform(binary, "init", "-input=false", cwd=stack, env=env)
    assert init.code == 0, f"init failed in {stack}:\n{init.output}"
    apply = terraform(binary, "apply", "-auto-approve", "-input=false", cwd=stack, env=env)
    assert apply.code == 0, f"apply failed in {stack}:\n{apply.output}"


def assert_no_changes(binary: str, stack: Path, env: dict[str, str]) -> None:
    """A plan after apply reads the stored state back: exit 0 means it found everything applied."""
    plan = terraform(binary, "plan", "-detailed-exitcode", "-input=false", cwd=stack, env=env)
    assert plan.code == 0, f"plan after apply should find no changes in {stack}:\n{plan.output}"


def make_repo(root: Path, backend: str, stacks: tuple[str, ...]) -> Path:
    files = {"strata.hcl": "strata {}\n\n" + backend}
    for stack in stacks:
        files[f"{stack}/strata.hcl"] = STACK_HCL
        files[f"{stack}/main.tf"] = STACK_TF
    return write_tree(root, files)


def generate(strata: Strata, repo: Path, binary: str) -> None:
    result = strata("generate", cwd=repo, env={"STRATA_TERRAFORM": binary})
    assert result.code == 0, result.output


def _plain(value: Any) -> Any:
    """python-hcl2's dict output without its quoting and block markers."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return json.loads(value)
    return value


def generated_backend(stack: Path) -> tuple[str, dict[str, Any]]:
    """(type, settings) of the backend block in the stack's generated ``strata_backend.tf``."""
    text = (stack / "strata_backend.tf").read_text(encoding="utf-8")
    assert text.startswith("# Generated by strata"), text
    parsed = _plain(hcl2.loads(text))
    [block] = parsed["terraform"][0]["backend"]
    [(kind, settings)] = block.items()
    return kind, settings


def state_key(stack: str) -> str:
    return f"{stack}/terraform.tfstate"


def expected_name(stack: str) -> str:
    return f"{stack.rsplit('/', 1)[-1]}-{ENV}"


def assert_state(data: bytes | str, stack: str, binary: str) -> None:
    state = json.loads(data)
    assert state["outputs"]["name"]["value"] == expected_name(stack)
    assert [(r["type"], r["name"]) for r in state["resources"]] == [("null_resource", "this")]
    assert tuple(int(n) for n in state["terraform_version"].split(".")) == version_of(binary)


# -- local (the embedded default) ---------------------------------------------------------------------

def test_local_backend_end_to_end(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                  tmp_path: Path) -> None:
    stacks = ("dev/us-east-1/01-network", "dev/us-east-1/02-platform")
    repo = make_repo(tmp_path / "repo", "", stacks)
    generate(strata, repo, terraform_binary)
    env = terraform_env(provider_mirror, tmp_path / "home")
    for stack in stacks:
        kind, settings = generated_backend(repo / stack)
        assert (kind, settings) == ("local", {"path": f"../../../.strata/state/{state_key(stack)}"})
        init_and_apply(terraform_binary, repo / stack, env)
        state_file = repo / ".strata" / "state" / state_key(stack)
        assert state_file.is_file(), sorted(p.as_posix() for p in (repo / ".strata").rglob("*"))
        assert_state(state_file.read_bytes(), stack, terraform_binary)
        assert not (repo / stack / "terraform.tfstate").exists()
    assert_no_changes(terraform_binary, repo / stacks[0], env)


# -- s3 on moto ------------------------------------------------------------------------------------------

def s3_backend(moto: MotoServer, bucket: str, spelling: str, lock: str) -> str:
    """A ``backend "s3"`` block for moto, in the ``modern`` (>= 1.6) or ``flat`` (< 1.6) spelling."""
    ep = moto.endpoint
    lines = [f'bucket = "{bucket}"', f'region = "{moto.region}"', "encrypt = true", lock]
    if spelling == "modern":
        lines += [f'endpoints = {{\n    s3       = "{ep}"\n    dynamodb = "{ep}"\n    sts      = "{ep}"\n'
                  f'    iam      = "{ep}"\n  }}',
                  "use_path_style = true", "skip_requesting_account_id = true"]
    else:  # no skip_requesting_account_id: Terraform >= 1.6 asks moto's STS for the account instead
        lines += [f'endpoint = "{ep}"', f'dynamodb_endpoint = "{ep}"', f'sts_endpoint = "{ep}"',
                  f'iam_endpoint = "{ep}"', "force_path_style = true"]
    lines += ["skip_credentials_validation = true", "skip_region_validation = true", "skip_metadata_api_check = true"]
    return 'backend "s3" {\n' + "".join(f"  {line}\n" for line in lines) + "}\n"


def s3_env(provider_mirror: dict[str, str], home: Path, moto: MotoServer) -> dict[str, str]:
    return terraform_env(provider_mirror, home, AWS_ACCESS_KEY_ID=moto.access_key,
                         AWS_SECRET_ACCESS_KEY=moto.secret_key, AWS_EC2_METADATA_DISABLED="true")


FLAT_NAMES = {"endpoint", "dynamodb_endpoint", "sts_endpoint", "iam_endpoint", "force_path_style"}
MODERN_NAMES = {"endpoints", "use_path_style", "skip_requesting_account_id", "skip_s3_checksum", "use_lockfile"}


@pytest.mark.parametrize("spelling", ["modern", "flat"])
def test_s3_backend_on_moto(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                            moto_server: MotoServer, tmp_path: Path, spelling: str) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    stacks = ("dev/us-east-1/01-network", "dev/us-east-1/02-platform")
    backend = s3_backend(moto_server, bucket, spelling, f'dynamodb_table = "{table}"')
    repo = make_repo(tmp_path / "repo", backend, stacks)
    generate(strata, repo, terraform_binary)
    old = version_of(terraform_binary) < (1, 6)
    ep = moto_server.endpoint
    for stack in stacks:
        kind, settings = generated_backend(repo / stack)
        assert kind == "s3"
        assert {k: settings[k] for k in ("bucket", "key", "region", "dynamodb_table", "encrypt")} == {
            "bucket": bucket, "key": state_key(stack), "region": moto_server.region, "dynamodb_table": table,
            "encrypt": True}
        if old:  # Terraform 1.0.3 knows only the flat names
            assert not MODERN_NAMES & settings.keys(), settings
            assert {k: settings[k] for k in FLAT_NAMES} == {
                "endpoint": ep, "dynamodb_endpoint": ep, "sts_endpoint": ep, "iam_endpoint": ep,
                "force_path_style": True}
        else:  # 1.11 ignores the flat endpoint names for STS/IAM: the endpoints map is required
            assert not FLAT_NAMES & settings.keys(), settings
            assert settings["endpoints"] == {"s3": ep, "dynamodb": ep, "sts": ep, "iam": ep}
            assert settings["use_path_style"] is True
            assert settings.get("skip_requesting_account_id") is (True if spelling == "modern" else None)

    env = s3_env(provider_mirror, tmp_path / "home", moto_server)
    for stack in stacks:
        init_and_apply(terraform_binary, repo / stack, env)
    # exactly the state objects (no lock object left behind), at the keys strata chose
    assert moto_server.object_keys(bucket) == sorted(state_key(s) for s in stacks)
    items = moto_server.table_items(table)
    # only the digest items: every lock was released
    assert sorted(items) == sorted(f"{bucket}/{state_key(s)}-md5" for s in stacks)
    for stack in stacks:
        data = moto_server.get_object(bucket, state_key(stack))
        assert_state(data, stack, terraform_binary)
        assert items[f"{bucket}/{state_key(stack)}-md5"]["Digest"] == hashlib.md5(data).hexdigest()
    assert_no_changes(terraform_binary, repo / stacks[0], env)


def test_s3_use_lockfile_on_moto(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                 moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    stack = "dev/us-east-1/01-network"
    repo = make_repo(tmp_path / "repo", s3_backend(moto_server, bucket, "modern", "use_lockfile = true"), (stack,))
    generate(strata, repo, tf_111)
    kind, settings = generated_backend(repo / stack)
    assert kind == "s3"
    assert settings["use_lockfile"] is True
    assert "dynamodb_table" not in settings

    env = s3_env(provider_mirror, tmp_path / "home", moto_server)
    init_and_apply(tf_111, repo / stack, env)
    key = state_key(stack)
    assert moto_server.object_keys(bucket) == [key]  # the lock object is gone after apply
    assert_state(moto_server.get_object(bucket, key), stack, tf_111)

    # The lock really is the S3 object: while someone else holds it, terraform waits and gives up.
    holder = {"ID": "5d2e1f7e-0000-4000-8000-000000000001", "Operation": "OperationTypeApply", "Info": "",
              "Who": "someone@elsewhere", "Version": "1.11.4", "Created": "2025-01-01T00:00:00Z",
              "Path": f"{bucket}/{key}"}
    moto_server.client("s3").put_object(Bucket=bucket, Key=f"{key}.tflock", Body=json.dumps(holder).encode())
    locked = terraform(tf_111, "plan", "-input=false", "-lock-timeout=0s", cwd=repo / stack, env=env)
    assert locked.code == 1, locked.output
    assert "Error acquiring the state lock" in locked.output
    assert "someone@elsewhere" in locked.output
    moto_server.client("s3").delete_object(Bucket=bucket, Key=f"{key}.tflock")
    assert_no_changes(tf_111, repo / stack, env)


def _lockfile_only_repo(tmp_path: Path) -> Path:
    """The configuration of test_s3_use_lockfile_on_moto (no server needed: nothing connects)."""
    from servers import MotoServer

    backend = s3_backend(MotoServer(endpoint="http://127.0.0.1:9", port=9), "strata-state", "modern",
                         "use_lockfile = true")
    return make_repo(tmp_path / "repo", backend, ("dev/us-east-1/01-network",))


def test_s3_use_lockfile_without_dynamodb_refused_by_validate_for_103(strata: Strata, tf_103: str,
                                                                      tmp_path: Path) -> None:
    repo = _lockfile_only_repo(tmp_path)
    result = strata("validate", cwd=repo, env={"STRATA_TERRAFORM": tf_103})
    assert result.code == 1, result.output
    lines = (repo / "strata.hcl").read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "use_lockfile" in text)
    assert f"strata.hcl:{line}: error:" in result.output  # points at the use_lockfile line
    assert "use_lockfile needs Terraform >= 1.10 (found 1.0.3)" in result.output
    assert "dynamodb_table" in result.output


def test_s3_use_lockfile_without_dynamodb_refused_by_generate_for_103(strata: Strata, tf_103: str,
                                                                      tmp_path: Path) -> None:
    """Rendering for 1.0.3 drops use_lockfile; with no dynamodb_table the stack would run without any lock."""
    repo = _lockfile_only_repo(tmp_path)
    before = snapshot(repo)
    result = strata("generate", cwd=repo, env={"STRATA_TERRAFORM": tf_103})
    assert result.code == 1, f"generate wrote an s3 backend without locking for 1.0.3:\n{result.output}"
    assert "use_lockfile needs Terraform >= 1.10" in result.output
    assert snapshot(repo) == before


# -- pg on PostgreSQL ------------------------------------------------------------------------------------

def test_pg_backend_on_postgres(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                postgres_server: PostgresServer, tmp_path: Path) -> None:
    database = postgres_server.create_database()
    conn_str = postgres_server.url(database)
    stacks = ("dev/us-east-1/01-network", "dev/us-east-1/02-platform")
    repo = make_repo(tmp_path / "repo", f'backend "pg" {{\n  conn_str = "{conn_str}"\n}}\n', stacks)
    generate(strata, repo, terraform_binary)
    schemas = {}
    for stack in stacks:
        kind, settings = generated_backend(repo / stack)
        assert kind == "pg"
        assert settings["conn_str"] == conn_str
        schemas[stack] = settings["schema_name"]
    assert schemas == {"dev/us-east-1/01-network": "dev_us_east_1_01_network",
                       "dev/us-east-1/02-platform": "dev_us_east_1_02_platform"}

    env = terraform_env(provider_mirror, tmp_path / "home")
    for stack in stacks:
        init_and_apply(terraform_binary, repo / stack, env)
    for stack, schema in schemas.items():
        rows = postgres_server.query(database, f'SELECT name, data FROM "{schema}".states ORDER BY name')
        assert [name for name, _ in rows] == ["default"]
        assert_state(rows[0][1], stack, terraform_binary)
    assert_no_changes(terraform_binary, repo / stacks[0], env)


# -- azurerm and gcs: init gets as far as asking for credentials -----------------------------------------

OFFLINE_BACKENDS: dict[str, tuple[str, str, dict[str, str], str]] = {
    # type: (stack, backend block, environment that fails fast offline, the credential error expected)
    "azurerm": (
        "dev/westeurope/01-network",
        'backend "azurerm" {\n'
        '  storage_account_name = "stratastate"\n'
        '  container_name       = "tfstate"\n'
        '  resource_group_name  = "strata-state"\n'
        '  subscription_id      = "00000000-0000-0000-0000-000000000001"\n'
        '  tenant_id            = "00000000-0000-0000-0000-000000000002"\n'
        "}\n",
        # a shared key that is not base64 fails before any request (1.0.3 retries network errors for minutes)
        {"ARM_ACCESS_KEY": "not-base64!"},
        "illegal base64",
    ),
    "gcs": (
        "dev/europe-west1/01-network",
        'backend "gcs" {\n  bucket = "strata-state"\n}\n',
        {"GOOGLE_CREDENTIALS": json.dumps({"type": "service_account", "project_id": "strata-test",
                                           "client_email": "strata@strata-test.iam.gserviceaccount.com",
                                           "private_key": "not a key", "client_id": "1"})},
        "private key",
    ),
}


@pytest.mark.parametrize("kind", sorted(OFFLINE_BACKENDS))
def test_backend_settings_accepted_offline(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                           tmp_path: Path, kind: str) -> None:
    stack, backend, extra_env, credential_error = OFFLINE_BACKENDS[kind]
    repo = make_repo(tmp_path / "repo", backend, (stack,))
    generate(strata, repo, terraform_binary)
    found, settings = generated_backend(repo / stack)
    assert found == kind
    if kind == "gcs":
        assert settings == {"bucket": "strata-state", "prefix": stack}
    else:
        assert settings["key"] == state_key(stack)
        assert settings["storage_account_name"] == "stratastate"

    env = terraform_env(provider_mirror, tmp_path / "home", **extra_env)
    init = terraform(terraform_binary, "init", "-input=false", cwd=repo / stack, env=env, timeout=60)
    assert init.code != 0, init.output
    refused = [text for text in REFUSED if text in init.output]
    assert not refused, f"terraform refused a generated setting:\n{init.output}"
    # the settings were accepted: terraform configured the backend and failed when it reached the storage
    assert "Failed to get existing workspaces" in init.output, init.output
    assert credential_error in init.output, init.output


def test_azurerm_setting_newer_than_terraform_103(strata: Strata, tf_103: str, provider_mirror: dict[str, str],
                                                  tmp_path: Path) -> None:
    """``use_cli`` (an azurerm setting Terraform 1.0.3 does not know) must not reach it unannounced:
    either strata validate reports it, or the generated configuration is one 1.0.3 accepts."""
    stack, backend, extra_env, _ = OFFLINE_BACKENDS["azurerm"]
    repo = make_repo(tmp_path / "repo", backend.replace("{\n", "{\n  use_cli = false\n", 1), (stack,))
    validate = strata("validate", cwd=repo, env={"STRATA_TERRAFORM": tf_103})
    if validate.code == 1:
        assert "use_cli" in validate.output, validate.output
        return
    generate(strata, repo, tf_103)
    env = terraform_env(provider_mirror, tmp_path / "home", **extra_env)
    init = terraform(tf_103, "init", "-input=false", cwd=repo / stack, env=env, timeout=60)
    refused = [text for text in REFUSED if text in init.output]
    assert not refused, f"strata validate passed, but Terraform 1.0.3 refuses the generated backend:\n{init.output}"
