"""Issue 5 acceptance: a production monolith split into layered stacks with `strata migrate`, real Terraform.

A template repository is built and applied once per Terraform version (module scope): the monolith
``legacy/production`` with local modules vpc, eks (with a nested module ``nodes``), db and client (for_each over
ezra / mtn-ghana), a data source, a ``count`` and a ``for_each`` resource and triggers that chain resources
together. Then its code is replaced by what stays (a bastion that reads foundation's output), the layered
stacks are written (the same resources at their new addresses, cross-stack values through ``dependency``
blocks and ``inputs``), and ``migrations/split.hcl`` says what goes where.

Every test works on its own copy of that template (``shutil.copytree``), through the strata CLI in
subprocesses; states are compared byte for byte. Nothing is mocked: terraform 1.11 (and 1.0.3 for the full
split), the offline null provider, real ``kill -9``, real locks held by other processes, moto for S3.

States that did not exist before a migration get a new random lineage, so "the same result" compares them
as JSON without their lineage; states that existed are compared byte for byte. A target that had no state
may be left as an empty file by a lock (Terraform's local backend does the same): empty means "no state".
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import Result, snapshot, write_tree

if TYPE_CHECKING:
    from servers import MotoServer

pytest_plugins = ["servers"]
pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

SOURCE = "legacy/production"
FOUNDATION = "production/us-east-1/01-foundation"
PLATFORM = "production/us-east-1/02-platform"
DATABASES = "production/us-east-1/03-databases"
APPLICATIONS = "production/us-east-1/04-applications"
EZRA = "production/us-east-1/clients/ezra"
MTN = "production/us-east-1/clients/mtn-ghana"
TARGETS = (FOUNDATION, PLATFORM, DATABASES, APPLICATIONS, EZRA, MTN)
STACKS = (SOURCE, *TARGETS)
MIGRATION = "migrations/split.hcl"

# -- the repository -----------------------------------------------------------------------------------------

ROOT_HCL = """
    strata {
      layers                  = ["01-foundation", "02-platform", "03-databases", "04-applications"]
      production_environments = []
    }
    """

MODULES = {
    "modules/vpc/main.tf": """
        variable "cidr" {
          type = string
        }
        resource "null_resource" "vpc" {
          triggers = { cidr = var.cidr }
        }
        resource "null_resource" "subnet" {
          for_each = { a = 0, b = 1, c = 2 }
          triggers = { vpc_id = null_resource.vpc.id, cidr = cidrsubnet(var.cidr, 8, each.value) }
        }
        output "vpc_id" {
          value = null_resource.vpc.id
        }
        output "subnet_ids" {
          value = [for key in sort(keys(null_resource.subnet)) : null_resource.subnet[key].id]
        }
        """,
    "modules/eks/main.tf": """
        variable "vpc_id" {
          type = string
        }
        variable "subnet_ids" {
          type = list(string)
        }
        resource "null_resource" "cluster" {
          triggers = { vpc_id = var.vpc_id, subnets = join(",", var.subnet_ids) }
        }
        module "nodes" {
          source     = "./nodes"
          cluster_id = null_resource.cluster.id
          node_count = 3
        }
        output "cluster_id" {
          value = null_resource.cluster.id
        }
        """,
    "modules/eks/nodes/main.tf": """
        variable "cluster_id" {
          type = string
        }
        variable "node_count" {
          type = number
        }
        resource "null_resource" "node" {
          count    = var.node_count
          triggers = { cluster_id = var.cluster_id, index = count.index }
        }
        output "node_ids" {
          value = null_resource.node[*].id
        }
        """,
    "modules/db/main.tf": """
        variable "vpc_id" {
          type = string
        }
        resource "null_resource" "primary" {
          triggers = { vpc_id = var.vpc_id }
        }
        resource "null_resource" "replica" {
          triggers = { primary = null_resource.primary.id }
        }
        output "endpoint" {
          value = "db-${null_resource.primary.id}"
        }
        """,
    "modules/client/main.tf": """
        variable "name" {
          type = string
        }
        variable "vpc_id" {
          type = string
        }
        variable "cluster_id" {
          type = string
        }
        resource "null_resource" "namespace" {
          triggers = { name = var.name, cluster_id = var.cluster_id }
        }
        resource "null_resource" "ingress" {
          triggers = { namespace = null_resource.namespace.id, vpc_id = var.vpc_id }
        }
        output "namespace_id" {
          value = null_resource.namespace.id
        }
        """,
}

MONOLITH = {
    "strata.hcl": ROOT_HCL,
    "legacy/production/strata.hcl": "stack {}\n",
    "legacy/production/main.tf": """
        data "null_data_source" "settings" {
          inputs = { domain = "prod.example.com" }
        }
        resource "null_resource" "dns_zone" {
          triggers = { zone = data.null_data_source.settings.outputs["domain"] }
        }
        module "vpc" {
          source = "../../modules/vpc"
          cidr   = "10.0.0.0/16"
        }
        module "eks" {
          source     = "../../modules/eks"
          vpc_id     = module.vpc.vpc_id
          subnet_ids = module.vpc.subnet_ids
        }
        module "db" {
          source = "../../modules/db"
          vpc_id = module.vpc.vpc_id
        }
        module "client" {
          for_each   = toset(["ezra", "mtn-ghana"])
          source     = "../../modules/client"
          name       = each.key
          vpc_id     = module.vpc.vpc_id
          cluster_id = module.eks.cluster_id
        }
        resource "null_resource" "app" {
          count    = 2
          triggers = { index = count.index, cluster_id = module.eks.cluster_id, db = module.db.endpoint }
        }
        resource "null_resource" "legacy_bastion" {
          triggers = { vpc_id = module.vpc.vpc_id }
        }
        output "vpc_id" {
          value = module.vpc.vpc_id
        }
        """,
    **MODULES,
}


def client_stack(name: str) -> dict[str, str]:
    return {
        f"production/us-east-1/clients/{name}/strata.hcl": """
            stack {}
            dependency "foundation" {
              path = "../../01-foundation"
            }
            dependency "platform" {
              path = "../../02-platform"
            }
            inputs = {
              vpc_id     = dependency.foundation.outputs.vpc_id
              cluster_id = dependency.platform.outputs.cluster_id
            }
            """,
        f"production/us-east-1/clients/{name}/main.tf": """
            variable "vpc_id" {
              type = string
            }
            variable "cluster_id" {
              type = string
            }
            module "client" {
              source     = "../../../../modules/client"
              name       = "CLIENT"
              vpc_id     = var.vpc_id
              cluster_id = var.cluster_id
            }
            output "namespace_id" {
              value = module.client.namespace_id
            }
            """.replace("CLIENT", name),
    }


LAYERS = {
    # what stays in the monolith: the bastion, which now reads the VPC id from foundation
    "legacy/production/strata.hcl": """
        stack {}
        dependency "foundation" {
          path = "../../production/us-east-1/01-foundation"
        }
        inputs = {
          vpc_id = dependency.foundation.outputs.vpc_id
        }
        """,
    "legacy/production/main.tf": """
        variable "vpc_id" {
          type = string
        }
        resource "null_resource" "legacy_bastion" {
          triggers = { vpc_id = var.vpc_id }
        }
        output "bastion_id" {
          value = null_resource.legacy_bastion.id
        }
        """,
    # foundation keeps the vpc as a module, renamed module.network
    f"{FOUNDATION}/strata.hcl": "stack {}\n",
    f"{FOUNDATION}/main.tf": """
        data "null_data_source" "settings" {
          inputs = { domain = "prod.example.com" }
        }
        resource "null_resource" "dns_zone" {
          triggers = { zone = data.null_data_source.settings.outputs["domain"] }
        }
        module "network" {
          source = "../../../modules/vpc"
          cidr   = "10.0.0.0/16"
        }
        output "vpc_id" {
          value = module.network.vpc_id
        }
        output "subnet_ids" {
          value = module.network.subnet_ids
        }
        output "zone_id" {
          value = null_resource.dns_zone.id
        }
        """,
    # platform flattens module.eks: its cluster becomes a root resource, its nested module a root module
    f"{PLATFORM}/strata.hcl": """
        stack {}
        dependency "foundation" {
          path = "../01-foundation"
        }
        inputs = {
          vpc_id     = dependency.foundation.outputs.vpc_id
          subnet_ids = dependency.foundation.outputs.subnet_ids
        }
        """,
    f"{PLATFORM}/main.tf": """
        variable "vpc_id" {
          type = string
        }
        variable "subnet_ids" {
          type = list(string)
        }
        resource "null_resource" "cluster" {
          triggers = { vpc_id = var.vpc_id, subnets = join(",", var.subnet_ids) }
        }
        module "nodes" {
          source     = "../../../modules/eks/nodes"
          cluster_id = null_resource.cluster.id
          node_count = 3
        }
        output "cluster_id" {
          value = null_resource.cluster.id
        }
        output "node_ids" {
          value = module.nodes.node_ids
        }
        """,
    f"{DATABASES}/strata.hcl": """
        stack {}
        dependency "foundation" {
          path = "../01-foundation"
        }
        inputs = {
          vpc_id = dependency.foundation.outputs.vpc_id
        }
        """,
    f"{DATABASES}/main.tf": """
        variable "vpc_id" {
          type = string
        }
        module "database" {
          source = "../../../modules/db"
          vpc_id = var.vpc_id
        }
        output "endpoint" {
          value = module.database.endpoint
        }
        """,
    f"{APPLICATIONS}/strata.hcl": """
        stack {}
        dependency "platform" {
          path = "../02-platform"
        }
        dependency "databases" {
          path = "../03-databases"
        }
        inputs = {
          cluster_id  = dependency.platform.outputs.cluster_id
          db_endpoint = dependency.databases.outputs.endpoint
        }
        """,
    f"{APPLICATIONS}/main.tf": """
        variable "cluster_id" {
          type = string
        }
        variable "db_endpoint" {
          type = string
        }
        resource "null_resource" "app" {
          count    = 2
          triggers = { index = count.index, cluster_id = var.cluster_id, db = var.db_endpoint }
        }
        output "app_ids" {
          value = null_resource.app[*].id
        }
        """,
    **client_stack("ezra"),
    **client_stack("mtn-ghana"),
    MIGRATION: r'''
        migration {
          description = "Split the production monolith into layers"
        }

        source {
          stack = "legacy/production"
        }

        move "foundation" {
          resources = ["module.vpc", "null_resource.dns_zone", "data.null_data_source.settings"]
          to        = "production/us-east-1/01-foundation"
          rename    = { "module.vpc" = "module.network" }
        }

        move "platform" {
          resources = ["module.eks"]
          to        = "production/us-east-1/02-platform"
          rename    = { "module.eks" = "" }
        }

        move "databases" {
          resources = ["module.db"]
          to        = "production/us-east-1/03-databases"
          rename    = { "module.db" = "module.database" }
        }

        move "applications" {
          regex = ["^null_resource\\.app$"]
          to    = "production/us-east-1/04-applications"
        }

        move "client-ezra" {
          resources = ["module.client[\"ezra\"]"]
          to        = "production/us-east-1/clients/ezra"
          rename    = { "module.client[\"ezra\"]" = "module.client" }
        }

        move "client-mtn-ghana" {
          resources = ["module.client[\"mtn-ghana\"]"]
          to        = "production/us-east-1/clients/mtn-ghana"
          rename    = { "module.client[\"mtn-ghana\"]" = "module.client" }
        }

        keep "legacy" {
          resources = ["null_resource.legacy_*"]
        }
        ''',
}

# where every resource of the monolith ends up: old address -> (stack, new address, instances)
PLACEMENT: dict[str, tuple[str, str, int]] = {
    "data.null_data_source.settings": (FOUNDATION, "data.null_data_source.settings", 1),
    "null_resource.dns_zone": (FOUNDATION, "null_resource.dns_zone", 1),
    "module.vpc.null_resource.vpc": (FOUNDATION, "module.network.null_resource.vpc", 1),
    "module.vpc.null_resource.subnet": (FOUNDATION, "module.network.null_resource.subnet", 3),
    "module.eks.null_resource.cluster": (PLATFORM, "null_resource.cluster", 1),
    "module.eks.module.nodes.null_resource.node": (PLATFORM, "module.nodes.null_resource.node", 3),
    "module.db.null_resource.primary": (DATABASES, "module.database.null_resource.primary", 1),
    "module.db.null_resource.replica": (DATABASES, "module.database.null_resource.replica", 1),
    "null_resource.app": (APPLICATIONS, "null_resource.app", 2),
    'module.client["ezra"].null_resource.namespace': (EZRA, "module.client.null_resource.namespace", 1),
    'module.client["ezra"].null_resource.ingress': (EZRA, "module.client.null_resource.ingress", 1),
    'module.client["mtn-ghana"].null_resource.namespace': (MTN, "module.client.null_resource.namespace", 1),
    'module.client["mtn-ghana"].null_resource.ingress': (MTN, "module.client.null_resource.ingress", 1),
    "null_resource.legacy_bastion": (SOURCE, "null_resource.legacy_bastion", 1),
}
MOVED = {old: where for old, where in PLACEMENT.items() if where[0] != SOURCE}
OUTPUTS = {SOURCE: {"bastion_id"}, FOUNDATION: {"vpc_id", "subnet_ids", "zone_id"},
           PLATFORM: {"cluster_id", "node_ids"}, DATABASES: {"endpoint"}, APPLICATIONS: {"app_ids"},
           EZRA: {"namespace_id"}, MTN: {"namespace_id"}}


# -- helpers ------------------------------------------------------------------------------------------------

def cli(*args: str, cwd: Path, env: dict[str, str], timeout: float = 600) -> Result:
    """The strata CLI in a subprocess (like conftest's ``strata`` fixture, usable in module fixtures)."""
    full_env = {**os.environ, "NO_COLOR": "1", **env}
    full_env.pop("STRATA_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "strata", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert "Traceback (most recent call last)" not in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(result: Result) -> Result:
    assert result.code == 0, result.output
    return result


def json_of(result: Result) -> Any:
    return json.loads(result.stdout)


def address(resource: dict[str, Any]) -> str:
    prefix = f"{resource['module']}." if resource.get("module") else ""
    data = "data." if resource["mode"] == "data" else ""
    return f"{prefix}{data}{resource['type']}.{resource['name']}"


def instances(state: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(resource address, instance key as JSON) -> the instance's attributes."""
    out = {}
    for resource in state["resources"]:
        for instance in resource["instances"]:
            key = json.dumps(instance.get("index_key"))
            out[(address(resource), key)] = instance["attributes"]
    return out


def state_root(repo: Path) -> Path:
    return repo / ".strata" / "state"


def states(repo: Path) -> dict[str, bytes]:
    """Every state file with content, by path below .strata/state (an empty file is no state)."""
    root = state_root(repo)
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.tfstate"))
            if p.is_file() and p.stat().st_size}


def all_state_files(repo: Path) -> dict[str, bytes]:
    """Every file below .strata/state, empty ones and lock files too: for "nothing at all was written"."""
    root = state_root(repo)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def lock_files(repo: Path) -> list[str]:
    return sorted(p.relative_to(repo).as_posix() for p in state_root(repo).rglob(".*.lock.info"))


def comparable(current: dict[str, bytes], before: dict[str, bytes]) -> dict[str, Any]:
    """States to compare across runs: the bytes of states that existed before; new states (random lineage)
    as JSON without their lineage, which must be set."""
    out: dict[str, Any] = {}
    for rel, data in current.items():
        if rel in before:
            out[rel] = data
        else:
            doc = json.loads(data)
            assert isinstance(doc.get("lineage"), str) and len(doc["lineage"]) >= 32, (rel, doc.get("lineage"))
            doc.pop("lineage")
            out[rel] = doc
    return out


def journal(repo: Path) -> dict[str, Any] | None:
    """The newest migration's journal.json (None before there is one)."""
    base = repo / ".strata" / "migrations"
    folders = sorted(base.iterdir()) if base.is_dir() else []
    for folder in reversed(folders):
        try:
            data: dict[str, Any] = json.loads((folder / "journal.json").read_bytes())
        except (OSError, ValueError):
            continue
        return data
    return None


def migrations(repo: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listing = json_of(ok(cli("migrate", "ls", "--json", cwd=repo, env=env)))["migrations"]
    return {m["id"]: m for m in listing}


def copy_repo(template: Path, where: Path) -> Path:
    shutil.copytree(template, where, symlinks=True)
    return where


@dataclass(frozen=True)
class Template:
    repo: Path  # applied monolith state, layered code and migration file in place; never modified by tests
    env: dict[str, str]
    locations: dict[str, str]  # stack -> its state file, relative to .strata/state
    before: dict[str, bytes]  # the state files as applied
    monolith: dict[str, Any]  # the monolith's state as applied

    def copy(self, where: Path) -> Path:
        return copy_repo(self.repo, where)

    def state_of(self, repo: Path, stack: str) -> dict[str, Any] | None:
        path = state_root(repo) / self.locations[stack]
        if not path.is_file() or not path.stat().st_size:
            return None
        data: dict[str, Any] = json.loads(path.read_bytes())
        return data


def build_template(base: Path, binary: str, provider_mirror: dict[str, str]) -> Template:
    repo = write_tree(base / "repo", MONOLITH)
    env = {**provider_mirror, "STRATA_TERRAFORM": binary}
    ok(cli("apply", "--yes", "-q", SOURCE, cwd=repo, env=env))
    write_tree(repo, LAYERS)
    listing = json_of(ok(cli("state", "ls", "--json", cwd=repo, env=env)))["stacks"]
    locations = {}
    for row in listing:
        location = Path(row["location"])
        locations[row["stack"]] = location.relative_to(".strata/state").as_posix()
    assert set(locations) == set(STACKS), listing
    before = states(repo)
    assert list(before) == [locations[SOURCE]], before  # only the monolith has a state
    monolith = json.loads(before[locations[SOURCE]])
    assert {address(r) for r in monolith["resources"]} == set(PLACEMENT)
    return Template(repo, env, locations, before, monolith)


_TEMPLATES: dict[str, Template] = {}


@pytest.fixture(scope="module")
def template_for(tmp_path_factory: pytest.TempPathFactory,
                 provider_mirror: dict[str, str]) -> Callable[[str], Template]:
    """``template_for(binary)``: the applied template repository for that Terraform binary, built once."""

    def make(binary: str) -> Template:
        if binary not in _TEMPLATES:
            _TEMPLATES[binary] = build_template(tmp_path_factory.mktemp("template"), binary, provider_mirror)
        return _TEMPLATES[binary]

    return make


@pytest.fixture(scope="module")
def template(template_for: Callable[[str], Template], tf_111: str) -> Template:
    return template_for(tf_111)


@dataclass(frozen=True)
class Reference:
    states: dict[str, Any]  # the states after an uninterrupted `migrate apply` of the template (comparable form)


@pytest.fixture(scope="module")
def reference(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    repo = template.copy(tmp_path_factory.mktemp("reference") / "repo")
    ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env))
    return Reference(comparable(states(repo), template.before))


def assert_migrated(template: Template, repo: Path) -> None:
    """Every resource at its new address in its stack, with the attributes (id, triggers) it had; lineage and
    serial rules; outputs filled in."""
    old = template.monolith
    old_instances = instances(old)
    after = {stack: template.state_of(repo, stack) for stack in STACKS}
    for stack, state in after.items():
        assert state is not None, stack
        expected = {new for (where, new, _) in PLACEMENT.values() if where == stack}
        assert {address(r) for r in state["resources"]} == expected, stack
        assert set(state["outputs"]) == OUTPUTS[stack], (stack, state["outputs"])
    for (old_address, key), attributes in old_instances.items():
        stack, new_address, count = PLACEMENT[old_address]
        moved = instances(after[stack] or {})
        assert moved[(new_address, key)] == attributes, (old_address, key, stack, new_address)
    for stack, new_address, count in PLACEMENT.values():
        keys = [k for (a, k) in instances(after[stack] or {}) if a == new_address]
        assert len(keys) == count, (new_address, keys)
    # the source keeps its lineage; its serial went up by one for the moves and one for the outputs
    source = after[SOURCE] or {}
    assert source["lineage"] == old["lineage"]
    assert source["serial"] == old["serial"] + 2
    assert source["outputs"]["bastion_id"]["value"] == old_instances[("null_resource.legacy_bastion", "null")]["id"]
    lineages = {old["lineage"]}
    for stack in TARGETS:
        state = after[stack] or {}
        assert state["serial"] == 2, (stack, state["serial"])  # new: 1 with the moves, 2 with the outputs
        assert state["version"] == 4 and state["terraform_version"] == old["terraform_version"]
        lineages.add(state["lineage"])
    assert len(lineages) == len(STACKS)  # every new state has a lineage of its own
    # outputs carry the values the monolith's resources had
    foundation = after[FOUNDATION] or {}
    assert foundation["outputs"]["vpc_id"]["value"] == old["outputs"]["vpc_id"]["value"]
    assert foundation["outputs"]["vpc_id"]["value"] == old_instances[("module.vpc.null_resource.vpc", "null")]["id"]
    platform = after[PLATFORM] or {}
    assert platform["outputs"]["cluster_id"]["value"] == \
        old_instances[("module.eks.null_resource.cluster", "null")]["id"]


def plan_all_clean(repo: Path, env: dict[str, str]) -> None:
    result = cli("plan", "--all", "--detailed-exitcode", cwd=repo, env=env)
    assert result.code == 0, result.output
    for stack in STACKS:
        assert stack in result.stdout, result.stdout


# -- 1. the dry run ---------------------------------------------------------------------------------------------

def test_migrate_plan_lists_the_moves_verifies_and_changes_nothing(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    files, state_files = snapshot(repo), all_state_files(repo)

    result = ok(cli("migrate", "plan", MIGRATION, cwd=repo, env=template.env))
    out = result.stdout
    assert f"→ {FOUNDATION}: 4 resource(s)" in out, out
    assert f"→ {PLATFORM}: 2 resource(s)" in out
    assert f"→ {DATABASES}: 2 resource(s)" in out
    assert f"→ {APPLICATIONS}: 1 resource(s)" in out
    assert f"→ {EZRA}: 2 resource(s)" in out and f"→ {MTN}: 2 resource(s)" in out
    assert "module.vpc.null_resource.subnet → module.network.null_resource.subnet (3 instances)" in out
    assert "module.eks.module.nodes.null_resource.node → module.nodes.null_resource.node (3 instances)" in out
    assert "module.eks.null_resource.cluster → null_resource.cluster" in out
    assert "null_resource.app (2 instances)" in out
    assert 'module.client["ezra"].null_resource.ingress → module.client.null_resource.ingress' in out
    assert "kept in the source: 1 resource(s)" in out
    for stack in STACKS:
        assert any(line.startswith(stack) and "no-op" in line for line in out.splitlines()), (stack, out)
    assert "CHANGES" not in out

    report = json_of(ok(cli("migrate", "plan", MIGRATION, "--json", cwd=repo, env=template.env)))
    assert report["ok"] is True and report["migration"] is None
    assert report["unmatched"] == [] and report["collisions"] == []
    assert report["kept"] == ["null_resource.legacy_bastion"]
    moved = {(m["from"], target, m["to"], m["instances"]) for target, ms in report["moves"].items() for m in ms}
    assert moved == {(old, stack, new, n) for old, (stack, new, n) in MOVED.items()}
    rules = {m["from"]: m["rule"] for ms in report["moves"].values() for m in ms}
    assert rules["null_resource.app"] == "applications" and rules["module.db.null_resource.primary"] == "databases"
    verdicts = {v["stack"]: v for v in report["verification"]}
    assert set(verdicts) == set(STACKS)
    assert all(v["ok"] and v["changes"] == [] for v in verdicts.values()), verdicts
    order = [v["stack"] for v in report["verification"]]
    assert order.index(FOUNDATION) < order.index(PLATFORM) < order.index(APPLICATIONS)
    assert order.index(DATABASES) < order.index(APPLICATIONS) and order.index(PLATFORM) < order.index(EZRA)

    # nothing changed: no file of the repository, no state (not even an empty one or a lock), no journal
    assert snapshot(repo) == files
    assert all_state_files(repo) == state_files
    assert not (repo / ".strata" / "migrations").exists()
    assert migrations(repo, template.env) == {}


# -- 2. the migration, end to end ---------------------------------------------------------------------------------

def test_migrate_apply_splits_the_monolith_and_every_stack_plans_clean(
        template_for: Callable[[str], Template], terraform_binary: str, tmp_path: Path) -> None:
    template = template_for(terraform_binary)
    repo = template.copy(tmp_path / "repo")
    started = time.time()

    result = ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env))
    assert "13 resource(s) moved; every verification plan is a no-op" in result.output
    assert_migrated(template, repo)
    assert lock_files(repo) == []
    plan_all_clean(repo, template.env)

    listing = list(migrations(repo, template.env).values())
    assert len(listing) == 1
    done = listing[0]
    assert done["status"] == "done" and done["file"] == MIGRATION and done["moves"] == 13
    assert done["who"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert sorted(done["stacks"]) == sorted(STACKS)
    for stamp in (done["started"], done["finished"]):
        when = datetime.fromisoformat(stamp).timestamp()
        assert started - 2 <= when <= time.time() + 2, stamp
    assert "every verification plan is a no-op" in done["outcome"]
    text = ok(cli("migrate", "ls", cwd=repo, env=template.env)).stdout
    assert done["id"] in text and "done" in text and done["who"] in text

    # the journal's backup of the monolith is its state before, byte for byte
    folder = repo / ".strata" / "migrations" / done["id"]
    backups = [p.read_bytes() for p in (folder / "before").iterdir()]
    assert backups == [template.before[template.locations[SOURCE]]]

    # a finished migration cannot be resumed
    again = cli("migrate", "resume", done["id"], cwd=repo, env=template.env)
    assert again.code == 1 and "already done" in again.output, again.output
    assert migrations(repo, template.env)[done["id"]]["status"] == "done"


def test_applying_a_finished_migration_again_writes_nothing(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env))
    migrated = states(repo)
    # every resource is where the rules send it: nothing matches a move rule any more
    report = json_of(cli("migrate", "plan", MIGRATION, "--json", cwd=repo, env=template.env))
    assert report["moves"] == {} and report["kept"] == ["null_resource.legacy_bastion"], report
    twice = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
    assert twice.code in (0, 1), twice.output
    assert states(repo) == migrated, "a migration with nothing to move rewrote every state (serial + 1)"
    assert lock_files(repo) == []


# -- 3. refusals before anything is written ----------------------------------------------------------------------

def assert_refused_untouched(template: Template, repo: Path, before: dict[str, bytes], result: Result) -> None:
    assert result.code == 1, result.output
    assert states(repo) == before
    assert lock_files(repo) == []
    found = journal(repo)
    if found is not None:  # a journal, if any, says it was refused and wrote nothing
        assert found["status"] == "refused", found
        assert all(e["written"] is None for e in found["entries"]), found


def fake_state(resources: list[dict[str, Any]], serial: int = 7) -> bytes:
    doc = {"version": 4, "terraform_version": "1.11.4", "serial": serial,
           "lineage": "0e4c0f7a-7d8e-4c57-9d0a-5b7d4f1d2c3b", "outputs": {}, "resources": resources}
    return (json.dumps(doc, indent=2) + "\n").encode()


def test_a_collision_is_refused_before_anything_is_written(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    taken = state_root(repo) / template.locations[DATABASES]
    taken.parent.mkdir(parents=True, exist_ok=True)
    taken.write_bytes(fake_state([{
        "module": "module.database", "mode": "managed", "type": "null_resource", "name": "primary",
        "provider": 'provider["registry.terraform.io/hashicorp/null"]',
        "instances": [{"schema_version": 0, "attributes": {"id": "42", "triggers": None}}]}]))
    before = states(repo)

    planned = cli("migrate", "plan", MIGRATION, cwd=repo, env=template.env)
    assert planned.code == 1, planned.output
    assert "collision" in planned.stderr and "module.database.null_resource.primary" in planned.stderr, planned.stderr
    assert DATABASES in planned.stderr
    assert "verifying" not in planned.stderr  # refused before any verification plan
    assert states(repo) == before and not (repo / ".strata" / "migrations").exists()

    result = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
    assert "collision" in result.stderr and "module.database.null_resource.primary" in result.stderr, result.stderr
    assert "nothing was written" in result.output
    assert_refused_untouched(template, repo, before, result)


def test_an_unmatched_resource_is_refused_before_anything_is_written(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    spec = repo / MIGRATION
    text = spec.read_text()
    start = text.index('keep "legacy"')
    spec.write_text(text[:start])  # no rule for the bastion any more
    before = states(repo)

    planned = cli("migrate", "plan", MIGRATION, "--json", cwd=repo, env=template.env)
    assert planned.code == 1, planned.output
    report = json_of(planned)
    assert report["ok"] is False and report["unmatched"] == ["null_resource.legacy_bastion"], report
    assert report["verification"] == []

    result = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
    assert "no rule matches null_resource.legacy_bastion" in result.stderr, result.stderr
    assert_refused_untouched(template, repo, before, result)
    listing = list(migrations(repo, template.env).values())
    assert [m["status"] for m in listing] == ["refused"]


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from strata.backends.base import LockInfo
    from strata.backends.local import LocalStore

    store = LocalStore(Path(sys.argv[1]), Path(sys.argv[2]))
    info = LockInfo("4f1b2c3d-0000-4000-8000-00000000beef", "OperationTypeApply", "alice@build-host-42",
                    "terraform 1.11.4", "2026-01-02T03:04:05.000000Z")
    store.lock(info)
    print("locked", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    store.unlock(info)
    """)


@contextlib.contextmanager
def lock_held_by_python(state_file: Path, root: Path) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state_file), str(root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def lock_held_by_terraform(state_file: Path, binary: str, env: dict[str, str], work: Path) -> Iterator[str]:
    """A real `terraform apply` whose local backend is ``state_file``, held in a sleep provisioner; yields the
    lock ID terraform wrote."""
    write_tree(work, {"main.tf": """
        terraform {
          backend "local" {
            path = "STATE_FILE"
          }
        }
        resource "null_resource" "hold" {
          provisioner "local-exec" {
            command = "sleep 120"
          }
        }
        """.replace("STATE_FILE", str(state_file))})
    full_env = {**os.environ, **env}
    subprocess.run([binary, "init", "-input=false", "-no-color"], cwd=work, env=full_env, check=True,
                   capture_output=True)
    proc = subprocess.Popen([binary, "apply", "-auto-approve", "-input=false", "-no-color"], cwd=work,
                            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    info = state_file.parent / f".{state_file.name}.lock.info"
    try:
        deadline = time.monotonic() + 60
        while not (info.is_file() and info.stat().st_size):
            assert proc.poll() is None, "terraform apply ended before it held the lock"
            assert time.monotonic() < deadline, "terraform never took the lock"
            time.sleep(0.05)
        yield str(json.loads(info.read_bytes())["ID"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # terraform and its sleep: a session of their own
        proc.wait()


def test_a_lock_held_by_another_process_is_refused_naming_the_holder(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    state_file = state_root(repo) / template.locations[PLATFORM]
    with lock_held_by_python(state_file, repo):
        before = states(repo)
        result = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
        assert result.code == 1, result.output
        assert "alice@build-host-42" in result.stderr, result.stderr
        assert "4f1b2c3d-0000-4000-8000-00000000beef" in result.stderr
        assert PLATFORM in result.stderr and "nothing was written" in result.stderr
        assert states(repo) == before
        # our own lock files are gone; the holder's is still there
        assert lock_files(repo) == [f".strata/state/{Path(template.locations[PLATFORM]).parent.as_posix()}/"
                                    ".terraform.tfstate.lock.info"]
    assert lock_files(repo) == []
    assert states(repo) == before
    assert [m["status"] for m in migrations(repo, template.env).values()] == ["refused"]
    # once the holder is gone, the same migration goes through
    ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env))
    assert_migrated(template, repo)


def test_a_lock_held_by_a_running_terraform_is_refused(template: Template, tf_111: str,
                                                       provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    state_file = state_root(repo) / template.locations[DATABASES]
    with lock_held_by_terraform(state_file, tf_111, provider_mirror, tmp_path / "holder") as lock_id:
        before = states(repo)
        result = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
        assert result.code == 1, result.output
        assert lock_id in result.stderr and "OperationTypeApply" in result.stderr, result.stderr
        assert DATABASES in result.stderr and "nothing was written" in result.stderr
        assert states(repo) == before
        found = journal(repo)
        assert found is not None and found["status"] == "refused"
        assert all(e["written"] is None for e in found["entries"])


# -- 4. a verification plan with changes: automatic rollback ----------------------------------------------------

def change_applications_code(repo: Path) -> None:
    main = repo / APPLICATIONS / "main.tf"
    text = main.read_text()
    assert "db = var.db_endpoint }" in text
    main.write_text(text.replace("db = var.db_endpoint }", 'db = var.db_endpoint, tier = "gold" }'))


def test_changes_in_a_verification_plan_roll_everything_back(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    change_applications_code(repo)
    before = states(repo)

    result = cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=template.env)
    assert result.code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith(APPLICATIONS)]
    assert lines and "CHANGES" in lines[0] and "null_resource.app[0]" in lines[0], result.stdout
    assert "delete" in lines[0] and "create" in lines[0], lines
    for stack in STACKS:
        if stack != APPLICATIONS:
            assert any(line.startswith(stack) and "no-op" in line for line in result.stdout.splitlines()), stack
    assert "rolled-back" in result.output or "restored" in result.output, result.output
    assert states(repo) == before  # byte for byte; the new states are gone
    assert lock_files(repo) == []
    listing = list(migrations(repo, template.env).values())
    assert [m["status"] for m in listing] == ["rolled-back"], listing
    assert "verification" in listing[0]["outcome"]
    # nothing blocks the stacks afterwards: the migration is finished (rolled back), not interrupted
    assert "interrupted" not in cli("plan", SOURCE, cwd=repo, env=template.env).output


def test_changes_with_no_rollback_keep_the_migrated_states(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    change_applications_code(repo)

    result = cli("migrate", "apply", MIGRATION, "--yes", "--no-rollback", "--json", cwd=repo, env=template.env)
    assert result.code == 1, result.output
    report = json_of(result)
    verdicts = {v["stack"]: v for v in report["verification"]}
    assert verdicts[APPLICATIONS]["ok"] is False
    assert any(c.startswith("null_resource.app[0]:") and "create" in c for c in verdicts[APPLICATIONS]["changes"])
    assert all(v["ok"] for s, v in verdicts.items() if s != APPLICATIONS), verdicts
    assert report["migration"]["status"] == "done" and "--no-rollback" in report["migration"]["outcome"]
    # migrated and left so: the monolith holds only the bastion, every target its resources, ids unchanged
    old = instances(template.monolith)
    for stack in STACKS:
        state = template.state_of(repo, stack)
        assert state is not None, stack
        expected = {new for (where, new, _) in PLACEMENT.values() if where == stack}
        assert {address(r) for r in state["resources"]} == expected
        for (new_address, key), attributes in instances(state).items():
            original = next(o for o, (s, n, _) in PLACEMENT.items() if s == stack and n == new_address)
            assert old[(original, key)] == attributes
    assert lock_files(repo) == []


# -- 5. kill -9 at every step: rollback restores byte for byte, resume gives the uninterrupted result ------------

# Each kill happens at an event, never after a delay: at a step of the journal, where the runner's test hook
# (STRATA_TEST_PAUSE_AT, see strata.migrate.runner) holds strata still until the kill; or, for
# "terraform-running", while the journal says "verifying" and a terraform strata started is running in the
# repository (a verification plan takes seconds, and the poll looks every millisecond).
PAUSE_POINTS = ("planned", "locked", "writing", "verifying", "finishing")
KILL_POINTS = (*PAUSE_POINTS, "terraform-running")


def at_point(point: str, found: dict[str, Any]) -> bool:
    """Whether the journal left by the kill shows the migration exactly at ``point``."""
    if point == "terraform-running":
        return found["status"] == "verifying"
    if point == "planned":  # the journal lists the states, no backup taken yet
        return found["status"] == "planned" and bool(found["entries"]) and not any(e["before"]
                                                                                    for e in found["entries"])
    if point == "writing":  # one state written, not every one
        written = [e for e in found["entries"] if e["written"]]
        return found["status"] == "writing" and 0 < len(written) < len(found["entries"])
    return bool(found["status"] == point)


def terraform_running(repo: Path) -> bool:
    return any("terraform-provider-" not in cmd and "terraform" in cmd
               for cmd in map(_cmdline, processes_in(repo)))


def processes_in(folder: Path) -> list[int]:
    """Processes (terraform, its providers) whose working directory is inside ``folder``."""
    target = str(folder.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == target or cwd.startswith(target + "/"):
            found.append(int(entry.name))
    return found


def settle(repo: Path) -> None:
    """Wait for the terraform processes the killed strata had started to end by themselves. A terraform killed
    with its parent (its output pipe broke) leaves its provider plugin behind, orphaned and waiting forever:
    a plugin whose terraform is gone (its parent is no longer a process in the repository), started by this
    test's strata, is ended by its pid."""
    deadline = time.monotonic() + 60  # a safety net, not a synchronisation
    while time.monotonic() < deadline:
        running = processes_in(repo)
        if not running:
            return
        for pid in running:
            if "terraform-provider-" in _cmdline(pid) and _parent(pid) not in running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    raise AssertionError(f"processes still running in {repo}: {processes_in(repo)}")


def _parent(pid: int) -> int | None:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the fields after "(comm)": state, ppid, ...


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_at(repo: Path, env: dict[str, str], point: str) -> dict[str, Any]:
    """Run `migrate apply`, SIGKILL strata when it is at ``point``; the journal as it was left."""
    full_env = {**os.environ, "NO_COLOR": "1", **env}
    if point in PAUSE_POINTS:
        full_env["STRATA_TEST_PAUSE_AT"] = point
    log = repo.parent / f"{repo.name}.stderr"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "strata", "migrate", "apply", MIGRATION, "--yes"], cwd=repo,
                                env=full_env, stdout=subprocess.DEVNULL, stderr=stderr)
    base = repo / ".strata" / "migrations"
    deadline = time.monotonic() + 300  # a safety net for a hung run, not a synchronisation
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"migrate apply ended before {point}: {log.read_text(errors='replace')}")
            assert time.monotonic() < deadline, f"{point} never reached"
            if point in PAUSE_POINTS:
                arrived = any(base.glob(f"*/paused-at-{point}"))
            else:
                found = journal(repo)
                assert found is None or found["status"] in ("planned", "locked", "writing", "verifying"), found
                arrived = found is not None and found["status"] == "verifying" and terraform_running(repo)
            if arrived:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    settle(repo)
    left = journal(repo)
    assert left is not None
    assert at_point(point, left), left
    return left


def killed_copy(template: Template, where: Path, point: str) -> tuple[Path, dict[str, Any]]:
    """A fresh copy of the template with a `migrate apply` killed at ``point``."""
    repo = template.copy(where / "repo")
    return repo, kill_at(repo, template.env, point)


def assert_runs_refused(repo: Path, env: dict[str, str], ident: str) -> None:
    for stack in (SOURCE, PLATFORM):
        result = cli("plan", stack, cwd=repo, env=env)
        assert result.code == 1, result.output
        assert ident in result.stderr and "resume" in result.stderr and "rollback" in result.stderr, result.stderr


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_then_rollback_or_resume(template: Template, reference: Reference, point: str,
                                        tmp_path: Path) -> None:
    env = template.env

    # (a)+(b): killed, every run on those stacks refuses; rollback gives the states back byte for byte
    before = template.before
    repo, left = killed_copy(template, tmp_path / "rollback", point)
    ident = left["id"]
    assert_runs_refused(repo, env, ident)
    rolled = cli("migrate", "rollback", ident, cwd=repo, env=env)
    assert rolled.code == 0, (left["status"], rolled.output)
    assert states(repo) == before, left["status"]
    assert lock_files(repo) == []
    assert migrations(repo, env)[ident]["status"] == "rolled-back"
    again = cli("migrate", "resume", ident, cwd=repo, env=env)
    assert again.code == 1 and "rolled-back" in again.output, again.output

    # (c): killed at the same point on a fresh copy, resume gives what an uninterrupted run gives
    repo, left = killed_copy(template, tmp_path / "resume", point)
    ident = left["id"]
    assert_runs_refused(repo, env, ident)
    resumed = cli("migrate", "resume", ident, cwd=repo, env=env)
    assert resumed.code == 0, (left["status"], resumed.output)
    status = migrations(repo, env)[ident]["status"]
    if left["status"] in ("planned", "locked"):
        # nothing was written yet: resume closes the migration without writing; applying again finishes it
        assert status == "refused", status
        assert states(repo) == before
        ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=env))
    else:
        assert status == "done", status
    assert comparable(states(repo), before) == reference.states
    assert lock_files(repo) == []
    assert_migrated(template, repo)
    plan_all_clean(repo, env)


# -- 6. strata state mv | rm | import ---------------------------------------------------------------------------

def test_state_mv_moves_one_module_with_backup_and_journal(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    env = template.env
    source_file = state_root(repo) / template.locations[SOURCE]
    original = source_file.read_bytes()

    result = ok(cli("state", "mv", SOURCE, "module.db", DATABASES, "module.database", cwd=repo, env=env))
    assert "module.db.null_resource.primary → module.database.null_resource.primary" in result.stdout
    source = template.state_of(repo, SOURCE) or {}
    target = template.state_of(repo, DATABASES) or {}
    assert not [r for r in source["resources"] if address(r).startswith("module.db.")]
    assert len(source["resources"]) == len(template.monolith["resources"]) - 2
    assert source["lineage"] == template.monolith["lineage"] and source["serial"] == template.monolith["serial"] + 1
    assert {address(r) for r in target["resources"]} == {"module.database.null_resource.primary",
                                                          "module.database.null_resource.replica"}
    old = instances(template.monolith)
    for (new_address, key), attributes in instances(target).items():
        assert attributes == old[(new_address.replace("module.database.", "module.db."), key)]
    assert target["serial"] == 1 and target["lineage"]

    listing = list(migrations(repo, env).values())
    assert [m["status"] for m in listing] == ["done"] and listing[0]["moves"] == 2
    assert sorted(listing[0]["stacks"]) == sorted([SOURCE, DATABASES])
    folder = repo / ".strata" / "migrations" / listing[0]["id"]
    assert [p.read_bytes() for p in (folder / "before").iterdir()] == [original]
    assert lock_files(repo) == []

    # a collision: the target already holds the address; nothing is written
    before = states(repo)
    refused = cli("state", "mv", SOURCE, "null_resource.legacy_bastion", DATABASES,
                  "module.database.null_resource.primary", cwd=repo, env=env)
    assert refused.code == 1, refused.output
    assert "collision" in refused.stderr and "module.database.null_resource.primary" in refused.stderr
    assert states(repo) == before and lock_files(repo) == []
    # an address that does not exist
    missing = cli("state", "mv", SOURCE, "null_resource.nope", DATABASES, cwd=repo, env=env)
    assert missing.code == 1 and "null_resource.nope" in missing.stderr, missing.output
    assert states(repo) == before


def test_state_rm_keeps_lineage_raises_serial_and_backs_up(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    env = template.env
    original = (state_root(repo) / template.locations[SOURCE]).read_bytes()

    result = ok(cli("state", "rm", SOURCE, "null_resource.legacy_bastion", "module.client", cwd=repo, env=env))
    assert "removed null_resource.legacy_bastion" in result.stdout
    state = template.state_of(repo, SOURCE) or {}
    left = {address(r) for r in state["resources"]}
    assert left == {a for a in PLACEMENT if a != "null_resource.legacy_bastion" and not a.startswith("module.client")}
    assert state["lineage"] == template.monolith["lineage"]
    assert state["serial"] == template.monolith["serial"] + 1
    backups = list((repo / ".strata" / "backups").rglob("*.tfstate"))
    assert [b.read_bytes() for b in backups] == [original], backups
    assert lock_files(repo) == []

    before = states(repo)
    missing = cli("state", "rm", SOURCE, "null_resource.nope", cwd=repo, env=env)
    assert missing.code == 1 and "null_resource.nope" in missing.stderr, missing.output
    assert states(repo) == before


def test_state_import_backs_up_then_runs_terraform_import(template: Template, tmp_path: Path) -> None:
    repo = template.copy(tmp_path / "repo")
    env = template.env
    write_tree(repo, {"sandbox/strata.hcl": "stack {}\n", "sandbox/main.tf": """
        resource "null_resource" "first" {
        }
        resource "terraform_data" "imported" {
        }
        resource "null_resource" "not_importable" {
        }
        """})
    # a state to start from: apply, then forget what the test imports
    ok(cli("apply", "--yes", "-q", "sandbox", cwd=repo, env=env))
    ok(cli("state", "rm", "sandbox", "terraform_data.imported", "null_resource.not_importable", cwd=repo, env=env))
    sandbox = next(state_root(repo).rglob("sandbox/terraform.tfstate"), None)
    assert sandbox is not None, sorted(states(repo))
    prior = sandbox.read_bytes()
    prior_doc = json.loads(prior)
    shutil.rmtree(repo / ".strata" / "backups")

    result = cli("state", "import", "sandbox", "terraform_data.imported", "imported-by-test", cwd=repo, env=env)
    assert result.code == 0, result.output
    doc = json.loads(sandbox.read_bytes())
    imported = {k: v for k, v in instances(doc).items() if k[0] == "terraform_data.imported"}
    assert [a["id"] for a in imported.values()] == ["imported-by-test"]
    assert doc["lineage"] == prior_doc["lineage"] and doc["serial"] == prior_doc["serial"] + 1
    assert instances(doc)[("null_resource.first", "null")] == instances(prior_doc)[("null_resource.first", "null")]
    backups = list((repo / ".strata" / "backups").rglob("*.tfstate"))
    assert [b.read_bytes() for b in backups] == [prior]
    assert lock_files(repo) == []

    # a resource type that cannot be imported: terraform's error is shown, the state is unchanged
    current = sandbox.read_bytes()
    failed = cli("state", "import", "sandbox", "null_resource.not_importable", "123", cwd=repo, env=env)
    assert failed.code == 1, failed.output
    assert "support import" in failed.output, failed.output
    assert sandbox.read_bytes() == current


# -- 7. the same migration on S3 (moto) ---------------------------------------------------------------------------

def s3_backend(moto: MotoServer, bucket: str, table: str) -> str:
    ep = moto.endpoint
    return f"""
        backend "s3" {{
          bucket         = "{bucket}"
          region         = "us-east-1"
          encrypt        = true
          dynamodb_table = "{table}"
          endpoints      = {{ s3 = "{ep}", dynamodb = "{ep}", sts = "{ep}", iam = "{ep}" }}
          use_path_style              = true
          skip_credentials_validation = true
          skip_region_validation      = true
          skip_metadata_api_check     = true
          skip_requesting_account_id  = true
        }}
        """


def test_migrate_apply_on_s3(tf_111: str, provider_mirror: dict[str, str], moto_server: MotoServer,
                             tmp_path: Path) -> None:
    from servers import unique_name

    bucket, table = moto_server.create_bucket(unique_name("migrate")), moto_server.create_lock_table()
    repo = tmp_path / "repo"
    write_tree(repo, {**MONOLITH, "strata.hcl": textwrap.dedent(ROOT_HCL) + textwrap.dedent(
        s3_backend(moto_server, bucket, table))})
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "AWS_ACCESS_KEY_ID": moto_server.access_key,
           "AWS_SECRET_ACCESS_KEY": moto_server.secret_key, "AWS_EC2_METADATA_DISABLED": "true",
           "STRATA_NO_LIVE": "1"}
    ok(cli("apply", "--yes", "-q", SOURCE, cwd=repo, env=env))
    write_tree(repo, LAYERS)
    objects = moto_server.object_keys(bucket)
    assert len(objects) == 1, objects
    source_key = objects[0]
    monolith = json.loads(moto_server.get_object(bucket, source_key))

    planned = ok(cli("migrate", "plan", MIGRATION, "--json", cwd=repo, env=env))
    assert all(v["ok"] for v in json_of(planned)["verification"])
    assert moto_server.object_keys(bucket) == [source_key]

    ok(cli("migrate", "apply", MIGRATION, "--yes", cwd=repo, env=env))
    plan_all_clean(repo, env)
    objects = moto_server.object_keys(bucket)
    assert len(objects) == len(STACKS), objects
    items = moto_server.table_items(table)
    for key in objects:  # Terraform (1.0.3 on every read) checks these digests
        body = moto_server.get_object(bucket, key)
        assert items[f"{bucket}/{key}-md5"]["Digest"] == hashlib.md5(body).hexdigest(), key
    old = instances(monolith)
    for stack in STACKS:
        state = json.loads(ok(cli("state", "pull", stack, cwd=repo, env=env)).stdout)
        expected = {(n, k): old[(o, k)] for (o, k) in old for (s, n, _) in [PLACEMENT[o]] if s == stack}
        assert instances(state) == expected, stack
        assert set(state["outputs"]) == OUTPUTS[stack], stack
    source = json.loads(moto_server.get_object(bucket, source_key))
    assert [address(r) for r in source["resources"]] == ["null_resource.legacy_bastion"]
    assert source["lineage"] == monolith["lineage"] and source["serial"] == monolith["serial"] + 2
    assert not [k for k in items if not k.endswith("-md5")], items  # every lock released
