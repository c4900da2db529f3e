"""The pg backend: one PostgreSQL schema per stack (its state is the ``default`` row of ``states``)."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from strata.backends.base import Backend, Problem
from strata.terraform.version import Version

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names


def schema_for_key(state_key: str) -> str:
    """A schema name for a state key: lower-case, ``_`` for anything else, hashed when too long."""
    folder = state_key.removesuffix("terraform.tfstate").rstrip("/")
    base = re.sub(r"[^a-z0-9_]+", "_", folder.lower()).strip("_")
    if len(base) <= MAX_IDENTIFIER:
        return base or "terraform_remote_state"
    tag = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[: MAX_IDENTIFIER - 9]}_{tag}"


def _connection_identity(conn_str: str) -> str:
    if "://" in conn_str:
        parts = urlsplit(conn_str)
        return f"{parts.hostname or ''}:{parts.port or 5432}/{parts.path.lstrip('/')}"
    fields = dict(re.findall(r"(\w+)\s*=\s*'?([^'\s]*)'?", conn_str))
    return f"{fields.get('host', '')}:{fields.get('port', '5432')}/{fields.get('dbname', '')}"


def _sslmode(conn_str: str) -> str | None:
    if "://" in conn_str:
        values = parse_qs(urlsplit(conn_str).query).get("sslmode")
        return values[0] if values else None
    m = re.search(r"sslmode\s*=\s*'?(\w[\w-]*)", conn_str)
    return m.group(1) if m else None


class PgBackend(Backend):
    name = "pg"
    attributes = frozenset({"conn_str", "schema_name", "skip_schema_creation", "skip_table_creation",
                            "skip_index_creation"})
    required = ("conn_str",)
    key_attribute = "schema_name"

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        return {"schema_name": schema_for_key(state_key)}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        problems = super().check(values, version)
        schema = values.get("schema_name")
        if isinstance(schema, str) and len(schema) > MAX_IDENTIFIER:
            problems.append(Problem(f"schema_name is longer than {MAX_IDENTIFIER} characters", "schema_name"))
        return problems

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("pg", _connection_identity(str(values.get("conn_str", ""))), values.get("schema_name"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"pg://{_connection_identity(str(values.get('conn_str', '')))}"

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        if _sslmode(str(values.get("conn_str", ""))) == "disable":
            return "conn_str disables TLS (sslmode=disable)"
        return None


BACKEND = PgBackend()
