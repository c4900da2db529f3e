"""Unit tests of strata.model.dimensions: inference from folder names, names unsafe in paths, layer order."""

from __future__ import annotations

import pytest

from strata.config.settings import DEFAULT_ENVIRONMENT_NAMES
from strata.model.dimensions import infer, is_layer, is_region, layer_sort_key, unsafe_name_reason


def inferred(path: str, environment_names: tuple[str, ...] = DEFAULT_ENVIRONMENT_NAMES) -> dict[str, str]:
    return {name: value for name, (value, _) in infer(path.split("/"), environment_names).items()}


@pytest.mark.parametrize(("path", "expected"), [
    # seed 000: terraform/environments/<env>/<region>/ is a stack, with a nested 0-backend/ stack
    ("terraform/environments/staging/us-east-1", {"environment": "staging", "region": "us-east-1"}),
    ("terraform/environments/production/eu-central-1/0-backend",
     {"environment": "production", "region": "eu-central-1", "layer": "0-backend"}),
    # seed 002: regions/<region>/layers/NN-name and regions/<region>/clients/<client>
    ("regions/us-east-1/layers/01-foundation", {"region": "us-east-1", "layer": "01-foundation"}),
    ("regions/us-east-1/layers/04-applications", {"region": "us-east-1", "layer": "04-applications"}),
    ("regions/us-east-1/clients/mtn-ghana", {"region": "us-east-1", "client": "mtn-ghana"}),
    ("regions/us-east-1/clients/ezra", {"region": "us-east-1", "client": "ezra"}),
    # seed 003: an environment folder below each layer or client
    ("regions/us-east-1/layers/01-foundation/production",
     {"region": "us-east-1", "layer": "01-foundation", "environment": "production"}),
    ("regions/us-east-1/clients/mtn-ghana/staging",
     {"region": "us-east-1", "client": "mtn-ghana", "environment": "staging"}),
    # seed 004: <env>/<region>/NN-layer/<group>/<component>
    ("prod/eu-central-1/01-networking/vpc-1", {"environment": "prod", "region": "eu-central-1",
                                               "layer": "01-networking"}),
    ("prod/eu-central-1/02-compute/eks-clusters/cluster-1",
     {"environment": "prod", "region": "eu-central-1", "layer": "02-compute"}),
    ("prod/eu-central-1/03-applications/service-a",
     {"environment": "prod", "region": "eu-central-1", "layer": "03-applications"}),
    ("dev/eu-east-1/01-networking/vpc-1", {"environment": "dev", "region": "eu-east-1", "layer": "01-networking"}),
    ("qa/eu-west-1/01-networking/vpc-2", {"environment": "qa", "region": "eu-west-1", "layer": "01-networking"}),
    # clouds from folders
    ("aws/prod/us-east-1/01-net", {"cloud": "aws", "environment": "prod", "region": "us-east-1", "layer": "01-net"}),
    ("gcp/staging/europe-west1/01-net",
     {"cloud": "gcp", "environment": "staging", "region": "europe-west1", "layer": "01-net"}),
    ("azure/dev/westeurope/01-net",
     {"cloud": "azure", "environment": "dev", "region": "westeurope", "layer": "01-net"}),
    ("google/x", {"cloud": "gcp"}),
    # names under the structural folders, whatever they look like
    ("environments/custom-env/regions/mars-1/layers/core",
     {"environment": "custom-env", "region": "mars-1", "layer": "core"}),
    ("tenants/acme/production", {"client": "acme", "environment": "production"}),
    ("production/eastus2/02-platform/clients/x",
     {"environment": "production", "region": "eastus2", "layer": "02-platform", "client": "x"}),
    # nothing to infer
    ("modules-lib/thing", {}),
    ("", {}),
])
def test_inference_for_each_layout(path: str, expected: dict[str, str]) -> None:
    assert inferred(path) == expected


def test_inference_records_the_folder_it_came_from() -> None:
    found = infer(["aws", "prod", "us-east-1", "01-net"], DEFAULT_ENVIRONMENT_NAMES)
    assert found["environment"] == ("prod", "prod")
    assert found["cloud"] == ("aws", "aws")
    assert infer(["google"], DEFAULT_ENVIRONMENT_NAMES)["cloud"] == ("gcp", "google")


def test_the_first_matching_folder_wins() -> None:
    assert inferred("production/us-east-1/staging/eu-west-1/01-a/02-b") == {
        "environment": "production", "region": "us-east-1", "layer": "01-a"}


def test_environment_names_come_from_the_settings() -> None:
    assert inferred("blue/us-east-1", ("blue", "green")) == {"environment": "blue", "region": "us-east-1"}
    assert "environment" not in inferred("production/us-east-1", ("blue", "green"))
    # a folder under environments/ is an environment whatever its name
    assert inferred("environments/purple", ("blue",)) == {"environment": "purple"}


@pytest.mark.parametrize("name", [
    # AWS
    "us-east-1", "eu-central-1", "eu-east-1", "us-gov-west-1", "ap-northeast-3", "ap-southeast-2", "il-central-1",
    "ca-west-1", "mx-central-1", "me-central-1", "cn-north-1",
    # GCP
    "us-central1", "europe-west4", "me-west1", "asia-northeast1", "northamerica-northeast1", "australia-southeast1",
    # Azure
    "eastus", "eastus2", "westeurope", "uksouth", "germanywestcentral", "southeastasia",
])
def test_region_patterns_accept(name: str) -> None:
    assert is_region(name)


@pytest.mark.parametrize("name", ["us-east", "useast1", "eastus4", "my-region", "prod", "01-foundation",
                                  "us-east-1a", "US-EAST-1", "europe-west", ""])
def test_region_patterns_refuse(name: str) -> None:
    assert not is_region(name)


@pytest.mark.parametrize(("name", "expected"), [
    ("01-foundation", True), ("0-backend", True), ("1_core", True), ("10-x", True), ("04-applications", True),
    ("foundation", False), ("01-", False), ("-01", False), ("01foundation", False), ("001-a.b", False),
])
def test_layer_patterns(name: str, expected: bool) -> None:
    assert is_layer(name) is expected


RULE = "(allowed: ASCII letters, digits, '.', '_' and '-', starting with a letter, digit or '_')"


@pytest.mark.parametrize(("value", "reason"), [
    ("", "it is empty"),
    (".", "'.' is a path traversal"),
    ("..", "'..' is a path traversal"),
    ("a/b", f"it contains a path separator {RULE}"),
    ("a\\b", f"it contains a path separator {RULE}"),
    ("a b", f"it contains white space {RULE}"),
    ("a\tb", f"it contains white space {RULE}"),
    ("a\nb", f"it contains white space {RULE}"),
    ("ab\n", f"it contains white space {RULE}"),  # a regex ending in "$" would let this one through
    ("a:b", f"it contains ':' {RULE}"),
    ('a"b', f"it contains '\"' {RULE}"),
    ("a*b", f"it contains '*' {RULE}"),
    ("a?b", f"it contains '?' {RULE}"),
    ("a<b", f"it contains '<' {RULE}"),
    ("a|b", f"it contains '|' {RULE}"),
    ("a\x01b", f"it contains '\\x01' {RULE}"),
    # what reaches a shell or a YAML file in generated CI pipelines
    ("qa$(touch${IFS}PWNED)", f"it contains '$', '(', ')', '{{', '}}' {RULE}"),
    ("qa`touch PWNED`", f"it contains white space {RULE}"),
    ("qa`id`", f"it contains '`' {RULE}"),
    ("it's", f"it contains \"'\" {RULE}"),
    ("a#b", f"it contains '#' {RULE}"),
    ("a;b", f"it contains ';' {RULE}"),
    ("a@b", f"it contains '@' {RULE}"),
    ("a+b", f"it contains '+' {RULE}"),
    ("ézra", f"it contains 'é' {RULE}"),
    ("-rf", f"it starts with '-' {RULE}"),
    (".hidden", f"it starts with '.' {RULE}"),
])
def test_unsafe_names(value: str, reason: str) -> None:
    assert unsafe_name_reason(value) == reason


@pytest.mark.parametrize("value", ["production", "us-east-1", "01-foundation", "mtn-ghana", "ok_name.1",
                                   "111111111111", "_global", "Prod.EU-2", "ezra"])
def test_safe_names(value: str) -> None:
    assert unsafe_name_reason(value) is None


def test_layer_sort_key_orders_by_number_then_name() -> None:
    layers = ["10-z", "02-platform", "01-foundation", "core", "1-a", "04-applications", "03-databases", "2-b",
              "0-backend"]
    assert sorted(layers, key=layer_sort_key) == [
        "0-backend", "01-foundation", "1-a", "02-platform", "2-b", "03-databases", "04-applications", "10-z", "core"]
    assert layer_sort_key("02-platform") == (2, "02-platform")
    assert layer_sort_key("core")[0] > layer_sort_key("999-last")[0]
