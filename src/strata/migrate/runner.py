"""Migrations, end to end: plan (the dry run), apply, resume, rollback.

apply:  lock every touched state (Terraform's own locks) → back each up byte for byte into the journal →
        state surgery in memory → write every target, then the source (lineage kept, serial + 1) →
        verify with no-op plans in temporary copies (:mod:`strata.migrate.verify`) → write the outputs
        terraform computed → release. Changes in any verification plan → every state is written back from
        its backup, byte-identical (unless ``--no-rollback``). Each step is in the journal first, so a
        migration killed anywhere is finished by :func:`resume` or undone by :func:`rollback`.

Test hook: with ``STRATA_TEST_PAUSE_AT=<point>`` in the environment (points: ``planned``, ``locked``,
``writing`` — after the first state is written —, ``verifying``, ``finishing``), ``apply`` stops at that
point, writes ``paused-at-<point>`` into the migration's folder and waits until a ``go-<point>`` file
appears there. The kill -9 tests use it to kill at an exact step instead of racing the clock. Unset (as
it always is outside the tests) it does nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.backends import get_backend
from strata.backends.base import BackendError, LockInfo, StateStore
from strata.errors import ConfigError, StrataError
from strata.migrate.journal import Entry, Journal, refuse_if_interrupted, sha256
from strata.migrate.spec import Migration
from strata.migrate.surgery import SurgeryResult, split
from strata.model.repository import Repository
from strata.model.stack import Stack
from strata.state.document import StateDocument, StateFormatError
from strata.state.operations import _TerminateAsInterrupt, live_local_holder, open_store
from strata.terraform.binary import TerraformBinary

Progress = Callable[[str], None]
OPERATION = "strata-migrate"


class MigrationError(StrataError):
    """A migration refused or failed; the message says what and where, and what was left how."""


@dataclass(slots=True)
class Touched:
    entry: Entry
    store: StateStore
    stack: Stack | None


@dataclass(slots=True)
class Result:
    journal: Journal | None
    surgery: SurgeryResult | None
    verdicts: list[Any] = field(default_factory=list)
    ok: bool = True
    message: str = ""


# -- test hook ---------------------------------------------------------------------------------------------------

PAUSE_AT = "STRATA_TEST_PAUSE_AT"


def _pause_for_test(journal: Journal, point: str) -> None:
    """The documented test hook (see the module docstring): nothing unless ``STRATA_TEST_PAUSE_AT`` is ``point``."""
    if os.environ.get(PAUSE_AT) != point:
        return
    (journal.folder / f"paused-at-{point}").write_text(f"{os.getpid()}\n")
    go = journal.folder / f"go-{point}"
    while not go.exists():
        time.sleep(0.02)


# -- opening the states ----------------------------------------------------------------------------------------


def _open(repo: Repository, migration: Migration) -> tuple[Touched, dict[str, Touched]]:
    spec = migration.source
    if spec.stack is not None:
        stack = repo.stacks.get(spec.stack)
        if stack is None:
            raise ConfigError(f"the source {spec.stack!r} is not a stack of this repository", spec.source)
        source = Touched(Entry(stack.path, "source", "", "", stack.path), open_store(repo.root, stack), stack)
    else:
        backend = get_backend(spec.backend_type or "")
        if backend is None:
            raise ConfigError(f"unknown backend type {spec.backend_type!r}", spec.source)
        try:
            store = backend.store(spec.backend_values, repo.root, repo.root)
        except NotImplementedError:
            raise ConfigError(f"strata cannot open {spec.backend_type} state yet (local, s3, pg)", spec.source) \
                from None
        source = Touched(Entry("source", "source", "", "", None), store, None)
    targets: dict[str, Touched] = {}
    for rule in migration.rules:
        if rule.kind != "move" or rule.target is None or rule.target in targets:
            continue
        stack = repo.stacks.get(rule.target.strip("/"))
        if stack is None:
            raise ConfigError(f"move {rule.name!r}: {rule.target!r} is not a stack of this repository",
                              rule.target_source if rule.target_source.file else rule.source)
        if stack.path == source.entry.stack:
            raise ConfigError(f"move {rule.name!r}: the target is the source itself",
                              rule.target_source if rule.target_source.file else rule.source)
        targets[stack.path] = Touched(Entry(stack.path, "target", "", "", stack.path),
                                      open_store(repo.root, stack), stack)
    for touched in (source, *targets.values()):
        touched.entry.backend = touched.store.backend
        touched.entry.location = touched.store.where
    return source, targets


def _read(touched: Touched) -> bytes | None:
    try:
        return touched.store.read()
    except BackendError as exc:
        raise MigrationError(f"{touched.entry.name} ({touched.store.backend} backend, {touched.store.where}): "
                             f"{exc}") from None


def _parse(touched: Touched, raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        doc = StateDocument.parse(raw)
    except StateFormatError as exc:
        raise MigrationError(f"{touched.entry.name} ({touched.store.where}): the state is not usable: {exc}") \
            from None
    problems = doc.problems()
    if problems:
        raise MigrationError(f"{touched.entry.name} ({touched.store.where}): {'; '.join(problems)}")
    return doc.data


def _surgery(migration: Migration, source: Touched, targets: dict[str, Touched],
             states: dict[str, bytes | None]) -> SurgeryResult:
    source_data = _parse(source, states[source.entry.name])
    if source_data is None:
        raise MigrationError(f"the source {source.entry.name} ({source.store.where}) has no state: nothing to move")
    return split(source_data, {name: _parse(t, states[name]) for name, t in targets.items()}, migration.rules)


def _planned_bytes(data: dict[str, Any], before: bytes | None) -> bytes:
    """``data`` as the next version of ``before``: lineage kept (a new one for a new state), serial + 1."""
    if before is None:
        return StateDocument(b"", data).with_identity(1, str(uuid.uuid4()))
    doc = StateDocument.parse(before)
    return StateDocument(b"", data).with_identity(doc.serial + 1, doc.lineage or str(uuid.uuid4()))


# -- plan --------------------------------------------------------------------------------------------------------


def plan(repo: Repository, binary: TerraformBinary, migration: Migration, work: Path, progress: Progress) -> Result:
    """The dry run: moves, problems, and no-op verification of the migrated states. Writes nothing."""
    source, targets = _open(repo, migration)
    with _closing(source, *targets.values()):
        states = {t.entry.name: _read(t) for t in (source, *targets.values())}
        surgery = _surgery(migration, source, targets, states)
        if not surgery.ok():
            return Result(None, surgery, ok=False, message="refused: unmatched resources or collisions")
        planned = {name: _planned_bytes(data, states[name]) for name, data in surgery.targets.items()}
        if source.stack is not None:
            planned[source.stack.path] = _planned_bytes(surgery.source, states[source.entry.name])
    verification = _verify(repo, binary, planned, work, progress)
    return Result(None, surgery, verification.verdicts, verification.ok(),
                  "" if verification.ok() else "a verification plan shows changes")


def _verify(repo: Repository, binary: TerraformBinary, states: dict[str, bytes], work: Path,
            progress: Progress) -> Any:
    from strata.migrate.verify import verify

    return verify(repo, binary, states, work=work, log=progress)


# -- apply ------------------------------------------------------------------------------------------------------


def apply(repo: Repository, binary: TerraformBinary, migration: Migration, *, rollback: bool = True,
          progress: Progress, spec_path: Path | None = None) -> Result:
    return _run(repo, binary, migration, verify=True, rollback=rollback, progress=progress, spec_path=spec_path)


def move_only(repo: Repository, migration: Migration, progress: Progress) -> Result:
    """``strata state mv``: the moves with the same locks, backups and journal as a migration, without
    verification plans (the code may not be updated yet, as with ``terraform state mv``)."""
    return _run(repo, None, migration, verify=False, rollback=False, progress=progress, spec_path=None)


def _run(repo: Repository, binary: TerraformBinary | None, migration: Migration, *, verify: bool, rollback: bool,
         progress: Progress, spec_path: Path | None) -> Result:
    source, targets = _open(repo, migration)
    touched = [source, *(targets[k] for k in sorted(targets))]
    refuse_if_interrupted(repo.root, {t.stack.path for t in touched if t.stack is not None})
    journal = Journal.create(repo.root, Path(migration.file).stem, migration.file)
    journal.entries = [t.entry for t in touched]
    journal.verify = verify
    journal.spec_path = str(spec_path.resolve()) if spec_path is not None else ""
    journal.save()
    _pause_for_test(journal, "planned")
    try:
        with _closing(*touched), _TerminateAsInterrupt(), _locked(journal, touched):
            states = {t.entry.name: _read(t) for t in touched}
            for t in touched:  # the backups, byte for byte, before anything else happens
                t.entry.before = sha256(states[t.entry.name])
                if states[t.entry.name] is not None:
                    journal.keep("before", t.entry, states[t.entry.name] or b"")
            journal.step("locked")
            _pause_for_test(journal, "locked")
            surgery = _surgery(migration, source, targets, states)
            journal.moves = len(surgery.moves)
            if not surgery.ok():
                journal.step("refused", "unmatched resources or collisions; nothing was written")
                return Result(journal, surgery, ok=False, message=journal.outcome)
            if not surgery.moves:
                wanted = [p for r in migration.rules if r.kind == "move" for p in (*r.patterns, *r.regexes)]
                journal.step("refused", f"nothing to move: no resource of {source.entry.name} matches "
                                        f"{', '.join(wanted[:5])}{' …' if len(wanted) > 5 else ''}; "
                                        "nothing was written")
                return Result(journal, surgery, ok=verify, message=journal.outcome)
            for t in touched:
                data = surgery.source if t is source else surgery.targets[t.entry.name]
                planned = _planned_bytes(data, states[t.entry.name])
                t.entry.planned = sha256(planned)
                journal.keep("planned", t.entry, planned)
            journal.step("writing")
            _write_all(journal, touched, "planned", expect=("before",), progress=progress)
            if binary is None or not verify:
                journal.step("done", f"{journal.moves} resource(s) moved")
                return Result(journal, surgery, ok=True, message=journal.outcome)
            return _verify_and_finish(repo, binary, journal, touched, surgery, rollback, progress)
    except MigrationError as exc:
        if journal.status in ("planned", "locked"):  # refused before anything was written
            journal.step("refused", exc.message)
        raise


def _verify_and_finish(repo: Repository, binary: TerraformBinary, journal: Journal, touched: list[Touched],
                       surgery: SurgeryResult | None, rollback: bool, progress: Progress) -> Result:
    journal.step("verifying")
    _pause_for_test(journal, "verifying")
    stacks = {t.stack.path: journal.kept("planned", t.entry) or b"" for t in touched if t.stack is not None}
    verification = _verify(repo, binary, stacks, journal.folder / "verify", progress)
    if not verification.ok():
        if not rollback:
            journal.step("done", "verification plans show changes; states left as migrated (--no-rollback)")
            return Result(journal, surgery, verification.verdicts, ok=False, message=journal.outcome)
        journal.step("rolling-back", "verification plans show changes")
        _write_all(journal, touched, "before", expect=("planned", "final", "before"), progress=progress)
        journal.step("rolled-back", "verification plans showed changes; every state was restored byte for byte")
        return Result(journal, surgery, verification.verdicts, ok=False, message=journal.outcome)
    # terraform computed the outputs of the migrated states: keep them, so every stack plans clean
    for t in touched:
        if t.stack is None:
            continue
        planned = journal.kept("planned", t.entry) or b""
        refreshed = verification.states.get(t.stack.path)
        final = _with_outputs(planned, refreshed)
        t.entry.final = sha256(final)
        journal.keep("final", t.entry, final)
    journal.step("finishing")
    _pause_for_test(journal, "finishing")
    _write_all(journal, [t for t in touched if t.entry.final is not None], "final", expect=("planned", "final"),
               progress=progress)
    journal.step("done", f"{journal.moves} resource(s) moved; every verification plan is a no-op")
    return Result(journal, surgery, verification.verdicts, ok=True, message=journal.outcome)


def _with_outputs(planned: bytes, refreshed: bytes | None) -> bytes:
    doc = StateDocument.parse(planned)
    if refreshed is None:
        return planned
    outputs = StateDocument.parse(refreshed).outputs
    if outputs == doc.outputs:
        return planned
    data = dict(doc.data)
    data["outputs"] = outputs
    return StateDocument(b"", data).with_identity(doc.serial + 1, doc.lineage)


def _write_all(journal: Journal, touched: list[Touched], kind: str, *, expect: tuple[str, ...],
               progress: Progress) -> None:
    """Make every state ``kind`` ("planned", "final", "before"): targets first, the source last (like
    ``terraform state mv``); a state already there is left alone; a state that is none of ``expect`` was
    changed by someone else, and the migration stops before touching it."""
    ordered = [t for t in touched if t.entry.role == "target"] + [t for t in touched if t.entry.role == "source"]
    if kind == "before":
        ordered.reverse()
    for t in ordered:
        if kind == "before" and t.entry.written is None and t.entry.writing is None:
            continue  # never written by this migration: nothing to undo (and its backup may not exist)
        want = getattr(t.entry, kind)
        current = sha256(_read(t))
        if current == want:
            t.entry.writing = None
            continue
        allowed = {getattr(t.entry, k) for k in expect}
        if current not in allowed and t.entry.writing is None:  # (a write cut short may leave anything)
            raise MigrationError(f"{t.entry.name} ({t.store.where}) changed outside this migration (sha256 "
                                 f"{(current or 'none')[:12]}); it was left alone — see `strata migrate ls`")
        data = journal.kept(kind, t.entry)
        t.entry.writing = kind
        journal.save()
        try:
            if data is None:
                t.store.delete()
            else:
                t.store.write(data)
            back = t.store.read()
        except BackendError as exc:
            raise MigrationError(f"{t.entry.name} ({t.store.where}): {exc}") from None
        if sha256(back) != want:
            raise MigrationError(f"{t.entry.name} ({t.store.where}): the state read back differs from what was "
                                 "written")
        t.entry.written = want
        t.entry.writing = None
        journal.save()
        if journal.status == "writing":
            _pause_for_test(journal, "writing")
        progress(f"{t.entry.name}: {'restored' if kind == 'before' else 'written'} ({t.store.where})")


# -- resume / rollback ------------------------------------------------------------------------------------------


def _reopen(repo: Repository, journal: Journal) -> list[Touched]:
    touched = []
    for entry in journal.entries:
        if entry.stack is None:
            touched.append(_reopen_outside(repo, journal, entry))
            continue
        stack = repo.stacks.get(entry.stack)
        if stack is None:
            raise MigrationError(f"migration {journal.id}: {entry.stack} is no longer a stack of this repository")
        touched.append(Touched(entry, open_store(repo.root, stack), stack))
    return touched


def _reopen_outside(repo: Repository, journal: Journal, entry: Entry) -> Touched:
    """A source outside every stack, reopened from the migration file (credentials never go in the journal)."""
    from strata.migrate.spec import load_migration

    path = Path(journal.spec_path) if journal.spec_path else None
    if path is None or not path.is_file():
        raise MigrationError(f"migration {journal.id}: its source is a state outside every stack, described in "
                             f"{journal.file}, which is gone; restore the file to resume or roll back")
    spec = load_migration(path, journal.file).source
    backend = get_backend(spec.backend_type or "")
    if backend is None or spec.backend_type is None:
        raise MigrationError(f"migration {journal.id}: {journal.file} no longer names the source's backend")
    store = backend.store(spec.backend_values, repo.root, repo.root)
    if store.where != entry.location:
        raise MigrationError(f"migration {journal.id}: {journal.file} now names {store.where}, but the migration "
                             f"touched {entry.location}")
    return Touched(entry, store, None)


def resume(repo: Repository, binary: TerraformBinary, journal: Journal, progress: Progress) -> Result:
    if not journal.unfinished:
        raise MigrationError(f"migration {journal.id} is already {journal.status}: nothing to resume")
    touched = _reopen(repo, journal)
    with _closing(*touched), _TerminateAsInterrupt(), _locked(journal, touched):
        if journal.status in ("planned", "locked") or any(t.entry.planned is None for t in touched):
            # nothing was written yet: undoing is the only safe way on (the surgery was never kept)
            journal.step("refused", "interrupted before anything was written; nothing to finish: run "
                                    f"`strata migrate apply {journal.file}` again")
            return Result(journal, None, ok=True, message=journal.outcome)
        if journal.status == "rolling-back":
            _write_all(journal, touched, "before", expect=("planned", "final", "before"), progress=progress)
            journal.step("rolled-back", "finished the interrupted rollback; every state restored byte for byte")
            return Result(journal, None, ok=True, message=journal.outcome)
        if journal.status == "finishing":
            _write_all(journal, [t for t in touched if t.entry.final is not None], "final",
                       expect=("planned", "final"), progress=progress)
            journal.step("done", f"{journal.moves} resource(s) moved; every verification plan is a no-op")
            return Result(journal, None, ok=True, message=journal.outcome)
        journal.step("writing")
        _write_all(journal, touched, "planned", expect=("before", "planned"), progress=progress)
        if not journal.verify:
            journal.step("done", f"{journal.moves} resource(s) moved")
            return Result(journal, None, ok=True, message=journal.outcome)
        return _verify_and_finish(repo, binary, journal, touched, None, True, progress)


def rollback(repo: Repository, journal: Journal, progress: Progress) -> Result:
    touched = _reopen(repo, journal)
    with _closing(*touched), _TerminateAsInterrupt(), _locked(journal, touched):
        journal.step("rolling-back", "rollback asked for")
        _write_all(journal, touched, "before", expect=("planned", "final", "before"), progress=progress)
        journal.step("rolled-back", "every state restored byte for byte from the journal's backups")
    return Result(journal, None, ok=True, message=journal.outcome)


# -- locks --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(journal: Journal, touched: list[Touched]) -> Iterator[None]:
    """Hold every touched state's lock; a lock left by this migration's own dead process is taken over."""
    held: list[tuple[Touched, LockInfo]] = []
    ours = {t.entry.lock_id for t in touched if t.entry.lock_id}
    try:
        for t in sorted(touched, key=lambda t: t.entry.location):
            info = LockInfo.new(OPERATION)
            try:
                try:
                    t.store.lock(info)
                except BackendError:
                    holder = t.store.current_lock()
                    if holder is None or holder.id not in ours or live_local_holder(holder, Path(".")):
                        raise
                    t.store.force_unlock(holder)  # our own earlier run, killed while holding it
                    t.store.lock(info)
            except BackendError as exc:
                if journal.status == "planned":
                    journal.step("refused", f"{t.entry.name} is locked; nothing was written")
                raise MigrationError(f"{t.entry.name} ({t.store.backend} backend, {t.store.where}): {exc}; "
                                     "nothing was written") from None
            held.append((t, info))
            t.entry.lock_id = info.id
        journal.save()
        yield
    finally:
        for t, info in reversed(held):
            with contextlib.suppress(BackendError):
                t.store.unlock(info)


@contextlib.contextmanager
def _closing(*touched: Touched) -> Iterator[None]:
    try:
        yield
    finally:
        for t in touched:
            with contextlib.suppress(Exception):
                t.store.close()


def describe(result: Result) -> dict[str, Any]:
    """A JSON-able report."""
    surgery = result.surgery
    out: dict[str, Any] = {"ok": result.ok, "message": result.message,
                           "migration": result.journal.to_json() if result.journal else None}
    if surgery is not None:
        moves: dict[str, list[dict[str, Any]]] = {}
        for move in surgery.moves:
            moves.setdefault(move.target, []).append({"from": move.old, "to": move.new,
                                                      "instances": move.instances, "rule": move.rule})
        out.update(moves=moves, kept=surgery.kept, unmatched=surgery.unmatched, collisions=surgery.collisions)
    out["verification"] = [{"stack": v.stack, "ok": v.ok, "changes": list(v.changes), "detail": v.detail}
                           for v in result.verdicts]
    plain: dict[str, Any] = json.loads(json.dumps(out, default=str))
    return plain
