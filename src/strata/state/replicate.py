"""Copies of current states in the disaster-recovery region's backend, checked by checksum.

The DR backend is the source backend with its region swapped (names as
:func:`strata.bootstrap.targets.dr_values` makes them); it is bootstrapped first when missing. Each
copy is byte-identical (same lineage and serial), written under the DR state's lock with a backup of
what it replaces, then read back and compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.backends.base import BackendError
from strata.bootstrap.targets import Change, dr_values, s3_target
from strata.model.stack import Stack
from strata.state.operations import StateError, failure, open_store, write_state


@dataclass(frozen=True, slots=True)
class Replica:
    stack: str
    source: str
    destination: str
    serial: int | None
    sha256: str | None
    status: str  # "copied" | "unchanged" | "no state"

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "source": self.source, "destination": self.destination,
                "serial": self.serial, "sha256": self.sha256, "status": self.status}


def replicate(root: Path, stacks: list[Stack], to_region: str, production_environments: tuple[str, ...],
              progress: Callable[[str], None], lock_timeout: float = 0.0) -> tuple[list[Change], list[Replica]]:
    from strata.bootstrap.aws import bootstrap_s3

    not_s3 = [s.path for s in stacks if s.backend is None or s.backend.type != "s3"]
    if not_s3:
        raise StateError(f"replicate copies S3 states to another region; these stacks are not on s3: "
                         f"{', '.join(not_s3[:5])}{' …' if len(not_s3) > 5 else ''} (PostgreSQL replicates with "
                         "its own streaming replication; select s3 stacks only)")
    changes: list[Change] = []
    by_bucket: dict[str, list[Stack]] = {}
    for stack in stacks:
        assert stack.backend is not None
        by_bucket.setdefault(str(stack.backend.values().get("bucket")), []).append(stack)
    for group in by_bucket.values():
        assert group[0].backend is not None
        if group[0].backend.values().get("region") == to_region:
            raise StateError(f"{group[0].path}: its state is already in {to_region}; pick another region")
        target = s3_target(group, production_environments,
                           values=dr_values(group[0].backend.values(), to_region, _alias(group[0])))
        try:
            changes.extend(bootstrap_s3(target))
        except BackendError as exc:
            raise StateError(f"DR backend {target.description}: {exc}") from None
    replicas = []
    for stack in stacks:
        assert stack.backend is not None
        source = open_store(root, stack)
        copy = open_store(root, stack, dr_values(stack.backend.values(), to_region, _alias(stack)))
        with source, copy:
            try:
                raw = source.read()
                existing = copy.read()
            except BackendError as exc:
                raise failure(stack, source, exc) from None
            if raw is None:
                replicas.append(Replica(stack.path, source.where, copy.where, None, None, "no state"))
                progress(f"{stack.path}: no state")
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if existing == raw:
                replicas.append(Replica(stack.path, source.where, copy.where, None, digest, "unchanged"))
                progress(f"{stack.path}: unchanged in {copy.where}")
                continue
            result = write_state(root, stack, copy, raw, operation="state-replicate", exact=True,
                                 lock_timeout=lock_timeout)
            try:
                back = copy.read()
            except BackendError as exc:
                raise failure(stack, copy, exc) from None
            if back is None or hashlib.sha256(back).hexdigest() != digest:
                raise StateError(f"{stack.path}: the copy in {copy.where} does not match the source after writing")
            replicas.append(Replica(stack.path, source.where, copy.where, result.serial, digest, "copied"))
            progress(f"{stack.path}: copied serial {result.serial} to {copy.where} (sha256 {digest[:12]}…)")
    return changes, replicas


def _alias(stack: Stack) -> str | None:
    setting = stack.bootstrap.get("kms_key_alias")
    return str(setting.plain()) if setting is not None and setting.plain() else None
