"""Unit tests of strata.model.loader: merged configuration, provenance, state keys, backends, dependencies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import strata.config.cache as cache_module
from conftest import write_tree
from strata.model.loader import default_state_key, load
from strata.model.repository import Repository
from strata.model.stack import Deferred, Setting, Stack


def load_tree(root: Path, files: dict[str, str], *, errors_ok: bool = False) -> Repository:
    write_tree(root, files)
    repo = load(root, root)
    if not errors_ok:
        assert repo.errors == [], "\n".join(str(d) for d in repo.errors)
    return repo


def where(setting: Setting) -> str:
    return str(setting.source)


def leaf_sources(setting: Setting, prefix: str = "") -> dict[str, str]:
    """Every leaf of a (possibly merged) input as dotted name -> its file:line."""
    if setting.children is None:
        return {prefix: where(setting)}
    out: dict[str, str] = {}
    for key, child in setting.children.items():
        out.update(leaf_sources(child, f"{prefix}.{key}" if prefix else key))
    return out


def messages(repo: Repository) -> list[str]:
    return [str(d) for d in repo.diagnostics]


# -- merging and provenance ----------------------------------------------------------------------


DEEP = {
    "strata.hcl": """
        strata {}

        inputs = {
          tags = {
            owner = "root"
            cost  = "shared"
            meta  = { a = 1, b = 2 }
          }
          azs  = ["a", "b"]
          name = strata.stack.name
        }
    """,
    "production/strata.hcl": """
        inputs = {
          tags = {
            cost = "prod"
            meta = { b = 3 }
          }
          azs = ["c"]
        }
    """,
    "production/us-east-1/strata.hcl": """
        inputs = {
          tags = {
            meta = { c = 4 }
          }
        }
    """,
    "production/us-east-1/01-foundation/strata.hcl": """
        stack {}
        inputs = {
          tags = { owner = "net" }
        }
    """,
    "production/us-east-1/02-platform/strata.hcl": "stack {}\n",
}


def test_inputs_deep_merge_at_every_level_with_deeper_files_winning(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, DEEP)
    foundation = repo.stacks["production/us-east-1/01-foundation"]
    plain = {k: v.plain() for k, v in foundation.inputs.items()}
    assert plain == {
        "tags": {"owner": "net", "cost": "prod", "meta": {"a": 1, "b": 3, "c": 4}},
        "azs": ["c"],  # lists are replaced, never concatenated
        "name": "01-foundation",
    }
    platform = repo.stacks["production/us-east-1/02-platform"]
    assert platform.inputs["tags"].plain()["owner"] == "root"
    assert platform.inputs["name"].plain() == "02-platform"  # evaluated per stack


def test_every_merged_input_leaf_keeps_its_file_and_line(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, DEEP)
    foundation = repo.stacks["production/us-east-1/01-foundation"]
    assert leaf_sources(foundation.inputs["tags"]) == {
        "owner": "production/us-east-1/01-foundation/strata.hcl:3",
        "cost": "production/strata.hcl:3",
        "meta.a": "strata.hcl:7",
        "meta.b": "production/strata.hcl:4",
        "meta.c": "production/us-east-1/strata.hcl:3",
    }
    assert where(foundation.inputs["azs"]) == "production/strata.hcl:6"
    assert where(foundation.inputs["name"]) == "strata.hcl:10"
    assert foundation.config_chain == (
        "strata.hcl", "production/strata.hcl", "production/us-east-1/strata.hcl",
        "production/us-east-1/01-foundation/strata.hcl",
    )


def test_inputs_written_as_an_expression_are_merged_too(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {}\nlocals {\n  common = { a = 1, b = { x = 1 } }\n}\ninputs = local.common\n',
        "dev/s/strata.hcl": 'stack {}\ninputs = merge({ b = { y = 2 } }, { c = 3 })\n',
    })
    stack = repo.stacks["dev/s"]
    assert {k: v.plain() for k, v in stack.inputs.items()} == {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
    assert where(stack.inputs["a"]) == "strata.hcl:5"
    assert where(stack.inputs["c"]) == "dev/s/strata.hcl:2"


def test_a_deeper_scalar_replaces_an_object(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {}\ninputs = { tags = { a = 1 } }\n',
        "dev/s/strata.hcl": 'stack {}\ninputs = { tags = null }\n',
    })
    assert repo.stacks["dev/s"].inputs["tags"].plain() is None


def test_sources_of_dimensions_locals_and_backend_settings(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": """
            strata {}
            locals {
              prefix = "acme"
            }
            backend "s3" {
              bucket  = "${local.prefix}-state"
              region  = strata.region
              encrypt = true
            }
        """,
        "production/us-east-1/01-foundation/strata.hcl": 'stack {}\naccount_id = "111111111111"\n',
    })
    stack = repo.stacks["production/us-east-1/01-foundation"]
    dims = {name: (s.value, where(s)) for name, s in stack.dimensions.items()}
    assert dims == {
        "cloud": ("aws", 'inferred from backend "s3"'),
        "account_id": ("111111111111", "production/us-east-1/01-foundation/strata.hcl:2"),
        "environment": ("production", 'inferred from folder "production"'),
        "region": ("us-east-1", 'inferred from folder "us-east-1"'),
        "layer": ("01-foundation", 'inferred from folder "01-foundation"'),
    }
    assert (stack.locals["prefix"].value, where(stack.locals["prefix"])) == ("acme", "strata.hcl:3")
    assert stack.backend is not None
    settings = {name: (s.value, where(s)) for name, s in stack.backend.settings.items()}
    assert settings == {
        "bucket": ("acme-state", "strata.hcl:6"),
        "region": ("us-east-1", "strata.hcl:7"),
        "encrypt": (True, "strata.hcl:8"),
        "key": ("production/us-east-1/01-foundation/terraform.tfstate", "default"),
    }
    assert str(stack.backend.source) == "strata.hcl:5"
    assert str(stack.source) == "production/us-east-1/01-foundation/strata.hcl:1"


def test_display_paths_are_relative_to_the_working_directory(tmp_path: Path) -> None:
    write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", "dev/s/strata.hcl": "stack {}\nregion = 5\n"})
    repo = load(tmp_path / "repo", tmp_path)
    assert [str(d) for d in repo.errors] == ["repo/dev/s/strata.hcl:2: error: region must be a string, got number"]


# -- locals and dimensions -------------------------------------------------------------------------


def test_a_root_local_can_use_a_local_defined_deeper(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": """
            strata {}
            locals {
              prefix = "acme-${local.team}"
              team   = "platform"
            }
            inputs = { prefix = local.prefix }
        """,
        "production/strata.hcl": 'locals {\n  team = "prod-team"\n}\n',
        "production/a/strata.hcl": "stack {}\n",
        "staging/b/strata.hcl": "stack {}\n",
    })
    prod = repo.stacks["production/a"]
    assert prod.locals["prefix"].value == "acme-prod-team"
    assert where(prod.locals["prefix"]) == "strata.hcl:3"
    assert (prod.locals["team"].value, where(prod.locals["team"])) == ("prod-team", "production/strata.hcl:2")
    assert prod.inputs["prefix"].plain() == "acme-prod-team"
    assert repo.stacks["staging/b"].locals["prefix"].value == "acme-platform"


def test_an_explicit_dimension_beats_inference(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "production/us-east-1/01-foundation/strata.hcl": """
            stack {}
            environment = "prod"
            region      = "${strata.environment}-region"
        """,
    })
    stack = repo.stacks["production/us-east-1/01-foundation"]
    assert stack.environment == "prod"
    assert stack.region == "prod-region"
    assert where(stack.dimensions["environment"]) == "production/us-east-1/01-foundation/strata.hcl:2"
    assert where(stack.dimensions["region"]) == "production/us-east-1/01-foundation/strata.hcl:3"
    assert stack.state_key == "prod/prod-region/01-foundation/terraform.tfstate"


def test_a_numeric_account_id_becomes_a_string(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {"strata.hcl": "strata {}\naccount_id = 111111111111\n",
                                "dev/s/strata.hcl": "stack {}\n"})
    assert repo.stacks["dev/s"].dimension("account_id") == "111111111111"


def test_infer_dimensions_can_be_turned_off(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {\n  infer_dimensions = false\n}\n",
        "production/us-east-1/01-foundation/strata.hcl": 'stack {}\nenvironment = "production"\n',
    })
    stack = repo.stacks["production/us-east-1/01-foundation"]
    assert stack.region is None and stack.layer is None and stack.environment == "production"
    assert stack.state_key == "production/us-east-1/01-foundation/terraform.tfstate"


def test_strata_stack_name_path_and_state_key(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": """
            strata {}
            inputs = {
              stack_name = strata.stack.name
              stack_path = strata.stack.path
              state_key  = strata.stack.state_key
            }
        """,
        "production/us-east-1/01-foundation/strata.hcl": 'stack {\n  name = "foundation"\n}\n',
        "production/us-east-1/02-platform/strata.hcl": "stack {}\n",
    })
    named = repo.stacks["production/us-east-1/01-foundation"]
    assert named.name == "foundation"
    assert {k: v.plain() for k, v in named.inputs.items()} == {
        "stack_name": "foundation",
        "stack_path": "production/us-east-1/01-foundation",
        "state_key": "production/us-east-1/01-foundation/terraform.tfstate",
    }
    assert repo.stacks["production/us-east-1/02-platform"].inputs["stack_name"].plain() == "02-platform"


def test_unknown_strata_names_are_errors_with_the_line(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/s/strata.hcl": "stack {}\ninputs = {\n  a = strata.nope\n  b = strata.stack.nope\n  c = local.zz\n}\n",
    }, errors_ok=True)
    found = messages(repo)
    assert any(m.startswith("dev/s/strata.hcl:3: error: unknown strata.nope") for m in found), found
    assert any(m.startswith("dev/s/strata.hcl:4: error: unknown strata.stack.nope") for m in found), found
    assert any(m.startswith("dev/s/strata.hcl:5: error: unknown local.zz for stack dev/s (locals: none")
               for m in found), found


def test_a_local_cycle_is_reported_with_its_chain(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\nlocals {\n  a = local.b\n  b = local.a\n}\n",
        "dev/s/strata.hcl": "stack {}\n",
    }, errors_ok=True)
    assert any("local.a depends on itself: local.a -> local.b -> local.a" in m for m in messages(repo))


def test_a_dimension_must_be_a_string(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {"strata.hcl": "strata {}\n", "dev/s/strata.hcl": "stack {}\nregion = [1]\n"},
                     errors_ok=True)
    assert messages(repo) == ["dev/s/strata.hcl:2: error: region must be a string, got list"]


# -- state keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "files", "key"), [
    ("production/us-east-1/01-foundation", {}, "production/us-east-1/01-foundation/terraform.tfstate"),
    ("regions/us-east-1/layers/01-foundation", {"regions/strata.hcl": 'environment = "production"\n'},
     "production/us-east-1/01-foundation/terraform.tfstate"),
    ("regions/us-east-1/layers/01-foundation/production", {},
     "production/us-east-1/01-foundation/terraform.tfstate"),
    ("regions/us-east-1/clients/mtn-ghana", {"regions/strata.hcl": 'environment = "production"\n'},
     "production/us-east-1/clients/mtn-ghana/terraform.tfstate"),
    ("regions/us-east-1/clients/mtn-ghana/production", {},
     "production/us-east-1/clients/mtn-ghana/terraform.tfstate"),
    ("prod/eu-central-1/01-networking/vpc-1", {}, "prod/eu-central-1/01-networking/vpc-1/terraform.tfstate"),
    ("prod/eu-central-1/02-compute/eks-clusters/cluster-1", {},
     "prod/eu-central-1/02-compute/eks-clusters/cluster-1/terraform.tfstate"),
    ("environments/staging/us-east-1/0-backend", {}, "staging/us-east-1/0-backend/terraform.tfstate"),
    ("environments/staging/us-east-1", {}, "staging/us-east-1/terraform.tfstate"),
])
def test_default_state_key_of_each_layout(tmp_path: Path, path: str, files: dict[str, str], key: str) -> None:
    repo = load_tree(tmp_path, {"strata.hcl": "strata {}\n", f"{path}/strata.hcl": "stack {}\n", **files})
    assert repo.stacks[path].state_key == key


def test_default_state_key_function() -> None:
    values: dict[str, str | None] = {"environment": "production", "region": "us-east-1", "layer": "01-foundation",
                                     "client": None}
    assert default_state_key("production/us-east-1/01-foundation", values) == (
        "production/us-east-1/01-foundation/terraform.tfstate")
    assert default_state_key("x/production/us-east-1/01-foundation/a/b", values) == (
        "production/us-east-1/01-foundation/a/b/terraform.tfstate")
    client = {"environment": "production", "region": "us-east-1", "layer": None, "client": "ezra"}
    assert default_state_key("regions/us-east-1/clients/ezra", client) == (
        "production/us-east-1/clients/ezra/terraform.tfstate")
    assert default_state_key("", {}) == "terraform.tfstate"
    assert default_state_key("a/b", {}) == "a/b/terraform.tfstate"


def test_state_key_of_a_region_stack_below_a_prefix_folder(tmp_path: Path) -> None:
    """Seed 000 kept in a terraform/ folder: folders above the dimensions are not part of the key.

    Layer stacks already drop them (terraform/environments/staging/us-east-1/0-backend ->
    staging/us-east-1/0-backend/...); a stack whose deepest dimension is its region must too.
    """
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "terraform/environments/staging/us-east-1/strata.hcl": "stack {}\n",
        "terraform/environments/staging/us-east-1/0-backend/strata.hcl": "stack {}\n",
    })
    assert repo.stacks["terraform/environments/staging/us-east-1/0-backend"].state_key == (
        "staging/us-east-1/0-backend/terraform.tfstate")
    assert repo.stacks["terraform/environments/staging/us-east-1"].state_key == (
        "staging/us-east-1/terraform.tfstate")


# -- dependencies ----------------------------------------------------------------------------------


def test_dependencies_are_inherited_from_plain_files_but_not_from_parent_stacks(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "net/strata.hcl": "stack {}\n",
        "shared/strata.hcl": "stack {}\n",
        "env/strata.hcl": 'dependency "net" {\n  path = "../net"\n}\ndependencies = ["../shared"]\n',
        "env/region/strata.hcl": """
            stack {}
            dependency "own" {
              path = "../../shared"
            }
            dependencies = ["../../net"]
        """,
        "env/region/child/strata.hcl": "stack {}\n",
    })
    region = repo.stacks["env/region"]
    assert [(d.name, d.path, str(d.source)) for d in region.dependencies] == [
        ("net", "net", "env/strata.hcl:1"),
        ("own", "shared", "env/region/strata.hcl:2"),
        (None, "shared", "env/strata.hcl:4"),
        (None, "net", "env/region/strata.hcl:5"),
    ]
    child = repo.stacks["env/region/child"]
    # from env/strata.hcl (no stack block): inherited; from env/region/strata.hcl (a stack): not
    assert [(d.name, d.path) for d in child.dependencies] == [("net", "net"), (None, "shared")]


def test_dependency_paths_are_relative_to_the_declaring_file_and_may_interpolate(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "layers/01-foundation/production/strata.hcl": "stack {}\n",
        "layers/01-foundation/staging/strata.hcl": "stack {}\n",
        "layers/02-platform/strata.hcl": """
            dependency "foundation" {
              path         = "../01-foundation/${strata.environment}"
              mock_outputs = { vpc_id = "vpc-mock" }
            }
        """,
        "layers/02-platform/production/strata.hcl": "stack {}\n",
        "layers/02-platform/staging/strata.hcl": "stack {}\n",
    })
    for env in ("production", "staging"):
        deps = repo.stacks[f"layers/02-platform/{env}"].dependencies
        assert [(d.name, d.path, d.mock_outputs) for d in deps] == [
            ("foundation", f"layers/01-foundation/{env}", {"vpc_id": "vpc-mock"})]


def test_dependency_paths_outside_the_repository_or_absolute_are_errors(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "a/strata.hcl": 'stack {}\ndependency "up" {\n  path = "../../elsewhere"\n}\ndependencies = ["/abs"]\n',
    }, errors_ok=True)
    found = messages(repo)
    assert "a/strata.hcl:2: error: dependency \"up\" path '../../elsewhere' leads outside the repository" in found
    assert "a/strata.hcl:5: error: dependency path '/abs' must be relative to the folder of this strata.hcl" in found
    assert repo.stacks["a"].dependencies == []


def test_inputs_reading_dependency_outputs_are_deferred_and_mark_the_dependency_used(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/01-net/strata.hcl": "stack {}\n",
        "dev/02-app/strata.hcl": """
            stack {}
            dependency "net" {
              path = "../01-net"
            }
            dependency "unused" {
              path = "../01-net"
            }
            inputs = {
              vpc_id  = dependency.net.outputs.vpc_id
              subnets = { private = dependency.net.outputs.private_subnets, fixed = "x" }
              static  = "plain"
            }
        """,
    })
    stack = repo.stacks["dev/02-app"]
    deferred = stack.inputs["vpc_id"].value
    assert isinstance(deferred, Deferred)
    assert deferred.references == ["dependency.net.outputs.vpc_id"]
    assert where(stack.inputs["vpc_id"]) == "dev/02-app/strata.hcl:9"
    subnets = stack.inputs["subnets"]
    assert subnets.children is not None
    assert isinstance(subnets.children["private"].value, Deferred)
    assert subnets.children["fixed"].value == "x"
    assert stack.inputs["static"].plain() == "plain"
    used = {d.name: d.used for d in stack.dependencies}
    assert used == {"net": True, "unused": False}


def test_deferred_references_are_listed_in_source_order(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/01-a/strata.hcl": "stack {}\n",
        "dev/01-b/strata.hcl": "stack {}\n",
        "dev/02-app/strata.hcl": """
            stack {}
            dependency "a" {
              path = "../01-a"
            }
            dependency "b" {
              path = "../01-b"
            }
            inputs = {
              combo = "${dependency.a.outputs.x}-${dependency.b.outputs.y}"
            }
        """,
    })
    deferred = repo.stacks["dev/02-app"].inputs["combo"].value
    assert isinstance(deferred, Deferred)
    assert deferred.references == ["dependency.a.outputs.x", "dependency.b.outputs.y"]


def test_dependency_outputs_must_name_a_declared_dependency(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/a/strata.hcl": """
            stack {}
            inputs = {
              x = dependency.nope.outputs.id
              y = dependency.nope.id
            }
            locals {
              z = dependency.nope.outputs.id
            }
        """,
    }, errors_ok=True)
    found = messages(repo)
    assert ("dev/a/strata.hcl:3: error: unknown dependency 'nope' in dependency.nope.outputs.id "
            "(dependencies: none are declared)") in found
    assert ("dev/a/strata.hcl:4: error: dependency.nope.id: read outputs as dependency.<name>.outputs.<output>"
            in found)
    assert any(m.startswith("dev/a/strata.hcl:7: error: dependency outputs can be used only in inputs")
               for m in found), found


# -- backends --------------------------------------------------------------------------------------


def backend_values(stack: Stack) -> dict[str, Any]:
    assert stack.backend is not None
    return stack.backend.values()


def test_backend_template_is_inherited_and_overridden_per_setting(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": """
            strata {}
            backend "s3" {
              bucket  = "org-${strata.environment}"
              region  = "eu-west-1"
              encrypt = true
            }
        """,
        "production/strata.hcl": 'backend "s3" {\n  region = "us-east-1"\n}\n',
        "production/01-a/strata.hcl": "stack {}\n",
        "staging/01-a/strata.hcl": "stack {}\n",
    })
    prod = repo.stacks["production/01-a"]
    assert backend_values(prod) == {"bucket": "org-production", "region": "us-east-1", "encrypt": True,
                                    "key": "production/01-a/terraform.tfstate"}
    assert prod.backend is not None
    assert where(prod.backend.settings["region"]) == "production/strata.hcl:2"
    assert where(prod.backend.settings["bucket"]) == "strata.hcl:3"
    assert str(prod.backend.source) == "production/strata.hcl:1"
    assert backend_values(repo.stacks["staging/01-a"])["region"] == "eu-west-1"


def test_a_deeper_backend_of_another_type_replaces_the_template(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {}\nbackend "s3" {\n  bucket = "b"\n  region = "us-east-1"\n  encrypt = true\n}\n',
        "staging/us-east-1/strata.hcl": "stack {}\n",
        "staging/us-east-1/0-backend/strata.hcl": 'stack {}\nbackend "local" {}\n',
    })
    region = repo.stacks["staging/us-east-1"]
    assert region.backend is not None and region.backend.type == "s3"
    boot = repo.stacks["staging/us-east-1/0-backend"]
    assert boot.backend is not None and boot.backend.type == "local" and not boot.backend.embedded
    assert backend_values(boot) == {"path": "../../../.strata/state/staging/us-east-1/0-backend/terraform.tfstate"}
    assert boot.dimension("cloud") is None  # the local backend says nothing about the cloud
    assert region.dimension("cloud") == "aws"


def test_state_key_can_be_used_in_a_backend_template(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {}\nbackend "s3" {\n  bucket = "b"\n  region = "r"\n  encrypt = true\n'
                      '  key = "custom/${strata.stack.state_key}"\n}\n',
        "dev/eu-west-1/01-x/strata.hcl": "stack {}\n",
    })
    stack = repo.stacks["dev/eu-west-1/01-x"]
    assert backend_values(stack)["key"] == "custom/dev/eu-west-1/01-x/terraform.tfstate"
    assert stack.backend is not None and where(stack.backend.settings["key"]) == "strata.hcl:6"


def test_without_a_backend_block_state_is_local_under_the_state_folder(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "production/us-east-1/01-foundation/strata.hcl": "stack {}\n",
        "root-stack/strata.hcl": "stack {}\n",
    })
    stack = repo.stacks["production/us-east-1/01-foundation"]
    assert stack.backend is not None
    assert stack.backend.type == "local" and stack.backend.embedded
    path = backend_values(stack)["path"]
    assert path == "../../../.strata/state/production/us-east-1/01-foundation/terraform.tfstate"
    assert (tmp_path / stack.path / path).resolve() == (
        tmp_path / ".strata/state/production/us-east-1/01-foundation/terraform.tfstate").resolve()
    assert str(stack.backend.source) == "embedded default"
    assert backend_values(repo.stacks["root-stack"])["path"] == "../.strata/state/root-stack/terraform.tfstate"


def test_the_state_folder_setting_moves_local_state(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {\n  state_dir = "tfstate/"\n}\n',
        "dev/eu-west-1/01-net/strata.hcl": "stack {}\n",
    })
    assert backend_values(repo.stacks["dev/eu-west-1/01-net"]) == {
        "path": "../../../tfstate/dev/eu-west-1/01-net/terraform.tfstate"}


def test_pg_schema_gcs_prefix_and_azurerm_key_come_from_the_state_key(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "pg/strata.hcl": 'backend "pg" {\n  conn_str = "postgres://127.0.0.1/tf"\n}\n',
        "pg/production/us-east-1/01-foundation/strata.hcl": "stack {}\n",
        "pg/production/us-east-1/clients/mtn-ghana/strata.hcl": "stack {}\n",
        "gcs/strata.hcl": 'backend "gcs" {\n  bucket = "gb"\n}\n',
        "gcs/staging/europe-west1/02-platform/strata.hcl": "stack {}\n",
        "az/strata.hcl": 'backend "azurerm" {\n  storage_account_name = "sa"\n  container_name = "tfstate"\n}\n',
        "az/dev/westeurope/01-net/strata.hcl": "stack {}\n",
    })
    assert backend_values(repo.stacks["pg/production/us-east-1/01-foundation"])["schema_name"] == (
        "production_us_east_1_01_foundation")
    assert backend_values(repo.stacks["pg/production/us-east-1/clients/mtn-ghana"])["schema_name"] == (
        "production_us_east_1_clients_mtn_ghana")
    gcs = repo.stacks["gcs/staging/europe-west1/02-platform"]
    assert backend_values(gcs) == {"bucket": "gb", "prefix": "staging/europe-west1/02-platform"}
    assert gcs.dimension("cloud") == "gcp"
    az = repo.stacks["az/dev/westeurope/01-net"]
    assert backend_values(az)["key"] == "dev/westeurope/01-net/terraform.tfstate"
    assert az.dimension("cloud") == "azure"


def test_unknown_backend_settings_and_types_are_errors(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": 'strata {}\nbackend "s3" {\n  bucket = "b"\n  regoin = "x"\n}\n',
        "a/strata.hcl": "stack {}\n",
        "b/strata.hcl": 'stack {}\nbackend "consul" {}\n',
    }, errors_ok=True)
    found = messages(repo)
    assert "strata.hcl:4: error: unknown setting 'regoin' for backend \"s3\"; did you mean 'region'?" in found
    assert any(m.startswith('b/strata.hcl:2: error: unknown backend type "consul"') for m in found), found


# -- files that cannot be loaded ---------------------------------------------------------------------


def test_a_syntax_error_in_a_parent_is_reported_once_and_its_stacks_skipped(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "bad/strata.hcl": "locals {\n  x = = 1\n}\n",
        "bad/a/strata.hcl": "stack {}\n",
        "bad/b/strata.hcl": "stack {}\n",
        "good/strata.hcl": "stack {}\n",
    }, errors_ok=True)
    assert [d.source.file for d in repo.errors] == ["bad/strata.hcl"]
    assert repo.errors[0].source.line == 2
    assert sorted(repo.stacks) == ["good"]


def test_hidden_and_module_folders_are_never_searched(tmp_path: Path) -> None:
    repo = load_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "modules/vpc/strata.hcl": "stack {}\n",
        "terraform/modules/eks/strata.hcl": "stack {}\n",
        ".hidden/x/strata.hcl": "stack {}\n",
        "live/strata.hcl": "stack {}\n",
    })
    assert sorted(repo.stacks) == ["live"]


# -- the parse cache -------------------------------------------------------------------------------


def test_the_parse_cache_is_reused_and_changed_files_are_parsed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real_parse = cache_module.parse_text  # type: ignore[attr-defined]

    def counting_parse(text: str, name: str) -> Any:
        parsed.append(name)
        return real_parse(text, name)

    monkeypatch.setattr(cache_module, "parse_text", counting_parse)
    first = load_tree(tmp_path, DEEP)
    assert sorted(parsed) == sorted(DEEP)
    cache_file = tmp_path / ".strata" / "cache" / "parse.json"
    assert cache_file.is_file()
    assert len(json.loads(cache_file.read_text())["entries"]) == len(DEEP)

    parsed.clear()
    second = load(tmp_path, tmp_path)
    assert parsed == []
    assert second.stacks.keys() == first.stacks.keys()
    for path, stack in first.stacks.items():
        again = second.stacks[path]
        assert {k: v.plain() for k, v in again.inputs.items()} == {k: v.plain() for k, v in stack.inputs.items()}
        assert {k: leaf_sources(v) for k, v in again.inputs.items()} == {
            k: leaf_sources(v) for k, v in stack.inputs.items()}
        assert again.state_key == stack.state_key

    changed = tmp_path / "production/strata.hcl"
    changed.write_text(changed.read_text().replace('cost = "prod"', 'cost = "changed"'))
    parsed.clear()
    third = load(tmp_path, tmp_path)
    assert parsed == ["production/strata.hcl"]
    assert third.stacks["production/us-east-1/01-foundation"].inputs["tags"].plain()["cost"] == "changed"


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    write_tree(tmp_path, DEEP)
    (tmp_path / ".strata" / "cache").mkdir(parents=True)
    (tmp_path / ".strata" / "cache" / "parse.json").write_bytes(b"not JSON")
    repo = load(tmp_path, tmp_path)
    assert repo.errors == []
    assert len(repo.stacks) == 2


def test_loading_without_the_cache_writes_nothing(tmp_path: Path) -> None:
    write_tree(tmp_path, DEEP)
    load(tmp_path, tmp_path, use_cache=False)
    assert not (tmp_path / ".strata").exists()
