"""Dependency outputs read straight from state (strata.run.outputs).

Stacks come from real repositories loaded by strata; states are real files (hand-written state JSON,
and states written by real Terraform 1.0.3 and 1.11 through ``strata apply``).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, write_tree
from strata.errors import Source, StrataError
from strata.model.stack import BackendConfig, Setting, Stack
from strata.run.outputs import OutputReader, parse_outputs
from strata.workspace import Workspace


def state(outputs: dict[str, Any], resources: list[Any] | None = None) -> bytes:
    return json.dumps({"version": 4, "terraform_version": "1.11.4", "serial": 3, "lineage": "x",
                       "outputs": outputs, "resources": resources or []}).encode()


OUTPUTS: dict[str, dict[str, Any]] = {
    "vpc_id": {"value": "vpc-123", "type": "string"},
    "subnets": {"value": ["a", "b"], "type": ["list", "string"]},
    "password": {"value": "hunter2", "type": "string", "sensitive": True},
    "count": {"value": 3, "type": "number"},
}

REPO_FILES = {
    "strata.hcl": "strata {}\n",
    "dev/us-east-1/01-network/strata.hcl": "stack {}\n",
    "custom/strata.hcl": 'stack {}\nbackend "local" {\n  path = "state/custom.tfstate"\n}\n',
    # a backend strata cannot open itself (yet): outputs come from the terraform fallback
    "remote/strata.hcl": ('stack {}\nbackend "gcs" {\n  bucket = "b"\n}\n'),
}


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, Stack]]:
    root = write_tree(tmp_path / "repo", REPO_FILES)
    return root, dict(Workspace(cwd=root).repository().stacks)


def bare_stack(path: str = "dev/app") -> Stack:
    return Stack(path=path, name=path.rsplit("/", 1)[-1], config_file=f"{path}/strata.hcl", source=Source())


# -- parse_outputs -----------------------------------------------------------------------------------

def test_parse_outputs_keeps_values_types_and_sensitive_flags() -> None:
    parsed = parse_outputs(state(OUTPUTS), bare_stack())
    assert parsed == OUTPUTS
    assert parsed is not None and parsed["password"]["sensitive"] is True
    assert "sensitive" not in parsed["vpc_id"] or parsed["vpc_id"]["sensitive"] is False


def test_parse_outputs_returns_copies() -> None:
    parsed = parse_outputs(state(OUTPUTS), bare_stack())
    assert parsed is not None
    parsed["vpc_id"]["value"] = "changed"
    assert parse_outputs(state(OUTPUTS), bare_stack()) == OUTPUTS


def test_an_empty_state_is_none() -> None:
    assert parse_outputs(state({}), bare_stack()) is None
    assert parse_outputs(b'{"version": 4, "resources": [], "outputs": {}}', bare_stack()) is None
    assert parse_outputs(b'{"version": 4}', bare_stack()) is None


def test_a_state_with_resources_and_no_outputs_is_an_empty_dict() -> None:
    resources = [{"mode": "managed", "type": "null_resource", "name": "x", "instances": []}]
    assert parse_outputs(state({}, resources), bare_stack()) == {}


def test_a_state_that_is_not_json_names_the_stack() -> None:
    with pytest.raises(StrataError) as info:
        parse_outputs(b"\x00\x01 not json", bare_stack("prod/eu-west-1/02-platform"))
    assert "prod/eu-west-1/02-platform" in str(info.value)
    assert "not JSON" in str(info.value)


def test_a_state_that_is_json_but_not_an_object_names_the_stack() -> None:
    with pytest.raises(StrataError, match="prod/app"):
        parse_outputs(b"[1, 2, 3]", bare_stack("prod/app"))


def test_the_error_names_the_backend_type() -> None:
    stack = bare_stack("prod/app")
    stack.backend = BackendConfig("s3", {"bucket": Setting("b", Source())}, Source())
    with pytest.raises(StrataError, match=r"prod/app \(s3 backend\)"):
        parse_outputs(b"garbage", stack)


# -- OutputReader with the local backend -------------------------------------------------------------

def test_the_embedded_local_state_is_read_relative_to_the_stack_folder(
        repo: tuple[Path, dict[str, Stack]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root, stacks = repo
    stack = stacks["dev/us-east-1/01-network"]
    assert stack.backend is not None and stack.backend.embedded
    path = root / ".strata" / "state" / "dev" / "us-east-1" / "01-network" / "terraform.tfstate"
    path.parent.mkdir(parents=True)
    path.write_bytes(state(OUTPUTS))
    monkeypatch.chdir(tmp_path)  # the process's working directory plays no part
    reader = OutputReader(root)
    assert reader.outputs(stack) == OUTPUTS
    assert reader.values(stack) == {"vpc_id": "vpc-123", "subnets": ["a", "b"], "password": "hunter2", "count": 3}


def test_an_explicit_local_path_is_relative_to_the_stack_folder(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    (root / "state").mkdir()
    (root / "state" / "custom.tfstate").write_bytes(state({"wrong": {"value": 1, "type": "number"}}))
    (root / "custom" / "state").mkdir()
    (root / "custom" / "state" / "custom.tfstate").write_bytes(state(OUTPUTS))
    assert OutputReader(root).values(stacks["custom"]) == {k: v["value"] for k, v in OUTPUTS.items()}


def test_an_absolute_local_path(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "x.tfstate"
    absolute.parent.mkdir()
    absolute.write_bytes(state(OUTPUTS))
    backend = f'backend "local" {{\n  path = "{absolute}"\n}}\n'
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", "app/strata.hcl": "stack {}\n" + backend})
    stack = Workspace(cwd=root).repository().stacks["app"]
    assert OutputReader(root).outputs(stack) == OUTPUTS


def test_no_state_file_and_an_empty_state_file_are_none(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    reader = OutputReader(root)
    assert reader.outputs(stacks["custom"]) is None
    assert reader.values(stacks["custom"]) is None
    (root / "custom" / "state").mkdir()
    (root / "custom" / "state" / "custom.tfstate").write_bytes(b"")
    assert OutputReader(root).outputs(stacks["custom"]) is None


def test_a_damaged_state_file_raises_naming_the_stack(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    (root / "custom" / "state").mkdir()
    (root / "custom" / "state" / "custom.tfstate").write_text("{ half a state")
    with pytest.raises(StrataError, match="custom"):
        OutputReader(root).outputs(stacks["custom"])


def test_outputs_are_cached_until_forget(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    stack = stacks["custom"]
    file = root / "custom" / "state" / "custom.tfstate"
    file.parent.mkdir()
    file.write_bytes(state({"v": {"value": "one", "type": "string"}}))
    reader = OutputReader(root)
    assert reader.values(stack) == {"v": "one"}
    file.write_bytes(state({"v": {"value": "two", "type": "string"}}))
    assert reader.values(stack) == {"v": "one"}  # read once per run
    reader.forget(stack)
    assert reader.values(stack) == {"v": "two"}
    assert OutputReader(root).values(stack) == {"v": "two"}  # another reader has its own cache


def test_no_state_is_cached_too_until_forget(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    stack = stacks["custom"]
    reader = OutputReader(root)
    assert reader.outputs(stack) is None
    file = root / "custom" / "state" / "custom.tfstate"
    file.parent.mkdir()
    file.write_bytes(state(OUTPUTS))
    assert reader.outputs(stack) is None
    reader.forget(stack)
    assert reader.outputs(stack) == OUTPUTS
    reader.forget(stacks["dev/us-east-1/01-network"])  # forgetting a stack never read is harmless


# -- backends strata cannot read itself --------------------------------------------------------------

def test_an_unreadable_backend_uses_the_fallback_once(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    calls: list[str] = []

    def fallback(stack: Stack) -> dict[str, Any] | None:
        calls.append(stack.path)
        return {"id": {"value": "from-terraform", "type": "string", "sensitive": False}}

    reader = OutputReader(root, fallback=fallback)
    assert reader.values(stacks["remote"]) == {"id": "from-terraform"}
    assert reader.values(stacks["remote"]) == {"id": "from-terraform"}
    assert calls == ["remote"]
    reader.forget(stacks["remote"])
    reader.outputs(stacks["remote"])
    assert calls == ["remote", "remote"]
    # the local backend never needs the fallback
    assert reader.outputs(stacks["custom"]) is None and calls == ["remote", "remote"]


def test_concurrent_reads_of_one_stack_run_the_fallback_once(repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    calls: list[str] = []
    lock = threading.Lock()
    reading = 0
    all_reading = threading.Event()  # every thread is about to read, or reading

    def slow_fallback(stack: Stack) -> dict[str, Any] | None:
        with lock:
            calls.append(stack.path)
        all_reading.wait(30)  # terraform init + output -json: still running when the others ask
        return {"id": {"value": 1, "type": "number", "sensitive": False}}

    reader = OutputReader(root, fallback=slow_fallback)
    barrier = threading.Barrier(8)
    results: list[dict[str, Any] | None] = []

    def read() -> None:
        nonlocal reading
        barrier.wait(timeout=30)
        with lock:
            reading += 1
            if reading == 8:
                all_reading.set()
        results.append(reader.values(stacks["remote"]))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [{"id": 1}] * 8
    assert calls == ["remote"]


def test_without_a_fallback_an_unreadable_backend_is_an_error_not_no_state(
        repo: tuple[Path, dict[str, Stack]]) -> None:
    root, stacks = repo
    with pytest.raises(StrataError) as info:
        OutputReader(root).outputs(stacks["remote"])
    assert "gcs" in str(info.value) and "remote" in str(info.value)


def test_a_stack_without_backend_has_no_outputs() -> None:
    calls: list[str] = []

    def fallback(stack: Stack) -> dict[str, Any] | None:
        calls.append(stack.path)
        return {}

    reader = OutputReader(Path("/nonexistent"), fallback=fallback)
    assert reader.outputs(bare_stack()) is None
    assert calls == []


def test_strata_output_does_not_claim_no_state_for_a_backend_it_cannot_read(
        repo: tuple[Path, dict[str, Stack]], strata: Any) -> None:
    # `strata output` has no terraform fallback: for a gcs stack it cannot know whether a state exists,
    # so it must say so (an error naming the stack) rather than print "(no state)".
    root, _ = repo
    result: Result = strata("output", "remote", cwd=root)
    assert "(no state)" not in result.stdout, result.output
    assert result.code != 0
    assert "remote" in result.stderr


def test_strata_output_reads_local_states(repo: tuple[Path, dict[str, Stack]], strata: Any) -> None:
    root, _ = repo
    (root / "custom" / "state").mkdir()
    (root / "custom" / "state" / "custom.tfstate").write_bytes(state(OUTPUTS))
    result: Result = strata("output", "custom", "dev", "--json", cwd=root)
    assert result.code == 0, result.output
    assert json.loads(result.stdout)["stacks"] == {"custom": OUTPUTS, "dev/us-east-1/01-network": None}
    text = strata("output", "custom", cwd=root)
    assert "custom: password = (sensitive)" in text.stdout
    assert 'custom: vpc_id = "vpc-123"' in text.stdout


# -- states written by real terraform ----------------------------------------------------------------

STACK_TF = """
variable "name" {
  type    = string
  default = "net"
}

resource "null_resource" "this" {}

output "name" {
  value = var.name
}

output "numbers" {
  value = [1, 2, 3]
}

output "secret" {
  value     = "s3cr3t"
  sensitive = true
}

output "object" {
  value = { a = "x", b = 2 }
}
"""


@pytest.mark.terraform
def test_outputs_of_a_state_written_by_real_terraform(strata: Any, terraform_binary: str,
                                                      provider_mirror: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n", "dev/01-network/strata.hcl": "stack {}\n",
                                          "dev/01-network/main.tf": STACK_TF})
    env = {**provider_mirror, "HOME": str(home), "STRATA_TERRAFORM": terraform_binary}
    result: Result = strata("apply", "--yes", "-q", cwd=root, env=env)
    assert result.code == 0, result.output
    stack = Workspace(cwd=root).repository().stacks["dev/01-network"]
    outputs = OutputReader(root).outputs(stack)
    tf_env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "STRATA_"))}
    tf_env.update(provider_mirror, HOME=str(home))
    proc = subprocess.run([terraform_binary, "output", "-json"], cwd=root / "dev" / "01-network", env=tf_env,
                          capture_output=True, text=True, timeout=120, check=True)
    expected = json.loads(proc.stdout)
    assert outputs is not None and set(outputs) == set(expected) == {"name", "numbers", "secret", "object"}
    for name, entry in expected.items():
        assert outputs[name]["value"] == entry["value"], name
        assert outputs[name]["type"] == entry["type"], name
        assert bool(outputs[name].get("sensitive", False)) == entry["sensitive"], name
    assert outputs["secret"]["sensitive"] is True
