"""The journal of a migration: what it touched, what each state was before, what it wrote, how it ended.

One folder per migration under ``.strata/migrations/<id>/``: ``journal.json`` (replaced atomically after
every step), ``before/<n>.tfstate`` (the byte-exact backups, sha256 in the journal) and
``planned/<n>.tfstate`` / ``final/<n>.tfstate`` (the states it writes). Anything that was written can
be undone from ``before/`` byte for byte; anything planned can be redone from the files, so a
migration killed at any point is finished by ``resume`` or undone by ``rollback``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.atomic import SECRET, private_dir, write_atomic
from strata.errors import StrataError

MIGRATIONS = Path(".strata") / "migrations"
FINISHED = frozenset({"done", "rolled-back", "refused"})


def sha256(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


@dataclass(slots=True)
class Entry:
    """One state the migration touches."""

    name: str  # the stack path, or "source" for a state no stack owns
    role: str  # "source" | "target"
    backend: str
    location: str
    stack: str | None  # the stack path (None: a state outside every stack)
    lock_id: str | None = None
    before: str | None = None  # sha256 of the state before (None: there was none)
    planned: str | None = None  # sha256 of the state after the moves
    final: str | None = None  # sha256 after verification filled in the outputs
    written: str | None = None  # sha256 of the last thing written ("planned" or "final" content)
    writing: str | None = None  # the kind being written right now: a write cut short leaves any content

    @property
    def file(self) -> str:
        return self.name.replace("/", "__") + ".tfstate"


@dataclass(slots=True)
class Journal:
    id: str
    file: str  # the migration file (display path)
    who: str
    started: str
    status: str  # planned → locked → writing → verifying → finishing → done | rolling-back → rolled-back | refused
    folder: Path = field(repr=False)
    finished: str | None = None
    outcome: str = ""
    moves: int = 0
    verify: bool = True  # False for `strata state mv`: no verification plans
    spec_path: str = ""  # the migration file (absolute): how resume/rollback reopen a source outside every stack
    entries: list[Entry] = field(default_factory=list)

    # -- files ------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, name: str, file: str) -> Journal:
        stamp = datetime.now(UTC)
        ident = f"{stamp:%Y%m%d-%H%M%S}-{name}"
        folder = root / MIGRATIONS / ident
        n = 1
        while folder.exists():
            n += 1
            folder = root / MIGRATIONS / f"{ident}-{n}"
        folder.mkdir(parents=True)
        who = f"{_user()}@{socket.gethostname()}"
        journal = cls(folder.name, file, who, stamp.isoformat(timespec="seconds"), "planned", folder)
        journal.save()
        return journal

    @classmethod
    def load(cls, folder: Path) -> Journal:
        try:
            raw = json.loads((folder / "journal.json").read_text())
            entries = [Entry(**e) for e in raw.pop("entries")]
            return cls(**raw, folder=folder, entries=entries)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise StrataError(f"the migration journal {folder}/journal.json cannot be read ({exc})") from None

    def save(self) -> None:
        data = {k: v for k, v in asdict(self).items() if k not in ("folder", "entries")}
        data["entries"] = [asdict(e) for e in self.entries]
        _write(self.folder / "journal.json", (json.dumps(data, indent=2) + "\n").encode())

    def keep(self, kind: str, entry: Entry, data: bytes) -> None:
        """Keep ``data`` as ``kind`` ("before", "planned", "final") of ``entry``, fsynced."""
        _write(self.folder / kind / entry.file, data)

    def kept(self, kind: str, entry: Entry) -> bytes | None:
        path = self.folder / kind / entry.file
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        expected = getattr(entry, kind)
        if sha256(data) != expected:
            raise StrataError(f"migration {self.id}: {path} does not match the checksum in its journal "
                              "(the file was changed or damaged); refusing to use it")
        return data

    def step(self, status: str, outcome: str = "") -> None:
        self.status = status
        if outcome:
            self.outcome = outcome
        if status in FINISHED:
            self.finished = datetime.now(UTC).isoformat(timespec="seconds")
        self.save()

    @property
    def unfinished(self) -> bool:
        return self.status not in FINISHED

    def stacks(self) -> set[str]:
        return {e.stack for e in self.entries if e.stack is not None}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "who": self.who, "started": self.started,
                "finished": self.finished, "status": self.status, "outcome": self.outcome, "moves": self.moves,
                "stacks": sorted(self.stacks())}


def journals(root: Path) -> list[Journal]:
    """Every migration of the repository, oldest first."""
    base = root / MIGRATIONS
    if not base.is_dir():
        return []
    return [Journal.load(folder) for folder in sorted(base.iterdir()) if (folder / "journal.json").is_file()]


def find(root: Path, ident: str) -> Journal:
    folder = root / MIGRATIONS / ident
    if not (folder / "journal.json").is_file():
        known = [j.id for j in journals(root)]
        hint = f" (known: {', '.join(known[-5:])})" if known else " (there are none: see `strata migrate ls`)"
        from strata.errors import UsageError

        raise UsageError(f"no migration {ident!r}{hint}")
    return Journal.load(folder)


def refuse_if_interrupted(root: Path, stacks: set[str]) -> None:
    """A command that touches these stacks may not run while a migration of theirs is unfinished."""
    for journal in journals(root):
        touched = journal.stacks() & stacks
        if journal.unfinished and touched:
            raise StrataError(
                f"migration {journal.id} ({journal.file}) was interrupted while {journal.status} and touches "
                f"{', '.join(sorted(touched)[:3])}{' …' if len(touched) > 3 else ''}: finish it with "
                f"`strata migrate resume {journal.id}` or undo it with `strata migrate rollback {journal.id}`")


def _write(path: Path, data: bytes) -> None:
    write_atomic(private_dir(path.parent) / path.name, data, mode=SECRET)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
