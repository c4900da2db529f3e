"""strata state ls | pull | versions | restore | push | backup | verify | replicate.

The same commands for every backend strata can open (local, s3, pg): each goes through the stack's
:class:`~strata.backends.base.StateStore`, and every write through :mod:`strata.state.operations`.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from strata.backends.base import BackendError, StateVersion
from strata.errors import EXIT_ERROR, UsageError
from strata.model.selection import Selection, select
from strata.model.stack import Stack
from strata.output import confirm, err, out, print_json, slow_note, table
from strata.state.operations import StateError, WriteResult, duration_seconds, failure, open_store, parse, sound
from strata.workspace import Workspace


def _stacks(ws: Workspace, selection: Selection) -> list[Stack]:
    repo = ws.repository()
    repo.require_valid()
    return select(repo, selection, ws.cwd)


def _one(ws: Workspace, arg: str) -> Stack:
    repo = ws.repository()
    repo.require_valid()
    return repo.resolve_stack(arg, ws.cwd)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


# -- ls ------------------------------------------------------------------------------------------------------


def _describe(root: Path, stack: Stack) -> dict[str, Any]:
    row: dict[str, Any] = {"stack": stack.path, "backend": stack.backend.type if stack.backend else None}
    try:
        store = open_store(root, stack)
    except StateError as exc:
        return {**row, "error": exc.message}
    row["location"] = store.where
    with store:
        try:
            with slow_note(f"{stack.path}: reading its state ({store.backend} backend, {store.where})"):
                stat = store.stat()
                raw = store.read()
                lock = store.current_lock()
        except BackendError as exc:
            return {**row, "error": str(failure(stack, store, exc))}
        if raw is not None:
            try:
                doc = parse(stack, store, raw)
            except StateError as exc:
                return {**row, "error": exc.message}
            store.remember(raw, "seen")
            row.update(serial=doc.valid_serial, lineage=doc.lineage, resources=doc.resource_count, size=len(raw),
                       terraform_version=doc.terraform_version, sha256=doc.sha256)
        else:
            row.update(serial=None, lineage=None, resources=None, size=None)
        row["modified"] = stat.modified.isoformat() if stat and stat.modified else None
        row["lock"] = lock.to_report() if lock else None
    return row


def ls(ws: Workspace, selection: Selection, *, as_json: bool) -> int:
    stacks = _stacks(ws, selection)
    root = ws.repository().root
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(lambda s: _describe(root, s), stacks))
    failed = [r for r in rows if "error" in r]
    if as_json:
        print_json({"stacks": rows})
    else:
        lines = []
        for r in rows:
            if "error" in r:
                lines.append([r["stack"], r["backend"] or "-", "ERROR", "", "", "", "", ""])
                continue
            lock = r.get("lock")
            lines.append([r["stack"], r["backend"], "-" if r["serial"] is None else str(r["serial"]),
                          "-" if r["resources"] is None else str(r["resources"]), _size(r["size"]),
                          (r["modified"] or "-")[:19].replace("T", " "),
                          "-" if not lock else f"locked by {lock['who']}",
                          (r["lineage"] or "-")])
        if lines:
            out(table(["STACK", "BACKEND", "SERIAL", "RESOURCES", "SIZE", "MODIFIED", "LOCK", "LINEAGE"], lines))
        else:
            out("no stacks selected")
    for r in failed:
        err(f"error: {r['error']}")
    return EXIT_ERROR if failed else 0


# -- pull / versions -------------------------------------------------------------------------------------------


def pull(ws: Workspace, stack_arg: str, *, version: str | None) -> int:
    stack = _one(ws, stack_arg)
    with open_store(ws.repository().root, stack) as store:
        try:
            with slow_note(f"{stack.path}: reading its state ({store.backend} backend, {store.where})"):
                raw = store.read_version(version) if version else store.read()
        except BackendError as exc:
            raise failure(stack, store, exc) from None
        if raw is None:
            raise StateError(f"{stack.path} ({store.backend} backend, {store.where}) has no state yet")
        parse(stack, store, raw)  # refuse to hand on something that is not a state
        if not version:
            store.remember(raw, "seen")
    sys.stdout.buffer.write(raw)
    sys.stdout.flush()
    return 0


def versions(ws: Workspace, stack_arg: str, *, as_json: bool) -> int:
    stack = _one(ws, stack_arg)
    with open_store(ws.repository().root, stack) as store:
        try:
            raw = store.read()
            if raw is not None and sound(raw):
                store.remember(raw, "seen")
            found: list[StateVersion] = store.versions()
            details: list[tuple[StateVersion, int | None, str | None, int | None]] = []
            for v in found:
                try:
                    doc = parse(stack, store, store.read_version(v.id))
                    details.append((v, doc.valid_serial, doc.lineage, doc.resource_count))
                except StateError:
                    details.append((v, None, None, None))
        except BackendError as exc:
            raise failure(stack, store, exc) from None
    if as_json:
        print_json({"stack": stack.path, "versions": [
            {"id": v.id, "modified": v.modified.isoformat() if v.modified else None, "size": v.size,
             "current": v.current, "kind": v.kind, "serial": serial, "lineage": lineage, "resources": count}
            for v, serial, lineage, count in details]})
        return 0
    if not details:
        out(f"{stack.path}: no versions")
        return 0
    rows = [[v.id, _when(v.modified), "-" if serial is None else str(serial), "-" if count is None else str(count),
             _size(v.size), "current" if v.current else ""] for v, serial, _, count in details]
    out(table(["VERSION", "MODIFIED", "SERIAL", "RESOURCES", "SIZE", ""], rows))
    return 0


# -- restore ---------------------------------------------------------------------------------------------------


def restore(ws: Workspace, stack_arg: str, *, version: str, yes: bool, lock_timeout: str, as_json: bool) -> int:
    from strata.migrate.journal import refuse_if_interrupted
    from strata.state.operations import restore as do_restore

    stack = _one(ws, stack_arg)
    refuse_if_interrupted(ws.repository().root, {stack.path})
    timeout = duration_seconds(lock_timeout)
    if not yes:
        what = f"restore {stack.path} to version {version}"
        confirm(what, f"{what}?")
    with open_store(ws.repository().root, stack) as store:
        result = do_restore(ws.repository().root, stack, store, version, lock_timeout=timeout)
    if as_json:
        print_json(result.to_json())
    else:
        out(f"{stack.path}: restored version {version} as serial {result.serial} (lineage {result.lineage})")
        _replaced(result)
    return 0


def _replaced(result: WriteResult) -> None:
    if result.backup and result.damaged:
        out(f"  the damaged state it replaced ({result.damaged}) is kept as it was in {result.backup}")
    elif result.backup:
        out(f"  the state it replaced (serial {result.previous_serial}) is kept in {result.backup}")


# -- push ------------------------------------------------------------------------------------------------------


def _read_state_file(file: str) -> bytes:
    """A state file to push: a regular file (never a FIFO, which would block, or a device such as /dev/zero,
    which would fill the memory) or standard input, of at most MAX_STATE_SIZE bytes."""
    from strata.config.discover import read_config
    from strata.config.limits import MAX_STATE_SIZE

    if file != "-":
        return read_config(file, file, limit=MAX_STATE_SIZE)
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_STATE_SIZE:
        chunk = sys.stdin.buffer.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise StateError(f"standard input holds more than {MAX_STATE_SIZE // (1024 * 1024)} MiB: not a state to push")


def push(ws: Workspace, stack_arg: str, file: str, *, yes: bool, force_lineage: bool, force: bool,
         lock_timeout: str, as_json: bool) -> int:
    """Write a state file (terraform's errored.tfstate, a backup) as the stack's state, under the write rules."""
    from strata.migrate.journal import refuse_if_interrupted
    from strata.state.operations import backup_dir
    from strata.state.operations import push as do_push

    stack = _one(ws, stack_arg)
    root = ws.repository().root
    refuse_if_interrupted(root, {stack.path})
    timeout = duration_seconds(lock_timeout)
    contents = _read_state_file(file)
    if not yes:
        what = f"push {file} as the state of {stack.path or '.'}"
        confirm(what, f"{what}?")
    errored = root / stack.path / "errored.tfstate"
    is_errored = file != "-" and errored.is_file() and Path(file).resolve() == errored.resolve()
    with open_store(root, stack) as store:
        result = do_push(root, stack, store, contents, file if file != "-" else "standard input",
                         force_lineage=force_lineage, force=force, lock_timeout=timeout,
                         errored_state=is_errored)
    moved = None
    if is_errored:
        # saved now: keep terraform's file with the backups, so plan/apply no longer stop at it
        from strata.atomic import SECRET, private_dir, write_atomic

        moved = private_dir(backup_dir(root, stack)) / f"{result.sha256[:12]}-pushed-errored.tfstate"
        write_atomic(moved, contents, mode=SECRET)
        errored.unlink()
    if as_json:
        print_json({**result.to_json(), "pushed": file, "errored_state_moved_to": str(moved) if moved else None})
    else:
        out(f"{stack.path or '.'}: pushed {file} as serial {result.serial} (lineage {result.lineage})")
        _replaced(result)
        if moved:
            out(f"  {file} is saved now; it was moved to {moved}")
    return 0


# -- backup / verify / replicate -------------------------------------------------------------------------------


def backup(ws: Workspace, selection: Selection, *, to: str, as_json: bool) -> int:
    from strata.state import backup as backups

    stacks = _stacks(ws, selection)
    report = backups.backup(ws.repository().root, stacks, to, progress=err)
    if as_json:
        print_json({"destination": report.destination, "stacks": report.entries,
                    "without_state": report.without_state})
    else:
        out(f"backed up {len(report.entries)} state(s) to {report.destination} (manifest: "
            f"{backups.MANIFEST}); {len(report.without_state)} stack(s) without state")
    return 0


def verify(ws: Workspace, selection: Selection, *, source: str | None, as_json: bool) -> int:
    from strata.state import backup as backups

    stacks = _stacks(ws, selection)
    if source is not None:
        findings = backups.verify_backup(source, stacks)
    else:
        findings = backups.verify_states(ws.repository().root, stacks, progress=lambda _: None)
    bad = [f for f in findings if not f.ok]
    if as_json:
        print_json({"ok": not bad, "findings": [f.to_json() for f in findings]})
    else:
        for f in findings:
            out(f"{'ok    ' if f.ok else 'FAILED'}  {f.stack}: {f.message}")
        out(f"{len(findings) - len(bad)} ok, {len(bad)} failed")
    return EXIT_ERROR if bad else 0


def replicate(ws: Workspace, selection: Selection, *, to_region: str | None, emit_config: bool,
              role_arn: str | None, lock_timeout: str, as_json: bool) -> int:
    stacks = _stacks(ws, selection)
    repo = ws.repository()
    groups: dict[str, list[Stack]] = {}
    for stack in stacks:
        region = to_region or _dr_region(stack)
        if region is None:
            raise UsageError(f"{stack.path}: no DR region: pass --to-region REGION or set "
                             'bootstrap { dr_region = "..." } in its strata.hcl')
        groups.setdefault(region, []).append(stack)
    if emit_config:
        configs: dict[str, Any] = {}
        for region, group in sorted(groups.items()):
            configs.update(_replication_configs(group, region, role_arn, repo.settings.production_environments))
        out(json.dumps(configs, indent=2))
        return 0
    from strata.state.replicate import replicate as do_replicate

    changes: list[Any] = []
    replicas: list[Any] = []
    for region, group in sorted(groups.items()):
        made, copied = do_replicate(repo.root, group, region, repo.settings.production_environments,
                                    progress=err, lock_timeout=duration_seconds(lock_timeout))
        changes += made
        replicas += copied
    if as_json:
        print_json({"backend": [c.to_json() for c in changes], "stacks": [r.to_json() for r in replicas]})
    else:
        created = [c for c in changes if c.action in ("created", "changed")]
        if created:
            out(f"DR backends: {len(created)} resource(s) created or repaired")
        count = sum(1 for r in replicas if r.status == "copied")
        out(f"replicated {count} state(s) to {', '.join(sorted(groups))}; "
            f"{sum(1 for r in replicas if r.status == 'unchanged')} already current; checksums verified")
    return 0


def _dr_region(stack: Stack) -> str | None:
    setting = stack.bootstrap.get("dr_region")
    value = setting.plain() if setting is not None else None
    return str(value) if value else None


def _replication_configs(stacks: list[Stack], to_region: str, role_arn: str | None,
                         production_environments: tuple[str, ...]) -> dict[str, Any]:
    from strata.bootstrap.emit import replication_configuration
    from strata.bootstrap.targets import dr_values, plan_targets, s3_target

    targets = plan_targets(stacks, production_environments)
    if not targets.s3:
        raise UsageError("no selected stack keeps its state in S3: nothing to replicate")
    configs = {}
    for source in targets.s3:
        group = [s for s in stacks if s.path in source.stacks]
        alias = group[0].bootstrap.get("kms_key_alias")
        dr = dr_values(source.values, to_region, str(alias.plain()) if alias is not None else None)
        destination = s3_target(group, production_environments, values=dr)
        role = role_arn or f"arn:aws:iam::<account-id>:role/{source.bucket}-replication"
        configs[source.bucket] = replication_configuration(source, destination, role)
    return configs
