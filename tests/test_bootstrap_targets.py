"""The bootstrap {} block and how stacks become bootstrap targets (no AWS needed: pure model)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import write_tree
from strata.bootstrap.targets import dr_values, plan_targets
from strata.errors import ConfigError
from strata.model.loader import load
from strata.model.repository import Repository

ROOT = """\
strata {}
backend "s3" {
  bucket         = "acme-state-${strata.environment}-${strata.region}"
  region         = strata.region
  dynamodb_table = "acme-locks-${strata.environment}-${strata.region}"
  encrypt        = true
  kms_key_id     = "alias/acme-state-${strata.environment}-${strata.region}"
}
bootstrap {
  tags = { team = "platform" }
}
"""
STACK = 'stack {}\n'


def repo_of(tmp_path: Path, files: dict[str, str]) -> Repository:
    write_tree(tmp_path, files)
    repo = load(tmp_path, tmp_path)
    return repo


def layered(tmp_path: Path, extra: dict[str, str] | None = None) -> Repository:
    files = {"strata.hcl": ROOT}
    for env in ("production", "staging"):
        for region in ("us-east-1", "eu-central-1"):
            for layer in ("01-foundation", "02-platform"):
                files[f"{env}/{region}/{layer}/strata.hcl"] = STACK
    files.update(extra or {})
    return repo_of(tmp_path, files)


def test_one_target_per_bucket_with_per_environment_retention(tmp_path: Path) -> None:
    repo = layered(tmp_path)
    assert repo.errors == []
    targets = plan_targets(list(repo.stacks.values()), repo.settings.production_environments)
    by_bucket = {t.bucket: t for t in targets.s3}
    assert sorted(by_bucket) == [f"acme-state-{e}-{r}" for e in ("production", "staging")
                                 for r in ("eu-central-1", "us-east-1")]
    prod = by_bucket["acme-state-production-us-east-1"]
    assert prod.production and prod.noncurrent_days == 90
    assert prod.region == "us-east-1"
    assert prod.dynamodb_table == "acme-locks-production-us-east-1"
    assert prod.kms_alias == "alias/acme-state-production-us-east-1"
    assert dict(prod.tags) == {"environment": "production", "region": "us-east-1", "managed-by": "strata",
                               "team": "platform"}
    assert prod.stacks == ("production/us-east-1/01-foundation", "production/us-east-1/02-platform")
    staging = by_bucket["acme-state-staging-eu-central-1"]
    assert not staging.production and staging.noncurrent_days == 30


def test_bootstrap_settings_are_inherited_and_deeper_files_win(tmp_path: Path) -> None:
    repo = layered(tmp_path, {
        "production/strata.hcl": 'bootstrap {\n  noncurrent_version_days = 365\n  access_log_bucket = "acme-logs"\n}\n',
    })
    targets = plan_targets(list(repo.stacks.values()), repo.settings.production_environments)
    by_bucket = {t.bucket: t for t in targets.s3}
    assert by_bucket["acme-state-production-eu-central-1"].noncurrent_days == 365
    assert by_bucket["acme-state-production-eu-central-1"].log_bucket == "acme-logs"
    assert by_bucket["acme-state-staging-eu-central-1"].log_bucket is None
    stack = repo.stacks["production/us-east-1/01-foundation"]
    assert str(stack.bootstrap["noncurrent_version_days"].source) == "production/strata.hcl:2"


def test_unknown_bootstrap_setting_is_an_error_with_its_line(tmp_path: Path) -> None:
    repo = layered(tmp_path, {"strata.hcl": ROOT + "bootstrap {\n}\n",
                              "staging/strata.hcl": "bootstrap {\n  retension_days = 3\n}\n"})
    messages = [str(d) for d in repo.errors]
    assert "strata.hcl:12: error: a second bootstrap block in this file (the first is at line 9)" in messages
    assert any(m.startswith("staging/strata.hcl:2: error: unknown attribute 'retension_days'") for m in messages), \
        messages


def test_stacks_sharing_a_bucket_must_agree(tmp_path: Path) -> None:
    repo = layered(tmp_path, {
        "production/us-east-1/02-platform/strata.hcl": 'stack {}\nbootstrap {\n  noncurrent_version_days = 7\n}\n',
    })
    with pytest.raises(ConfigError, match="share bucket 'acme-state-production-us-east-1' but disagree"):
        plan_targets(list(repo.stacks.values()), repo.settings.production_environments)


def test_a_direct_kms_key_id_is_refused_for_bootstrap(tmp_path: Path) -> None:
    root = ROOT.replace('"alias/acme-state-${strata.environment}-${strata.region}"', '"1234abcd-12ab-34cd-56ef"')
    repo = layered(tmp_path, {"strata.hcl": root})
    with pytest.raises(ConfigError, match="names a key directly") as caught:
        plan_targets(list(repo.stacks.values()), repo.settings.production_environments)
    assert str(caught.value.source) == "strata.hcl:7"


def test_a_bad_retention_is_refused(tmp_path: Path) -> None:
    repo = layered(tmp_path, {"strata.hcl": ROOT.replace('team = "platform" }', 'team = "x" }\n'
                                                         '  noncurrent_version_days = 0')})
    with pytest.raises(ConfigError, match="whole number of days"):
        plan_targets(list(repo.stacks.values()), repo.settings.production_environments)


def test_local_and_other_backends_are_sorted_out(tmp_path: Path) -> None:
    repo = repo_of(tmp_path, {
        "strata.hcl": "strata {}\n",
        "a/strata.hcl": STACK,
        "b/strata.hcl": 'stack {}\nbackend "gcs" {\n  bucket = "x"\n}\n',
        "c/strata.hcl": 'stack {}\nbackend "pg" {\n  conn_str = "postgres://u@127.0.0.1:5/db"\n}\n',
        "d/strata.hcl": 'stack {}\nbackend "pg" {\n  conn_str = "postgres://u@127.0.0.1:5/db"\n}\n',
    })
    targets = plan_targets(list(repo.stacks.values()), repo.settings.production_environments)
    assert targets.nothing_needed == ["a"]
    assert targets.unsupported == [("b", "gcs")]
    assert len(targets.pg) == 1 and targets.pg[0].schemas == ("c", "d") and targets.pg[0].stacks == ("c", "d")


def test_dr_names_swap_the_region_or_append_it() -> None:
    values = {"bucket": "acme-state-production-us-east-1", "region": "us-east-1", "key": "k",
              "dynamodb_table": "acme-locks-production-us-east-1", "kms_key_id": "alias/acme-production-us-east-1",
              "encrypt": True}
    dr = dr_values(values, "us-west-2")
    assert dr == {**values, "bucket": "acme-state-production-us-west-2", "region": "us-west-2",
                  "dynamodb_table": "acme-locks-production-us-west-2", "kms_key_id": "alias/acme-production-us-west-2"}
    plain = dr_values({"bucket": "acme-state", "region": "us-east-1", "dynamodb_table": "locks",
                       "kms_key_id": "alias/state"}, "eu-west-1")
    assert plain["bucket"] == "acme-state-eu-west-1"
    assert plain["dynamodb_table"] == "locks-eu-west-1"
    assert plain["kms_key_id"] == "alias/acme-state-eu-west-1"
    assert values["region"] == "us-east-1"  # the source settings are untouched


def test_a_dr_copy_never_uses_the_source_regions_key_arn() -> None:
    values = {"bucket": "b-us-east-1", "region": "us-east-1", "kms_key_id": "arn:aws:kms:us-east-1:1:key/x"}
    assert dr_values(values, "us-west-2")["kms_key_id"] == "alias/b-us-west-2"
    assert dr_values(values, "us-west-2", "alias/state")["kms_key_id"] == "alias/state"
    assert dr_values(values, "us-west-2", "state")["kms_key_id"] == "alias/state"


def test_bootstrap_command_reports_a_bad_setting_with_its_line_and_writes_nothing(tmp_path: Path,
                                                                                   strata: Any) -> None:
    from conftest import snapshot

    root = ROOT.replace('"alias/acme-state-${strata.environment}-${strata.region}"', '"1234abcd-12ab-34cd-56ef"')
    layered(tmp_path, {"strata.hcl": root})
    before = snapshot(tmp_path)
    result = strata("bootstrap", "--dry-run", cwd=tmp_path)
    assert result.code == 1
    assert "strata.hcl:7" in result.stderr and "names a key directly" in result.stderr, result.stderr
    assert snapshot(tmp_path) == before
