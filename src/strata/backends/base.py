"""The interface every backend type implements.

A backend turns a stack's evaluated ``backend "<type>" {}`` settings into what Terraform needs
(rendered for the Terraform version in use), says where the state lives (to catch two stacks sharing
one state), what storage it shares with others, and whether it is encrypted.

Through :meth:`Backend.store` it also opens a stack's state where it lives (:class:`StateStore`):
read, write, versions, locks. Every store speaks Terraform's own locking protocol for its type, so a
lock strata holds stops ``terraform apply`` and the other way round. Safety rules that hold for every
type (lock first, back up first, lineage and serial) live once, in :mod:`strata.state.operations`;
a store only moves bytes. Adding ``azurerm`` or ``gcs`` means writing one store in their module.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal

from strata.errors import BackendError as BackendError
from strata.terraform.version import Version, format_version


class Kind(Enum):
    """The type of a backend setting, as Terraform's backend schemas declare it; the value says what it takes."""

    STRING = "a string"
    BOOL = "true or false"
    NUMBER = "a number"
    INTEGER = "a whole number"
    LIST = "a list of strings"
    MAP = "a map of strings"
    BLOCK = "a block, written as a map like { name = value }"  # a nested block (s3 assume_role, endpoints)
    DURATION = 'a duration like "1h" or a number of seconds'


@dataclass(frozen=True, slots=True)
class SettingType:
    """One setting of a backend's schema: its kind and, for a block, the settings inside it."""

    kind: Kind
    description: str = ""
    keys: Mapping[str, SettingType] = field(default_factory=dict)

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` does not fit (the message names ``name``), or None when it does."""
        got = _type_name(value)
        if self.kind is Kind.STRING:
            ok = isinstance(value, str)
        elif self.kind is Kind.BOOL:
            ok = isinstance(value, bool)
        elif self.kind in (Kind.NUMBER, Kind.DURATION):
            ok = got == "number" or (self.kind is Kind.DURATION and got == "string")
        elif self.kind is Kind.INTEGER:
            ok = got == "number" and float(value).is_integer()
        elif self.kind is Kind.LIST:
            if not isinstance(value, list | tuple):
                ok = False
            else:
                return next((f"{name}[{i}] must be a string, got {_type_name(v)}" for i, v in enumerate(value)
                             if not isinstance(v, str)), None)
        elif self.kind is Kind.MAP:
            if not isinstance(value, dict):
                ok = False
            else:
                return next((f"{name}.{k} must be a string, got {_type_name(v)}" for k, v in value.items()
                             if not isinstance(v, str)), None)
        else:  # BLOCK
            if not isinstance(value, dict):
                ok = False
            else:
                for key, inner in value.items():
                    spec = self.keys.get(key)
                    if spec is None:
                        return f"unknown setting {key!r} in {name} (known: {', '.join(sorted(self.keys))})"
                    found = None if inner is None else spec.problem(f"{name}.{key}", inner)
                    if found:
                        return found
                return None
        return None if ok else f"{name} must be {self.kind.value}, got {got}"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# Shorthands for the schemas of the backend modules.
STRING = SettingType(Kind.STRING)
BOOL = SettingType(Kind.BOOL)
NUMBER = SettingType(Kind.NUMBER)
INTEGER = SettingType(Kind.INTEGER)
LIST = SettingType(Kind.LIST)
MAP = SettingType(Kind.MAP)
DURATION = SettingType(Kind.DURATION)


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a backend's settings; ``attribute`` is None when it concerns the block."""

    message: str
    attribute: str | None = None
    severity: Literal["error", "warning"] = "error"


class Backend:
    name: ClassVar[str]
    # Every setting Terraform accepts for this type, with its type (Terraform's backend schema).
    schema: ClassVar[Mapping[str, SettingType]]
    attributes: ClassVar[frozenset[str]]  # the names in ``schema``
    required: ClassVar[tuple[str, ...]] = ()
    key_attribute: ClassVar[str]  # where the state key goes by default
    cloud: ClassVar[str | None] = None
    # Settings that older Terraform releases refuse ("An argument named ... is not expected here"):
    # setting -> first release known to accept it. Where the exact release is not known, the value is a
    # lower bound (a release that certainly refuses it is below it), so strata never refuses a setting
    # that the Terraform in use accepts.
    since: ClassVar[dict[str, Version]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "schema" in cls.__dict__:
            cls.attributes = frozenset(cls.schema)

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        """Settings strata fills in when the configuration leaves them out (the state key)."""
        return {self.key_attribute: state_key}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        """Problems with ``values``; ``version`` is the Terraform version when known."""
        problems = [Problem(f"needs {name!r}, which is required") for name in self.required
                    if values.get(name) in (None, "")]
        if version is not None:
            for name in sorted(values):
                first = self.since.get(name)
                if first is not None and values[name] is not None and version < first:
                    problems.append(Problem(
                        f"{name} is not supported by Terraform {format_version(version)} (it needs "
                        f"{format_version(first)} or later); remove it or use a newer Terraform", name))
        for name, value in values.items():
            spec = self.schema.get(name)
            message = None if spec is None or value is None else spec.problem(name, value)
            if message:
                problems.append(Problem(message, name))
        return problems

    def render(self, values: dict[str, Any], version: Version | None) -> dict[str, Any]:
        """The settings to write into the generated backend block for Terraform ``version``."""
        return {k: v for k, v in values.items() if v is not None}

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        """A value equal for two stacks exactly when they would share one state."""
        raise NotImplementedError

    def storage(self, values: dict[str, Any]) -> str | None:
        """The bucket/container/database the state sits in, or None for local files."""
        return None

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        """Why the state is not encrypted at rest (or in transit), or None when it is."""
        return None

    def read_state(self, values: dict[str, Any], stack_dir: Path) -> bytes | None:
        """The stack's current state, read straight from the backend (no terraform, no init).

        None when the stack has no state yet. Backends that cannot be read directly raise
        NotImplementedError, and callers fall back to ``terraform output -json``.
        """
        with self.store(values, stack_dir, stack_dir) as store:
            return store.read()

    def store(self, values: dict[str, Any], stack_dir: Path, root: Path) -> StateStore:
        """The stack's state where it lives. ``stack_dir`` resolves relative paths; ``root`` is the
        repository (strata keeps its own history and backups under ``root/.strata``).

        Raises NotImplementedError for types strata cannot open itself yet.
        """
        raise NotImplementedError(f"strata cannot open {self.name} state by itself yet")


# -- state stores --------------------------------------------------------------------------------------




class StateLocked(BackendError):
    """Someone else holds the state's lock."""

    def __init__(self, holder: LockInfo | None, where: str) -> None:
        who = holder.describe() if holder else "unknown holder"
        super().__init__(f"the state at {where} is locked by {who}")
        self.holder = holder


@dataclass(slots=True)
class LockInfo:
    """Terraform's lock record (statemgr.LockInfo: the JSON keys are the Go field names).

    ``holder`` carries what the backend itself knows about the holder beyond Terraform's record
    (the pg session's pid and client address, the local lock's state), for display only.
    """

    id: str
    operation: str
    who: str
    version: str
    created: str
    path: str = ""
    info: str = ""
    holder: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, operation: str, path: str = "") -> LockInfo:
        """A lock record for this process. ``Info`` carries strata's pid and host so a lock can be
        recognised as a live local process's."""
        from strata import __version__

        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        info = json.dumps({"tool": "strata", "pid": os.getpid(), "host": socket.gethostname()})
        return cls(str(uuid.uuid4()), operation, f"{_user()}@{socket.gethostname()}", f"strata {__version__}",
                   created, path, info)

    @classmethod
    def from_json(cls, data: str | bytes) -> LockInfo:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("lock info is not a JSON object")
        return cls(str(raw.get("ID", "")), str(raw.get("Operation", "")), str(raw.get("Who", "")),
                   str(raw.get("Version", "")), str(raw.get("Created", "")), str(raw.get("Path", "")),
                   str(raw.get("Info", "")))

    def to_json(self) -> str:
        return json.dumps({"ID": self.id, "Operation": self.operation, "Info": self.info, "Who": self.who,
                           "Version": self.version, "Created": self.created, "Path": self.path})

    def strata_pid(self) -> int | None:
        """The pid of the strata process that holds the lock, when strata took it on this host."""
        try:
            info = json.loads(self.info)
        except ValueError:
            return None
        if isinstance(info, dict) and info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return int(info["pid"])
        return None

    def describe(self) -> str:
        parts = [self.who or "someone", f"since {self.created}" if self.created else "",
                 f"({self.operation})" if self.operation else "", f"lock ID {self.id}" if self.id else ""]
        return " ".join(p for p in parts if p)

    def to_report(self) -> dict[str, Any]:
        return {"id": self.id, "operation": self.operation, "who": self.who, "version": self.version,
                "created": self.created, "path": self.path, "info": self.info, **self.holder}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


@dataclass(frozen=True, slots=True)
class StateVersion:
    """One version of a state: an S3 object version, or an entry of strata's own history."""

    id: str
    modified: datetime | None
    size: int
    current: bool = False
    kind: str = "history"  # "s3-version" | "history"


@dataclass(frozen=True, slots=True)
class StateObject:
    """What a listing shows about the current state without reading it (size, last modified)."""

    size: int
    modified: datetime | None


class StateStore:
    """One stack's state in its backend: bytes in, bytes out, and Terraform's lock for it.

    Stores do no safety checks of their own (see :mod:`strata.state.operations`): ``write`` is called
    only with the lock held, and it must leave the state where Terraform reads it exactly as Terraform
    would after its own write (the s3 store updates the DynamoDB ``-md5`` digest item).
    """

    backend: str = ""
    where: str = ""  # human-readable location, e.g. "s3://bucket/key" (used in every message)

    def read(self) -> bytes | None:
        """The current state bytes; None when there is no state (missing or empty)."""
        raise NotImplementedError

    def stat(self) -> StateObject | None:
        """Size and last-modified time of the current state, None when there is none."""
        data = self.read()
        return None if data is None else StateObject(len(data), None)

    def write(self, data: bytes) -> None:
        """Replace the current state. The caller holds the lock (:meth:`lock`)."""
        raise NotImplementedError

    def delete(self) -> None:
        """Remove the current state, so the stack has none (used to roll back a state strata created).
        The caller holds the lock."""
        raise NotImplementedError

    def lock(self, info: LockInfo) -> None:
        """Take Terraform's lock for this state, or raise :class:`StateLocked` naming the holder."""
        raise NotImplementedError

    def unlock(self, info: LockInfo) -> None:
        """Release a lock this process took with :meth:`lock`."""
        raise NotImplementedError

    def current_lock(self) -> LockInfo | None:
        """Who holds the lock now (any process), or None."""
        raise NotImplementedError

    def force_unlock(self, holder: LockInfo) -> None:
        """Remove someone else's lock (``strata unlock``); ``holder`` is what :meth:`current_lock` gave."""
        raise NotImplementedError

    def versions(self) -> list[StateVersion]:
        """Every version strata can see, newest first (S3 object versions, or strata's own history)."""
        raise NotImplementedError

    def read_version(self, version_id: str) -> bytes:
        """The bytes of one version from :meth:`versions`; BackendError when there is no such version."""
        raise NotImplementedError

    def remember(self, data: bytes, operation: str) -> None:
        """Record ``data`` in strata's own history (backends without native versions); a no-op for S3."""

    def close(self) -> None:
        """Release connections (pg); stores are also context managers."""

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
