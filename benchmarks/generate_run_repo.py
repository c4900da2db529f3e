#!/usr/bin/env python3
"""Generate a small layered repository for the run-engine benchmark (benchmarks/bench_run.py).

Every stack is real Terraform that runs offline: ``null_resource``s stand in for cloud resources, and
outputs flow down a dependency chain, so a plan reads real outputs once everything has been applied.

Per environment and region (4 environments x 2 regions by default = 48 stacks)::

    01-foundation      a "VPC" and three subnets                      outputs vpc_id, subnet_ids, vpc_cidr
    02-platform        a "cluster" and a node group   <- foundation   outputs cluster_name, endpoint, node_sg_id
    03-databases       a "database"                   <- foundation, platform         outputs db_endpoint
    04-applications    an "application"               <- platform, databases          outputs app_url
    clients/<name>     a namespace and a database     <- foundation, platform, databases (inherited from
                                                         clients/strata.hcl)          outputs namespace

State is local (``.strata/state/<env>/<region>/<layer>/terraform.tfstate``), the embedded default.

    .venv/bin/python benchmarks/generate_run_repo.py --out /tmp/run-repo [--envs 4 --regions 2 --clients 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENTS = ("dev", "qa", "staging", "production", "uat", "perf", "demo", "sandbox")
REGIONS = ("us-east-1", "eu-central-1", "eu-west-1", "ap-southeast-1", "us-west-2", "sa-east-1")
CLIENTS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")
LAYERS = ("01-foundation", "02-platform", "03-databases", "04-applications")
MARKER = ".bench-run-repo.json"


@dataclass(frozen=True)
class Scale:
    envs: int = 4
    regions: int = 2
    clients: int = 2

    @property
    def stacks(self) -> int:
        return self.envs * self.regions * (len(LAYERS) + self.clients)

    @property
    def edges(self) -> int:
        return self.envs * self.regions * (1 + 2 + 2 + 3 * self.clients)


PROVIDERS = """\
terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# Set for every stack by the root strata.hcl.
variable "project" {
  type = string
}

variable "environment" {
  type = string
}

variable "region" {
  type = string
}

variable "tags" {
  type = map(string)
}
"""


def _variables(names: dict[str, str]) -> str:
    return "".join(f'\nvariable "{name}" {{\n  type = {kind}\n}}\n' for name, kind in names.items())


FOUNDATION_TF = PROVIDERS + _variables({"vpc_cidr": "string", "availability_zones": "list(string)"}) + """
resource "null_resource" "vpc" {
  triggers = {
    name = "${var.project}-${var.environment}-${var.region}"
    cidr = var.vpc_cidr
    tags = jsonencode(var.tags)
  }
}

resource "null_resource" "subnet" {
  count = length(var.availability_zones)

  triggers = {
    vpc  = null_resource.vpc.id
    zone = var.availability_zones[count.index]
    cidr = cidrsubnet(var.vpc_cidr, 4, count.index)
  }
}

output "vpc_id" {
  value = "vpc-${null_resource.vpc.id}"
}

output "vpc_cidr" {
  value = var.vpc_cidr
}

output "subnet_ids" {
  value = [for subnet in null_resource.subnet : "subnet-${subnet.id}"]
}
"""

PLATFORM_TF = PROVIDERS + _variables({"cluster_name": "string", "vpc_id": "string",
                                      "subnet_ids": "list(string)", "node_count": "number"}) + """
resource "null_resource" "cluster" {
  triggers = {
    name    = var.cluster_name
    vpc     = var.vpc_id
    subnets = join(",", var.subnet_ids)
  }
}

resource "null_resource" "node_group" {
  triggers = {
    cluster = null_resource.cluster.id
    nodes   = var.node_count
  }
}

output "cluster_name" {
  value = var.cluster_name
}

output "cluster_endpoint" {
  value = "https://${null_resource.cluster.id}.eks.example.internal"
}

output "node_sg_id" {
  value = "sg-${null_resource.node_group.id}"
}
"""

DATABASES_TF = PROVIDERS + _variables({"db_name": "string", "vpc_id": "string", "subnet_ids": "list(string)",
                                       "allowed_security_groups": "list(string)"}) + """
resource "null_resource" "database" {
  triggers = {
    name    = var.db_name
    vpc     = var.vpc_id
    subnets = join(",", var.subnet_ids)
    allowed = join(",", var.allowed_security_groups)
  }
}

output "db_endpoint" {
  value = "${var.db_name}.${null_resource.database.id}.rds.example.internal:5432"
}
"""

APPLICATIONS_TF = PROVIDERS + _variables({"app_name": "string", "cluster_name": "string",
                                          "cluster_endpoint": "string", "db_endpoint": "string"}) + """
resource "null_resource" "application" {
  triggers = {
    name     = var.app_name
    cluster  = var.cluster_name
    endpoint = var.cluster_endpoint
    database = var.db_endpoint
  }
}

output "app_url" {
  value = "https://${var.app_name}.${var.environment}.example.com/${null_resource.application.id}"
}
"""

CLIENT_TF = PROVIDERS + _variables({"client_name": "string", "vpc_id": "string", "cluster_name": "string",
                                    "db_endpoint": "string"}) + """
resource "null_resource" "namespace" {
  triggers = {
    client  = var.client_name
    cluster = var.cluster_name
    vpc     = var.vpc_id
  }
}

resource "null_resource" "database" {
  triggers = {
    client   = var.client_name
    endpoint = var.db_endpoint
  }
}

output "namespace" {
  value = "client-${var.client_name}-${null_resource.namespace.id}"
}
"""

ROOT_HCL = """\
strata {
  layers                  = ["01-foundation", "02-platform", "03-databases", "04-applications"]
  production_environments = [] # everything is local state: the benchmark runs offline
}

backend "local" {}

cloud = "aws"

locals {
  project = "bench"
}

inputs = {
  project     = local.project
  environment = strata.environment
  region      = strata.region
  tags = {
    Project     = local.project
    Environment = strata.environment
    Stack       = strata.stack.path
  }
}
"""

FOUNDATION_HCL = """\
stack {
  description = "network"
}

inputs = {
  vpc_cidr           = cidrsubnet("10.0.0.0/8", 8, local.env_netnum + local.region_netnum)
  availability_zones = [for zone in ["a", "b", "c"] : format("%s%s", strata.region, zone)]
}
"""

PLATFORM_HCL = """\
stack {
  description = "cluster"
}

dependency "foundation" {
  path = "../01-foundation"
}

inputs = {
  cluster_name = format("%s-%s-%s", local.project, strata.environment, strata.region)
  node_count   = 3
  vpc_id       = dependency.foundation.outputs.vpc_id
  subnet_ids   = dependency.foundation.outputs.subnet_ids
}
"""

DATABASES_HCL = """\
stack {
  description = "database"
}

dependency "foundation" {
  path = "../01-foundation"
}

dependency "platform" {
  path = "../02-platform"
}

inputs = {
  db_name                 = format("%s-%s-db", local.project, strata.environment)
  vpc_id                  = dependency.foundation.outputs.vpc_id
  subnet_ids              = dependency.foundation.outputs.subnet_ids
  allowed_security_groups = [dependency.platform.outputs.node_sg_id]
}
"""

APPLICATIONS_HCL = """\
stack {
  description = "application"
}

dependency "platform" {
  path = "../02-platform"
}

dependency "databases" {
  path = "../03-databases"
}

inputs = {
  app_name         = "shop"
  cluster_name     = dependency.platform.outputs.cluster_name
  cluster_endpoint = dependency.platform.outputs.cluster_endpoint
  db_endpoint      = dependency.databases.outputs.db_endpoint
}
"""

CLIENTS_HCL = """\
# No stack block: these dependencies and inputs are inherited by every clients/<name> stack.
dependency "foundation" {
  path = "../01-foundation"
}

dependency "platform" {
  path = "../02-platform"
}

dependency "databases" {
  path = "../03-databases"
}

inputs = {
  client_name  = strata.client
  vpc_id       = dependency.foundation.outputs.vpc_id
  cluster_name = dependency.platform.outputs.cluster_name
  db_endpoint  = dependency.databases.outputs.db_endpoint
}
"""

CLIENT_HCL = """\
stack {
  description = "client %s"
}
"""


def files(scale: Scale) -> dict[str, str]:
    if scale.envs > len(ENVIRONMENTS) or scale.regions > len(REGIONS) or scale.clients > len(CLIENTS):
        raise SystemExit(f"at most {len(ENVIRONMENTS)} environments, {len(REGIONS)} regions, {len(CLIENTS)} clients")
    out = {"strata.hcl": ROOT_HCL}
    kinds = {"01-foundation": (FOUNDATION_HCL, FOUNDATION_TF), "02-platform": (PLATFORM_HCL, PLATFORM_TF),
             "03-databases": (DATABASES_HCL, DATABASES_TF), "04-applications": (APPLICATIONS_HCL, APPLICATIONS_TF)}
    for e, env in enumerate(ENVIRONMENTS[:scale.envs]):
        out[f"{env}/strata.hcl"] = (f'environment = "{env}"\naccount_id  = "{100000000000 + e:012d}"\n\n'
                                    f"locals {{\n  env_netnum = {10 * (e + 1)}\n}}\n")
        for r, region in enumerate(REGIONS[:scale.regions]):
            base = f"{env}/{region}"
            out[f"{base}/strata.hcl"] = f'region = "{region}"\n\nlocals {{\n  region_netnum = {r}\n}}\n'
            for layer, (hcl, tf) in kinds.items():
                out[f"{base}/{layer}/strata.hcl"] = hcl
                out[f"{base}/{layer}/main.tf"] = tf
            if scale.clients:
                out[f"{base}/clients/strata.hcl"] = CLIENTS_HCL
            for client in CLIENTS[:scale.clients]:
                out[f"{base}/clients/{client}/strata.hcl"] = CLIENT_HCL % client
                out[f"{base}/clients/{client}/main.tf"] = CLIENT_TF
    return out


def stack_paths(scale: Scale) -> list[str]:
    """Every stack, in an order a shell loop can run them in (dependencies first)."""
    paths = []
    for env in ENVIRONMENTS[:scale.envs]:
        for region in REGIONS[:scale.regions]:
            paths += [f"{env}/{region}/{layer}" for layer in LAYERS]
            paths += [f"{env}/{region}/clients/{client}" for client in CLIENTS[:scale.clients]]
    return paths


def marker_data(scale: Scale) -> dict[str, int]:
    return {"envs": scale.envs, "regions": scale.regions, "clients": scale.clients}


def read_marker(out: Path) -> dict[str, int] | None:
    try:
        data = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build(out: Path, scale: Scale, force: bool = False) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SystemExit(f"{out} is not empty (use --force to replace it)")
        if read_marker(out) is None:
            raise SystemExit(f"{out} was not generated by this script: not replacing it")
        shutil.rmtree(out)
    for rel, text in files(scale).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (out / MARKER).write_text(json.dumps(marker_data(scale)) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--envs", type=int, default=Scale.envs)
    parser.add_argument("--regions", type=int, default=Scale.regions)
    parser.add_argument("--clients", type=int, default=Scale.clients)
    parser.add_argument("--force", action="store_true", help="replace a repository this script generated")
    args = parser.parse_args(argv)
    scale = Scale(args.envs, args.regions, args.clients)
    build(args.out, scale, force=args.force)
    print(f"{scale.stacks} stacks, {scale.edges} dependency edges in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
