"""Machine-readable output you can depend on (issue 11, item 8).

Every ``--json`` option names its JSON Schema in ``docs/schemas/``; every document strata prints starts with
``format_version``; ``--json`` and ``--json -`` mean stdout and ``--json FILE`` a file, on every command; and
the documents of real runs (local backend, the null provider, terraform) match their schemas, so a renamed or
retyped field fails here before it breaks someone's pipeline.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest

from conftest import REPO, Result, write_tree
from strata.main import cli
from strata.output import FORMAT_VERSION

Strata = Callable[..., Result]
SCHEMAS = REPO / "docs" / "schemas"
NAMED = re.compile(r"docs/schemas/(?P<name>[a-z0-9-]+)\.schema\.json")


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return loaded


def conforms(document: Any, name: str) -> dict[str, Any]:
    """``document`` matches docs/schemas/<name>.schema.json, ``format_version`` first; returns it."""
    validator = jsonschema.Draft202012Validator(schema(name), format_checker=jsonschema.FormatChecker())
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in validator.iter_errors(document)]
    assert not problems, f"{name}: " + "\n".join(problems[:10])
    assert next(iter(document)) == "format_version" and document["format_version"] == FORMAT_VERSION
    result: dict[str, Any] = document
    return result


def printed(result: Result, name: str, code: int = 0) -> dict[str, Any]:
    """The command's whole stdout is one JSON document that matches its schema."""
    assert result.code == code, result.output
    return conforms(json.loads(result.stdout), name)


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


# -- every --json names a schema ---------------------------------------------------------------------------

def test_every_json_option_names_its_schema_and_every_schema_is_used() -> None:
    used = set()
    for path, command in commands(cli):
        option = next((p for p in command.params if "--json" in getattr(p, "opts", [])), None)
        if option is None:
            continue
        found = NAMED.search(" ".join(str(getattr(option, "help", "")).split()))
        assert found, f"strata {' '.join(path)} --json does not name its schema in docs/schemas/"
        assert (SCHEMAS / f"{found['name']}.schema.json").is_file(), f"strata {' '.join(path)}: no {found[0]}"
        assert getattr(option, "metavar", None) == "[FILE]", f"strata {' '.join(path)}: --json is not the shared one"
        used.add(found["name"])
    files = {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")}
    assert used == files, f"schemas no command names: {sorted(files - used)}"
    for name in sorted(files):
        document = schema(name)
        jsonschema.Draft202012Validator.check_schema(document)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["properties"]["format_version"] == {**document["properties"]["format_version"],
                                                            "const": FORMAT_VERSION}, name


# -- --json, --json -, --json FILE -------------------------------------------------------------------------

SMALL = {
    "strata.hcl": "strata {}\n",
    "dev/eu-west-1/01-net/strata.hcl": "stack {}\n",
    "production/eu-west-1/01-net/strata.hcl": "stack {}\n",
}


def test_json_alone_or_dash_is_stdout_and_the_next_word_stays_a_path(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", SMALL)
    for spelling in (("--json", "production"), ("production", "--json"), ("--json", "-", "production")):
        listed = printed(strata("ls", *spelling, cwd=repo), "ls")
        assert [s["path"] for s in listed["stacks"]] == ["production/eu-west-1/01-net"], spelling


def test_json_file_is_written_whole_and_private_with_nothing_on_stdout(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", SMALL)
    for spelling, file in ((("--json", "out/listing.json"), repo / "out" / "listing.json"),
                           (("--json=listing",), repo / "listing")):
        result = strata("ls", *spelling, "dev", cwd=repo)
        assert result.code == 0 and result.stdout == "", result.output
        listed = conforms(json.loads(file.read_text(encoding="utf-8")), "ls")
        assert [s["path"] for s in listed["stacks"]] == ["dev/eu-west-1/01-net"]
        assert file.stat().st_mode & 0o777 == 0o600, "some documents hold values strata otherwise redacts"
        assert not list(file.parent.glob(".*.partial")), "written atomically: no temporary file left"
    empty = strata("ls", "--json=", cwd=repo)
    assert empty.code == 64 and "--json= names no file" in empty.stderr, empty.output
    graph = strata("graph", "--json", "g.json", "-o", "other.json", cwd=repo)
    assert graph.code == 64 and "give one" in graph.stderr, graph.output


REPOSITORY = {
    "strata.hcl": "strata {}\n",
    "dev/01-net/strata.hcl": 'stack {\n  description = "the network"\n  tags = ["core"]\n}\n'
                             'inputs = { cidr = "10.0.0.0/16" }\n',
    "dev/01-net/main.tf": """
        variable "cidr" {
          type = string
        }
        resource "null_resource" "a" {}
        resource "null_resource" "b" {}
        output "id" {
          value = null_resource.a.id
        }
        output "secret" {
          value     = "s3cr3t"
          sensitive = true
        }
        """,
}

@pytest.mark.terraform
def test_a_run_report_on_stdout_sends_terraforms_output_and_strata_lines_to_stderr(
        strata: Strata, tmp_path: Path, tf_111: str, provider_mirror: dict[str, str]) -> None:
    repo = write_tree(tmp_path / "repo", {**REPOSITORY, "dev/02-app/strata.hcl": "stack {}\n",
                                          "dev/02-app/main.tf": 'resource "null_resource" "c" {}\n'})
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    one = strata("plan", "dev/01-net", "--json", cwd=repo, env=env)  # terraform's own output passes through
    report = printed(one, "run-report")
    assert [s["path"] for s in report["stacks"]] == ["dev/01-net"] and report["command"] == "plan"
    assert "Plan: 2 to add" in one.stderr and "plan: 1 changes" in one.stderr
    many = strata("plan", "--json", "-", cwd=repo, env=env)  # prefixed lines without a terminal
    report = printed(many, "run-report")
    assert report["counts"] == {"changes": 2}
    assert "dev/02-app: strata: started" in many.stderr and "STACK" in many.stderr


# -- the documents of a real repository --------------------------------------------------------------------

MIGRATING = {
    "dev/03-old/strata.hcl": "stack {}\n",
    "dev/03-old/main.tf": 'resource "null_resource" "x" {}\nresource "null_resource" "y" {}\n',
}

MIGRATED = {
    "dev/03-old/main.tf": 'resource "null_resource" "y" {}\n',
    "dev/04-new/strata.hcl": "stack {}\n",
    "dev/04-new/main.tf": 'resource "null_resource" "x" {}\n',
    "migrations/split.hcl": """
        migration {
          description = "x moves to its own stack"
        }
        source {
          stack = "dev/03-old"
        }
        move "x" {
          resources = ["null_resource.x"]
          to        = "dev/04-new"
        }
        keep "rest" {
          resources = ["*"]
        }
        """,
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.terraform
def test_every_document_of_a_real_repository_matches_its_schema(strata: Strata, tmp_path: Path, tf_111: str,
                                                                provider_mirror: dict[str, str]) -> None:
    repo = write_tree(tmp_path / "repo", {
        **REPOSITORY, **MIGRATING,
        "dev/02-app/strata.hcl": 'stack {}\ndependency "net" {\n  path = "../01-net"\n'
                                 '  mock_outputs = { id = "x" }\n}\ninputs = { net_id = dependency.net.outputs.id }\n',
        "dev/02-app/main.tf": 'variable "net_id" {\n  type = string\n}\n'
                              'resource "null_resource" "c" {\n  triggers = { n = var.net_id }\n}\n',
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}

    def run(*args: str, code: int = 0, name: str) -> dict[str, Any]:
        return printed(strata(*args, cwd=repo, env=env), name, code)

    # the configuration
    assert run("validate", "--json", name="validate")["warnings"] >= 1  # stacks without a backend block
    assert run("ls", "--json", name="ls")["stacks"][0]["tags"] == ["core"]
    assert run("render", "dev/02-app", "--json", name="render")["dependencies"][0]["mock_outputs"] == {"id": "x"}
    assert run("graph", "--json", name="graph")["edges"] == [{"from": "dev/01-net", "to": "dev/02-app",
                                                              "dependencies": 1}]
    assert run("graph", "--group-by", "environment", "--json", name="graph")["nodes"][0]["group"] == {
        "environment": "dev"}
    assert run("generate", "--json", name="generate")["written"]
    assert run("generate", "--check", "--json", name="generate")["stale"] == []
    assert run("bootstrap", "--dry-run", "--json", name="bootstrap")["local_stacks"]

    # runs: the report on stdout or in a file
    assert run("init", "--json", name="run-report")["command"] == "init"
    assert run("plan", "--json", name="run-report")["counts"] == {"changes": 3}
    applied = strata("apply", "--yes", "--json", "reports/apply.json", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    assert conforms(json.loads((repo / "reports" / "apply.json").read_text()), "run-report")["counts"] == {"ok": 3}
    assert run("refresh", "dev/01-net", "--json", name="run-report")["counts"] == {"ok": 1}
    assert run("run", "dev/01-net", "--json", "--", "state", "list", name="run-report")["command"] == "run"

    # outputs and states
    outputs = run("output", "dev/01-net", "--json", name="output")["stacks"]["dev/01-net"]
    assert outputs["secret"] == {"value": "s3cr3t", "type": "string", "sensitive": True}
    listed = run("state", "ls", "--json", name="state-ls")["stacks"]
    assert {r["stack"]: r["resources"] for r in listed} == {"dev/01-net": 2, "dev/02-app": 1, "dev/03-old": 2}
    versions = run("state", "versions", "dev/01-net", "--json", name="state-versions")
    assert versions["stack"] == "dev/01-net" and versions["versions"][0]["current"]
    restored = run("state", "restore", "dev/01-net", "--version", versions["versions"][-1]["id"], "--yes", "--json",
                   name="state-restore")
    pulled = tmp_path / "pulled.tfstate"
    pulled.write_text(strata("state", "pull", "dev/01-net", cwd=repo, env=env).stdout, encoding="utf-8")
    pushed = run("state", "push", "dev/01-net", str(pulled), "--yes", "--json", name="state-push")
    assert pushed["serial"] == restored["serial"] + 1 and pushed["pushed"] == str(pulled)
    backup = run("state", "backup", "--to", str(tmp_path / "backup"), "--json", name="state-backup")
    assert len(backup["stacks"]) == 3
    assert run("state", "verify", "--json", name="state-verify")["ok"] is True
    assert run("state", "verify", "--from", str(tmp_path / "backup"), "--json", name="state-verify")["ok"] is True
    lock_info = repo / ".strata" / "state" / "dev" / "02-app" / ".terraform.tfstate.lock.info"
    lock_info.write_text(json.dumps({"ID": "0b4c2a1e-left-behind", "Operation": "OperationTypeApply",
                                     "Who": "alice@elsewhere", "Version": "1.11.4", "Created": "", "Path": "",
                                     "Info": ""}))
    [held] = run("locks", "--json", name="locks")["locks"]
    assert held["stack"] == "dev/02-app" and held["lock"]["id"] == "0b4c2a1e-left-behind"
    lock_info.unlink()
    assert run("state", "rm", "dev/01-net", "null_resource.b", "--json", name="state-rm")["removed"] == [
        "null_resource.b"]
    moved = run("state", "mv", "dev/01-net", "null_resource.a", "dev/02-app", "null_resource.a", "--json",
                name="migration-report")
    assert moved["ok"] and moved["moves"]["dev/02-app"][0]["from"] == "null_resource.a"

    # a migration: the dry run, the move, the list, the rollback
    write_tree(repo, MIGRATED)
    planned = run("migrate", "plan", "migrations/split.hcl", "--json", name="migration-report")
    assert planned["ok"] and [v["ok"] for v in planned["verification"]] == [True, True], planned
    done = run("migrate", "apply", "migrations/split.hcl", "--yes", "--json", name="migration-report")
    assert done["migration"]["status"] == "done", done
    assert [m["id"] for m in run("migrate", "ls", "--json", name="migrate-ls")["migrations"]][-1] == \
        done["migration"]["id"]
    undone = run("migrate", "rollback", done["migration"]["id"], "--json", name="migration-report")
    assert undone["migration"]["status"] == "rolled-back"

    # what a change affects, against git
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "dev" / "01-net" / "main.tf").write_text((repo / "dev" / "01-net" / "main.tf").read_text() + "\n# edit\n")
    changed = run("ls", "--changed", "--base", "main", "--json", name="ls")
    assert changed["base"] and changed["deleted_stacks"] == []
    assert {s["path"]: bool(s["reasons"]) for s in changed["stacks"]} == {"dev/01-net": True, "dev/02-app": True}

    assert run("destroy", "--yes", "--json", "-", name="run-report")["command"] == "destroy"


def test_bootstrap_emit_terraform_lists_the_files_it_wrote(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": "strata {}\n",
        "staging/strata.hcl": 'backend "s3" {\n  bucket = "acme-state-${strata.environment}-${strata.region}"\n'
                              "  region = strata.region\n  encrypt = true\n  use_lockfile = true\n}\n",
        "staging/eu-central-1/01-net/strata.hcl": "stack {}\n",
    })
    emitted = printed(strata("bootstrap", "--emit-terraform", str(tmp_path / "out"), "--json", cwd=repo),
                      "bootstrap")
    assert sorted(Path(f).name for f in emitted["files"]) == sorted(p.name for p in (tmp_path / "out").iterdir())
