"""`strata bootstrap --emit-terraform DIR` (strata.bootstrap.emit) and the S3 replication configuration.

The emitted stack is checked with real tools: ``terraform fmt -check`` (Terraform 1.11 on PATH), python-hcl2,
and checkov (``scripts/checkov``, its own virtualenv). The AWS provider is not available offline, so
``terraform validate`` cannot run. The replication configuration is sent to a real moto server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hcl2
import pytest

from conftest import REPO, snapshot, write_tree
from strata.bootstrap.emit import (
    HEADER,
    backend_hint,
    emit_terraform,
    identifier,
    render_files,
    replication_configuration,
)
from strata.bootstrap.targets import S3Target
from strata.errors import StrataError
from strata.generate import MARKER

if TYPE_CHECKING:
    from servers import MotoServer

pytest_plugins = ["servers"]

PROD = S3Target(
    bucket="acme-state-production-us-east-1", region="us-east-1", environment="production", production=True,
    kms_alias="alias/acme-state-production-us-east-1", noncurrent_days=90,
    dynamodb_table="acme-locks-production-us-east-1", log_bucket="acme-access-logs-production-us-east-1",
    tags=(("environment", "production"), ("managed-by", "strata"), ("region", "us-east-1"), ("team", "platform")),
    values={"bucket": "acme-state-production-us-east-1", "region": "us-east-1",
            "dynamodb_table": "acme-locks-production-us-east-1"})
STAGING = S3Target(
    bucket="acme-state-staging-eu-central-1", region="eu-central-1", environment="staging", production=False,
    kms_alias="alias/acme-state-staging-eu-central-1", noncurrent_days=30, dynamodb_table=None, log_bucket=None,
    tags=(("environment", "staging"), ("managed-by", "strata"), ("region", "eu-central-1")),
    values={"bucket": "acme-state-staging-eu-central-1", "region": "eu-central-1", "use_lockfile": True})
FILES = ["outputs.tf", "production-us-east-1.tf", "providers.tf", "staging-eu-central-1.tf", "versions.tf"]


def target(bucket: str, region: str, environment: str | None, **kwargs: Any) -> S3Target:
    return S3Target(bucket=bucket, region=region, environment=environment, production=False,
                    kms_alias=kwargs.pop("kms_alias", f"alias/{bucket}"), noncurrent_days=kwargs.pop("days", 30),
                    **kwargs)


def parse(path: Path) -> dict[str, Any]:
    options = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    return dict(hcl2.loads(path.read_text(encoding="utf-8"), serialization_options=options))


def resources(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, name) -> body of every resource and data source (data sources as ("data.<type>", name))."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(out.glob("*.tf")):
        parsed = parse(path)
        for kind, prefix in (("resource", ""), ("data", "data.")):
            for entry in parsed.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        assert (prefix + rtype, name) not in found, f"{rtype}.{name} defined twice"
                        found[(prefix + rtype, name)] = body
    return found


def sub(body: dict[str, Any], *path: str) -> Any:
    """The nested block at ``path`` (each block given exactly once)."""
    for name in path:
        blocks = body[name]
        assert isinstance(blocks, list) and len(blocks) == 1, (name, blocks)
        body = blocks[0]
    return body


def files_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


# -- the files -------------------------------------------------------------------------------------------

def test_emit_writes_one_file_per_backend_plus_versions_providers_outputs(tmp_path: Path) -> None:
    out = tmp_path / "0-backend"
    written = emit_terraform([STAGING, PROD], out)
    assert written == [out / name for name in FILES]
    assert sorted(p.name for p in out.iterdir()) == FILES  # no temporary files left behind
    for path in written:
        text = path.read_text(encoding="utf-8")
        assert text.startswith(MARKER) and text.startswith(HEADER), path.name
        assert (path.stat().st_mode & 0o777) == 0o644


def test_output_is_deterministic_whatever_the_order_of_targets(tmp_path: Path) -> None:
    emit_terraform([PROD, STAGING], tmp_path / "a")
    emit_terraform([STAGING, PROD], tmp_path / "b")
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    first = files_of(tmp_path / "a")
    emit_terraform([PROD, STAGING], tmp_path / "a")  # again, over its own files
    assert files_of(tmp_path / "a") == first


def test_output_is_terraform_fmt_clean(tmp_path: Path, tf_111: str) -> None:
    shared_log = target("acme-state-dev-us-east-1", "us-east-1", "dev", dynamodb_table="locks-dev",
                        log_bucket=PROD.log_bucket, tags=(("cost-center", "a b"), ("x:y", "${not.a.ref}")))
    no_env = target("9-odd.bucket.name", "ap-southeast-2", None, dynamodb_table="t")
    emit_terraform([PROD, STAGING, shared_log, no_env], tmp_path / "out")
    proc = subprocess.run([tf_111, "fmt", "-check", "-diff", "-recursive", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_parsed_output_has_every_resource_with_its_settings(tmp_path: Path) -> None:
    out = tmp_path / "out"
    emit_terraform([PROD, STAGING], out)
    found = resources(out)
    p, s, logs = "production_us_east_1", "staging_eu_central_1", "production_us_east_1_access_logs"
    s3_parts = ["aws_s3_bucket", "aws_s3_bucket_ownership_controls", "aws_s3_bucket_public_access_block",
                "aws_s3_bucket_versioning", "aws_s3_bucket_server_side_encryption_configuration",
                "aws_s3_bucket_lifecycle_configuration", "aws_s3_bucket_policy"]
    expected = {("data.aws_caller_identity", n) for n in (p, s)} | {("data.aws_partition", n) for n in (p, s)}
    expected |= {(kind, n) for kind in ("aws_kms_key", "aws_kms_alias") for n in (p, s)}
    expected |= {(kind, n) for kind in s3_parts for n in (p, s, logs)}
    expected |= {("aws_s3_bucket_logging", p), ("aws_dynamodb_table", p)}
    assert set(found) == expected

    for name, t in ((p, PROD), (s, STAGING)):
        region = identifier(t.region)
        assert all(body["provider"] == f"${{aws.{region}}}" for (_, n), body in found.items() if n == name)
        key = found[("aws_kms_key", name)]
        assert key["enable_key_rotation"] is True
        assert "kms:*" in key["policy"] and ":root" in key["policy"]
        assert found[("aws_kms_alias", name)]["name"] == t.kms_alias
        assert found[("aws_kms_alias", name)]["target_key_id"] == f"${{aws_kms_key.{name}.key_id}}"
        bucket = found[("aws_s3_bucket", name)]
        assert bucket["bucket"] == t.bucket
        assert bucket["tags"] == dict(t.tags)
        assert sub(bucket, "lifecycle")["prevent_destroy"] is True
        pab = found[("aws_s3_bucket_public_access_block", name)]
        assert {k: pab[k] for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                    "restrict_public_buckets")} == dict.fromkeys(
            ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"), True)
        assert pab["bucket"] == f"${{aws_s3_bucket.{name}.id}}"
        assert sub(found[("aws_s3_bucket_versioning", name)], "versioning_configuration") == {"status": "Enabled"}
        sse = sub(found[("aws_s3_bucket_server_side_encryption_configuration", name)], "rule")
        assert sse["bucket_key_enabled"] is True
        assert sub(sse, "apply_server_side_encryption_by_default") == {
            "sse_algorithm": "aws:kms", "kms_master_key_id": f"${{aws_kms_key.{name}.arn}}"}
        rule = sub(found[("aws_s3_bucket_lifecycle_configuration", name)], "rule")
        assert rule["status"] == "Enabled"
        assert sub(rule, "noncurrent_version_expiration") == {"noncurrent_days": t.noncurrent_days}
        assert sub(rule, "abort_incomplete_multipart_upload")["days_after_initiation"] >= 1
        policy = found[("aws_s3_bucket_policy", name)]["policy"]
        assert 'Effect = "Deny"' in policy and '"aws:SecureTransport" = "false"' in policy
        assert f"aws_s3_bucket.{name}.arn" in policy and f"${{aws_s3_bucket.{name}.arn}}/*" in policy

    table = found[("aws_dynamodb_table", p)]
    assert table["name"] == PROD.dynamodb_table
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == "LockID"
    assert sub(table, "attribute") == {"name": "LockID", "type": "S"}
    assert sub(table, "point_in_time_recovery") == {"enabled": True}
    assert sub(table, "server_side_encryption") == {"enabled": True, "kms_key_arn": f"${{aws_kms_key.{p}.arn}}"}

    logging = found[("aws_s3_bucket_logging", p)]
    assert logging["target_bucket"] == f"${{aws_s3_bucket.{logs}.id}}"
    assert logging["target_prefix"] == f"{PROD.bucket}/"
    assert found[("aws_s3_bucket", logs)]["bucket"] == PROD.log_bucket
    # S3 server access logs can only be delivered to an SSE-S3 bucket
    assert sub(found[("aws_s3_bucket_server_side_encryption_configuration", logs)], "rule",
               "apply_server_side_encryption_by_default") == {"sse_algorithm": "AES256"}
    log_policy = found[("aws_s3_bucket_policy", logs)]["policy"]
    assert "logging.s3.amazonaws.com" in log_policy and f"aws_s3_bucket.{p}.arn" in log_policy


def test_versions_providers_and_outputs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    emit_terraform([PROD, STAGING], out)
    terraform = sub(parse(out / "versions.tf"), "terraform")
    assert terraform["required_version"].startswith(">=")
    aws = sub(terraform, "required_providers")["aws"]
    assert aws["source"] == "hashicorp/aws" and aws["version"] == ">= 5.0"
    providers = parse(out / "providers.tf")["provider"]
    assert [p["aws"] for p in providers] == [{"alias": "eu_central_1", "region": "eu-central-1"},
                                             {"alias": "us_east_1", "region": "us-east-1"}]
    outputs = {name: body for entry in parse(out / "outputs.tf")["output"] for name, body in entry.items()}
    assert outputs["production_us_east_1_bucket"]["value"] == "${aws_s3_bucket.production_us_east_1.bucket}"
    assert outputs["production_us_east_1_dynamodb_table"]["value"] == "${aws_dynamodb_table.production_us_east_1.name}"
    assert outputs["production_us_east_1_kms_key_arn"]["value"] == "${aws_kms_key.production_us_east_1.arn}"
    assert outputs["staging_eu_central_1_kms_key_arn"]["value"] == "${aws_kms_key.staging_eu_central_1.arn}"
    assert "staging_eu_central_1_dynamodb_table" not in outputs  # S3 lock files only
    # the backend hint is a heredoc holding a backend block that parses
    text = (out / "outputs.tf").read_text(encoding="utf-8")
    hints = re.findall(r"<<-EOT\n(.*?)\n\s*EOT\n", text, re.S)
    assert len(hints) == 2
    blocks = [hcl2.loads(textwrap.dedent(h), serialization_options=hcl2.SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False))["backend"][0]["s3"] for h in hints]
    assert blocks[0] == {"bucket": PROD.bucket, "region": "us-east-1", "encrypt": True, "kms_key_id": PROD.kms_alias,
                         "dynamodb_table": PROD.dynamodb_table}
    assert blocks[1] == {"bucket": STAGING.bucket, "region": "eu-central-1", "encrypt": True,
                         "kms_key_id": STAGING.kms_alias, "use_lockfile": True}


def test_backend_hint_escapes_template_sequences() -> None:
    odd = target("b", "us-east-1", "dev", dynamodb_table="t", kms_alias="alias/${x}")
    assert 'kms_key_id     = "alias/$${x}"' in backend_hint(odd)


def test_names_are_valid_unique_identifiers_and_file_names(tmp_path: Path) -> None:
    a = target("acme-a", "us-east-1", "Prod.EU", dynamodb_table="t1")
    b = target("acme-b", "us-east-1", "Prod.EU")  # same environment and region: named after the bucket
    c = target("9lives", "eu-west-1", None)
    files = render_files([a, b, c])
    assert sorted(files) == ["acme-a.tf", "acme-b.tf", "eu-west-1.tf", "outputs.tf", "providers.tf", "versions.tf"]
    emit_terraform([a, b, c], tmp_path / "out")
    names = {name for _, name in resources(tmp_path / "out")}
    assert names == {"acme_a", "acme_b", "eu_west_1"}
    assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", n) for n in names)
    assert identifier("9lives") == "b_9lives" and identifier("--") == "backend"


def test_a_log_bucket_shared_in_one_region_is_created_once(tmp_path: Path) -> None:
    dev = target("acme-state-dev-us-east-1", "us-east-1", "dev", log_bucket=PROD.log_bucket,
                 tags=(("environment", "dev"), ("managed-by", "strata")))
    emit_terraform([PROD, dev], tmp_path / "out")
    found = resources(tmp_path / "out")
    log_buckets = [body for (kind, _), body in found.items()
                   if kind == "aws_s3_bucket" and body["bucket"] == PROD.log_bucket]
    assert len(log_buckets) == 1
    assert log_buckets[0]["tags"] == {"managed-by": "strata", "purpose": "access-logs"}  # what both share
    policy = found[("aws_s3_bucket_policy", "dev_us_east_1_access_logs")]["policy"]
    assert "aws_s3_bucket.dev_us_east_1.arn" in policy and "aws_s3_bucket.production_us_east_1.arn" in policy
    assert found[("aws_s3_bucket_logging", "production_us_east_1")]["target_bucket"] == \
        "${aws_s3_bucket.dev_us_east_1_access_logs.id}"


@pytest.mark.parametrize(("other", "message"), [
    (target("x", "eu-west-1", "dev", log_bucket=PROD.log_bucket), "same region"),
    (target("x", "us-east-1", "dev", log_bucket=PROD.bucket), "also a state bucket"),
    (target(PROD.bucket, "us-east-1", "dev"), "given twice"),
])
def test_impossible_sets_of_backends_are_refused(tmp_path: Path, other: S3Target, message: str) -> None:
    with pytest.raises(StrataError, match=message):
        emit_terraform([PROD, other], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- never overwriting what strata did not write -----------------------------------------------------------

def test_refuses_to_overwrite_a_hand_written_file_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"providers.tf": 'provider "aws" {\n  region = "us-east-1"\n}\n', "main.tf": "# mine\n"})
    before = snapshot(out)
    with pytest.raises(StrataError, match=r"providers\.tf: refusing to overwrite a file strata did not generate"):
        emit_terraform([PROD, STAGING], out)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["main.tf", "providers.tf"]  # no temporary files either


def test_overwrites_its_own_files_and_leaves_others_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    emit_terraform([PROD, STAGING], out)
    expected = files_of(out)
    (out / "versions.tf").write_text(HEADER + "\n# edited by hand\n", encoding="utf-8")
    (out / "strata_backend.tf").write_text(f"{MARKER} from strata.hcl.\n", encoding="utf-8")  # `strata generate`
    (out / "notes.md").write_text("mine\n", encoding="utf-8")
    emit_terraform([PROD, STAGING], out)
    now = files_of(out)
    assert {k: v for k, v in now.items() if k in expected} == expected
    assert now["notes.md"] == b"mine\n" and now["strata_backend.tf"].startswith(MARKER.encode())


def test_refuses_when_an_earlier_emit_wrote_a_backend_not_selected_now(tmp_path: Path) -> None:
    out = tmp_path / "out"
    emit_terraform([PROD, STAGING], out)
    before = snapshot(out)
    with pytest.raises(StrataError, match=r"staging-eu-central-1\.tf: written by an earlier"):
        emit_terraform([PROD], out)
    assert snapshot(out) == before


def test_refuses_a_file_as_the_folder(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x", encoding="utf-8")
    with pytest.raises(StrataError, match="not a folder"):
        emit_terraform([PROD], tmp_path / "out")


def test_cli_emits_the_backends_of_the_selected_stacks(tmp_path: Path, strata: Callable[..., Any]) -> None:
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {\n  production_environments = ["production"]\n}\n',
        "environments/production/strata.hcl": """
            backend "s3" {
              bucket         = "acme-state-${strata.environment}-${strata.region}"
              region         = strata.region
              encrypt        = true
              kms_key_id     = "alias/acme-state-${strata.environment}-${strata.region}"
              dynamodb_table = "acme-locks-${strata.environment}-${strata.region}"
            }
            bootstrap {
              access_log_bucket = "acme-access-logs-${strata.environment}-${strata.region}"
              tags              = { team = "platform" }
            }
            """,
        "environments/staging/strata.hcl": """
            backend "s3" {
              bucket       = "acme-state-${strata.environment}-${strata.region}"
              region       = strata.region
              encrypt      = true
              use_lockfile = true
            }
            """,
        "environments/production/us-east-1/01-foundation/network/strata.hcl": "stack {}\n",
        "environments/production/us-east-1/02-platform/eks/strata.hcl": "stack {}\n",
        "environments/staging/eu-central-1/01-foundation/network/strata.hcl": "stack {}\n",
    })
    result = strata("bootstrap", "--emit-terraform", str(tmp_path / "a"), cwd=repo)
    assert result.code == 0, result.output
    assert "wrote 5 file(s)" in result.stdout and "2 backend(s)" in result.stdout
    emit_terraform([PROD, STAGING], tmp_path / "b")  # the same targets, built by hand
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")

    result = strata("bootstrap", "--emit-terraform", str(tmp_path / "c"), "--env", "staging", "--json", cwd=repo)
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["files"] == [str(tmp_path / "c" / n) for n in
                                                  ("outputs.tf", "providers.tf", "staging-eu-central-1.tf",
                                                   "versions.tf")]

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "versions.tf").write_text("terraform {}\n", encoding="utf-8")
    result = strata("bootstrap", "--emit-terraform", str(tmp_path / "d"), cwd=repo)
    assert result.code == 1
    assert "refusing to overwrite" in result.stderr
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["versions.tf"]


# -- checkov ------------------------------------------------------------------------------------------------

CHECKOV = REPO / "scripts" / "checkov"


@pytest.fixture(scope="module")
def checkov() -> str:
    """scripts/checkov, installed (in .cache/checkov-venv) if it was not; skipped only when it cannot install."""
    try:
        proc = subprocess.run([str(CHECKOV), "--version"], capture_output=True, text=True, timeout=900, check=False)
    except OSError as exc:
        pytest.fail(f"cannot run {CHECKOV}: {exc}")
    if proc.returncode == 3:
        reason = f"scripts/checkov cannot install checkov: {proc.stderr.strip()[-2000:]}"
        print(reason)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(proc.stdout.strip().split(".")[0]) >= 3, proc.stdout
    return str(CHECKOV)


def test_emitted_stack_passes_checkov(tmp_path: Path, checkov: str) -> None:
    out = tmp_path / "0-backend"
    emit_terraform([PROD, STAGING], out)
    proc = subprocess.run([checkov, "-d", str(out), "--framework", "terraform", "-o", "json", "--compact",
                           "--skip-download"], capture_output=True, text=True, timeout=600, check=False,
                          cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert isinstance(report, dict), proc.stdout[:2000]  # one framework: one report
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == [], failed
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary["parsing_errors"] == 0
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    p, s = "production_us_east_1", "staging_eu_central_1"
    # the checks that matter ran, and passed, for every backend
    for name in (p, s):
        assert {("CKV_AWS_7", f"aws_kms_key.{name}"), ("CKV2_AWS_64", f"aws_kms_key.{name}"),
                ("CKV_AWS_145", f"aws_s3_bucket.{name}"), ("CKV_AWS_21", f"aws_s3_bucket.{name}"),
                ("CKV2_AWS_6", f"aws_s3_bucket.{name}"), ("CKV2_AWS_61", f"aws_s3_bucket.{name}"),
                ("CKV_AWS_300", f"aws_s3_bucket_lifecycle_configuration.{name}"),
                ("CKV2_AWS_65", f"aws_s3_bucket_ownership_controls.{name}"),
                *((check, f"aws_s3_bucket_public_access_block.{name}")
                  for check in ("CKV_AWS_53", "CKV_AWS_54", "CKV_AWS_55", "CKV_AWS_56"))} <= passed
    assert {("CKV_AWS_18", f"aws_s3_bucket.{p}"), ("CKV_AWS_28", f"aws_dynamodb_table.{p}"),
            ("CKV_AWS_119", f"aws_dynamodb_table.{p}")} <= passed
    skipped = {(c["check_id"], c["resource"]): c["check_result"].get("suppress_comment", "")
               for c in report["results"]["skipped_checks"]}
    logs = f"{p}_access_logs"
    assert set(skipped) == {
        ("CKV_AWS_144", f"aws_s3_bucket.{p}"), ("CKV2_AWS_62", f"aws_s3_bucket.{p}"),
        ("CKV_AWS_144", f"aws_s3_bucket.{s}"), ("CKV2_AWS_62", f"aws_s3_bucket.{s}"),
        ("CKV_AWS_18", f"aws_s3_bucket.{s}"),  # no access log bucket configured for staging
        ("CKV_AWS_144", f"aws_s3_bucket.{logs}"), ("CKV2_AWS_62", f"aws_s3_bucket.{logs}"),
        ("CKV_AWS_18", f"aws_s3_bucket.{logs}"), ("CKV_AWS_145", f"aws_s3_bucket.{logs}"),
    }
    assert all(len(reason) > 30 for reason in skipped.values()), skipped


# -- S3 replication ---------------------------------------------------------------------------------------

DR = target("acme-state-production-us-west-2", "us-west-2", "production", dynamodb_table="locks-dr",
            kms_alias="alias/acme-state-production-us-west-2")
ROLE = "arn:aws:iam::123456789012:role/acme-state-production-us-east-1-replication"


def test_replication_configuration_is_complete_and_deterministic() -> None:
    config = replication_configuration(PROD, DR, ROLE)
    assert config == replication_configuration(PROD, DR, ROLE)
    assert json.dumps(config, sort_keys=True) == json.dumps(replication_configuration(PROD, DR, ROLE), sort_keys=True)
    assert config["Role"] == ROLE
    [rule] = config["Rules"]
    assert rule["ID"] and rule["Status"] == "Enabled" and rule["Priority"] == 1
    assert rule["Filter"] == {"Prefix": ""}
    assert rule["DeleteMarkerReplication"] == {"Status": "Enabled"}
    assert rule["SourceSelectionCriteria"] == {"SseKmsEncryptedObjects": {"Status": "Enabled"}}
    assert rule["Destination"] == {
        "Bucket": "arn:aws:s3:::acme-state-production-us-west-2",
        "StorageClass": "STANDARD",
        # the destination's alias, as an ARN in the replication role's account and the destination's region
        "EncryptionConfiguration": {
            "ReplicaKmsKeyID": "arn:aws:kms:us-west-2:123456789012:alias/acme-state-production-us-west-2"},
    }


def test_replica_key_uses_a_key_arn_in_the_destination_region_only() -> None:
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    named = target(DR.bucket, "us-west-2", "production", kms_alias=DR.kms_alias, values={"kms_key_id": key})
    assert replication_configuration(PROD, named, ROLE)["Rules"][0]["Destination"]["EncryptionConfiguration"] == {
        "ReplicaKmsKeyID": key}
    elsewhere = target(DR.bucket, "us-west-2", "production", kms_alias=DR.kms_alias,
                       values={"kms_key_id": key.replace("us-west-2", "us-east-1")})
    assert replication_configuration(PROD, elsewhere, ROLE)["Rules"][0]["Destination"]["EncryptionConfiguration"][
        "ReplicaKmsKeyID"] == "arn:aws:kms:us-west-2:123456789012:alias/acme-state-production-us-west-2"
    placeholder = "arn:aws:iam::<account-id>:role/x"
    assert replication_configuration(PROD, DR, placeholder)["Rules"][0]["Destination"]["EncryptionConfiguration"][
        "ReplicaKmsKeyID"] == "arn:aws:kms:us-west-2:<account-id>:alias/acme-state-production-us-west-2"


def test_put_bucket_replication_accepts_the_configuration(moto_server: MotoServer) -> None:
    s3 = moto_server.client("s3")
    source, destination = moto_server.create_bucket(), moto_server.create_bucket()
    for bucket in (source, destination):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    src = target(source, "us-east-1", "production", dynamodb_table="locks")
    dst = target(destination, "us-west-2", "production", kms_alias=f"alias/{destination}")
    config = replication_configuration(src, dst, ROLE)
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration=config)
    stored = s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]
    assert stored["Role"] == ROLE
    [rule] = stored["Rules"]
    assert rule["ID"] == config["Rules"][0]["ID"] and rule["Status"] == "Enabled"
    assert rule["Destination"]["Bucket"] == f"arn:aws:s3:::{destination}"
    assert rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == \
        f"arn:aws:kms:us-west-2:123456789012:alias/{destination}"
