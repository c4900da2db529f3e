"""What the selected stacks' backends need: one target per bucket (AWS) or per server/database (pg)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from strata.errors import ConfigError
from strata.model.stack import Stack

Action = Literal["created", "changed", "unchanged", "would create", "would change", "skipped"]


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
    tls_only: bool | None = None  # the deny-without-TLS bucket policy; None: on unless the S3 endpoint is http://
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


# -- from stacks to targets ------------------------------------------------------------------------------

DEFAULT_RETENTION_DAYS = 30  # noncurrent state versions kept this long outside production
PRODUCTION_RETENTION_DAYS = 90


@dataclass(slots=True)
class Targets:
    s3: list[S3Target] = field(default_factory=list)
    pg: list[PgTarget] = field(default_factory=list)
    nothing_needed: list[str] = field(default_factory=list)  # stacks on local state
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (stack, backend type)


def plan_targets(stacks: list[Stack], production_environments: tuple[str, ...]) -> Targets:
    """The backends the stacks need, one target per bucket / per PostgreSQL database."""
    out = Targets()
    s3_groups: dict[str, list[Stack]] = {}
    pg_groups: dict[str, list[Stack]] = {}
    for stack in stacks:
        backend = stack.backend
        if backend is None:
            continue
        values = backend.values()
        if backend.type == "local":
            out.nothing_needed.append(stack.path)
        elif backend.type == "s3":
            s3_groups.setdefault(str(values.get("bucket")), []).append(stack)
        elif backend.type == "pg":
            pg_groups.setdefault(str(values.get("conn_str")), []).append(stack)
        else:
            out.unsupported.append((stack.path, backend.type))
    for group in s3_groups.values():
        out.s3.append(s3_target(group, production_environments))
    for conn_str, group in pg_groups.items():
        schemas = sorted({str(s.backend.values().get("schema_name")) for s in group if s.backend})
        first = group[0].backend.values() if group[0].backend else {}
        out.pg.append(PgTarget(conn_str, tuple(schemas), bool(first.get("skip_schema_creation")),
                               bool(first.get("skip_table_creation")), bool(first.get("skip_index_creation")),
                               tuple(s.path for s in group)))
    return out


def s3_target(stacks: list[Stack], production_environments: tuple[str, ...],
              values: dict[str, Any] | None = None) -> S3Target:
    """The target for stacks sharing one bucket. Their settings must agree; ``values`` overrides the
    backend settings of the first stack (the DR copy of a backend)."""
    first = stacks[0]
    assert first.backend is not None
    values = values if values is not None else first.backend.values()
    bucket = str(values.get("bucket"))
    chosen = _bootstrap_values(first, values, production_environments)
    for other in stacks[1:]:
        if other.backend is None:
            continue
        theirs = _bootstrap_values(other, other.backend.values(), production_environments)
        for name in ("region", "dynamodb_table", "kms_alias", "noncurrent_days", "log_bucket", "tls_only"):
            if theirs[name] != chosen[name]:
                raise ConfigError(
                    f"stacks {first.path} and {other.path} share bucket {bucket!r} but disagree on "
                    f"{name.replace('_', ' ')} ({chosen[name]!r} vs {theirs[name]!r}); one bucket has one setting",
                    other.backend.source)
    tags = {"environment": first.environment or "", "region": str(values.get("region") or ""),
            "managed-by": "strata"}
    user_tags = first.bootstrap.get("tags")
    if user_tags is not None and isinstance(user_tags.plain(), dict):
        tags.update({str(k): str(v) for k, v in user_tags.plain().items()})
    return S3Target(
        bucket=bucket, region=str(chosen["region"]), environment=first.environment,
        production=first.environment in production_environments, kms_alias=str(chosen["kms_alias"]),
        noncurrent_days=int(chosen["noncurrent_days"]), dynamodb_table=chosen["dynamodb_table"],
        log_bucket=chosen["log_bucket"], tags=tuple(sorted((k, v) for k, v in tags.items() if v)),
        tls_only=chosen["tls_only"],
        values=values, stacks=tuple(s.path for s in stacks))


def _bootstrap_values(stack: Stack, values: dict[str, Any], production_environments: tuple[str, ...]) -> dict[str, Any]:
    settings = {k: v.plain() for k, v in stack.bootstrap.items()}
    source = stack.bootstrap.get("kms_key_alias") or stack.bootstrap.get("noncurrent_version_days")
    where = source.source if source else (stack.backend.source if stack.backend else None)
    alias = settings.get("kms_key_alias") or _alias_of(values.get("kms_key_id")) or f"alias/{values.get('bucket')}"
    if not str(alias).startswith("alias/"):
        alias = f"alias/{alias}"
    days = settings.get("noncurrent_version_days")
    if days is None:
        days = PRODUCTION_RETENTION_DAYS if stack.environment in production_environments else DEFAULT_RETENTION_DAYS
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ConfigError(f"noncurrent_version_days must be a whole number of days >= 1 (found {days!r})", where)
    kms_key_id = values.get("kms_key_id")
    if kms_key_id and _alias_of(kms_key_id) is None and "kms_key_alias" not in settings:
        raise ConfigError(f"kms_key_id {kms_key_id!r} names a key directly; strata bootstrap creates keys by alias: "
                          'write kms_key_id = "alias/<name>" (or set bootstrap { kms_key_alias = "..." })',
                          stack.backend.settings["kms_key_id"].source if stack.backend else None)
    table = values.get("dynamodb_table") or None
    tls_only = settings.get("tls_only_policy")
    if tls_only is not None and not isinstance(tls_only, bool):
        raise ConfigError(f"tls_only_policy must be true or false (found {tls_only!r})",
                          stack.bootstrap["tls_only_policy"].source)
    return {"region": values.get("region"), "dynamodb_table": table, "kms_alias": alias,
            "noncurrent_days": days, "log_bucket": settings.get("access_log_bucket") or None, "tls_only": tls_only}


def _alias_of(kms_key_id: Any) -> str | None:
    """``alias/x`` for "alias/x" or an alias ARN; None for a key id or key ARN."""
    if not isinstance(kms_key_id, str) or not kms_key_id:
        return None
    if kms_key_id.startswith("alias/"):
        return kms_key_id
    if kms_key_id.startswith("arn:") and ":alias/" in kms_key_id:
        return "alias/" + kms_key_id.split(":alias/", 1)[1]
    return None


def dr_values(values: dict[str, Any], to_region: str, kms_alias: str | None = None) -> dict[str, Any]:
    """The backend settings of the disaster-recovery copy of a backend in ``to_region``.

    Names follow the source: the region in the bucket, table and key alias names is swapped for
    ``to_region`` (``acme-state-production-us-east-1`` → ``acme-state-production-us-west-2``); a name
    without the region gets ``-<to_region>`` appended. The state keys stay the same. A key given by id
    or ARN belongs to the source region: the copy uses ``kms_alias`` (the stack's bootstrap
    ``kms_key_alias``; aliases are per region) or ``alias/<DR bucket>``.
    """
    from_region = str(values.get("region") or "")
    out = dict(values)
    out["region"] = to_region
    for name in ("bucket", "dynamodb_table"):
        value = values.get(name)
        if isinstance(value, str) and value:
            out[name] = (value.replace(from_region, to_region) if from_region and from_region in value
                         else f"{value}-{to_region}")
    key = values.get("kms_key_id")
    alias = _alias_of(key)
    if alias:
        out["kms_key_id"] = (alias.replace(from_region, to_region) if from_region and from_region in alias
                             else f"alias/{out['bucket']}")
    elif key:
        out["kms_key_id"] = kms_alias if kms_alias and kms_alias.startswith("alias/") else (
            f"alias/{kms_alias}" if kms_alias else f"alias/{out['bucket']}")
    return out
