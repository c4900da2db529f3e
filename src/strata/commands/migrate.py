"""strata migrate plan | apply | resume | rollback | ls, and strata state mv | rm | import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strata.errors import EXIT_ERROR, UsageError
from strata.output import confirm, err, out, print_json, table
from strata.workspace import Workspace


def _load(ws: Workspace, file: Path) -> Any:
    from strata.migrate.spec import load_migration

    path = file if file.is_absolute() else ws.cwd / file
    if not path.is_file():
        raise UsageError(f"{file}: no such migration file")
    try:
        display = str(path.relative_to(ws.cwd))
    except ValueError:
        display = str(path)
    return load_migration(path, display)


def _repo(ws: Workspace) -> Any:
    repo = ws.repository()
    repo.require_valid()
    return repo


def _report(result: Any, as_json: bool, title: str) -> int:
    from strata.migrate.runner import describe

    report = describe(result)
    if as_json:
        print_json(report)
        return 0 if result.ok else EXIT_ERROR
    if result.journal is not None:
        out(f"{title} {result.journal.id}: {result.journal.status}")
    for target, moves in sorted((report.get("moves") or {}).items()):
        out(f"→ {target}: {len(moves)} resource(s)")
        for move in moves:
            arrow = move["from"] if move["from"] == move["to"] else f"{move['from']} → {move['to']}"
            count = f" ({move['instances']} instances)" if move["instances"] != 1 else ""
            out(f"    {arrow}{count}")
    if report.get("kept"):
        out(f"kept in the source: {len(report['kept'])} resource(s)")
    for line in report.get("unmatched") or []:
        err(f"error: no rule matches {line}: add a move or a keep rule")
    for line in report.get("collisions") or []:
        err(f"error: collision: {line}")
    verdicts = report.get("verification") or []
    if verdicts:
        rows = [[v["stack"], "no-op" if v["ok"] else "CHANGES", "; ".join(v["changes"][:4]) or v["detail"]]
                for v in verdicts]
        out(table(["STACK", "VERIFICATION PLAN", "DETAIL"], rows))
    if result.message:
        (out if result.ok else err)(("" if result.ok else "error: ") + result.message)
    return 0 if result.ok else EXIT_ERROR


def plan(ws: Workspace, file: Path, *, as_json: bool) -> int:
    import tempfile

    from strata.migrate import runner

    migration = _load(ws, file)
    repo = _repo(ws)
    binary = ws.terraform()
    with tempfile.TemporaryDirectory(prefix="strata-migrate-plan-") as work:
        result = runner.plan(repo, binary, migration, Path(work), progress=err)
    return _report(result, as_json, "migration plan")


def apply(ws: Workspace, file: Path, *, rollback: bool, yes: bool, as_json: bool) -> int:
    from strata.migrate import runner

    migration = _load(ws, file)
    repo = _repo(ws)
    binary = ws.terraform()
    if not yes:
        confirm("migrate apply rewrites states", f"apply migration {migration.file}?")
    result = runner.apply(repo, binary, migration, rollback=rollback, progress=err,
                          spec_path=file if file.is_absolute() else ws.cwd / file)
    return _report(result, as_json, "migration")


def resume(ws: Workspace, ident: str, *, as_json: bool) -> int:
    from strata.migrate import journal, runner

    repo = _repo(ws)
    result = runner.resume(repo, ws.terraform(), journal.find(repo.root, ident), progress=err)
    return _report(result, as_json, "migration")


def rollback(ws: Workspace, ident: str, *, as_json: bool) -> int:
    from strata.migrate import journal, runner

    repo = _repo(ws)
    result = runner.rollback(repo, journal.find(repo.root, ident), progress=err)
    return _report(result, as_json, "migration")


def ls(ws: Workspace, *, as_json: bool) -> int:
    from strata.migrate.journal import journals

    found = journals(ws.root)
    if as_json:
        print_json({"migrations": [j.to_json() for j in found]})
        return 0
    if not found:
        out("no migrations")
        return 0
    out(table(["ID", "STATUS", "WHO", "STARTED", "MOVES", "STACKS", "OUTCOME"],
              [[j.id, j.status, j.who, j.started, str(j.moves), str(len(j.stacks())), j.outcome] for j in found]))
    return 0


# -- one-off state operations ------------------------------------------------------------------------------------


def state_mv(ws: Workspace, source: str, address: str, target: str, new_address: str | None, *,
             as_json: bool) -> int:
    """One resource (or module) from one stack's state to another's, as a one-rule migration: the same
    locks, backups and journal, no verification plans (like ``terraform state mv``)."""
    import re

    from strata.errors import Source
    from strata.migrate import runner
    from strata.migrate.spec import Migration, Rule, SourceSpec

    instance = re.fullmatch(r"(?P<base>.+)\[[^\]]*\]", address)
    if instance and not re.search(r"(^|\.)module\.[A-Za-z0-9_-]+$", instance["base"]):
        raise UsageError(f"{address}: strata moves whole resources (every instance of a count/for_each resource "
                         f"together); give {instance['base']}")
    repo = _repo(ws)
    src, dst = repo.resolve_stack(source, ws.cwd), repo.resolve_stack(target, ws.cwd)
    where = Source(note="command line")
    rename = ((address, new_address),) if new_address and new_address != address else ()
    migration = Migration(
        name="state-mv", file="state-mv", description=f"strata state mv {source} {address} {target}",
        source=SourceSpec(src.path, None, {}, where),
        rules=(Rule("mv", "move", (address,), (), dst.path, rename, where),
               Rule("rest", "keep", ("*",), (), None, (), where)))
    result = runner.move_only(repo, migration, progress=err)
    return _report(result, as_json, "state mv")


def state_rm(ws: Workspace, stack_arg: str, addresses: list[str], *, as_json: bool) -> int:
    from strata.migrate.journal import refuse_if_interrupted
    from strata.migrate.surgery import matches
    from strata.state.document import StateDocument
    from strata.state.operations import StateError, open_store, parse, write_state

    repo = _repo(ws)
    stack = repo.resolve_stack(stack_arg, ws.cwd)
    refuse_if_interrupted(repo.root, {stack.path})
    with open_store(repo.root, stack) as store:
        raw = store.read()
        if raw is None:
            raise StateError(f"{stack.path} ({store.where}) has no state")
        doc = parse(stack, store, raw)
        kept: list[tuple[str, dict[str, Any]]] = []
        removed: list[tuple[str, dict[str, Any]]] = []
        for resource in doc.resources:
            address = _address(resource)
            (removed if any(matches(address, a) for a in addresses) else kept).append((address, resource))
        if not removed:
            raise StateError(f"{stack.path}: no resource matches {', '.join(addresses)}")
        data = dict(doc.data)
        data["resources"] = [r for _, r in kept]
        result = write_state(repo.root, stack, store, StateDocument(b"", data).with_identity(doc.serial, doc.lineage),
                             operation="state-rm", expected_serial=doc.serial)
    if as_json:
        print_json({**result.to_json(), "removed": [a for a, _ in removed]})
    else:
        for address, _ in removed:
            out(f"removed {address}")
        out(f"{stack.path}: serial {result.serial}; the previous state is kept in {result.backup}")
    return 0


def state_import(ws: Workspace, stack_arg: str, address: str, ident: str) -> int:
    """``terraform import`` in the stack (terraform takes the lock), with the state backed up first."""
    from strata.commands import run as running
    from strata.model.selection import Selection
    from strata.run.engine import RunOptions
    from strata.state.document import StateDocument
    from strata.state.operations import keep_backup, open_store, sound

    repo = _repo(ws)
    stack = repo.resolve_stack(stack_arg, ws.cwd)
    with open_store(repo.root, stack) as store:
        raw = store.read()
        if raw is not None and sound(raw):
            path = keep_backup(repo.root, stack, raw, "state-import", StateDocument.parse(raw).serial)
            store.remember(raw, "before state-import")
            err(f"{stack.path}: the state before the import is kept in {path}")
    options = RunOptions(command="run", parallelism=1, args=["import", "-no-color", "-input=false", address, ident])
    return running.run(ws, Selection(paths=[stack.path]), options, quiet=True)


def _address(resource: dict[str, Any]) -> str:
    prefix = f"{resource['module']}." if resource.get("module") else ""
    data = "data." if resource.get("mode") == "data" else ""
    return f"{prefix}{data}{resource.get('type')}.{resource.get('name')}"
