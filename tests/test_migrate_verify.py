"""strata.migrate.verify: no-op proofs of migrated states in temporary copies of the stacks, real Terraform.

One small repository is applied for real once per Terraform version (with the strata CLI); every test works
on its own copy of it: foundation → platform (an input from foundation's output) and apps/web (a local module
``../../modules/x`` and an input from platform). Each test hands verify() state bytes built from the real ones
and checks the verdicts, the refreshed states, and that neither the real folders nor the real states changed.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, snapshot, write_tree
from strata.migrate.verify import Verification, plan_changes, verify
from strata.model.loader import load
from strata.model.repository import Repository
from strata.terraform.binary import TerraformBinary, find_binary

Strata = Callable[..., Result]

FILES = {
    "strata.hcl": 'strata {}\nbackend "local" {}\n',
    "foundation/strata.hcl": 'stack {}\ninputs = {\n  name = "core"\n}\n',
    "foundation/templates/banner.txt": "hello from a template\n",
    "foundation/main.tf": """
        variable "name" {
          type = string
        }
        resource "null_resource" "a" {
          triggers = { name = var.name, banner = file("${path.module}/templates/banner.txt") }
        }
        resource "null_resource" "b" {
          triggers   = { name = var.name }
          depends_on = [null_resource.a]
        }
        output "id" {
          value = null_resource.a.id
        }
        output "name" {
          value = var.name
        }
        """,
    "platform/strata.hcl": """
        stack {}
        dependency "foundation" {
          path = "../foundation"
        }
        inputs = {
          foundation_id = dependency.foundation.outputs.id
          label         = "platform-${dependency.foundation.outputs.name}"
        }
        """,
    "platform/main.tf": """
        variable "foundation_id" {
          type = string
        }
        variable "label" {
          type = string
        }
        resource "null_resource" "p" {
          triggers = { foundation = var.foundation_id, label = var.label }
        }
        output "platform_id" {
          value = null_resource.p.id
        }
        """,
    "apps/web/strata.hcl": """
        stack {}
        dependency "platform" {
          path = "../../platform"
        }
        inputs = {
          platform_id = dependency.platform.outputs.platform_id
        }
        """,
    "apps/web/main.tf": """
        variable "platform_id" {
          type = string
        }
        module "x" {
          source      = "../../modules/x"
          platform_id = var.platform_id
        }
        output "web" {
          value = module.x.id
        }
        """,
    "modules/x/main.tf": """
        variable "platform_id" {
          type = string
        }
        resource "null_resource" "m" {
          triggers = { platform = var.platform_id }
        }
        output "id" {
          value = null_resource.m.id
        }
        """,
}
STACKS = ("foundation", "platform", "apps/web")


def state_path(repo: Path, stack: str) -> Path:
    return repo / ".strata" / "state" / stack / "terraform.tfstate"


def real_state(repo: Path, stack: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state_path(repo, stack).read_bytes())
    return data


def encode(state: dict[str, Any]) -> bytes:
    return (json.dumps(state, indent=2) + "\n").encode()


def offline(binary: str, provider_mirror: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> TerraformBinary:
    """The binary, with the environment verify() reads (the offline provider mirror) set for this test."""
    for name, value in {**provider_mirror, "STRATA_TERRAFORM": binary}.items():
        monkeypatch.setenv(name, value)
    return find_binary(binary, None)


_APPLIED: dict[str, Path] = {}  # Terraform binary -> the repository applied with it (tests work on copies)

Setup = Callable[[str], tuple[Path, TerraformBinary]]


@pytest.fixture
def setup(strata: Strata, provider_mirror: dict[str, str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
          monkeypatch: pytest.MonkeyPatch) -> Setup:
    """``setup(binary)``: this test's own copy of the applied repository, and the binary, ready for verify()."""

    def make(binary: str) -> tuple[Path, TerraformBinary]:
        env = {**provider_mirror, "STRATA_TERRAFORM": binary}
        if binary not in _APPLIED:
            base = write_tree(tmp_path_factory.mktemp("applied") / "repo", FILES)
            result = strata("apply", "--yes", "-q", cwd=base, env=env)
            assert result.code == 0, result.output
            _APPLIED[binary] = base
        repo = tmp_path / "repo"
        shutil.copytree(_APPLIED[binary], repo, symlinks=True, ignore=shutil.ignore_patterns(".terraform"))
        return repo, offline(binary, provider_mirror, monkeypatch)

    return make


def loaded(repo: Path) -> Repository:
    found = load(repo, repo)
    assert not found.errors, found.errors
    return found


def untouched(repo: Path) -> Callable[[], None]:
    """Snapshot the real folders and the real states; the returned check fails if any byte changed."""
    files = snapshot(repo)
    states = {p.relative_to(repo).as_posix(): p.read_bytes() for p in (repo / ".strata" / "state").rglob("*")
              if p.is_file()}

    def check() -> None:
        assert snapshot(repo) == files
        now = {p.relative_to(repo).as_posix(): p.read_bytes() for p in (repo / ".strata" / "state").rglob("*")
               if p.is_file()}
        assert now == states
        assert not any(p.name == ".terraform" for p in repo.rglob("*")), "terraform ran in a real folder"

    return check


def by_stack(result: Verification) -> dict[str, Any]:
    return {v.stack: v for v in result.verdicts}


def outputs_of(state: bytes) -> dict[str, Any]:
    return {k: v["value"] for k, v in json.loads(state)["outputs"].items()}


# -- 1. the real states are a no-op; outputs filled in by terraform; nothing real touched -------------------

def test_real_states_verify_clean_and_outputs_are_filled_in(setup: Setup, terraform_binary: str,
                                                            tmp_path: Path) -> None:
    repo_dir, terraform = setup(terraform_binary)
    check = untouched(repo_dir)
    real = {stack: real_state(repo_dir, stack) for stack in STACKS}
    assert all(real[s]["outputs"] for s in STACKS)
    # as surgery leaves them: the outputs are not known yet, terraform computes them
    states = {}
    for stack in STACKS:
        data = copy.deepcopy(real[stack])
        data["outputs"] = {}
        states[stack] = encode(data)
    messages: list[str] = []
    work = tmp_path / "work"

    result = verify(loaded(repo_dir), terraform, states, work=work, log=messages.append)

    assert result.ok(), result.verdicts
    assert [v.stack for v in result.verdicts] == ["foundation", "platform", "apps/web"]  # dependency order
    for verdict in result.verdicts:
        assert verdict.ok and verdict.changes == () and verdict.detail == ""
        assert verdict.log is not None and verdict.log.is_file() and verdict.log.is_relative_to(work)
        assert "apply" in verdict.log.read_text() and "-refresh-only" in verdict.log.read_text()
    assert set(result.states) == set(STACKS)
    for stack in STACKS:
        refreshed = json.loads(result.states[stack])
        assert {k: v["value"] for k, v in refreshed["outputs"].items()} == \
            {k: v["value"] for k, v in real[stack]["outputs"].items()}, stack
        assert refreshed["outputs"] == real[stack]["outputs"], stack  # values and types, as terraform writes them
        assert refreshed["lineage"] == real[stack]["lineage"]
        assert [r["name"] for r in refreshed["resources"]] == [r["name"] for r in real[stack]["resources"]]
    # the copies keep the layout: the module at ../../modules/x, the template beside the stack's code
    assert (work / "tree" / "modules" / "x" / "main.tf").is_file()
    assert (work / "tree" / "foundation" / "templates" / "banner.txt").is_file()
    backend = (work / "tree" / "foundation" / "strata_backend.tf").read_text()
    assert f'path = "{work / "tree" / "foundation" / "verify.tfstate"}"' in backend, backend
    assert any("foundation" in m for m in messages) and any("apps/web" in m for m in messages)
    check()


# -- 2./3. a missing resource is a create, a resource the code no longer has is a delete ---------------------

def test_state_missing_a_resource_plans_a_create(setup: Setup, tf_111: str, tmp_path: Path) -> None:
    repo_dir, terraform = setup(tf_111)
    check = untouched(repo_dir)
    data = real_state(repo_dir, "foundation")
    data["resources"] = [r for r in data["resources"] if r["name"] != "b"]

    result = verify(loaded(repo_dir), terraform, {"foundation": encode(data)}, work=tmp_path / "work")

    assert not result.ok()
    [verdict] = result.verdicts
    assert (verdict.stack, verdict.ok, verdict.detail) == ("foundation", False, "")
    assert verdict.changes == ("null_resource.b: create",)
    assert verdict.log is not None and "1 to add" in verdict.log.read_text()
    assert "foundation" in result.states  # refreshed even when the plan shows changes
    check()


def test_state_with_a_resource_the_code_lacks_plans_a_delete(setup: Setup, tf_111: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo_dir, terraform = setup(tf_111)
    check = untouched(repo_dir)
    # the user's environment must not send terraform elsewhere than the copy
    monkeypatch.setenv("TF_WORKSPACE", "elsewhere")
    monkeypatch.setenv("TF_DATA_DIR", str(tmp_path / "shared-data-dir"))
    monkeypatch.setenv("TF_CLI_ARGS_plan", "-refresh=false -target=null_resource.a")
    data = real_state(repo_dir, "foundation")
    extra = copy.deepcopy(next(r for r in data["resources"] if r["name"] == "b"))
    extra["name"] = "gone"
    data["resources"].append(extra)

    result = verify(loaded(repo_dir), terraform, {"foundation": encode(data)}, work=tmp_path / "work")

    [verdict] = result.verdicts
    assert not verdict.ok and verdict.changes == ("null_resource.gone: delete",), verdict
    assert not (tmp_path / "shared-data-dir").exists()
    assert [r["name"] for r in json.loads(result.states["foundation"])["resources"]].count("gone") == 1
    check()


# -- 4. a dependency verified too feeds its refreshed outputs to its dependents -----------------------------

def test_dependency_outputs_come_from_its_verified_copy(setup: Setup, terraform_binary: str, tmp_path: Path) -> None:
    repo_dir, terraform = setup(terraform_binary)
    check = untouched(repo_dir)
    foundation = real_state(repo_dir, "foundation")
    old_id = foundation["outputs"]["id"]["value"]
    for res in foundation["resources"]:
        if res["name"] == "a":
            res["instances"][0]["attributes"]["id"] = "4242"
    foundation["outputs"] = {"id": {"value": "stale", "type": "string"}}  # recomputed by the refresh
    states = {"foundation": encode(foundation), "platform": state_path(repo_dir, "platform").read_bytes()}
    repo = loaded(repo_dir)

    result = verify(repo, terraform, states, work=tmp_path / "work")

    verdicts = by_stack(result)
    assert verdicts["foundation"].ok, verdicts["foundation"]  # an id is not configuration: no change
    assert outputs_of(result.states["foundation"])["id"] == "4242"
    platform = verdicts["platform"]
    assert not platform.ok and platform.changes == ("null_resource.p: delete, create",), platform
    assert '"4242"' in (tmp_path / "work" / "tree" / "platform" / "strata_inputs.auto.tfvars").read_text()
    assert platform.log is not None and "its verified copy" in platform.log.read_text()

    # the same platform state alone reads foundation's real outputs: a no-op
    alone = verify(repo, terraform, {"platform": states["platform"]}, work=tmp_path / "work2")
    assert alone.ok(), alone.verdicts
    assert f'"{old_id}"' in (tmp_path / "work2" / "tree" / "platform" / "strata_inputs.auto.tfvars").read_text()
    check()


# -- 5. a local module at ../../modules/x works in the copy ------------------------------------------------

def test_stack_with_a_local_module(setup: Setup, tf_111: str, tmp_path: Path) -> None:
    repo_dir, terraform = setup(tf_111)
    check = untouched(repo_dir)
    repo = loaded(repo_dir)
    web = state_path(repo_dir, "apps/web").read_bytes()
    assert any(r.get("module") == "module.x" for r in json.loads(web)["resources"])

    clean = verify(repo, terraform, {"apps/web": web}, work=tmp_path / "clean")
    assert clean.ok(), clean.verdicts
    assert (tmp_path / "clean" / "tree" / "modules" / "x" / "main.tf").is_file()

    data = json.loads(web)
    data["resources"] = [r for r in data["resources"] if r.get("module") != "module.x"]
    missing = verify(repo, terraform, {"apps/web": encode(data)}, work=tmp_path / "missing")
    [verdict] = missing.verdicts
    assert verdict.changes == ("module.x.null_resource.m: create",), verdict
    check()


# -- dependencies without outputs, unknown stacks, failures ---------------------------------------------------

EMPTY_STATE = b'{"version": 4, "terraform_version": "1.0.3", "serial": 1, "lineage": "x", "outputs": {}, ' \
              b'"resources": []}\n'


def test_dependency_without_outputs_needs_mock_outputs(tmp_path: Path, tf_111: str, provider_mirror: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_tree(tmp_path / "repo", FILES)  # never applied: foundation has no state
    binary = offline(tf_111, provider_mirror, monkeypatch)
    check = untouched(root)

    result = verify(loaded(root), binary, {"platform": EMPTY_STATE, "nowhere": EMPTY_STATE}, work=tmp_path / "w1")

    verdicts = by_stack(result)
    assert not verdicts["platform"].ok and 'dependency "foundation" (foundation)' in verdicts["platform"].detail
    assert "mock_outputs" in verdicts["platform"].detail
    assert not verdicts["nowhere"].ok and "not a stack" in verdicts["nowhere"].detail
    assert result.states == {}

    # with mock_outputs the plan runs on them (and, the state being empty, shows what it would create)
    hcl = root / "platform" / "strata.hcl"
    hcl.write_text(hcl.read_text().replace('path = "../foundation"',
                                           'path = "../foundation"\n  mock_outputs = { id = "m", name = "n" }'))
    check = untouched(root)
    mocked = verify(loaded(root), binary, {"platform": EMPTY_STATE}, work=tmp_path / "w2")
    [verdict] = mocked.verdicts
    assert not verdict.ok and verdict.changes == ("null_resource.p: create",), verdict
    assert 'label         = "platform-n"' in (tmp_path / "w2" / "tree" / "platform" /
                                               "strata_inputs.auto.tfvars").read_text()
    check()


def test_broken_code_is_a_failed_verdict_with_the_error(tmp_path: Path, tf_111: str,
                                                        provider_mirror: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    binary = offline(tf_111, provider_mirror, monkeypatch)
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "solo/strata.hcl": "stack {}\n",
        "solo/main.tf": 'resource "null_resource" "a" {\n  triggers = { x = var.missing }\n}\n',
    })
    result = verify(loaded(root), binary, {"solo": EMPTY_STATE}, work=tmp_path / "w")
    [verdict] = result.verdicts
    assert not verdict.ok and verdict.changes == ()
    assert "Reference to undeclared input variable" in verdict.detail, verdict
    assert verdict.log is not None and "var.missing" in verdict.log.read_text()


def test_inputs_computed_from_a_secret_are_redacted_in_the_logs(tmp_path: Path, tf_111: str,
                                                               provider_mirror: dict[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """upper() of a sensitive dependency output is as secret as the output: terraform's plan prints it."""
    binary = offline(tf_111, provider_mirror, monkeypatch)
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "db/strata.hcl": "stack {}\n",
        "db/main.tf": 'output "password" {\n  value     = "x"\n  sensitive = true\n}\n',
        "app/strata.hcl": 'stack {}\ndependency "db" {\n  path = "../db"\n}\n'
                          "inputs = {\n  token = upper(dependency.db.outputs.password)\n}\n",
        "app/main.tf": 'variable "token" {\n  type = string\n}\n'
                       'resource "null_resource" "a" {\n  triggers = { t = var.token }\n}\n',
    })
    db_state = json.loads(EMPTY_STATE)
    db_state["outputs"] = {"password": {"value": "hunter2-pw", "type": "string", "sensitive": True}}
    state_path(root, "db").parent.mkdir(parents=True)
    state_path(root, "db").write_bytes(encode(db_state))

    result = verify(loaded(root), binary, {"app": EMPTY_STATE}, work=tmp_path / "w")
    [verdict] = result.verdicts
    assert verdict.changes == ("null_resource.a: create",), verdict  # the plan printed the trigger
    assert verdict.log is not None
    logged = verdict.log.read_text()
    assert "HUNTER2-PW" not in logged and "hunter2-pw" not in logged, logged
    assert '"t" = "(sensitive value)"' in logged, logged  # terraform printed it; strata redacted it


def test_plan_changes_lists_every_real_change() -> None:
    plan: dict[str, Any] = {
        "resource_changes": [
            {"address": "null_resource.same", "change": {"actions": ["no-op"]}},
            {"address": "data.null_data_source.d", "change": {"actions": ["read"]}},
            {"address": "null_resource.new", "change": {"actions": ["create"]}},
            {"address": "module.x.null_resource.r", "change": {"actions": ["delete", "create"]}},
            {"address": "null_resource.up", "change": {"actions": ["update"]}},
            {"address": "null_resource.moved", "previous_address": "null_resource.old",
             "change": {"actions": ["no-op"]}},
        ],
        "output_changes": {"z": {"actions": ["no-op"]}, "b": {"actions": ["create"]}, "a": {"actions": ["update"]}},
    }
    assert plan_changes(plan) == (
        "null_resource.new: create",
        "module.x.null_resource.r: delete, create",
        "null_resource.up: update",
        "null_resource.moved: moved from null_resource.old",
    )
    # outputs are the reason only when no resource changes
    plan["resource_changes"] = plan["resource_changes"][:2]
    assert plan_changes(plan) == ("output.a: update", "output.b: create")
    assert plan_changes({}) == ()
