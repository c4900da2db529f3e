"""Issue 4 acceptance, end to end on real backends: the example on S3 (moto server) and PostgreSQL.

Everything runs through the strata CLI in subprocesses, with real terraform (1.11.4 and 1.0.3), moto in
server mode for S3/DynamoDB/KMS/STS and a real PostgreSQL server, all on 127.0.0.1:

- ``strata bootstrap`` creates each environment/region's backend, a second run changes nothing;
- the example applies, plans clean, reads dependency outputs straight from S3 objects / pg rows, destroys;
- ``strata apply --bootstrap`` does backend and infrastructure in one command;
- restore, backup/verify and replicate on S3; faults give clear messages naming the stack and backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import EXAMPLE, Result, snapshot, write_tree

if TYPE_CHECKING:
    from servers import MotoServer, PostgresServer

pytest_plugins = ["servers"]
pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]

PRODUCTION_US = ("production/us-east-1/01-foundation", "production/us-east-1/02-platform",
                 "production/us-east-1/03-databases", "production/us-east-1/04-applications",
                 "production/us-east-1/clients/ezra", "production/us-east-1/clients/mtn-ghana")


def unique(prefix: str) -> str:
    from servers import unique_name

    return unique_name(prefix)


def copy_example(tmp_path: Path, backend_block: str) -> Path:
    repo = tmp_path / "layered"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".strata", ".terraform", "strata_backend.tf",
                                                                 "strata_inputs.auto.tfvars"))
    root = repo / "strata.hcl"
    text = root.read_text()
    assert 'backend "local" {}' in text
    root.write_text(text.replace('backend "local" {}', backend_block))
    return repo


def s3_block(moto: MotoServer, prefix: str, lock: str = "dynamodb") -> str:
    ep = moto.endpoint
    locking = {
        "dynamodb": f'dynamodb_table = "{prefix}-locks-${{strata.environment}}-${{strata.region}}"',
        "lockfile": "use_lockfile = true",
    }[lock]
    return f"""backend "s3" {{
  bucket     = "{prefix}-${{strata.environment}}-${{strata.region}}"
  region     = strata.region
  encrypt    = true
  kms_key_id = "alias/{prefix}-${{strata.environment}}-${{strata.region}}"
  {locking}
  endpoints = {{ s3 = "{ep}", dynamodb = "{ep}", sts = "{ep}", iam = "{ep}" }}
  use_path_style              = true
  skip_credentials_validation = true
  skip_region_validation      = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
}}"""


def aws_env(provider_mirror: dict[str, str], binary: str, moto: MotoServer) -> dict[str, str]:
    return {**provider_mirror, "STRATA_TERRAFORM": binary, "AWS_ACCESS_KEY_ID": moto.access_key,
            "AWS_SECRET_ACCESS_KEY": moto.secret_key, "AWS_ENDPOINT_URL_KMS": moto.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true", "STRATA_NO_LIVE": "1"}


def ok(result: Result) -> Result:
    assert result.code == 0, result.output
    return result


def json_of(result: Result) -> Any:
    assert result.code == 0, result.output
    return json.loads(result.stdout)


def changes_by_action(report: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in report["changes"]:
        counts[change["action"]] = counts.get(change["action"], 0) + 1
    return counts


# -- the example on S3 -----------------------------------------------------------------------------------


def test_example_on_s3_after_bootstrap_applies_plans_clean_and_destroys(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], moto_server: MotoServer,
        tmp_path: Path) -> None:
    prefix = unique("acme")
    repo = copy_example(tmp_path, s3_block(moto_server, prefix))
    env = aws_env(provider_mirror, tf_111, moto_server)

    dry = json_of(strata("bootstrap", "--dry-run", "--json", cwd=repo, env=env))
    assert set(changes_by_action(dry)) == {"would create", "skipped"}  # skipped: the TLS policy on plain HTTP
    assert moto_server.client("s3").list_buckets()["Buckets"] == [] or not any(
        b["Name"].startswith(prefix) for b in moto_server.client("s3").list_buckets()["Buckets"])

    first = json_of(strata("bootstrap", "--json", cwd=repo, env=env))
    buckets = {c["name"] for c in first["changes"] if c["resource"] == "s3 bucket"}
    assert buckets == {f"{prefix}-{e}-{r}" for e in ("staging", "production") for r in ("us-east-1", "eu-central-1")}
    assert "unchanged" not in changes_by_action(first)
    again = json_of(strata("bootstrap", "--json", cwd=repo, env=env))
    assert set(changes_by_action(again)) == {"unchanged", "skipped"}, again

    ok(strata("apply", "--yes", "-q", cwd=repo, env=env, timeout=900))
    ok(strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env, timeout=900))
    s3 = moto_server.client("s3")
    for stack in PRODUCTION_US:
        key = f"{stack.replace('production/us-east-1/', 'production/us-east-1/')}/terraform.tfstate"
        body = s3.get_object(Bucket=f"{prefix}-production-us-east-1", Key=key)["Body"].read()
        assert json.loads(body)["resources"], stack
    # dependency outputs straight from the S3 objects: the applications layer got the real database id
    outputs = json_of(strata("output", "production/us-east-1/03-databases", "--json", cwd=repo, env=env))["stacks"]
    assert outputs["production/us-east-1/03-databases"]

    listing = json_of(strata("state", "ls", "--json", cwd=repo, env=env))["stacks"]
    assert len(listing) == 24 and all(r["serial"] >= 1 and r["resources"] >= 1 for r in listing), listing
    assert all(r["lock"] is None for r in listing)

    ok(strata("destroy", "--yes", "-q", cwd=repo, env=env, timeout=900))
    after = json_of(strata("state", "ls", "--json", cwd=repo, env=env))["stacks"]
    assert all(r["resources"] == 0 for r in after), after


def test_apply_bootstrap_creates_the_backend_then_applies(
        strata: Strata, tf_103: str, provider_mirror: dict[str, str], moto_server: MotoServer,
        tmp_path: Path) -> None:
    prefix = unique("seed000")
    repo = copy_example(tmp_path, s3_block(moto_server, prefix))
    env = aws_env(provider_mirror, tf_103, moto_server)
    result = ok(strata("apply", "--bootstrap", "--yes", "-q", "production/us-east-1", cwd=repo, env=env,
                       timeout=900))
    assert "backends ready" in result.stderr
    table = moto_server.table_items(f"{prefix}-locks-production-us-east-1")
    for stack in PRODUCTION_US:  # Terraform 1.0.3 checks these digests on every read
        key = f"{prefix}-production-us-east-1/{stack}/terraform.tfstate"
        body = moto_server.get_object(f"{prefix}-production-us-east-1", f"{stack}/terraform.tfstate")
        assert table[f"{key}-md5"]["Digest"] == hashlib.md5(body).hexdigest()
    ok(strata("plan", "--detailed-exitcode", "-q", "production/us-east-1", cwd=repo, env=env, timeout=900))


# -- the example on PostgreSQL -------------------------------------------------------------------------------


def pg_block(url: str) -> str:
    return f'backend "pg" {{\n  conn_str = "{url}"\n}}'


def test_example_on_postgres_after_bootstrap(strata: Strata, terraform_binary: str, provider_mirror: dict[str, str],
                                              postgres_server: PostgresServer, tmp_path: Path) -> None:
    database = unique("state").replace("-", "_")  # bootstrap creates the database itself
    repo = copy_example(tmp_path, pg_block(postgres_server.url(database)))
    # the example keeps production out of production_environments, so sslmode=disable is fine here
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary, "STRATA_NO_LIVE": "1"}
    selection = ("staging/us-east-1",)
    first = json_of(strata("bootstrap", "--json", *selection, cwd=repo, env=env))
    assert "created" in changes_by_action(first)
    assert set(changes_by_action(json_of(strata("bootstrap", "--json", *selection, cwd=repo, env=env)))) == {
        "unchanged"}
    ok(strata("apply", "--yes", "-q", *selection, cwd=repo, env=env, timeout=900))
    ok(strata("plan", "--detailed-exitcode", "-q", *selection, cwd=repo, env=env, timeout=900))
    rows = postgres_server.query(database, "SELECT count(*) FROM staging_us_east_1_04_applications.states")
    assert rows == [["1"]]
    listing = json_of(strata("state", "ls", "--json", *selection, cwd=repo, env=env))["stacks"]
    assert len(listing) == 6 and all(r["resources"] >= 1 for r in listing), listing
    versions = json_of(strata("state", "versions", "staging/us-east-1/01-foundation", "--json", cwd=repo,
                              env=env))["versions"]
    assert versions and versions[0]["current"]
    ok(strata("destroy", "--yes", "-q", *selection, cwd=repo, env=env, timeout=900))
    after = json_of(strata("state", "ls", "--json", *selection, cwd=repo, env=env))["stacks"]
    assert all(r["resources"] == 0 for r in after), after


# -- versions, restore, backup, replicate on S3 --------------------------------------------------------------

SMALL = {
    "strata.hcl": "strata {\n  production_environments = []\n}\n{backend}\n",
    "production/us-east-1/app/strata.hcl": "stack {}\n",
    "production/us-east-1/app/main.tf": 'resource "null_resource" "a" {}\n',
}


def small_repo(tmp_path: Path, backend: str) -> Path:
    files = dict(SMALL)
    files["strata.hcl"] = files["strata.hcl"].replace("{backend}", backend)
    return write_tree(tmp_path / "small", files)


def test_restore_backup_verify_and_replicate_on_s3(strata: Strata, tf_111: str, provider_mirror: dict[str, str],
                                                    moto_server: MotoServer, tmp_path: Path) -> None:
    prefix = unique("dr")
    repo = small_repo(tmp_path, s3_block(moto_server, prefix))
    env = aws_env(provider_mirror, tf_111, moto_server)
    stack = "production/us-east-1/app"
    ok(strata("apply", "--bootstrap", "--yes", "-q", cwd=repo, env=env))
    (repo / stack / "main.tf").write_text('resource "null_resource" "a" {}\nresource "null_resource" "b" {}\n')
    ok(strata("apply", "--yes", "-q", cwd=repo, env=env))
    versions = json_of(strata("state", "versions", stack, "--json", cwd=repo, env=env))["versions"]
    assert [v["kind"] for v in versions] == ["s3-version"] * len(versions) and len(versions) >= 2
    assert versions[0]["current"] and versions[0]["resources"] == 2
    oldest_with_a = next(v for v in reversed(versions) if v["resources"] == 1)
    current_serial = versions[0]["serial"]

    restored = json_of(strata("state", "restore", stack, "--version", oldest_with_a["id"], "--yes", "--json",
                              cwd=repo, env=env))
    assert restored["serial"] == current_serial + 1 and restored["lineage"] == versions[0]["lineage"]
    plan = strata("plan", "--detailed-exitcode", cwd=repo, env=env)
    assert plan.code == 2, plan.output
    assert "null_resource.b will be created" in plan.stdout and "1 to add, 0 to change, 0 to destroy" in plan.stdout

    backup_dir = tmp_path / "backup"
    ok(strata("state", "backup", "--to", str(backup_dir), cwd=repo, env=env))
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert [e["stack"] for e in manifest["stacks"]] == [stack]
    assert manifest["stacks"][0]["version"] == json_of(strata("state", "versions", stack, "--json", cwd=repo,
                                                              env=env))["versions"][0]["id"]
    ok(strata("state", "verify", "--from", str(backup_dir), cwd=repo, env=env))
    ok(strata("state", "backup", "--to", f"s3://{prefix}-production-us-east-1/backups/1", cwd=repo, env=env))
    ok(strata("state", "verify", "--from", f"s3://{prefix}-production-us-east-1/backups/1", cwd=repo, env=env))
    with (backup_dir / stack / "terraform.tfstate").open("ab") as handle:
        handle.write(b" ")
    bad = strata("state", "verify", "--from", str(backup_dir), cwd=repo, env=env)
    assert bad.code == 1 and "checksum mismatch" in bad.stdout and stack in bad.stdout

    replicated = json_of(strata("state", "replicate", "--to-region", "us-west-2", "--json", cwd=repo, env=env))
    assert [r["status"] for r in replicated["stacks"]] == ["copied"]
    source = moto_server.get_object(f"{prefix}-production-us-east-1", f"{stack}/terraform.tfstate")
    copy = moto_server.get_object(f"{prefix}-production-us-west-2", f"{stack}/terraform.tfstate")
    assert hashlib.sha256(copy).hexdigest() == hashlib.sha256(source).hexdigest() == replicated["stacks"][0]["sha256"]
    again = json_of(strata("state", "replicate", "--to-region", "us-west-2", "--json", cwd=repo, env=env))
    assert [r["status"] for r in again["stacks"]] == ["unchanged"]
    config = json.loads(ok(strata("state", "replicate", "--to-region", "us-west-2", "--emit-replication-config",
                                  cwd=repo, env=env)).stdout)
    rules = config[f"{prefix}-production-us-east-1"]["Rules"]
    assert rules[0]["Destination"]["Bucket"] == f"arn:aws:s3:::{prefix}-production-us-west-2"


# -- faults -----------------------------------------------------------------------------------------------------


def test_faults_name_the_stack_and_the_backend_and_write_nothing(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], moto_server: MotoServer,
        tmp_path: Path) -> None:
    from servers import free_port

    prefix = unique("fault")
    env = aws_env(provider_mirror, tf_111, moto_server)
    stack = "production/us-east-1/app"

    # a bucket nobody created
    repo = small_repo(tmp_path / "missing", s3_block(moto_server, prefix))
    before = snapshot(repo)
    for args in (("state", "ls"), ("output",), ("state", "pull", stack)):
        result = strata(*args, cwd=repo, env=env)
        assert result.code == 1, (args, result.output)
        assert stack in result.stderr and "s3" in result.stderr and "does not exist" in result.stderr, result.stderr
    assert snapshot(repo) == before

    # nothing answers at the endpoint
    dead = s3_block(moto_server, prefix).replace(moto_server.endpoint, f"http://127.0.0.1:{free_port()}")
    repo = small_repo(tmp_path / "dead", dead)
    result = strata("state", "ls", cwd=repo, env=env, timeout=120)
    assert result.code == 1 and stack in result.stderr and "cannot reach" in result.stderr, result.stderr
    result = strata("bootstrap", cwd=repo, env=env, timeout=120)
    assert result.code == 1 and "cannot reach" in result.stderr, result.stderr

    # a state object that is not JSON
    repo = small_repo(tmp_path / "garbage", s3_block(moto_server, prefix))
    ok(strata("bootstrap", cwd=repo, env=env))
    moto_server.client("s3").put_object(Bucket=f"{prefix}-production-us-east-1", Key=f"{stack}/terraform.tfstate",
                                        Body=b"<html>not a state</html>")
    before = snapshot(repo)
    for args in (("state", "ls"), ("output",), ("state", "pull", stack), ("state", "verify")):
        result = strata(*args, cwd=repo, env=env)
        assert result.code == 1, (args, result.output)
        text = result.stderr + result.stdout
        assert stack in text and "not JSON" in text and "s3" in text, (args, text)
    assert snapshot(repo) == before


# -- locks: two applies at once, a kill -9 ---------------------------------------------------------------------

# Replaced on every apply (a new uuid(): timestamp() repeats within a second, and the null provider's ids repeat
# across processes, so two applies could write the same state and terraform would not persist the second);
# with STRATA_TEST_GATE set, its provisioner then holds terraform (and the lock)
# until that file exists: the test creates it when it is done with the held lock.
SLOW = """\
resource "null_resource" "slow" {
  triggers = { run = uuid() }
  provisioner "local-exec" {
    command = "[ -z \\"$STRATA_TEST_GATE\\" ] || while [ ! -f \\"$STRATA_TEST_GATE\\" ]; do sleep 0.1; done"
  }
}
"""


def slow_repo(tmp_path: Path, backend: str) -> Path:
    return write_tree(tmp_path / "slow", {
        "strata.hcl": "strata {\n  production_environments = []\n}\n" + backend + "\n",
        "production/us-east-1/app/strata.hcl": "stack {}\n",
        "production/us-east-1/app/main.tf": SLOW,
    })


def start(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    full = {**os.environ, "NO_COLOR": "1", **env}
    return subprocess.Popen([sys.executable, "-m", "strata", *args], cwd=cwd, env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_lock(strata: Strata, repo: Path, env: dict[str, str], timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = json_of(strata("locks", "--json", cwd=repo, env=env))["locks"]
        if held:
            return dict(held[0])
        time.sleep(0.3)
    raise AssertionError("no lock appeared")


def terraform_below(pid: int) -> bool:
    """Whether the process ``pid`` has a terraform process among its descendants."""
    parents: dict[int, int] = {}
    names: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                names[int(entry.name)] = os.path.basename((entry / "cmdline").read_bytes().split(b"\0")[0])
            except (OSError, ValueError, IndexError):
                continue
    for child, name in names.items():
        ancestor = parents.get(child)
        while ancestor and ancestor != pid:
            ancestor = parents.get(ancestor)
        if ancestor == pid and name == b"terraform":
            return True
    return False


def processes_in(folder: Path, name: bytes | None = None) -> list[int]:
    """Processes working in ``folder`` (named ``name``): terraform (1.0.3 runs as two, a panic monitor and
    its child), its provider plugins, the provisioner's sleep."""
    target = os.path.realpath(folder)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = os.path.basename((entry / "cmdline").read_bytes().split(b"\0")[0])
                if os.readlink(entry / "cwd") == target and (name is None or command == name):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


BACKENDS = ["s3-dynamodb-1.0.3", "s3-dynamodb-1.11", "s3-lockfile-1.11", "pg-1.11"]


@pytest.fixture(params=BACKENDS)
def lock_setup(request: pytest.FixtureRequest, tmp_path: Path, provider_mirror: dict[str, str],
               tf_111: str, tf_103: str) -> tuple[Path, dict[str, str], str]:
    kind = str(request.param)
    binary = tf_103 if kind.endswith("1.0.3") else tf_111
    if kind.startswith("s3"):
        moto: MotoServer = request.getfixturevalue("moto_server")
        backend = s3_block(moto, unique("lock"), "lockfile" if "lockfile" in kind else "dynamodb")
        env = aws_env(provider_mirror, binary, moto)
    else:
        pg: PostgresServer = request.getfixturevalue("postgres_server")
        backend = pg_block(pg.url(pg.create_database()))
        env = {**provider_mirror, "STRATA_TERRAFORM": binary, "STRATA_NO_LIVE": "1"}
    repo = slow_repo(tmp_path, backend)
    ok(strata_cli("bootstrap", cwd=repo, env=env))
    return repo, env, kind


def strata_cli(*args: str, cwd: Path, env: dict[str, str]) -> Result:
    full = {**os.environ, "NO_COLOR": "1", **env}
    proc = subprocess.run([sys.executable, "-m", "strata", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_two_applies_on_one_stack_one_waits_or_fails_naming_the_holder(
        strata: Strata, lock_setup: tuple[Path, dict[str, str], str]) -> None:
    repo, env, kind = lock_setup
    stack = "production/us-east-1/app"
    ok(strata("apply", "--yes", "-q", cwd=repo, env=env))
    serial_before = json_of(strata("state", "ls", "--json", cwd=repo, env=env))["stacks"][0]["serial"]

    gate = repo.parent / "gate"
    first = start(["apply", "--yes", "-q", stack], repo, {**env, "STRATA_TEST_GATE": str(gate)})
    third = None
    try:
        lock = wait_for_lock(strata, repo, env)
        assert lock["stack"] == stack and lock["lock"]["who"], lock
        second = strata("apply", "--yes", "-q", stack, cwd=repo, env=env)
        assert second.code == 1, second.output
        assert "locked by" in second.stdout and lock["lock"]["who"] in second.stdout, second.stdout
        refused = strata("unlock", stack, "--yes", cwd=repo, env=env)
        if not kind.startswith("pg"):  # pg: the holder's session is terminated only when it is not local and alive
            assert refused.code == 1 and "refusing" in refused.stderr, refused.output
        else:
            assert refused.code == 1, refused.output
        assert first.poll() is None, "the first apply holds the lock until the gate opens"
        # the third waits for the lock: it runs terraform while the first still holds it, then the gate opens
        third = start(["apply", "--yes", "-q", "--lock-timeout", "300s", stack], repo, env)
        deadline = time.monotonic() + 120
        while not terraform_below(third.pid) and third.poll() is None:
            assert time.monotonic() < deadline, "the third apply did not start terraform"
            time.sleep(0.1)
        assert third.poll() is None, third.communicate()[0]
    finally:
        gate.touch()
        out, _ = first.communicate(timeout=300)
        third_out = third.communicate(timeout=300)[0] if third is not None else ""
    assert first.returncode == 0, out
    after = json_of(strata("state", "ls", "--json", cwd=repo, env=env))["stacks"][0]
    assert third is not None and third.returncode == 0, third_out
    assert after["serial"] >= serial_before + 2 and after["lock"] is None, after  # both applies landed
    ok(strata("state", "verify", cwd=repo, env=env))  # serials never went down across versions


def test_an_apply_with_lock_timeout_tries_again_when_terraform_gives_up_on_the_lock_early(
        strata: Strata, moto_server: MotoServer, provider_mirror: dict[str, str], tf_111: str, tmp_path: Path) -> None:
    """Terraform 1.11 reads S3's lock file after the conditional write that found it; a holder releasing in
    between leaves it without lock info, and it fails at once whatever -lock-timeout says (seen in this
    suite). An unreadable lock file makes terraform give up the same way, deterministically."""
    prefix = unique("early")
    repo = slow_repo(tmp_path, s3_block(moto_server, prefix, "lockfile"))
    env = aws_env(provider_mirror, tf_111, moto_server)
    stack = "production/us-east-1/app"
    ok(strata_cli("bootstrap", cwd=repo, env=env))
    ok(strata("apply", "--yes", "-q", cwd=repo, env=env))
    s3 = moto_server.client("s3")
    lock = {"Bucket": f"{prefix}-production-us-east-1", "Key": f"{stack}/terraform.tfstate.tflock"}
    s3.put_object(**lock, Body=b"not a lock record")

    at_once = strata("apply", "--yes", "-q", stack, cwd=repo, env=env)  # no --lock-timeout: no second try
    assert at_once.code == 1 and "locked" in at_once.stdout, at_once.output
    logs = repo / ".strata" / "logs"
    assert not any("trying again" in f.read_text() for f in logs.rglob("terraform.log")), "retried without a timeout"

    waiting = start(["apply", "--yes", "-q", "--lock-timeout", "120s", stack], repo, env)
    try:
        deadline = time.monotonic() + 120
        while not any("gave up on the lock" in f.read_text() for f in logs.rglob("terraform.log")):
            assert waiting.poll() is None, waiting.communicate()[0]
            assert time.monotonic() < deadline, "strata did not try again"
            time.sleep(0.1)
        s3.delete_object(**lock)  # the holder is gone: the next attempt takes the lock
    finally:
        out, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, out
    assert json_of(strata("locks", "--json", cwd=repo, env=env))["locks"] == []


def test_a_lock_left_by_a_killed_apply_is_listed_and_removable(
        strata: Strata, lock_setup: tuple[Path, dict[str, str], str]) -> None:
    repo, env, kind = lock_setup
    stack = "production/us-east-1/app"
    ok(strata("apply", "--yes", "-q", cwd=repo, env=env))
    # the gate never opens: terraform holds the lock until it is killed
    running = start(["apply", "--yes", "-q", stack], repo, {**env, "STRATA_TEST_GATE": str(repo.parent / "gate")})
    try:
        wait_for_lock(strata, repo, env)
        killed = processes_in(repo / stack, b"terraform")
        assert killed, "no terraform process in the stack"
        for pid in killed:
            os.kill(pid, signal.SIGKILL)
    finally:
        running.communicate(timeout=120)
        for pid in processes_in(repo / stack):  # the orphaned provider plugin and provisioner
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert running.returncode == 1
    held = json_of(strata("locks", "--json", cwd=repo, env=env))["locks"]
    if kind.startswith("pg"):  # a pg advisory lock ends with the session that held it
        assert held == []
    else:
        assert [h["stack"] for h in held] == [stack] and held[0]["lock"]["operation"] == "OperationTypeApply"
        removed = strata("unlock", stack, "--yes", cwd=repo, env=env)
        assert removed.code == 0 and "lock removed" in removed.stdout, removed.output
        assert json_of(strata("locks", "--json", cwd=repo, env=env))["locks"] == []
    ok(strata("apply", "--yes", "-q", cwd=repo, env=env))
