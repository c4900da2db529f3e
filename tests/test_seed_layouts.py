"""The real CLI on repositories shaped like the users' own layouts (shared/seeds 000, 002, 003 and 004).

Each test builds its repository in tmp_path and runs `strata ls --json`, `graph`, `render --json`,
`generate` and `validate` in a subprocess, asserting dimensions, state keys, backends and edges.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, snapshot, write_tree

Strata = Callable[..., Result]

# -- helpers -------------------------------------------------------------------------------------------


def ok(result: Result) -> Result:
    assert result.code == 0, result.output
    return result


def ls_json(strata: Strata, root: Path, *args: str) -> dict[str, dict[str, Any]]:
    entries = json.loads(ok(strata("ls", "--json", *args, cwd=root)).stdout)["stacks"]
    return {entry["path"]: entry for entry in entries}


def render_json(strata: Strata, root: Path, stack: str, cwd: Path | None = None) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(strata("render", stack, "--json", cwd=cwd or root)).stdout)
    return data


def validate_json(strata: Strata, root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = strata("validate", "--json", *args, cwd=root)
    return result.code, json.loads(result.stdout)


def dims(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: entry[k] for k in ("cloud", "account_id", "environment", "region", "layer", "client")}


def setting(rendered: dict[str, Any], section: str, name: str) -> Any:
    """A value from `render --json`: section is dimensions, locals, inputs (dotted leaves) or backend."""
    values = rendered["backend"]["settings"] if section == "backend" else rendered[section]
    return values[name]["value"]


def edges(dot: str) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for line in dot.splitlines():
        if "->" in line:
            left, right = line.strip().rstrip(";").split(" -> ")
            found.add((left.strip('"'), right.strip('"')))
    return found


def generated_setting(text: str, name: str) -> str:
    for line in text.splitlines():
        parts = line.strip().split("=", 1)
        if len(parts) == 2 and parts[0].strip() == name:
            return parts[1].strip()
    raise AssertionError(f"{name} not in\n{text}")


# Every variable the seeds' inputs set (validate refuses an input no variable takes: terraform ignores it).
SEED_VARIABLES = ("environment", "region", "vpc_cidr", "vpc_id", "azs", "tags", "namespace", "client_name",
                  "cluster_name", "cluster_endpoint", "backup_configuration", "foundation_id", "platform_id",
                  "databases_id")
MAIN_TF = "".join(f'variable "{name}" {{ default = null }}\n' for name in SEED_VARIABLES) + \
    'resource "null_resource" "this" {}\n'

# -- seed 000: terraform/environments/<env>/<region>/ is a stack, with a nested 0-backend/ stack -------

SEED_000_CIDRS = {("staging", "us-east-1"): "10.0.0.0/16", ("staging", "eu-central-1"): "10.1.0.0/16",
                  ("production", "us-east-1"): "10.10.0.0/16", ("production", "eu-central-1"): "10.11.0.0/16"}


def seed_000(root: Path, settings: str = "") -> Path:
    files = {
        "strata.hcl": """
            strata {SETTINGS}

            locals {
              prefix       = "sre-challenge"
              state_bucket = "${local.prefix}-terraform-state-${strata.environment}-${strata.region}"
              lock_table   = "${local.prefix}-terraform-locks-${strata.environment}-${strata.region}"
            }

            backend "s3" {
              bucket         = local.state_bucket
              dynamodb_table = local.lock_table
              region         = strata.region
              encrypt        = true
              use_lockfile   = true
            }
        """.replace("{SETTINGS}", "{" + settings + "}"),
        "scripts/deploy-environment.sh": "#!/bin/sh\nexit 0\n",
        "terraform/modules/eks/main.tf": 'variable "name" {}\n',
        "terraform/modules/eks/strata.hcl": "stack {}\n",  # never a stack: modules/ is not searched
    }
    for (env, region), cidr in SEED_000_CIDRS.items():
        base = f"terraform/environments/{env}/{region}"
        files[f"{base}/strata.hcl"] = f"""
            stack {{
              description = "{env} infrastructure in {region}"
            }}
            dependencies = ["0-backend"]
            inputs = {{
              environment = strata.environment
              region      = strata.region
              vpc_cidr    = "{cidr}"
            }}
        """
        files[f"{base}/main.tf"] = MAIN_TF
        files[f"{base}/0-backend/strata.hcl"] = """
            stack {
              description = "S3 bucket and DynamoDB table holding this region's state"
            }
            backend "local" {}
            inputs = {
              bucket_name = local.state_bucket
              table_name  = local.lock_table
            }
        """
        files[f"{base}/0-backend/main.tf"] = 'variable "bucket_name" {}\nvariable "table_name" {}\n'
    return write_tree(root, files)


ENV_000 = "terraform/environments"


def test_seed_000_ls(strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    stacks = ls_json(strata, root)
    expected = {}
    for env, region in SEED_000_CIDRS:
        expected[f"{ENV_000}/{env}/{region}"] = {"cloud": "aws", "account_id": None, "environment": env,
                                                 "region": region, "layer": None, "client": None}
        expected[f"{ENV_000}/{env}/{region}/0-backend"] = {"cloud": None, "account_id": None, "environment": env,
                                                           "region": region, "layer": "0-backend", "client": None}
    assert {path: dims(entry) for path, entry in stacks.items()} == expected
    region_stack = stacks[f"{ENV_000}/staging/us-east-1"]
    assert region_stack["backend"] == "s3"
    assert region_stack["dependencies"] == [f"{ENV_000}/staging/us-east-1/0-backend"]
    boot = stacks[f"{ENV_000}/staging/us-east-1/0-backend"]
    assert boot["backend"] == "local"
    assert boot["dependencies"] == []  # the parent stack's dependencies are its own


def test_seed_000_graph_and_run_order(strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    dot = ok(strata("graph", cwd=root)).stdout
    assert edges(dot) == {(f"{ENV_000}/{env}/{region}/0-backend", f"{ENV_000}/{env}/{region}")
                          for env, region in SEED_000_CIDRS}
    assert 'label="production / eu-central-1";' in dot
    order = json.loads(ok(strata("ls", "--json", "--run-order", cwd=root)).stdout)["stacks"]
    paths = [entry["path"] for entry in order]
    for env, region in SEED_000_CIDRS:
        base = f"{ENV_000}/{env}/{region}"
        assert paths.index(f"{base}/0-backend") < paths.index(base)


def test_seed_000_one_root_backend_block_names_a_bucket_and_table_per_env_and_region(
        strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    for env, region in SEED_000_CIDRS:
        rendered = render_json(strata, root, f"{ENV_000}/{env}/{region}")
        backend = rendered["backend"]
        assert backend["type"] == "s3" and backend["embedded_default"] is False
        assert backend["source"] == "strata.hcl:9"
        settings = backend["settings"]
        assert settings["bucket"] == {"value": f"sre-challenge-terraform-state-{env}-{region}",
                                      "source": "strata.hcl:10"}
        assert settings["dynamodb_table"]["value"] == f"sre-challenge-terraform-locks-{env}-{region}"
        assert settings["region"]["value"] == region
        assert settings["key"]["value"] == rendered["state_key"]
        assert setting(rendered, "inputs", "vpc_cidr") == SEED_000_CIDRS[(env, region)]
        assert rendered["dependencies"] == [{"name": None, "path": f"{ENV_000}/{env}/{region}/0-backend",
                                             "source": f"{ENV_000}/{env}/{region}/strata.hcl:4",
                                             "mock_outputs": None}]

        boot = render_json(strata, root, f"{ENV_000}/{env}/{region}/0-backend")
        assert boot["backend"]["type"] == "local"
        assert boot["backend"]["source"] == f"{ENV_000}/{env}/{region}/0-backend/strata.hcl:4"
        assert boot["state_key"] == f"{env}/{region}/0-backend/terraform.tfstate"
        assert setting(boot, "backend", "path") == f"../../../../../.strata/state/{boot['state_key']}"
        # the bootstrap stack creates exactly the bucket and table its region stack uses
        assert setting(boot, "inputs", "bucket_name") == settings["bucket"]["value"]
        assert setting(boot, "inputs", "table_name") == settings["dynamodb_table"]["value"]
        assert boot["dependencies"] == []


def test_seed_000_state_keys(strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    for env, region in SEED_000_CIDRS:
        assert render_json(strata, root, f"{ENV_000}/{env}/{region}")["state_key"] == (
            f"{env}/{region}/terraform.tfstate")
        assert render_json(strata, root, f"{ENV_000}/{env}/{region}/0-backend")["state_key"] == (
            f"{env}/{region}/0-backend/terraform.tfstate")


def test_seed_000_render_from_inside_the_region_folder(strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    here = root / ENV_000 / "staging" / "us-east-1"
    assert render_json(strata, root, ".", cwd=here)["path"] == f"{ENV_000}/staging/us-east-1"
    assert render_json(strata, root, "0-backend", cwd=here)["path"] == f"{ENV_000}/staging/us-east-1/0-backend"


@pytest.mark.terraform
def test_seed_000_generate_for_each_terraform_version(strata: Strata, tmp_path: Path, terraform_binary: str) -> None:
    # generate refuses while validate reports errors, and the production bootstrap stacks keep local
    # (unencrypted) state by design: this repository opts out of the production encryption rule.
    root = seed_000(tmp_path, " production_environments = [] ")
    env = {"STRATA_TERRAFORM": terraform_binary}
    report = json.loads(ok(strata("generate", "--json", cwd=root, env=env)).stdout)
    assert len(report["written"]) == 16 and report["unchanged"] == []
    version = json.loads(subprocess.run([terraform_binary, "version", "-json"], capture_output=True, text=True,
                                        timeout=60, check=True).stdout)["terraform_version"]
    old = tuple(int(n) for n in version.split(".")[:2]) < (1, 10)
    for region_env, region in SEED_000_CIDRS:
        base = root / ENV_000 / region_env / region
        backend = (base / "strata_backend.tf").read_text()
        assert backend.startswith("# Generated by strata")
        assert generated_setting(backend, "bucket") == f'"sre-challenge-terraform-state-{region_env}-{region}"'
        assert generated_setting(backend, "dynamodb_table") == f'"sre-challenge-terraform-locks-{region_env}-{region}"'
        rendered_key = render_json(strata, root, f"{ENV_000}/{region_env}/{region}")["state_key"]
        assert generated_setting(backend, "key") == json.dumps(rendered_key)
        assert ("use_lockfile" in backend) is not old  # only Terraform >= 1.10 knows use_lockfile
        inputs = (base / "strata_inputs.auto.tfvars").read_text()
        assert generated_setting(inputs, "vpc_cidr") == json.dumps(SEED_000_CIDRS[(region_env, region)])
        boot = (base / "0-backend" / "strata_backend.tf").read_text()
        assert 'backend "local"' in boot
        assert generated_setting(boot, "path") == (
            f'"../../../../../.strata/state/{region_env}/{region}/0-backend/terraform.tfstate"')
    before = snapshot(root)
    again = json.loads(ok(strata("generate", "--json", cwd=root, env=env)).stdout)
    assert again["written"] == [] and len(again["unchanged"]) == 16
    assert snapshot(root) == before
    ok(strata("generate", "--check", cwd=root, env=env))


def test_seed_000_validate_flags_only_unencrypted_production_bootstrap_state(strata: Strata, tmp_path: Path) -> None:
    root = seed_000(tmp_path)
    before = snapshot(root)
    code, report = validate_json(strata, root)
    assert report["stacks"] == 8
    problems = [(d["severity"], d["file"], d["line"]) for d in report["diagnostics"]]
    assert problems == [
        ("error", f"{ENV_000}/production/eu-central-1/0-backend/strata.hcl", 4),
        ("error", f"{ENV_000}/production/us-east-1/0-backend/strata.hcl", 4),
    ]
    assert all("without encryption" in d["message"] for d in report["diagnostics"])
    assert code == 1
    assert snapshot(root) == before  # validate writes nothing (but its cache under .strata/)


# -- seeds 002 and 003: regions/<region>/layers/NN-name and regions/<region>/clients/<client> -----------

LAYERS = ("01-foundation", "02-platform", "03-databases", "04-applications")
CLIENTS = ("mtn-ghana", "ezra")
# every layer depends on the ones below it that it reads; clients read the platform and databases
LAYER_DEPENDENCIES = {
    "01-foundation": {},
    "02-platform": {"foundation": "01-foundation"},
    "03-databases": {"foundation": "01-foundation", "platform": "02-platform"},
    "04-applications": {"platform": "02-platform", "databases": "03-databases"},
}
CLIENT_DEPENDENCIES = {"platform": "02-platform", "databases": "03-databases"}

BACKEND_002 = """
strata {}

backend "s3" {
  bucket         = "terraform-state-bucket"
  dynamodb_table = "terraform-locks-${strata.environment}"
  region         = strata.region
  encrypt        = true
}
"""


def _dependency_blocks(deps: dict[str, str], path_of: Callable[[str], str], more_inputs: str = "") -> str:
    blocks = "".join(f'dependency "{name}" {{\n  path = "{path_of(layer)}"\n}}\n' for name, layer in deps.items())
    reads = "".join(f"  {name}_id = dependency.{name}.outputs.id\n" for name in deps) + more_inputs
    return blocks + (f"inputs = {{\n{reads}}}\n" if reads else "")


def seed_002(root: Path) -> Path:
    """Environments set explicitly: `environment = "production"` for the region."""
    files = {
        "strata.hcl": BACKEND_002,
        "shared/modules/foundation-layer/main.tf": 'variable "vpc_cidr" {}\n',
        "regions/us-east-1/strata.hcl": 'environment = "production"\n',
        "regions/us-east-1/layers/01-foundation/strata.hcl": (
            'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n}\n'),
    }
    for layer in LAYERS[1:]:
        files[f"regions/us-east-1/layers/{layer}/strata.hcl"] = "stack {}\n" + _dependency_blocks(
            LAYER_DEPENDENCIES[layer], lambda target: f"../{target}")
    for client in CLIENTS:
        files[f"regions/us-east-1/clients/{client}/strata.hcl"] = (
            "stack {}\n" + _dependency_blocks(
                CLIENT_DEPENDENCIES, lambda target: f"../../layers/{target}",
                '  client_name = strata.client\n  namespace = "client-${strata.client}"\n'))
    for path in [p for p in files if p.endswith("/strata.hcl") and files[p].startswith("stack")]:
        files[path.replace("strata.hcl", "main.tf")] = MAIN_TF
    return write_tree(root, files)


def seed_003(root: Path) -> Path:
    """Environments as a sub-folder of every layer and client: layers/01-foundation/production/."""
    files = {"strata.hcl": BACKEND_002}
    cidrs = {"production": "10.0.0.0/16", "staging": "10.1.0.0/16"}
    for layer in LAYERS:
        # the layer folder's own file has no stack block: everything in it is inherited by each environment
        files[f"regions/us-east-1/layers/{layer}/strata.hcl"] = _dependency_blocks(
            LAYER_DEPENDENCIES[layer], lambda target: f"../{target}/${{strata.environment}}")
        for env in ("production", "staging"):
            own = f'inputs = {{\n  vpc_cidr = "{cidrs[env]}"\n}}\n' if layer == "01-foundation" else ""
            files[f"regions/us-east-1/layers/{layer}/{env}/strata.hcl"] = "stack {}\n" + own
            files[f"regions/us-east-1/layers/{layer}/{env}/main.tf"] = MAIN_TF
    files["regions/us-east-1/clients/strata.hcl"] = _dependency_blocks(
        CLIENT_DEPENDENCIES, lambda target: f"../layers/{target}/${{strata.environment}}")
    for client, envs in (("mtn-ghana", ("production", "staging")), ("ezra", ("production",))):
        for env in envs:
            files[f"regions/us-east-1/clients/{client}/{env}/strata.hcl"] = (
                'stack {}\ninputs = {\n  client_name = strata.client\n}\n')
            files[f"regions/us-east-1/clients/{client}/{env}/main.tf"] = MAIN_TF
    return write_tree(root, files)


def test_seed_002_ls_and_state_keys(strata: Strata, tmp_path: Path) -> None:
    root = seed_002(tmp_path)
    stacks = ls_json(strata, root)
    expected = {f"regions/us-east-1/layers/{layer}": {"layer": layer, "client": None} for layer in LAYERS}
    expected.update({f"regions/us-east-1/clients/{c}": {"layer": None, "client": c} for c in CLIENTS})
    assert {path: dims(entry) for path, entry in stacks.items()} == {
        path: {"cloud": "aws", "account_id": None, "environment": "production", "region": "us-east-1", **extra}
        for path, extra in expected.items()}
    foundation = render_json(strata, root, "regions/us-east-1/layers/01-foundation")
    assert foundation["state_key"] == "production/us-east-1/01-foundation/terraform.tfstate"
    assert foundation["dimensions"]["environment"] == {"value": "production",
                                                       "source": "regions/us-east-1/strata.hcl:1"}
    assert setting(foundation, "backend", "key") == "production/us-east-1/01-foundation/terraform.tfstate"
    assert setting(foundation, "backend", "dynamodb_table") == "terraform-locks-production"
    client = render_json(strata, root, "regions/us-east-1/clients/mtn-ghana")
    assert client["state_key"] == "production/us-east-1/clients/mtn-ghana/terraform.tfstate"
    assert setting(client, "inputs", "namespace") == "client-mtn-ghana"
    assert setting(client, "inputs", "platform_id") == {"from_dependency_outputs": ["dependency.platform.outputs.id"]}
    for layer in LAYERS:
        assert render_json(strata, root, f"regions/us-east-1/layers/{layer}")["state_key"] == (
            f"production/us-east-1/{layer}/terraform.tfstate")
    assert render_json(strata, root, "regions/us-east-1/clients/ezra")["state_key"] == (
        "production/us-east-1/clients/ezra/terraform.tfstate")


def test_seed_002_graph_filters_and_run_order(strata: Strata, tmp_path: Path) -> None:
    root = seed_002(tmp_path)
    base = "regions/us-east-1"
    expected = {(f"{base}/layers/{target}", f"{base}/layers/{layer}")
                for layer, deps in LAYER_DEPENDENCIES.items() for target in deps.values()}
    expected |= {(f"{base}/layers/{target}", f"{base}/clients/{c}")
                 for c in CLIENTS for target in CLIENT_DEPENDENCIES.values()}
    assert edges(ok(strata("graph", cwd=root)).stdout) == expected
    mermaid = ok(strata("graph", "--format", "mermaid", cwd=root)).stdout
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->") == len(expected)
    order = [e["path"] for e in json.loads(ok(strata("ls", "--json", "--run-order", cwd=root)).stdout)["stacks"]]
    assert order == [f"{base}/layers/{layer}" for layer in LAYERS[:3]] + sorted(
        [f"{base}/layers/04-applications", *(f"{base}/clients/{c}" for c in CLIENTS)])
    assert list(ls_json(strata, root, "--layer", "platform")) == [f"{base}/layers/02-platform"]
    assert list(ls_json(strata, root, "--client", "ezra")) == [f"{base}/clients/ezra"]
    assert sorted(ls_json(strata, root, f"{base}/clients")) == [f"{base}/clients/{c}" for c in sorted(CLIENTS)]


@pytest.mark.terraform
def test_seed_002_generate_and_validate(strata: Strata, tmp_path: Path, tf_111: str) -> None:
    root = seed_002(tmp_path)
    env = {"STRATA_TERRAFORM": tf_111}
    code, report = validate_json(strata, root, "--strict")
    assert (code, report["errors"], report["warnings"]) == (0, 0, 0), report
    ok(strata("generate", cwd=root, env=env))
    backend = (root / "regions/us-east-1/clients/mtn-ghana/strata_backend.tf").read_text()
    assert generated_setting(backend, "key") == '"production/us-east-1/clients/mtn-ghana/terraform.tfstate"'
    assert generated_setting(backend, "bucket") == '"terraform-state-bucket"'
    inputs = (root / "regions/us-east-1/clients/mtn-ghana/strata_inputs.auto.tfvars").read_text()
    assert "#   platform_id = dependency.platform.outputs.id" in inputs
    assert generated_setting(inputs, "client_name") == '"mtn-ghana"'
    # the generated files are not hand-written backends: validate stays clean
    code, report = validate_json(strata, root, "--strict")
    assert code == 0, report


def test_seed_002_a_hand_written_backend_block_is_reported(strata: Strata, tmp_path: Path) -> None:
    root = seed_002(tmp_path)
    (root / "regions/us-east-1/layers/01-foundation/backend.tf").write_text(
        '# from shared/backend-configs\nterraform {\n  backend "s3" {\n  }\n}\n')
    code, report = validate_json(strata, root)
    assert code == 1
    assert [(d["severity"], d["file"], d["line"]) for d in report["diagnostics"]] == [
        ("error", "regions/us-east-1/layers/01-foundation/backend.tf", 3)]
    text = strata("validate", cwd=root)
    assert text.code == 1
    assert "regions/us-east-1/layers/01-foundation/backend.tf:3: error:" in text.stdout


def test_seed_002_a_lower_layer_depending_on_a_higher_one_is_an_error(strata: Strata, tmp_path: Path) -> None:
    root = seed_002(tmp_path)
    (root / "regions/us-east-1/layers/01-foundation/strata.hcl").write_text(
        'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n}\ndependencies = ["../04-applications"]\n')
    code, report = validate_json(strata, root)
    assert code == 1
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert [(d["file"], d["line"]) for d in errors] == [("regions/us-east-1/layers/01-foundation/strata.hcl", 5)] * 2
    messages = sorted(d["message"] for d in errors)
    # 04-applications reads 02-platform, which reads 01-foundation: the edge also closes a cycle
    assert messages[0].startswith("01-foundation (regions/us-east-1/layers/01-foundation) depends on 04-applications")
    assert "higher layer" in messages[0]
    assert messages[1].startswith("dependency cycle: regions/us-east-1/layers/01-foundation -> ")


def test_seed_003_ls_and_state_keys(strata: Strata, tmp_path: Path) -> None:
    root = seed_003(tmp_path)
    stacks = ls_json(strata, root)
    expected: dict[str, dict[str, Any]] = {}
    for layer in LAYERS:
        for env in ("production", "staging"):
            expected[f"regions/us-east-1/layers/{layer}/{env}"] = {"environment": env, "layer": layer, "client": None}
    for client, env in (("mtn-ghana", "production"), ("mtn-ghana", "staging"), ("ezra", "production")):
        expected[f"regions/us-east-1/clients/{client}/{env}"] = {"environment": env, "layer": None, "client": client}
    assert {path: dims(entry) for path, entry in stacks.items()} == {
        path: {"cloud": "aws", "account_id": None, "region": "us-east-1", **extra} for path, extra in expected.items()}
    for path, extra in expected.items():
        rendered = render_json(strata, root, path)
        anchor = f"clients/{extra['client']}" if extra["client"] else extra["layer"]
        assert rendered["state_key"] == f"{extra['environment']}/us-east-1/{anchor}/terraform.tfstate", path
        assert setting(rendered, "backend", "key") == rendered["state_key"]
        assert setting(rendered, "backend", "dynamodb_table") == f"terraform-locks-{extra['environment']}"
    foundation = render_json(strata, root, "regions/us-east-1/layers/01-foundation/production")
    assert foundation["state_key"] == "production/us-east-1/01-foundation/terraform.tfstate"
    client_stack = render_json(strata, root, "regions/us-east-1/clients/mtn-ghana/production")
    assert client_stack["state_key"] == "production/us-east-1/clients/mtn-ghana/terraform.tfstate"


def test_seed_003_inherited_dependencies_follow_each_environment(strata: Strata, tmp_path: Path) -> None:
    root = seed_003(tmp_path)
    stacks = ls_json(strata, root)
    base = "regions/us-east-1"
    for env in ("production", "staging"):
        for layer, deps in LAYER_DEPENDENCIES.items():
            assert stacks[f"{base}/layers/{layer}/{env}"]["dependencies"] == sorted(
                f"{base}/layers/{target}/{env}" for target in deps.values())
    assert stacks[f"{base}/clients/ezra/production"]["dependencies"] == [
        f"{base}/layers/02-platform/production", f"{base}/layers/03-databases/production"]
    platform = render_json(strata, root, f"{base}/layers/02-platform/staging")
    assert platform["dependencies"] == [{"name": "foundation", "path": f"{base}/layers/01-foundation/staging",
                                         "source": f"{base}/layers/02-platform/strata.hcl:1", "mock_outputs": None}]
    dot_edges = edges(ok(strata("graph", "--env", "staging", cwd=root)).stdout)
    assert (f"{base}/layers/01-foundation/staging", f"{base}/layers/02-platform/staging") in dot_edges
    assert all("production" not in a and "production" not in b for a, b in dot_edges)
    order = [e["path"] for e in json.loads(ok(strata("ls", "--json", "--run-order", "--env", "production",
                                                     cwd=root)).stdout)["stacks"]]
    assert order[:3] == [f"{base}/layers/{layer}/production" for layer in LAYERS[:3]]
    assert len(order) == 6


@pytest.mark.terraform
def test_seed_003_generate_and_validate(strata: Strata, tmp_path: Path, tf_111: str) -> None:
    root = seed_003(tmp_path)
    code, report = validate_json(strata, root)
    assert (code, report["errors"]) == (0, 0), report
    # one bucket holds both environments: a warning, not an error
    assert [d["severity"] for d in report["diagnostics"]] == ["warning"]
    assert "s3://terraform-state-bucket" in report["diagnostics"][0]["message"]
    assert strata("validate", "--strict", cwd=root).code == 1
    written = json.loads(ok(strata("generate", "--json", cwd=root, env={"STRATA_TERRAFORM": tf_111})).stdout)
    assert len(written["written"]) == 2 * (len(LAYERS) * 2 + 3)
    backend = (root / "regions/us-east-1/layers/01-foundation/staging/strata_backend.tf").read_text()
    assert generated_setting(backend, "key") == '"staging/us-east-1/01-foundation/terraform.tfstate"'
    assert generated_setting(backend, "dynamodb_table") == '"terraform-locks-staging"'


# -- seed 004: <env>/<region>/NN-layer/<group>/<component> -----------------------------------------------

ACCOUNTS = {"prod": "111111111111", "qa": "222222222222", "dev": "333333333333"}
REGIONS = {"prod": "eu-central-1", "qa": "eu-west-1", "dev": "eu-east-1"}


def _networking(vpcs: dict[str, str], dr_region: str) -> dict[str, str]:
    cidrs = "".join(f'    {name} = "{cidr}"\n' for name, cidr in vpcs.items())
    return {
        "strata.hcl": f"""
            locals {{
              dr_region = "{dr_region}"
              azs       = ["${{strata.region}}a", "${{strata.region}}b", "${{strata.region}}c"]
              vpc_cidrs = {{
            {cidrs}  }}
            }}
        """,
        "01-networking/strata.hcl": """
            inputs = {
              vpc_cidr = local.vpc_cidrs[strata.stack.name]
              azs      = local.azs
              backup_configuration = {
                cross_region_backup = true
                destination_region  = local.dr_region
                backup_schedule     = "0 2 * * *"
              }
            }
        """,
    }


def seed_004(root: Path, prod_vpc_2: str = "10.2.0.0/16") -> Path:
    files = {
        "strata.hcl": """
            strata {}

            backend "s3" {
              bucket         = "enterprise-terraform-state-${strata.account_id}-${strata.region}"
              region         = strata.region
              encrypt        = true
              dynamodb_table = "enterprise-terraform-locks-${strata.account_id}"
            }

            inputs = {
              tags = {
                Environment = strata.environment
                Region      = strata.region
                Component   = strata.stack.name
              }
            }
        """,
    }
    for env, account in ACCOUNTS.items():
        files[f"{env}/strata.hcl"] = f'account_id = "{account}"\nlocals {{\n  backup_retention = 30\n}}\n'
    prod = "prod/eu-central-1"
    for name, text in _networking({"vpc-1": "10.1.0.0/16", "vpc-2": prod_vpc_2}, "eu-west-1").items():
        files[f"{prod}/{name}"] = text
    # the same CIDRs again in other accounts: separate networks, no overlap
    for env in ("qa", "dev"):
        for name, text in _networking({"vpc-1": "10.1.0.0/16"}, "eu-central-1").items():
            files[f"{env}/{REGIONS[env]}/{name}"] = text
        files[f"{env}/{REGIONS[env]}/01-networking/vpc-1/strata.hcl"] = "stack {}\n"
    for vpc in ("vpc-1", "vpc-2"):
        files[f"{prod}/01-networking/{vpc}/strata.hcl"] = "stack {}\n"
    files[f"{prod}/02-compute/eks-clusters/strata.hcl"] = """
        dependency "vpc" {
          path         = "../../01-networking/vpc-1"
          mock_outputs = { vpc_id = "vpc-00000000" }
        }
        inputs = {
          vpc_id       = dependency.vpc.outputs.vpc_id
          cluster_name = "eks-${strata.stack.name}"
        }
    """
    files[f"{prod}/02-compute/eks-clusters/cluster-1/strata.hcl"] = "stack {}\n"
    files[f"{prod}/02-compute/eks-clusters/cluster-2/strata.hcl"] = """
        stack {}
        dependency "vpc" {
          path = "../../../01-networking/vpc-2"
        }
    """
    for service, cluster in (("service-a", "cluster-1"), ("service-b", "cluster-2")):
        files[f"{prod}/03-applications/{service}/strata.hcl"] = f"""
            stack {{}}
            dependency "cluster" {{
              path = "../../02-compute/eks-clusters/{cluster}"
            }}
            inputs = {{
              cluster_endpoint = dependency.cluster.outputs.endpoint
            }}
        """
    for path in [p for p in files if p.endswith("/strata.hcl") and "stack {" in files[p]]:
        files[path.replace("strata.hcl", "main.tf")] = MAIN_TF
    return write_tree(root, files)


PROD = "prod/eu-central-1"
PROD_STACKS = {
    f"{PROD}/01-networking/vpc-1": "01-networking",
    f"{PROD}/01-networking/vpc-2": "01-networking",
    f"{PROD}/02-compute/eks-clusters/cluster-1": "02-compute",
    f"{PROD}/02-compute/eks-clusters/cluster-2": "02-compute",
    f"{PROD}/03-applications/service-a": "03-applications",
    f"{PROD}/03-applications/service-b": "03-applications",
}


def test_seed_004_ls(strata: Strata, tmp_path: Path) -> None:
    root = seed_004(tmp_path)
    stacks = ls_json(strata, root)
    expected = {path: {"cloud": "aws", "account_id": "111111111111", "environment": "prod",
                       "region": "eu-central-1", "layer": layer, "client": None} for path, layer in PROD_STACKS.items()}
    for env in ("qa", "dev"):
        expected[f"{env}/{REGIONS[env]}/01-networking/vpc-1"] = {
            "cloud": "aws", "account_id": ACCOUNTS[env], "environment": env, "region": REGIONS[env],
            "layer": "01-networking", "client": None}
    assert {path: dims(entry) for path, entry in stacks.items()} == expected
    assert stacks[f"{PROD}/02-compute/eks-clusters/cluster-1"]["name"] == "cluster-1"
    assert list(ls_json(strata, root, "--account", "222222222222")) == ["qa/eu-west-1/01-networking/vpc-1"]
    assert sorted(ls_json(strata, root, "--layer", "compute")) == [
        f"{PROD}/02-compute/eks-clusters/cluster-1", f"{PROD}/02-compute/eks-clusters/cluster-2"]


def test_seed_004_state_keys_backends_and_inputs(strata: Strata, tmp_path: Path) -> None:
    root = seed_004(tmp_path)
    for path in PROD_STACKS:
        rendered = render_json(strata, root, path)
        assert rendered["state_key"] == f"{path}/terraform.tfstate"
        assert setting(rendered, "backend", "bucket") == "enterprise-terraform-state-111111111111-eu-central-1"
        assert setting(rendered, "backend", "dynamodb_table") == "enterprise-terraform-locks-111111111111"
        assert setting(rendered, "inputs", "tags.Component") == path.rsplit("/", 1)[-1]
        assert setting(rendered, "inputs", "tags.Environment") == "prod"
    cluster = render_json(strata, root, f"{PROD}/02-compute/eks-clusters/cluster-1")
    assert cluster["state_key"] == "prod/eu-central-1/02-compute/eks-clusters/cluster-1/terraform.tfstate"
    assert cluster["dimensions"]["account_id"] == {"value": "111111111111", "source": "prod/strata.hcl:1"}
    vpc1 = render_json(strata, root, f"{PROD}/01-networking/vpc-1")
    vpc2 = render_json(strata, root, f"{PROD}/01-networking/vpc-2")
    assert setting(vpc1, "inputs", "vpc_cidr") == "10.1.0.0/16"
    assert setting(vpc2, "inputs", "vpc_cidr") == "10.2.0.0/16"
    assert vpc1["inputs"]["vpc_cidr"]["source"] == f"{PROD}/01-networking/strata.hcl:2"
    assert setting(vpc1, "inputs", "azs") == ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    assert setting(vpc1, "inputs", "backup_configuration.destination_region") == "eu-west-1"
    assert setting(vpc1, "locals", "backup_retention") == 30
    qa = render_json(strata, root, "qa/eu-west-1/01-networking/vpc-1")
    assert setting(qa, "backend", "bucket") == "enterprise-terraform-state-222222222222-eu-west-1"
    assert qa["state_key"] == "qa/eu-west-1/01-networking/vpc-1/terraform.tfstate"


def test_seed_004_dependencies_and_graph(strata: Strata, tmp_path: Path) -> None:
    root = seed_004(tmp_path)
    expected = {
        (f"{PROD}/01-networking/vpc-1", f"{PROD}/02-compute/eks-clusters/cluster-1"),
        (f"{PROD}/01-networking/vpc-2", f"{PROD}/02-compute/eks-clusters/cluster-2"),
        (f"{PROD}/02-compute/eks-clusters/cluster-1", f"{PROD}/03-applications/service-a"),
        (f"{PROD}/02-compute/eks-clusters/cluster-2", f"{PROD}/03-applications/service-b"),
    }
    assert edges(ok(strata("graph", cwd=root)).stdout) == expected
    cluster = render_json(strata, root, f"{PROD}/02-compute/eks-clusters/cluster-1")
    assert cluster["dependencies"] == [{"name": "vpc", "path": f"{PROD}/01-networking/vpc-1",
                                        "source": f"{PROD}/02-compute/eks-clusters/strata.hcl:1",
                                        "mock_outputs": {"vpc_id": "vpc-00000000"}}]
    assert setting(cluster, "inputs", "cluster_name") == "eks-cluster-1"
    assert setting(cluster, "inputs", "vpc_id") == {"from_dependency_outputs": ["dependency.vpc.outputs.vpc_id"]}
    # cluster-2's own dependency "vpc" replaces the inherited one of the same name
    cluster2 = render_json(strata, root, f"{PROD}/02-compute/eks-clusters/cluster-2")
    assert [(d["name"], d["path"]) for d in cluster2["dependencies"]] == [("vpc", f"{PROD}/01-networking/vpc-2")]
    order = [e["path"] for e in json.loads(ok(strata("ls", "--json", "--run-order", PROD, cwd=root)).stdout)["stacks"]]
    for dep, dependent in expected:
        assert order.index(dep) < order.index(dependent)


@pytest.mark.terraform
def test_seed_004_generate_and_validate(strata: Strata, tmp_path: Path, tf_111: str) -> None:
    root = seed_004(tmp_path)
    code, report = validate_json(strata, root, "--strict")
    assert (code, report["errors"], report["warnings"], report["stacks"]) == (0, 0, 0, 8), report
    ok(strata("generate", PROD, cwd=root, env={"STRATA_TERRAFORM": tf_111}))
    folder = root / PROD / "02-compute/eks-clusters/cluster-1"
    backend = (folder / "strata_backend.tf").read_text()
    assert generated_setting(backend, "key") == (
        '"prod/eu-central-1/02-compute/eks-clusters/cluster-1/terraform.tfstate"')
    assert generated_setting(backend, "bucket") == '"enterprise-terraform-state-111111111111-eu-central-1"'
    inputs = (folder / "strata_inputs.auto.tfvars").read_text()
    assert generated_setting(inputs, "cluster_name") == '"eks-cluster-1"'
    assert "#   vpc_id = dependency.vpc.outputs.vpc_id" in inputs
    vpc_inputs = (root / PROD / "01-networking/vpc-2/strata_inputs.auto.tfvars").read_text()
    assert generated_setting(vpc_inputs, "vpc_cidr") == '"10.2.0.0/16"'
    # only the selected stacks were generated
    assert not (root / "qa/eu-west-1/01-networking/vpc-1/strata_backend.tf").exists()


def test_seed_004_overlapping_vpc_cidrs_in_one_account_are_an_error(strata: Strata, tmp_path: Path) -> None:
    root = seed_004(tmp_path, prod_vpc_2="10.1.128.0/17")
    code, report = validate_json(strata, root)
    assert code == 1
    errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
    assert len(errors) == 1
    assert errors[0]["file"] == f"{PROD}/01-networking/strata.hcl"
    assert "overlaps" in errors[0]["message"]
    assert "10.1.128.0/17" in errors[0]["message"] and "10.1.0.0/16" in errors[0]["message"]
