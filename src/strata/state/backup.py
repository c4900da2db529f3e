"""Backups of many states at once, with a manifest, and verification of states and backups.

A backup is a folder (or ``s3://bucket/prefix``) holding ``<stack path>/terraform.tfstate`` per stack
and ``manifest.json`` (stack, backend location, state key, version, serial, lineage, sha256, size).
The manifest is written last: a backup without one was interrupted and is reported as such.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata import __version__
from strata.atomic import SECRET, private_dir, write_atomic
from strata.backends.base import BackendError
from strata.config.discover import read_config
from strata.config.limits import MAX_STATE_SIZE
from strata.model.stack import Stack
from strata.output import slow_note
from strata.state.document import StateDocument, StateFormatError
from strata.state.operations import StateError, failure, known_from, open_store, parse

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

Progress = Callable[[str], None]


# -- destinations -------------------------------------------------------------------------------------------


class Destination:
    """Where a backup is written to or read from."""

    description: str

    def put(self, name: str, data: bytes) -> None:
        raise NotImplementedError

    def get(self, name: str) -> bytes | None:
        raise NotImplementedError


class FolderDestination(Destination):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.description = str(folder)

    def put(self, name: str, data: bytes) -> None:
        target = self.folder / name
        private_dir(target.parent)
        write_atomic(target, data, mode=SECRET)

    def get(self, name: str) -> bytes | None:
        path = self.folder / name
        if not os.path.lexists(path):
            return None
        return read_config(path, str(path), MAX_STATE_SIZE)  # a regular file: a FIFO would block for ever


class S3Destination(Destination):
    """``s3://bucket/prefix``; clients are configured like a stack's s3 backend (endpoints, credentials)."""

    def __init__(self, url: str, values: dict[str, Any]) -> None:
        from strata.backends.s3 import aws_client

        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise StateError(f"{url}: give a bucket, e.g. s3://my-backups/strata")
        self.prefix = prefix.strip("/")
        self.description = url
        self.client = aws_client(values, "s3")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data,
                                   ServerSideEncryption="AES256")
        except Exception as exc:  # botocore errors and connection failures
            raise StateError(f"cannot write s3://{self.bucket}/{self._key(name)}: {_aws_message(exc)}") from None

    def get(self, name: str) -> bytes | None:
        try:
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read())
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return None
            raise StateError(f"cannot read s3://{self.bucket}/{self._key(name)}: {_aws_message(exc)}") from None


def _aws_message(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    if error:
        return f"{error.get('Code')}: {error.get('Message')}"
    return str(exc)


def destination(target: str, stacks: list[Stack]) -> Destination:
    if target.startswith("s3://"):
        values: dict[str, Any] = {}
        for stack in stacks:  # endpoints and credentials as the selected s3 stacks use them
            if stack.backend is not None and stack.backend.type == "s3":
                values = {k: v for k, v in stack.backend.values().items()
                          if k not in ("bucket", "key", "dynamodb_table", "kms_key_id")}
                break
        values.setdefault("region", os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        return S3Destination(target, values)
    return FolderDestination(Path(target))


# -- backup --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BackupReport:
    destination: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    without_state: list[str] = field(default_factory=list)


def backup(root: Path, stacks: list[Stack], target: str, progress: Progress) -> BackupReport:
    """Copy the current state of every stack to ``target`` and write the manifest last."""
    dest = destination(target, stacks)
    report = BackupReport(dest.description)
    for stack in stacks:
        store = open_store(root, stack)
        with store:
            try:
                raw = store.read()
                if raw is None:
                    report.without_state.append(stack.path)
                    progress(f"{stack.path}: no state")
                    continue
                doc = parse(stack, store, raw)
                if not doc.problems():
                    store.remember(raw, "backup")  # so the manifest can name the version (local, pg)
                version = next((v.id for v in store.versions() if v.current), None)
            except BackendError as exc:
                raise failure(stack, store, exc) from None
            name = f"{stack.path}/terraform.tfstate"
            dest.put(name, raw)
            report.entries.append({
                "stack": stack.path, "backend": store.backend, "location": store.where, "key": stack.state_key,
                "version": version, "serial": doc.valid_serial, "lineage": doc.lineage, "sha256": doc.sha256,
                "size": len(raw), "file": name,
            })
            serial = "-" if doc.valid_serial is None else doc.valid_serial
            progress(f"{stack.path}: serial {serial}, {doc.resource_count} resource(s)")
    manifest = {"format": MANIFEST_FORMAT, "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "strata_version": __version__, "stacks": report.entries, "without_state": report.without_state}
    dest.put(MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return report


# -- verify --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    stack: str
    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "ok": self.ok, "message": self.message}


def verify_backup(source: str, stacks: list[Stack]) -> list[Finding]:
    """Every file of the backup matches its manifest checksum and is a sound state."""
    dest = destination(source, stacks)
    raw_manifest = dest.get(MANIFEST)
    if raw_manifest is None:
        return [Finding("-", False, f"{dest.description} has no {MANIFEST}: not a strata backup, or the backup "
                                    "was interrupted before it finished")]
    try:
        manifest = json.loads(raw_manifest)
        entries = manifest["stacks"]
        assert isinstance(entries, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return [Finding("-", False, f"{dest.description}/{MANIFEST} is damaged (not a strata manifest)")]
    findings = []
    for entry in entries:
        stack = str(entry.get("stack", "?"))
        data = dest.get(str(entry.get("file", "")))
        if data is None:
            findings.append(Finding(stack, False, f"{entry.get('file')} is missing from the backup"))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            findings.append(Finding(stack, False, f"{entry.get('file')}: checksum mismatch (manifest "
                                                  f"{str(entry.get('sha256'))[:12]}…, file {digest[:12]}…): "
                                                  "the backup file is corrupted"))
            continue
        findings.append(_check_document(stack, data, f"backup of serial {entry.get('serial')}"))
    return findings


def verify_states(root: Path, stacks: list[Stack], progress: Progress) -> list[Finding]:
    """Every current state is sound, and serials never go down across its versions."""
    findings = []
    for stack in stacks:
        store = open_store(root, stack)
        with store, slow_note(f"{stack.path}: reading its state and versions ({store.backend} backend, "
                                f"{store.where})"):
            try:
                raw = store.read()
                versions = store.versions()
                older = [(v, store.read_version(v.id)) for v in reversed(versions)]  # oldest first
            except BackendError as exc:
                findings.append(Finding(stack.path, False, str(failure(stack, store, exc))))
                continue
        if raw is None:
            had = known_from([(v.id, data) for v, data in reversed(older)]).had_state
            if had is None:
                findings.append(Finding(stack.path, True, "no state"))
            else:  # emptied or deleted: a plan would recreate everything, dependents would use mocks
                findings.append(Finding(stack.path, False, f"no state ({store.backend} backend, {store.where}), "
                                        f"but version {had[0]} (serial {had[1]}, {had[2]} resource(s)) shows it "
                                        "had one: it was emptied or deleted; restore it with `strata state "
                                        f"restore {stack.path} --version {had[0]}`"))
            continue
        finding = _check_document(stack.path, raw, f"current state ({store.backend} backend, {store.where})")
        if finding.ok:
            finding = _check_history(stack.path, older, raw) or finding
        findings.append(finding)
        progress(f"{stack.path}: {'ok' if finding.ok else 'FAILED'}: {finding.message}")
    return findings


def _check_document(stack: str, data: bytes, what: str) -> Finding:
    try:
        doc = StateDocument.parse(data)
    except StateFormatError as exc:
        return Finding(stack, False, f"{what}: {exc}")
    problems = doc.problems()
    if problems:
        return Finding(stack, False, f"{what}: {'; '.join(problems)}")
    return Finding(stack, True, f"{what}: serial {doc.serial}, lineage {doc.lineage}, "
                                f"{doc.resource_count} resource(s), sha256 {doc.sha256[:12]}…")


def _check_history(stack: str, versions: list[tuple[Any, bytes]], current: bytes) -> Finding | None:
    """A finding when a version is damaged, when a serial goes down from one version to the next (same
    lineage), or when two versions, or a version and the current state, have one lineage and serial but other
    contents (Terraform gives every change a new serial: one of them is a lost update)."""
    last: StateDocument | None = None
    seen: dict[tuple[str, int], tuple[str, StateDocument]] = {}
    for name, data in [*((f"version {v.id}", d) for v, d in versions), ("the current state", current)]:
        try:
            doc = StateDocument.parse(data)
        except StateFormatError as exc:
            return Finding(stack, False, f"{name}: {exc}")
        problem = doc.serial_problem()
        if problem is not None:
            return Finding(stack, False, f"{name}: {problem}")
        if last is not None and doc.lineage == last.lineage and doc.serial < last.serial:
            return Finding(stack, False, f"{name}: serial {doc.serial} is lower than the version before it "
                                         f"({last.serial}): a stale state was written over a newer one")
        earlier = seen.setdefault((doc.lineage, doc.serial), (name, doc))
        if doc.conflicts_with(earlier[1]):
            return Finding(stack, False, f"{earlier[0]} and {name} both have serial {doc.serial} (lineage "
                                         f"{doc.lineage}) but other contents: one of them is a lost update or was "
                                         f"edited by hand; compare them (`strata state pull {stack} --version ID`), "
                                         "then keep the right one with `strata state restore` or `state push`")
        last = doc
    return None
