"""Unit tests of strata.backends: version-aware s3 rendering, checks, and every type's location/storage/encryption."""

from __future__ import annotations

import re
from typing import Any

import pytest

from strata.backends import BACKEND_TYPES, get_backend
from strata.backends.base import Backend, Kind, Problem
from strata.backends.pg import MAX_IDENTIFIER, schema_for_key
from strata.terraform.version import Version, format_version, parse_version

TF_103: Version = (1, 0, 3)
TF_160: Version = (1, 6, 0)
TF_1114: Version = (1, 11, 4)

KEY = "production/us-east-1/01-foundation/terraform.tfstate"
STACK = "production/us-east-1/01-foundation"


def backend(name: str) -> Backend:
    found = get_backend(name)
    assert found is not None
    return found


S3 = backend("s3")


def messages(problems: list[Problem]) -> list[tuple[str, str | None, str]]:
    return [(p.severity, p.attribute, p.message) for p in problems]


def required(problems: list[Problem]) -> list[str]:
    """The settings reported as missing (block-level errors naming one setting each)."""
    out = []
    for p in problems:
        if p.attribute is None and p.severity == "error":
            names = re.findall(r"'([a-z_]+)'", p.message)
            assert len(names) == 1 and ("required" in p.message or "needs" in p.message), p.message
            out.append(names[0])
    return out


def attributes_of(problems: list[Problem]) -> list[tuple[str, str | None]]:
    return [(p.severity, p.attribute) for p in problems if p.attribute is not None]


def test_every_type_is_known_and_unknown_types_are_none() -> None:
    assert BACKEND_TYPES == ("local", "s3", "azurerm", "gcs", "pg")
    for name in BACKEND_TYPES:
        assert backend(name).name == name
    assert get_backend("consul") is None
    assert get_backend("remote") is None


# -- s3 rendering per Terraform version ----------------------------------------------------------


OLD_SPELLING: dict[str, Any] = {
    "bucket": "state", "key": KEY, "region": "us-east-1", "encrypt": True, "dynamodb_table": "locks",
    "endpoint": "http://127.0.0.1:5000", "dynamodb_endpoint": "http://127.0.0.1:5001",
    "sts_endpoint": "http://127.0.0.1:5002", "iam_endpoint": "http://127.0.0.1:5003",
    "force_path_style": True, "role_arn": "arn:aws:iam::111111111111:role/tf", "session_name": "strata",
    "external_id": "ext", "skip_credentials_validation": True,
}

NEW_SPELLING: dict[str, Any] = {
    "bucket": "state", "key": KEY, "region": "us-east-1", "encrypt": True, "dynamodb_table": "locks",
    "endpoints": {"s3": "http://127.0.0.1:5000", "dynamodb": "http://127.0.0.1:5001",
                  "sts": "http://127.0.0.1:5002", "iam": "http://127.0.0.1:5003"},
    "use_path_style": True,
    "assume_role": {"role_arn": "arn:aws:iam::111111111111:role/tf", "session_name": "strata", "external_id": "ext"},
    "skip_credentials_validation": True,
}

FLAT_1_0_3 = {
    "bucket": "state", "key": KEY, "region": "us-east-1", "encrypt": True, "dynamodb_table": "locks",
    "endpoint": "http://127.0.0.1:5000", "dynamodb_endpoint": "http://127.0.0.1:5001",
    "sts_endpoint": "http://127.0.0.1:5002", "iam_endpoint": "http://127.0.0.1:5003",
    "force_path_style": True, "role_arn": "arn:aws:iam::111111111111:role/tf", "session_name": "strata",
    "external_id": "ext", "skip_credentials_validation": True,
}

NESTED_1_6 = {
    "bucket": "state", "key": KEY, "region": "us-east-1", "encrypt": True, "dynamodb_table": "locks",
    "endpoints": {"s3": "http://127.0.0.1:5000", "dynamodb": "http://127.0.0.1:5001",
                  "sts": "http://127.0.0.1:5002", "iam": "http://127.0.0.1:5003"},
    "use_path_style": True,
    "assume_role": {"role_arn": "arn:aws:iam::111111111111:role/tf", "session_name": "strata", "external_id": "ext"},
    "skip_credentials_validation": True,
}


@pytest.mark.parametrize("values", [OLD_SPELLING, NEW_SPELLING], ids=["old-spelling", "new-spelling"])
def test_s3_before_1_6_gets_flat_names(values: dict[str, Any]) -> None:
    rendered = S3.render(values, TF_103)
    assert rendered == FLAT_1_0_3
    assert list(rendered) == sorted(rendered)
    for new_name in ("endpoints", "use_path_style", "assume_role"):
        assert new_name not in rendered


@pytest.mark.parametrize("version", [TF_160, TF_1114, None], ids=["1.6.0", "1.11.4", "unknown"])
@pytest.mark.parametrize("values", [OLD_SPELLING, NEW_SPELLING], ids=["old-spelling", "new-spelling"])
def test_s3_from_1_6_gets_the_endpoints_map_and_assume_role(values: dict[str, Any], version: Version | None) -> None:
    rendered = S3.render(values, version)
    assert rendered == NESTED_1_6
    for flat in ("endpoint", "dynamodb_endpoint", "sts_endpoint", "iam_endpoint", "force_path_style", "role_arn",
                 "session_name", "external_id"):
        assert flat not in rendered


def test_s3_rendering_does_not_change_its_input() -> None:
    values = dict(NEW_SPELLING)
    S3.render(values, TF_103)
    S3.check(values, TF_103)
    assert values == NEW_SPELLING


def test_s3_the_new_spelling_wins_when_both_are_given() -> None:
    values = {"bucket": "b", "key": "k", "region": "r", "endpoint": "http://old", "endpoints": {"s3": "http://new"},
              "force_path_style": False, "use_path_style": True}
    assert S3.render(values, TF_1114)["endpoints"] == {"s3": "http://new"}
    assert S3.render(values, TF_1114)["use_path_style"] is True
    assert S3.render(values, TF_103)["endpoint"] == "http://new"
    assert S3.render(values, TF_103)["force_path_style"] is True


def test_s3_null_settings_are_left_out() -> None:
    rendered = S3.render({"bucket": "b", "key": "k", "region": "r", "profile": None}, TF_1114)
    assert rendered == {"bucket": "b", "key": "k", "region": "r"}


@pytest.mark.parametrize(("version", "kept"), [
    ((1, 0, 3), set()),
    ((1, 6, 0), set()),
    ((1, 6, 1), {"skip_requesting_account_id"}),
    ((1, 6, 3), {"skip_requesting_account_id", "skip_s3_checksum"}),
    ((1, 9, 8), {"skip_requesting_account_id", "skip_s3_checksum"}),
    ((1, 10, 0), {"skip_requesting_account_id", "skip_s3_checksum", "use_lockfile"}),
    ((1, 11, 4), {"skip_requesting_account_id", "skip_s3_checksum", "use_lockfile"}),
])
def test_s3_settings_that_appeared_later_are_dropped_for_older_versions(version: Version, kept: set[str]) -> None:
    gated = {"skip_requesting_account_id", "skip_s3_checksum", "use_lockfile"}
    values = {"bucket": "b", "key": "k", "region": "r", "dynamodb_table": "t", **dict.fromkeys(gated, True)}
    rendered = S3.render(values, version)
    assert gated & set(rendered) == kept
    assert rendered["dynamodb_table"] == "t"


def test_s3_use_lockfile_before_1_10_warns_when_dynamodb_locks() -> None:
    values = {"bucket": "b", "key": "k", "region": "r", "use_lockfile": True, "dynamodb_table": "locks"}
    assert messages(S3.check(values, TF_103)) == [
        ("warning", "use_lockfile",
         "use_lockfile needs Terraform >= 1.10 (found 1.0.3); locking uses dynamodb_table only")]
    assert messages(S3.check(values, (1, 9, 8))) == [
        ("warning", "use_lockfile",
         "use_lockfile needs Terraform >= 1.10 (found 1.9.8); locking uses dynamodb_table only")]
    assert S3.check(values, TF_1114) == []
    assert S3.check(values, None) == []


def test_s3_use_lockfile_before_1_10_is_an_error_without_dynamodb() -> None:
    values = {"bucket": "b", "key": "k", "region": "r", "use_lockfile": True}
    assert messages(S3.check(values, TF_160)) == [
        ("error", "use_lockfile",
         "use_lockfile needs Terraform >= 1.10 (found 1.6.0); set dynamodb_table so the state is locked")]
    assert S3.check(values, (1, 10, 0)) == []
    assert S3.check({**values, "use_lockfile": False}, TF_103) == []


def test_s3_sso_endpoint_needs_1_6() -> None:
    values = {"bucket": "b", "key": "k", "region": "r", "endpoints": {"sso": "http://127.0.0.1:1"}}
    assert messages(S3.check(values, TF_103)) == [
        ("error", "endpoints", "endpoints.sso needs Terraform >= 1.6 (found 1.0.3)")]
    assert S3.check(values, TF_160) == []


def test_s3_role_arn_and_assume_role_are_the_same_setting() -> None:
    flat = {"bucket": "b", "key": "k", "region": "r", "role_arn": "arn:x", "assume_role_policy": "{}",
            "assume_role_policy_arns": ["arn:p"], "assume_role_tags": {"t": "v"},
            "assume_role_transitive_tag_keys": ["t"]}
    nested = {"bucket": "b", "key": "k", "region": "r",
              "assume_role": {"role_arn": "arn:x", "policy": "{}", "policy_arns": ["arn:p"], "tags": {"t": "v"},
                              "transitive_tag_keys": ["t"]}}
    assert S3.render(flat, TF_1114) == nested
    assert S3.render(nested, TF_103) == dict(sorted(flat.items()))


def test_s3_assume_role_duration_converts_between_seconds_and_a_duration() -> None:
    # Terraform < 1.6 takes assume_role_duration_seconds (a number); >= 1.6 assume_role.duration (e.g. "1h")
    old = S3.render({"bucket": "b", "key": "k", "region": "r",
                     "assume_role": {"role_arn": "arn:x", "duration": "1h"}}, TF_103)
    assert old["assume_role_duration_seconds"] == 3600
    new = S3.render({"bucket": "b", "key": "k", "region": "r", "role_arn": "arn:x",
                     "assume_role_duration_seconds": 3600}, TF_1114)
    assert new["assume_role"]["duration"] in ("3600s", "60m", "1h", "1h0m0s")


def test_s3_checks() -> None:
    problems = S3.check({
        "bucket": "", "key": "/k", "region": "r", "workspace_key_prefix": "/p", "kms_key_id": "x",
        "sse_customer_key": "y", "encrypt": "yes", "endpoints": {"bogus": "http://127.0.0.1"},
    }, None)
    assert required(problems) == ["bucket"]
    assert attributes_of(problems) == [  # the types first (from the schema), then the rules of s3
        ("error", "encrypt"), ("error", "endpoints"), ("error", "key"), ("error", "workspace_key_prefix"),
        ("error", "kms_key_id"), ("error", "kms_key_id")]
    text = {p.attribute: p.message for p in problems if p.attribute}
    assert "true or false" in text["encrypt"]
    assert "must not start with /" in text["key"]
    assert "'bogus'" in text["endpoints"]
    missing = S3.check({"key": "k", "skip_metadata_api_check": "no"}, None)
    assert required(missing) == ["bucket", "region"]
    assert attributes_of(missing) == [("error", "skip_metadata_api_check")]
    assert S3.check({"bucket": "b", "key": "k", "region": "r", "encrypt": True, "kms_key_id": "arn:k"}, TF_1114) == []


@pytest.mark.parametrize("setting", ["endpoints", "assume_role"])
def test_s3_a_map_setting_given_as_a_string_is_a_problem_not_a_crash(setting: str) -> None:
    values = {"bucket": "b", "key": "k", "region": "r", setting: "http://127.0.0.1:5000"}
    problems = S3.check(values, TF_1114)
    assert any(p.attribute == setting and p.severity == "error" for p in problems), problems


# -- defaults, locations, storage and encryption of every type -----------------------------------


def test_default_settings_put_the_state_key_where_each_type_wants_it() -> None:
    state_dir = ".strata/state"
    assert backend("local").default_settings(KEY, STACK, state_dir) == {
        "path": f"../../../.strata/state/{KEY}"}
    assert backend("local").default_settings("terraform.tfstate", "", state_dir) == {
        "path": ".strata/state/terraform.tfstate"}
    assert backend("s3").default_settings(KEY, STACK, state_dir) == {"key": KEY}
    assert backend("azurerm").default_settings(KEY, STACK, state_dir) == {"key": KEY}
    assert backend("gcs").default_settings(KEY, STACK, state_dir) == {"prefix": "production/us-east-1/01-foundation"}
    assert backend("pg").default_settings(KEY, STACK, state_dir) == {
        "schema_name": "production_us_east_1_01_foundation"}


def test_pg_schema_names() -> None:
    assert schema_for_key("production/us-east-1/clients/mtn-ghana/terraform.tfstate") == (
        "production_us_east_1_clients_mtn_ghana")
    assert schema_for_key("Prod/EU.West/x/terraform.tfstate") == "prod_eu_west_x"
    long_key = "/".join(["segment-name"] * 10) + "/terraform.tfstate"
    long_schema = schema_for_key(long_key)
    assert len(long_schema) == MAX_IDENTIFIER
    assert long_schema != schema_for_key("/".join(["segment-name"] * 11) + "/terraform.tfstate")
    assert long_schema == schema_for_key(long_key)


def test_local_location_storage_and_encryption() -> None:
    local = backend("local")
    assert local.location({"path": f"../../../.strata/state/{KEY}"}, STACK) == ("local", f".strata/state/{KEY}")
    assert local.location({"path": "/abs/x/../state.tfstate"}, STACK) == ("local", "/abs/state.tfstate")
    assert local.location({}, "a/b") == ("local", "a/b/terraform.tfstate")
    # two stacks pointing at one file share a location
    assert local.location({"path": "../shared.tfstate"}, "a/x") == local.location({"path": "../../a/shared.tfstate"},
                                                                                   "a/y")
    assert local.storage({"path": "x"}) is None
    assert local.encryption_problem({"path": "x"}) == "local state files are not encrypted"
    assert attributes_of(local.check({"path": ""}, None)) == [("error", "path")]
    assert local.check({"path": "x.tfstate"}, None) == []


def test_s3_location_storage_and_encryption() -> None:
    s3 = backend("s3")
    assert s3.location({"bucket": "b", "key": "k"}, STACK) == ("s3", "b", None, "k")
    assert s3.location({"bucket": "b", "key": "k", "workspace_key_prefix": "w"}, STACK) != s3.location(
        {"bucket": "b", "key": "k"}, STACK)
    assert s3.storage({"bucket": "b"}) == "s3://b"
    assert s3.encryption_problem({"bucket": "b"}) == "encrypt is not true"
    assert s3.encryption_problem({"bucket": "b", "encrypt": "true"}) == "encrypt is not true"
    assert s3.encryption_problem({"bucket": "b", "encrypt": True}) is None


def test_azurerm_location_storage_and_encryption() -> None:
    az = backend("azurerm")
    values = {"storage_account_name": "sa", "container_name": "tfstate", "key": KEY}
    assert az.location(values, STACK) == ("azurerm", "sa", "tfstate", KEY)
    assert az.storage(values) == "azurerm://sa/tfstate"
    assert az.encryption_problem(values) is None  # Azure Storage encrypts at rest, always
    assert az.check(values, None) == []
    assert required(az.check({}, None)) == ["storage_account_name", "container_name", "key"]
    assert attributes_of(az.check({**values, "use_azuread_auth": "yes"}, None)) == [("error", "use_azuread_auth")]


def test_gcs_location_storage_and_encryption() -> None:
    gcs = backend("gcs")
    assert gcs.location({"bucket": "gb", "prefix": "/a/b/"}, STACK) == ("gcs", "gb", "a/b")
    assert gcs.location({"bucket": "gb", "prefix": "a/b"}, STACK) == gcs.location({"bucket": "gb", "prefix": "a/b/"},
                                                                                  "other")
    assert gcs.storage({"bucket": "gb"}) == "gs://gb"
    assert gcs.encryption_problem({"bucket": "gb"}) is None
    assert required(gcs.check({}, None)) == ["bucket", "prefix"]


def test_pg_location_storage_and_encryption() -> None:
    pg = backend("pg")
    url = {"conn_str": "postgres://user:secret@127.0.0.1:5433/tf?sslmode=disable", "schema_name": "s"}
    keywords = {"conn_str": "host=127.0.0.1 port=5433 dbname=tf sslmode='disable'", "schema_name": "s"}
    assert pg.location(url, STACK) == ("pg", "127.0.0.1:5433/tf", "s")
    assert pg.location(url, STACK) == pg.location(keywords, "other")  # same database, same schema
    assert pg.location({"conn_str": "postgres://127.0.0.1/tf", "schema_name": "s"}, STACK) == (
        "pg", "127.0.0.1:5432/tf", "s")
    assert pg.storage(url) == "pg://127.0.0.1:5433/tf"
    assert "secret" not in str(pg.location(url, STACK)) + str(pg.storage(url))
    assert pg.encryption_problem(url) == "conn_str disables TLS (sslmode=disable)"
    assert pg.encryption_problem(keywords) == "conn_str disables TLS (sslmode=disable)"
    assert pg.encryption_problem({"conn_str": "postgres://127.0.0.1/tf?sslmode=require"}) is None
    assert pg.encryption_problem({"conn_str": "host=127.0.0.1 sslmode=verify-full"}) is None
    assert required(pg.check({}, None)) == ["conn_str"]
    long = pg.check({"conn_str": "x", "schema_name": "a" * 64}, None)
    assert attributes_of(long) == [("error", "schema_name")] and "63" in long[0].message
    assert attributes_of(pg.check({"conn_str": "x", "skip_schema_creation": "true"}, None)) == [
        ("error", "skip_schema_creation")]


def test_versions() -> None:
    assert parse_version("1.11.4") == (1, 11, 4)
    assert parse_version("Terraform v1.0.3-beta1") == (1, 0, 3)
    assert parse_version("1.6") == (1, 6, 0)
    assert format_version((1, 10, 0)) == "1.10.0"
    assert (1, 9, 9) < (1, 10, 0)  # versions compare as numbers, not strings
    with pytest.raises(ValueError, match="not a version"):
        parse_version("dev")


@pytest.mark.parametrize("backend_name, setting", [("azurerm", "use_cli"), ("azurerm", "lookup_blob_endpoint"),
                                                    ("gcs", "kms_encryption_key")])
def test_settings_older_terraform_refuses_are_problems_for_that_version_only(backend_name: str, setting: str) -> None:
    backend = get_backend(backend_name)
    assert backend is not None
    base = {"storage_account_name": "a", "container_name": "c", "key": "k", "bucket": "b", "prefix": "p"}
    value = True if backend.schema[setting].kind is Kind.BOOL else "x"
    values = {k: v for k, v in base.items() if k in backend.attributes} | {setting: value}
    old = [p for p in backend.check(values, (1, 0, 3)) if p.attribute == setting]
    assert old and old[0].severity == "error" and "1.0.3" in old[0].message
    assert not [p for p in backend.check(values, (1, 11, 4)) if p.attribute == setting]
    assert not [p for p in backend.check(values, None) if p.attribute == setting]
