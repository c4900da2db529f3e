"""The s3 state store (strata.backends.s3.S3Store) against a real moto server and real Terraform.

Unit behaviour of every store method on moto (S3 + DynamoDB wire protocols), the error mapping (missing
bucket or table, a refused endpoint, and access denied / bad credentials on a second moto server that
enforces IAM), and interoperability with Terraform 1.0.3 and 1.11: the same state object, the same
DynamoDB lock and ``-md5`` digest items, the same ``.tflock`` lock file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import Result
from strata.backends.base import BackendError, LockInfo, StateLocked, StateVersion
from strata.backends.s3 import BACKEND, S3Store

if TYPE_CHECKING:  # imported for real by pytest_plugins, which also rewrites its asserts
    from servers import MotoServer

pytest_plugins = ["servers"]

KEY = "dev/us-east-1/01-network/terraform.tfstate"
TF_TIMEOUT = 120.0
STATE = b'{\n  "version": 4,\n  "serial": 1,\n  "lineage": "5b3c8f0e-1111-4222-8333-444455556666"\n}\n'


def values_for(moto: MotoServer, bucket: str, key: str = KEY, **extra: Any) -> dict[str, Any]:
    """s3 backend settings pointing at ``moto`` (the settings a stack's strata.hcl would give)."""
    return {"bucket": bucket, "key": key, "region": moto.region,
            "endpoints": {"s3": moto.endpoint, "dynamodb": moto.endpoint}, "use_path_style": True,
            "access_key": moto.access_key, "secret_key": moto.secret_key, **extra}


def open_store(values: dict[str, Any], tmp_path: Path) -> S3Store:
    store = BACKEND.store(values, tmp_path, tmp_path)
    assert isinstance(store, S3Store)
    return store


def versioned_bucket(moto: MotoServer) -> str:
    bucket = moto.create_bucket()
    moto.client("s3").put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def foreign_lock(who: str = "someone@elsewhere", lock_id: str = "11111111-2222-4333-8444-555555555555",
                 path: str = "") -> dict[str, str]:
    """A lock record as Terraform writes it (Go field names), held by someone else."""
    return {"ID": lock_id, "Operation": "OperationTypeApply", "Info": "", "Who": who, "Version": "1.11.4",
            "Created": "2025-01-01T10:00:00.123456789Z", "Path": path}


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def capture_headers(store: S3Store, operation: str) -> list[dict[str, str]]:
    """The HTTP headers of every ``operation`` request the store's real S3 client sends from now on."""
    seen: list[dict[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        seen.append({k.lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()})

    store.s3.meta.events.register(f"before-send.s3.{operation}", record)
    return seen


# -- state: read, stat, write ------------------------------------------------------------------------------


def test_empty_bucket_has_no_state(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    store = open_store(values_for(moto_server, bucket, dynamodb_table=table, use_lockfile=True), tmp_path)
    assert (store.backend, store.where) == ("s3", f"s3://{bucket}/{KEY}")
    assert store.read() is None
    assert store.stat() is None
    assert store.versions() == []
    assert store.current_lock() is None
    assert moto_server.object_keys(bucket) == []  # looking writes nothing
    assert moto_server.table_items(table) == {}


def test_write_then_read_round_trips_bytes(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    with open_store(values_for(moto_server, bucket), tmp_path) as store:
        store.write(STATE)
        assert store.read() == STATE
        assert moto_server.get_object(bucket, KEY) == STATE
        head = moto_server.client("s3").head_object(Bucket=bucket, Key=KEY)
        assert head["ContentType"] == "application/json"
        assert "ServerSideEncryption" not in head  # encrypt is not set: like Terraform, no SSE header
        stat = store.stat()
        assert stat is not None and stat.size == len(STATE)
        assert stat.modified is not None and stat.modified.utcoffset() is not None
        assert abs(stat.modified.timestamp() - head["LastModified"].timestamp()) < 1
        # not JSON at all: at this level a state is just bytes
        store.write(b"\x00\xffnot json")
        assert store.read() == b"\x00\xffnot json"


def test_empty_object_is_no_state(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    moto_server.client("s3").put_object(Bucket=bucket, Key=KEY, Body=b"")
    store = open_store(values_for(moto_server, bucket), tmp_path)
    assert store.read() is None
    assert store.stat() is None


def test_other_keys_are_not_the_state(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    moto_server.client("s3").put_object(Bucket=bucket, Key=KEY + ".backup", Body=b"other")
    store = open_store(values_for(moto_server, bucket), tmp_path)
    assert store.read() is None
    store.write(STATE)
    assert store.read() == STATE
    assert moto_server.get_object(bucket, KEY + ".backup") == b"other"


def test_write_updates_the_terraform_digest_item(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    store = open_store(values_for(moto_server, bucket, dynamodb_table=table), tmp_path)
    store.write(STATE)
    assert moto_server.table_items(table) == {
        f"{bucket}/{KEY}-md5": {"LockID": f"{bucket}/{KEY}-md5", "Digest": hashlib.md5(STATE).hexdigest()}}
    second = STATE.replace(b'"serial": 1', b'"serial": 2')
    store.write(second)
    items = moto_server.table_items(table)
    assert items[f"{bucket}/{KEY}-md5"]["Digest"] == hashlib.md5(second).hexdigest()
    assert len(items) == 1  # no lock item appears from a write


def test_encrypt_uses_aes256_or_the_kms_key(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    s3 = moto_server.client("s3")
    open_store(values_for(moto_server, bucket, key="aes/terraform.tfstate", encrypt=True), tmp_path).write(STATE)
    assert s3.head_object(Bucket=bucket, Key="aes/terraform.tfstate")["ServerSideEncryption"] == "AES256"

    kms_key = moto_server.client("kms").create_key()["KeyMetadata"]["Arn"]
    store = open_store(values_for(moto_server, bucket, key="kms/terraform.tfstate", encrypt=True,
                                  kms_key_id=kms_key), tmp_path)
    store.write(STATE)
    head = s3.head_object(Bucket=bucket, Key="kms/terraform.tfstate")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms_key)
    assert store.read() == STATE

    # kms_key_id counts only with encrypt = true (Terraform ignores it otherwise)
    open_store(values_for(moto_server, bucket, key="plain/terraform.tfstate", kms_key_id=kms_key),
               tmp_path).write(STATE)
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain/terraform.tfstate")


def test_acl_is_applied(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    open_store(values_for(moto_server, bucket, acl="public-read"), tmp_path).write(STATE)
    grants = moto_server.client("s3").get_object_acl(Bucket=bucket, Key=KEY)["Grants"]
    assert ("READ", "http://acs.amazonaws.com/groups/global/AllUsers") in [
        (g["Permission"], g["Grantee"].get("URI")) for g in grants]


def test_sse_customer_key_is_sent_on_every_object_request(moto_server: MotoServer, tmp_path: Path) -> None:
    # moto accepts SSE-C but does not enforce it, so the requests strata sends are inspected instead.
    key = bytes(range(32))
    expected = {"x-amz-server-side-encryption-customer-algorithm": "AES256",
                "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
                "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(hashlib.md5(key).digest()).decode()}
    bucket = versioned_bucket(moto_server)
    store = open_store(values_for(moto_server, bucket, encrypt=True, use_lockfile=True,
                                  sse_customer_key=base64.b64encode(key).decode()), tmp_path)
    sent = {op: capture_headers(store, op) for op in ("PutObject", "GetObject", "HeadObject")}
    info = LockInfo.new("test")
    store.lock(info)
    store.write(STATE)
    assert store.read() == STATE
    assert store.stat() is not None
    assert store.read_version(store.versions()[0].id) == STATE
    store.unlock(info)
    assert len(sent["PutObject"]) == 2 and len(sent["GetObject"]) == 3 and len(sent["HeadObject"]) == 1
    for headers in [*sent["PutObject"], *sent["GetObject"], *sent["HeadObject"]]:
        assert {k: headers.get(k) for k in expected} == expected
        assert "x-amz-server-side-encryption" not in headers

    # without encrypt = true Terraform ignores sse_customer_key: so does strata (or Terraform could not read it)
    plain = open_store(values_for(moto_server, bucket, key="plain.tfstate",
                                  sse_customer_key=base64.b64encode(key).decode()), tmp_path)
    puts = capture_headers(plain, "PutObject")
    plain.write(STATE)
    assert not any(k.startswith("x-amz-server-side-encryption") for k in puts[0])

    bad = open_store(values_for(moto_server, bucket, encrypt=True, sse_customer_key="c2hvcnQ="), tmp_path)
    with pytest.raises(BackendError, match=r"sse_customer_key .*base64-encoded 256-bit key"):
        bad.write(STATE)


def test_s3_checksum_header_follows_skip_s3_checksum(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    store = open_store(values_for(moto_server, bucket), tmp_path)
    puts = capture_headers(store, "PutObject")
    store.write(STATE)
    assert puts[0].get("x-amz-sdk-checksum-algorithm") == "SHA256"  # as Terraform >= 1.6 sends
    skipping = open_store(values_for(moto_server, bucket, skip_s3_checksum=True), tmp_path)
    puts = capture_headers(skipping, "PutObject")
    skipping.write(STATE)
    assert not any(k.startswith("x-amz-checksum") or k == "x-amz-sdk-checksum-algorithm" for k in puts[0]), puts[0]
    assert skipping.read() == STATE


# -- locks: DynamoDB item, S3 lock file, both, neither -----------------------------------------------------


def test_dynamodb_lock_is_terraforms_item(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    store = open_store(values_for(moto_server, bucket, dynamodb_table=table), tmp_path)
    info = LockInfo.new("state-push")
    store.lock(info)
    item = moto_server.table_items(table)[f"{bucket}/{KEY}"]
    record = json.loads(item["Info"])
    assert record == {"ID": info.id, "Operation": "state-push", "Info": info.info, "Who": info.who,
                      "Version": info.version, "Created": info.created, "Path": f"{bucket}/{KEY}"}
    assert moto_server.object_keys(bucket) == []  # no lock file without use_lockfile

    holder = store.current_lock()
    assert holder is not None
    assert (holder.id, holder.who, holder.operation, holder.path) == (info.id, info.who, "state-push",
                                                                      f"{bucket}/{KEY}")
    assert holder.holder["lock"] == "dynamodb"

    other = open_store(values_for(moto_server, bucket, dynamodb_table=table), tmp_path)
    with pytest.raises(StateLocked) as caught:
        other.lock(LockInfo.new("apply"))
    assert caught.value.holder is not None and caught.value.holder.id == info.id
    assert info.who in str(caught.value) and f"s3://{bucket}/{KEY}" in str(caught.value)

    with pytest.raises(BackendError, match="left in place"):
        other.unlock(LockInfo.new("apply"))  # not its lock
    assert f"{bucket}/{KEY}" in moto_server.table_items(table)

    store.unlock(info)
    assert moto_server.table_items(table) == {}
    assert store.current_lock() is None
    store.unlock(info)  # releasing a lock that is gone is harmless
    other.lock(LockInfo.new("apply"))  # free again


def test_lock_file_is_terraforms_tflock(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    store = open_store(values_for(moto_server, bucket, use_lockfile=True, encrypt=True), tmp_path)
    info = LockInfo.new("apply")
    store.lock(info)
    assert moto_server.object_keys(bucket) == [f"{KEY}.tflock"]
    record = json.loads(moto_server.get_object(bucket, f"{KEY}.tflock"))
    assert record["ID"] == info.id and record["Who"] == info.who and record["Path"] == f"{bucket}/{KEY}"
    head = moto_server.client("s3").head_object(Bucket=bucket, Key=f"{KEY}.tflock")
    assert (head["ContentType"], head["ServerSideEncryption"]) == ("application/json", "AES256")

    holder = store.current_lock()
    assert holder is not None and holder.id == info.id and holder.holder["lock"] == "s3 lock file"
    with pytest.raises(StateLocked) as caught:
        open_store(values_for(moto_server, bucket, use_lockfile=True), tmp_path).lock(LockInfo.new("plan"))
    assert caught.value.holder is not None and caught.value.holder.who == info.who
    assert json.loads(moto_server.get_object(bucket, f"{KEY}.tflock"))["ID"] == info.id  # not overwritten

    store.unlock(info)
    assert moto_server.object_keys(bucket) == []
    assert store.current_lock() is None


def test_both_locks_are_taken_and_released_together(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    values = values_for(moto_server, bucket, use_lockfile=True, dynamodb_table=table)
    store = open_store(values, tmp_path)
    info = LockInfo.new("apply")
    store.lock(info)
    assert moto_server.object_keys(bucket) == [f"{KEY}.tflock"]
    assert set(moto_server.table_items(table)) == {f"{bucket}/{KEY}"}
    holder = store.current_lock()
    assert holder is not None and holder.id == info.id
    assert holder.holder["lock"] in ("s3 lock file", "dynamodb")
    assert sorted(holder.holder["locks"]) == ["dynamodb", "s3 lock file"]
    store.unlock(info)
    assert moto_server.object_keys(bucket) == [] and moto_server.table_items(table) == {}

    # someone holds only the DynamoDB lock (Terraform without use_lockfile): strata fails and leaves no lock file
    moto_server.client("dynamodb").put_item(TableName=table, Item={
        "LockID": {"S": f"{bucket}/{KEY}"}, "Info": {"S": json.dumps(foreign_lock(path=f"{bucket}/{KEY}"))}})
    with pytest.raises(StateLocked) as caught:
        store.lock(LockInfo.new("apply"))
    assert caught.value.holder is not None and caught.value.holder.who == "someone@elsewhere"
    assert caught.value.holder.holder["lock"] == "dynamodb"
    assert moto_server.object_keys(bucket) == []
    holder = store.current_lock()
    assert holder is not None and holder.who == "someone@elsewhere" and holder.holder["locks"] == ["dynamodb"]


def test_without_lock_settings_nothing_locks(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    store = open_store(values_for(moto_server, bucket), tmp_path)
    info = LockInfo.new("apply")
    store.lock(info)
    store.lock(LockInfo.new("apply"))  # Terraform takes no lock either: nothing to conflict with
    assert store.current_lock() is None
    assert moto_server.object_keys(bucket) == []
    store.unlock(info)


def test_force_unlock_removes_someone_elses_locks(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    record = json.dumps(foreign_lock(path=f"{bucket}/{KEY}"))
    moto_server.client("dynamodb").put_item(TableName=table, Item={"LockID": {"S": f"{bucket}/{KEY}"},
                                                                   "Info": {"S": record}})
    moto_server.client("s3").put_object(Bucket=bucket, Key=f"{KEY}.tflock", Body=record.encode())
    moto_server.client("dynamodb").put_item(TableName=table, Item={"LockID": {"S": f"{bucket}/{KEY}-md5"},
                                                                   "Digest": {"S": "0" * 32}})
    store = open_store(values_for(moto_server, bucket, use_lockfile=True, dynamodb_table=table), tmp_path)
    holder = store.current_lock()
    assert holder is not None
    assert (holder.id, holder.who, holder.version) == (foreign_lock()["ID"], "someone@elsewhere", "1.11.4")
    store.force_unlock(holder)
    assert store.current_lock() is None
    assert moto_server.object_keys(bucket) == []
    assert set(moto_server.table_items(table)) == {f"{bucket}/{KEY}-md5"}  # the digest item stays


def test_force_unlock_leaves_a_lock_taken_since(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    store = open_store(values_for(moto_server, bucket, dynamodb_table=table), tmp_path)
    old = store.current_lock()
    assert old is None
    newer = LockInfo.new("apply")
    open_store(values_for(moto_server, bucket, dynamodb_table=table), tmp_path).lock(newer)
    stale = LockInfo.from_json(json.dumps(foreign_lock()))
    with pytest.raises(BackendError, match="left in place"):
        store.force_unlock(stale)
    holder = store.current_lock()
    assert holder is not None and holder.id == newer.id


def test_unreadable_lock_record_still_shows_as_locked(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    moto_server.client("s3").put_object(Bucket=bucket, Key=f"{KEY}.tflock", Body=b"garbage")
    store = open_store(values_for(moto_server, bucket, use_lockfile=True), tmp_path)
    holder = store.current_lock()
    assert holder is not None and "unreadable" in holder.who
    with pytest.raises(StateLocked):
        store.lock(LockInfo.new("apply"))


# -- versions ------------------------------------------------------------------------------------------------


def test_versions_newest_first_of_this_key_only(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = versioned_bucket(moto_server)
    s3 = moto_server.client("s3")
    store = open_store(values_for(moto_server, bucket, use_lockfile=True), tmp_path)
    bodies = [STATE.replace(b'"serial": 1', b'"serial": %d' % n) + b" " * n for n in (1, 2, 3)]
    info = LockInfo.new("apply")
    store.lock(info)  # the .tflock object shares the prefix: it is not a version of the state
    store.write(bodies[0])
    s3.put_object(Bucket=bucket, Key=KEY + ".backup", Body=b"not the state")
    s3.delete_object(Bucket=bucket, Key=KEY)  # a delete marker between versions is skipped
    store.write(bodies[1])
    store.write(bodies[2])
    store.unlock(info)

    versions = store.versions()
    assert [v.size for v in versions] == [len(b) for b in reversed(bodies)]
    assert [v.current for v in versions] == [True, False, False]
    assert {v.kind for v in versions} == {"s3-version"}
    listed = s3.list_object_versions(Bucket=bucket, Prefix=KEY)
    assert [v.id for v in versions] == [v["VersionId"] for v in listed["Versions"] if v["Key"] == KEY]
    assert all(isinstance(v, StateVersion) and v.modified is not None for v in versions)
    assert [v.modified for v in versions] == sorted((v.modified for v in versions if v.modified), reverse=True)
    assert [store.read_version(v.id) for v in versions] == list(reversed(bodies))

    marker = listed["DeleteMarkers"][0]["VersionId"]
    for unknown in ("no-such-version", marker, ""):
        with pytest.raises(BackendError, match=f"no version '{unknown}' of s3://{bucket}/{KEY}"):
            store.read_version(unknown)


def test_unversioned_bucket_has_the_current_object_only(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    store = open_store(values_for(moto_server, bucket), tmp_path)
    store.write(STATE)
    store.write(STATE + b" ")
    [version] = store.versions()
    assert version.current and version.size == len(STATE) + 1
    assert store.read_version(version.id) == STATE + b" "
    store.remember(STATE, "apply")  # a no-op: S3 keeps versions itself
    assert moto_server.object_keys(bucket) == [KEY]


# -- errors in plain words -------------------------------------------------------------------------------------


def test_missing_bucket(moto_server: MotoServer, tmp_path: Path) -> None:
    table = moto_server.create_lock_table()
    bucket = "strata-no-such-bucket-" + os.urandom(4).hex()
    store = open_store(values_for(moto_server, bucket, use_lockfile=True, dynamodb_table=table), tmp_path)
    message = f"bucket {bucket} does not exist (create it with `strata bootstrap`)"
    calls: dict[str, Callable[[], object]] = {
        "read": store.read, "stat": store.stat, "write": lambda: store.write(STATE), "versions": store.versions,
        "read_version": lambda: store.read_version("v1"), "lock": lambda: store.lock(LockInfo.new("apply")),
        "current_lock": store.current_lock}
    for name, call in calls.items():
        with pytest.raises(BackendError) as caught:
            call()
        assert message in str(caught.value), name
        assert f"s3://{bucket}/{KEY}" in str(caught.value), name
    assert set(moto_server.table_items(table)) == set()  # the failed lock left no DynamoDB item behind


def test_missing_lock_table(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    store = open_store(values_for(moto_server, bucket, dynamodb_table="strata-no-such-table"), tmp_path)
    for call in (lambda: store.lock(LockInfo.new("apply")), store.current_lock, lambda: store.write(STATE)):
        with pytest.raises(BackendError, match="DynamoDB table strata-no-such-table does not exist "
                                               r"\(create it with `strata bootstrap`\)"):
            call()
    # with both locks, the lock file taken first is released when the DynamoDB lock fails
    both = open_store(values_for(moto_server, bucket, key="other.tfstate", use_lockfile=True,
                                 dynamodb_table="strata-no-such-table"), tmp_path)
    with pytest.raises(BackendError, match="does not exist"):
        both.lock(LockInfo.new("apply"))
    assert "other.tfstate.tflock" not in moto_server.object_keys(bucket)


def test_unreachable_endpoint_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Fast" is judged by the pauses botocore chose between its attempts (recorded, then slept), which do not
    # depend on how loaded the machine is; the elapsed time is only a guard against a hang.
    import botocore.endpoint

    pauses: list[float] = []
    real_sleep = time.sleep

    def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(botocore.endpoint.time, "sleep", recorded_sleep)
    port = closed_port()
    endpoint = f"http://127.0.0.1:{port}"
    values = {"bucket": "state", "key": KEY, "region": "us-east-1", "use_path_style": True,
              "endpoints": {"s3": endpoint, "dynamodb": endpoint}, "access_key": "a", "secret_key": "b",
              "dynamodb_table": "locks", "max_retries": 5}  # Terraform's default retry count
    store = open_store(values, tmp_path)  # opening connects to nothing
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        store.read()
    assert time.monotonic() - started < 60
    assert sum(pauses) < 2, pauses  # sub-second backoff for a refused connection
    assert str(caught.value).startswith(f"cannot reach the S3 endpoint {endpoint} ")
    pauses.clear()
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"cannot reach the DynamoDB endpoint {endpoint} "):
        store.current_lock()
    assert time.monotonic() - started < 60
    assert sum(pauses) < 2, pauses


def test_missing_credentials_and_profile(moto_server: MotoServer, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bucket = moto_server.create_bucket()
    values = values_for(moto_server, bucket)
    del values["access_key"], values["secret_key"]
    with pytest.raises(BackendError, match=f"no AWS credentials to read s3://{bucket}/{KEY}: set access_key"):
        open_store(values, tmp_path).read()
    with pytest.raises(BackendError, match=r"cannot read s3://.*: The config profile \(strata-nope\) could not be"):
        open_store({**values, "profile": "strata-nope"}, tmp_path).read()


def test_flat_endpoint_spelling_works_too(moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    values = {"bucket": bucket, "key": KEY, "region": moto_server.region, "endpoint": moto_server.endpoint,
              "dynamodb_endpoint": moto_server.endpoint, "force_path_style": True, "dynamodb_table": table,
              "access_key": moto_server.access_key, "secret_key": moto_server.secret_key}
    store = open_store(values, tmp_path)
    store.write(STATE)
    assert moto_server.get_object(bucket, KEY) == STATE
    assert f"{bucket}/{KEY}-md5" in moto_server.table_items(table)


# A second moto server that enforces IAM: its unknown keys are refused, and a user without permissions
# is denied. It is set up while authentication is still off, then switched on with /moto-api/reset-auth
# (the runtime form of INITIAL_NO_AUTH_ACTION_COUNT=0), so the shared server is left alone.

@dataclass(frozen=True)
class AuthMoto:
    endpoint: str
    bucket: str
    table: str
    denied: tuple[str, str]  # a real user's key pair with no permissions at all
    allowed: tuple[str, str]  # a real user's key pair allowed everything on S3 and DynamoDB


def _post(url: str, body: bytes) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/plain"})
    with opener.open(request, timeout=10) as response:
        return bytes(response.read())


@pytest.fixture(scope="module")
def auth_moto(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMoto]:
    import boto3

    import servers  # loaded by pytest_plugins already

    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
    process = None
    for _attempt in range(3):
        port = servers.free_port()
        process = servers.ServerProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                        log, signal.SIGTERM, env=env)

        def answers(url: str = f"http://127.0.0.1:{port}/moto-api/") -> bool:
            with contextlib.suppress(urllib.error.URLError, OSError):
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(url, timeout=1) as response:
                    return int(response.status) == 200
            return False

        if servers.wait_until(answers, process.proc, "moto server (IAM enforced)", log):
            break
        process.stop()
        process = None
    if process is None:
        pytest.fail(f"the second moto server did not start; its log:\n{log.read_text(errors='replace')[-3000:]}")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id="setup", aws_secret_access_key="setup")

        bucket, table = "strata-auth-state", "strata-auth-locks"
        client("s3").create_bucket(Bucket=bucket)
        client("dynamodb").create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}])
        iam = client("iam")
        pairs = {}
        for user, actions in (("denied", []), ("allowed", ["s3:*", "dynamodb:*"])):
            iam.create_user(UserName=user)
            if actions:
                iam.put_user_policy(UserName=user, PolicyName="state", PolicyDocument=json.dumps(
                    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            pairs[user] = (key["AccessKeyId"], key["SecretAccessKey"])
        _post(f"{endpoint}/moto-api/reset-auth", b"0")  # from now on every request is authenticated
        yield AuthMoto(endpoint, bucket, table, pairs["denied"], pairs["allowed"])
    finally:
        process.stop()


def auth_values(server: AuthMoto, keys: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"bucket": server.bucket, "key": KEY, "region": "us-east-1", "use_path_style": True,
            "endpoints": {"s3": server.endpoint, "dynamodb": server.endpoint}, "access_key": keys[0],
            "secret_key": keys[1], "dynamodb_table": server.table, **extra}


def test_access_denied(auth_moto: AuthMoto, tmp_path: Path) -> None:
    # the control: a user with permissions works on the same server
    allowed = open_store(auth_values(auth_moto, auth_moto.allowed, key="allowed.tfstate"), tmp_path)
    assert allowed.read() is None
    allowed.write(STATE)
    assert allowed.read() == STATE

    store = open_store(auth_values(auth_moto, auth_moto.denied), tmp_path)
    where = f"s3://{auth_moto.bucket}/{KEY}"
    for call in (store.read, store.stat, lambda: store.write(STATE), store.versions):
        with pytest.raises(BackendError) as caught:
            call()
        assert str(caught.value).startswith(f"access denied to {where}: "), str(caught.value)
        assert "Traceback" not in str(caught.value) and "<Error>" not in str(caught.value)
    with pytest.raises(BackendError) as caught:
        store.current_lock()  # DynamoDB: its XML-in-JSON error is read as well
    assert str(caught.value).startswith(f"access denied to DynamoDB table {auth_moto.table} (locks of {where}): ")
    assert "dynamodb:GetItem" in str(caught.value) and "<Code>" not in str(caught.value)


def test_bad_credentials(auth_moto: AuthMoto, tmp_path: Path) -> None:
    where = f"s3://{auth_moto.bucket}/{KEY}"
    unknown = open_store(auth_values(auth_moto, ("AKIASTRATAUNKNOWN000", "secret")), tmp_path)
    with pytest.raises(BackendError) as caught:
        unknown.read()
    assert str(caught.value).startswith(f"AWS rejected the credentials used for {where} (InvalidAccessKeyId: ")
    assert "access_key/secret_key or profile" in str(caught.value)
    with pytest.raises(BackendError, match=r"AWS rejected the credentials .*\(InvalidClientTokenId: "):
        unknown.current_lock()

    wrong_secret = open_store(auth_values(auth_moto, (auth_moto.denied[0], "not-the-secret")), tmp_path)
    with pytest.raises(BackendError, match=r"AWS rejected the credentials .*\(SignatureDoesNotMatch: "):
        wrong_secret.read()
    with pytest.raises(BackendError, match=r"AWS rejected the credentials .*\(SignatureDoesNotMatch: "):
        wrong_secret.lock(LockInfo.new("apply"))


# -- with real Terraform ---------------------------------------------------------------------------------------

STACK_TF = """
resource "null_resource" "this" {
  triggers = {
    name = "network"
  }
}

output "name" {
  value = null_resource.this.triggers.name
}
"""

SLOW_TF = """
resource "null_resource" "slow" {
  provisioner "local-exec" {
    command = "sleep %d"
  }
}
"""


def tf_version(binary: str) -> tuple[int, int, int]:
    proc = subprocess.run([binary, "version", "-json"], capture_output=True, text=True, timeout=60, check=True,
                          env={**os.environ, "CHECKPOINT_DISABLE": "1"})
    major, minor, patch = json.loads(proc.stdout)["terraform_version"].split("-")[0].split(".")
    return int(major), int(minor), int(patch)


def hcl(value: Any, indent: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        inner = indent + "  "
        return "{\n" + "".join(f"{inner}{k} = {hcl(v, inner)}\n" for k, v in value.items()) + indent + "}"
    raise TypeError(value)


def tf_values(moto: MotoServer, bucket: str, **extra: Any) -> dict[str, Any]:
    """Backend settings Terraform and the store share: moto for every AWS endpoint, nothing validated."""
    values = values_for(moto, bucket, encrypt=True, skip_credentials_validation=True, skip_region_validation=True,
                        skip_metadata_api_check=True, skip_requesting_account_id=True, **extra)
    values["endpoints"] = {"s3": moto.endpoint, "dynamodb": moto.endpoint, "sts": moto.endpoint,
                           "iam": moto.endpoint}
    return values


def make_stack(folder: Path, binary: str, values: dict[str, Any], body: str = STACK_TF) -> Path:
    """A Terraform configuration with the s3 backend block rendered (by strata) for ``binary``'s version."""
    rendered = BACKEND.render(values, tf_version(binary))
    block = "".join(f"    {k} = {hcl(v, '    ')}\n" for k, v in rendered.items())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.tf").write_text(f'terraform {{\n  backend "s3" {{\n{block}  }}\n}}\n{body}', encoding="utf-8")
    return folder


def tf_env(provider_mirror: dict[str, str], home: Path, moto: MotoServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_", "STRATA_"))}
    home.mkdir(parents=True, exist_ok=True)
    no_proxy = ",".join(p for p in (os.environ.get("NO_PROXY"), "127.0.0.1", "localhost") if p)
    env.update(provider_mirror, HOME=str(home), NO_PROXY=no_proxy, no_proxy=no_proxy,
               AWS_ACCESS_KEY_ID=moto.access_key, AWS_SECRET_ACCESS_KEY=moto.secret_key,
               AWS_EC2_METADATA_DISABLED="true")
    return env


def terraform(binary: str, *args: str, cwd: Path, env: dict[str, str]) -> Result:
    try:
        proc = subprocess.run([binary, *args, "-no-color"], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=TF_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"terraform {' '.join(args)} did not finish within {TF_TIMEOUT:.0f} s in {cwd}: {exc}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tf_ok(binary: str, *args: str, cwd: Path, env: dict[str, str]) -> Result:
    result = terraform(binary, *args, cwd=cwd, env=env)
    assert result.code == 0, f"terraform {' '.join(args)} failed:\n{result.output}"
    return result


@pytest.mark.terraform
def test_terraform_state_is_read_by_the_store(terraform_binary: str, provider_mirror: dict[str, str],
                                              moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = versioned_bucket(moto_server), moto_server.create_lock_table()
    values = tf_values(moto_server, bucket, dynamodb_table=table)
    stack = make_stack(tmp_path / "stack", terraform_binary, values)
    env = tf_env(provider_mirror, tmp_path / "home", moto_server)
    tf_ok(terraform_binary, "init", "-input=false", cwd=stack, env=env)
    tf_ok(terraform_binary, "apply", "-auto-approve", "-input=false", cwd=stack, env=env)

    store = open_store(values, tmp_path)
    data = store.read()
    assert data is not None and data == moto_server.get_object(bucket, KEY)
    state = json.loads(data)
    assert state["outputs"]["name"]["value"] == "network"
    assert store.current_lock() is None  # terraform released its lock; the -md5 item is no lock
    assert set(moto_server.table_items(table)) == {f"{bucket}/{KEY}-md5"}
    stat = store.stat()
    assert stat is not None and stat.size == len(data)
    versions = store.versions()
    assert versions and versions[0].current and store.read_version(versions[0].id) == data


@pytest.mark.terraform
def test_strata_lock_blocks_terraform(terraform_binary: str, provider_mirror: dict[str, str],
                                      moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    values = tf_values(moto_server, bucket, dynamodb_table=table)
    stack = make_stack(tmp_path / "stack", terraform_binary, values)
    env = tf_env(provider_mirror, tmp_path / "home", moto_server)
    tf_ok(terraform_binary, "init", "-input=false", cwd=stack, env=env)

    store = open_store(values, tmp_path)
    info = LockInfo.new("state-push")
    store.lock(info)
    try:
        locked = terraform(terraform_binary, "plan", "-input=false", "-lock-timeout=0s", cwd=stack, env=env)
        assert locked.code == 1, locked.output
        assert "Error acquiring the state lock" in locked.output
        assert info.who in locked.output and info.id in locked.output and "state-push" in locked.output
    finally:
        store.unlock(info)
    assert moto_server.table_items(table) == {}
    plan = terraform(terraform_binary, "plan", "-input=false", "-lock-timeout=0s", "-detailed-exitcode",
                     cwd=stack, env=env)
    assert plan.code == 2, plan.output  # plans fine now (one resource to create)


@pytest.mark.terraform
def test_strata_write_keeps_terraform_103_digest_check_happy(tf_103: str, provider_mirror: dict[str, str],
                                                            moto_server: MotoServer, tmp_path: Path) -> None:
    bucket, table = moto_server.create_bucket(), moto_server.create_lock_table()
    values = tf_values(moto_server, bucket, dynamodb_table=table)
    stack = make_stack(tmp_path / "stack", tf_103, values)
    env = tf_env(provider_mirror, tmp_path / "home", moto_server)
    tf_ok(tf_103, "init", "-input=false", cwd=stack, env=env)
    tf_ok(tf_103, "apply", "-auto-approve", "-input=false", cwd=stack, env=env)

    store = open_store(values, tmp_path)
    before = store.read()
    assert before is not None
    state = json.loads(before)
    state["serial"] += 1
    state["outputs"]["name"]["value"] = "written-by-strata"
    data = (json.dumps(state, indent=2) + "\n").encode()
    info = LockInfo.new("state-push")
    store.lock(info)
    store.write(data)
    store.unlock(info)

    # Terraform compares the object's md5 with the -md5 item: a stale digest would fail this (after 10 s)
    pulled = tf_ok(tf_103, "state", "pull", cwd=stack, env=env)
    assert "does not have the expected content" not in pulled.output
    assert json.loads(pulled.stdout)["serial"] == state["serial"]
    assert json.loads(pulled.stdout)["lineage"] == state["lineage"]
    plan = terraform(tf_103, "plan", "-input=false", "-detailed-exitcode", cwd=stack, env=env)
    assert plan.code == 2, plan.output  # the output strata changed is planned back: terraform read strata's state
    assert "written-by-strata" in plan.output


@pytest.mark.terraform
def test_lock_file_interop_with_terraform_111(tf_111: str, provider_mirror: dict[str, str],
                                              moto_server: MotoServer, tmp_path: Path) -> None:
    bucket = moto_server.create_bucket()
    values = tf_values(moto_server, bucket, use_lockfile=True)
    seconds = 6
    stack = make_stack(tmp_path / "stack", tf_111, values, STACK_TF + SLOW_TF % seconds)
    env = tf_env(provider_mirror, tmp_path / "home", moto_server)
    tf_ok(tf_111, "init", "-input=false", cwd=stack, env=env)
    store = open_store(values, tmp_path)

    # strata's lock file stops terraform
    info = LockInfo.new("state-push")
    store.lock(info)
    try:
        locked = terraform(tf_111, "plan", "-input=false", "-lock-timeout=0s", cwd=stack, env=env)
        assert locked.code == 1, locked.output
        assert "Error acquiring the state lock" in locked.output
        assert info.who in locked.output and info.id in locked.output
    finally:
        store.unlock(info)
    assert moto_server.object_keys(bucket) == []

    # terraform's lock file, while its apply runs, is seen by strata and stops it
    log = (tmp_path / "apply.log").open("w")
    apply = subprocess.Popen([tf_111, "apply", "-auto-approve", "-input=false", "-no-color"], cwd=stack, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        holder = None
        while holder is None and time.monotonic() < deadline and apply.poll() is None:
            holder = store.current_lock()
            time.sleep(0.2)
        assert holder is not None, (tmp_path / "apply.log").read_text()
        assert holder.holder["lock"] == "s3 lock file"
        assert holder.operation == "OperationTypeApply"
        assert holder.version.startswith("1.11.")
        assert holder.path == f"{bucket}/{KEY}"
        assert holder.who.endswith("@" + socket.gethostname())
        with pytest.raises(StateLocked) as caught:
            store.lock(LockInfo.new("state-push"))
        assert caught.value.holder is not None and caught.value.holder.id == holder.id
        assert apply.wait(timeout=TF_TIMEOUT) == 0, (tmp_path / "apply.log").read_text()
    finally:
        if apply.poll() is None:
            apply.kill()
            apply.wait()
        log.close()
    assert store.current_lock() is None
    assert moto_server.object_keys(bucket) == [KEY]
    data = store.read()
    assert data is not None and {r["name"] for r in json.loads(data)["resources"]} == {"this", "slow"}


def test_access_denied_through_the_cli_names_the_stack_and_backend(auth_moto: AuthMoto, tmp_path: Path,
                                                                   strata: Any) -> None:
    from conftest import snapshot, write_tree

    denied_key, denied_secret = auth_moto.denied
    backend = (f'backend "s3" {{\n  bucket = "{auth_moto.bucket}"\n  region = "us-east-1"\n'
               f'  dynamodb_table = "{auth_moto.table}"\n  use_path_style = true\n'
               f'  endpoints = {{ s3 = "{auth_moto.endpoint}", dynamodb = "{auth_moto.endpoint}" }}\n'
               f'  access_key = "{denied_key}"\n  secret_key = "{denied_secret}"\n}}\n')
    repo = write_tree(tmp_path / "repo", {"strata.hcl": "strata {}\n" + backend,
                                          "dev/us-east-1/app/strata.hcl": "stack {}\n"})
    before = snapshot(repo)
    for args in (("state", "ls"), ("output",), ("locks",), ("state", "pull", "dev/us-east-1/app")):
        result = strata(*args, cwd=repo)
        assert result.code == 1, (args, result.output)
        assert "dev/us-east-1/app" in result.stderr and "s3" in result.stderr, (args, result.stderr)
        assert "access denied" in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    assert snapshot(repo) == before
