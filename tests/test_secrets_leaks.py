"""Secrets that used to leak past strata's redaction (a hostile review), each with the scene that showed it.

The repository is test_secrets's: ``db`` has sensitive outputs, ``app`` reads them into variables it does
not mark sensitive, so terraform prints them in clear and only strata's redaction hides them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree
from strata.run.redact import REDACTED, Secrets
from test_secrets import DB, PASSWORD, VISIBLE_HOST, assert_no_secret, secret_repo

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

ROTATED = "r0tated-Pa55word-77"


def applied_repo(strata: Strata, tmp_path: Path, env: dict[str, str]) -> Path:
    repo = secret_repo(tmp_path / "repo")
    applied = strata("apply", "db", "app", "--yes", "-q", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    return repo


def rotate(repo: Path, old: str, new: str) -> None:
    main = repo / "db" / "main.tf"
    main.write_text(main.read_text().replace(old, new))


def state_file(repo: Path, stack: str) -> Path:
    return next((repo / ".strata" / "state").rglob(f"{stack}/terraform.tfstate"))


# -- S1: the old value of a rotated secret, and secrets strata could not read --------------------------------

def test_a_rotated_secret_still_in_the_dependents_state_is_redacted(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    """db's password changed and was applied; app still holds the old one (a trigger, an output), and its plan
    prints the change from the old value to the new: the old value is a secret of db's previous state."""
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    repo = applied_repo(strata, tmp_path, env)
    rotate(repo, PASSWORD, ROTATED)
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env=env).code == 0
    assert PASSWORD in state_file(repo, "app").read_text()  # the premise: app's state holds the old password

    planned = strata("plan", "app", cwd=repo, env=env)
    assert planned.code == 0, planned.output
    assert '"password" = "(sensitive value)" -> "(sensitive value)"' in planned.stdout, planned.stdout
    assert_no_secret("the plan of app", planned.output)
    assert ROTATED not in planned.output

    shown = strata("output", "app", cwd=repo, env=env)  # app's state: the old password, until app is applied
    assert shown.code == 0, shown.output
    assert f"postgres://app:{REDACTED}@{VISIBLE_HOST}:{REDACTED}" in shown.stdout, shown.stdout
    assert_no_secret("strata output", shown.output)

    # rotated again, and applied with app in the same run: app's apply prints the change too
    third = "th1rd-Pa55word-88"
    rotate(repo, ROTATED, third)
    both = strata("apply", "db", "app", "--yes", cwd=repo, env=env)
    assert both.code == 0, both.output
    assert both.stdout.count('"password" = "(sensitive value)" -> "(sensitive value)"') == 1, both.stdout
    assert_no_secret("applying db and app", both.output)
    assert ROTATED not in both.output and third not in both.output


def test_strata_output_refuses_when_a_dependency_state_cannot_be_read(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    repo = applied_repo(strata, tmp_path, env)
    state_file(repo, "db").write_text("{ damaged")

    shown = strata("output", "app", cwd=repo, env=env)
    assert shown.code != 0, shown.output
    assert 'cannot show the outputs of app safely: its dependency "db" (db) cannot be read' in shown.stderr, (
        shown.output)
    assert "not usable" in shown.stderr and "strata state restore db" in shown.stderr, shown.stderr
    assert shown.stdout == ""  # nothing printed before the refusal
    assert_no_secret("strata output", shown.output)


def test_the_secrets_of_the_stack_own_state_are_redacted(
        strata: Strata, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    """Its sensitive outputs, and the attributes terraform marks sensitive: ``output -json`` and ``show -json``
    print both in clear."""
    token = "t0ken-own-state-9090"
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "db/strata.hcl": DB["strata.hcl"],
        "db/main.tf": DB["main.tf"] + f"""
        variable "token" {{
          type      = string
          default   = "{token}"
          sensitive = true
        }}
        resource "null_resource" "token" {{
          triggers = {{ token = var.token }}
        }}
        """,
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary, "STRATA_NO_LIVE": "1"}
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env=env).code == 0
    state = json.loads(state_file(repo, "db").read_text())
    assert any(i["sensitive_attributes"] for r in state["resources"] for i in r["instances"]), state  # the premise

    for argv in (["output", "-json"], ["show", "-json"]):
        shown = strata("run", "db", "--", *argv, cwd=repo, env=env)
        assert shown.code == 0, shown.output
        assert VISIBLE_HOST in shown.stdout and REDACTED in shown.stdout, shown.stdout
        assert_no_secret(f"terraform {' '.join(argv)}", shown.output)
        assert token not in shown.output, shown.output


def test_sensitive_attributes_of_a_state_are_secrets() -> None:
    """The paths terraform records (state format 4): attributes, map keys, list indexes."""
    secrets = Secrets()
    secrets.add_state({"outputs": {}, "resources": [{"instances": [{
        "attributes": {"id": "visible-id-1", "triggers": {"token": "map-secret-1"}, "list": ["a", "list-secret-2"],
                       "password": "attr-secret-3"},
        "sensitive_attributes": [
            [{"type": "get_attr", "value": "triggers"},
             {"type": "index", "value": {"value": "token", "type": "string"}}],
            [{"type": "get_attr", "value": "list"}, {"type": "index", "value": {"value": 1, "type": "number"}}],
            [{"type": "get_attr", "value": "password"}],
            [{"type": "get_attr", "value": "absent"}],
            "not a path",
        ]}]}]})
    assert secrets.values == {"map-secret-1", "list-secret-2", "attr-secret-3"}


# -- S2: values strata computes from a secret ----------------------------------------------------------------

DERIVED = {
    "strata.hcl": """
        stack {}
        dependency "db" {
          path = "../db"
        }
        inputs = {
          shouted  = upper(dependency.db.outputs.db_password)
          encoded  = base64encode(dependency.db.outputs.db_password)
          prefixed = "prefix-${dependency.db.outputs.db_password}"
          joined   = join("+", [dependency.db.outputs.db_keys.primary, "public-part"])
          port     = dependency.db.outputs.db_port + 1
          settings = merge({ host = dependency.db.outputs.db_host }, { password = dependency.db.outputs.db_password })
        }
        """,
    "main.tf": """
        variable "shouted" {}
        variable "encoded" {}
        variable "prefixed" {}
        variable "joined" {}
        variable "port" {}
        variable "settings" {
          type = map(string)
        }
        resource "null_resource" "derived" {
          triggers = {
            shouted  = var.shouted
            encoded  = var.encoded
            prefixed = var.prefixed
            joined   = var.joined
            port     = var.port
            host     = var.settings.host
          }
        }
        """,
}


def test_values_computed_from_a_secret_are_redacted(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = secret_repo(tmp_path / "repo")
    write_tree(repo / "derived", DERIVED)
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    assert strata("apply", "db", "--yes", "-q", cwd=repo, env=env).code == 0

    planned = strata("plan", "derived", cwd=repo, env=env)  # db not selected: its outputs read from its state
    assert planned.code == 0, planned.output
    derived = (PASSWORD.upper(), base64.b64encode(PASSWORD.encode()).decode(), "prefix-", "public-part",
               "54322")
    for value in derived:
        assert value not in planned.output, f"{value!r} leaked:\n{planned.output}"
    assert_no_secret("the plan", planned.output)
    assert VISIBLE_HOST in planned.stdout, planned.stdout  # passed through merge(): visible
    assert planned.stdout.count(REDACTED) >= 5, planned.stdout


def test_derived_keeps_what_passes_through_from_visible_inputs() -> None:
    secrets = Secrets(["s3cret-value"])
    secrets.derived([{"host": "visible-host"}, {"password": "s3cret-value"}],
                    {"host": "visible-host", "password": "s3cret-value"})
    secrets.derived(["%s-%s", "visible-host", "s3cret-value"], "visible-host-s3cret-value")
    secrets.derived(["visible-host"], "VISIBLE-HOST")  # no secret among the inputs
    assert secrets.values == {"s3cret-value", "visible-host-s3cret-value"}


# -- U3: a dependency whose real state is in errored.tfstate ------------------------------------------------

def test_dependents_refuse_the_outputs_of_a_dependency_with_an_errored_state(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    """terraform could not save db's state (its real state, with the rotated password, is in errored.tfstate):
    app must not plan on the stale outputs in db's backend."""
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_NO_LIVE": "1"}
    repo = applied_repo(strata, tmp_path, env)
    saved = json.loads(state_file(repo, "db").read_text())
    saved["serial"] += 1
    saved["outputs"]["db_password"]["value"] = ROTATED
    (repo / "db" / "errored.tfstate").write_text(json.dumps(saved))  # what terraform writes when it cannot save

    refused = strata("plan", "app", cwd=repo, env=env)
    assert refused.code == 1, refused.output
    assert "db/errored.tfstate holds the state terraform could not save" in refused.output, refused.output
    assert "strata state push db db/errored.tfstate" in refused.output
    assert "--ignore-errored-state" in refused.output
    assert "null_resource.app" not in refused.stdout  # terraform did not run

    stale = strata("plan", "app", "--ignore-errored-state", cwd=repo, env=env)
    assert stale.code == 0, stale.output  # on the outputs as saved: nothing changes for app

    pushed = strata("state", "push", "db", "db/errored.tfstate", "--yes", cwd=repo, env=env)
    assert pushed.code == 0, pushed.output
    planned = strata("plan", "app", cwd=repo, env=env)
    assert planned.code == 0, planned.output
    assert "must be replaced" in planned.stdout, planned.stdout  # the saved password reaches app
    assert ROTATED not in planned.output and PASSWORD not in planned.output
