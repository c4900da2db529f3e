"""What the selected stacks' backends need: one target per bucket (AWS) or per server/database (pg)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["created", "changed", "unchanged", "would create", "would change"]


@dataclass(frozen=True, slots=True)
class Change:
    """One resource's outcome: ``resource`` is the kind ("s3 bucket", "bucket versioning", "dynamodb
    table", "kms key", ...), ``name`` its name, ``detail`` what was (or would be) done or found."""

    target: str  # the target's description, e.g. "s3://acme-state-production-us-east-1"
    resource: str
    name: str
    action: Action
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "resource": self.resource, "name": self.name, "action": self.action,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class S3Target:
    """A self-contained AWS backend for one environment/region: bucket, lock table, KMS key."""

    bucket: str
    region: str
    environment: str | None
    production: bool
    kms_alias: str  # "alias/<name>": created with rotation on, used for the bucket's default encryption
    noncurrent_days: int  # noncurrent state versions expire after this many days
    dynamodb_table: str | None = None  # None when locking uses S3 lock files only (use_lockfile)
    log_bucket: str | None = None  # access logging target, created too when set
    tags: tuple[tuple[str, str], ...] = ()  # environment, region, managed-by, plus the user's
    values: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # backend settings,
    # for clients: region, endpoints, credentials (see strata.backends.s3.aws_client)
    stacks: tuple[str, ...] = ()  # the stacks whose state lives here

    @property
    def description(self) -> str:
        return f"s3://{self.bucket} ({self.region})"


@dataclass(frozen=True, slots=True)
class PgTarget:
    """A PostgreSQL database with the schemas the selected stacks' pg backends use."""

    conn_str: str
    schemas: tuple[str, ...]
    skip_schema_creation: bool = False
    skip_table_creation: bool = False
    skip_index_creation: bool = False
    stacks: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        from strata.backends.pg import BACKEND

        return BACKEND.storage({"conn_str": self.conn_str}) or "pg"
