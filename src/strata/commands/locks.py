"""strata locks | unlock: who holds which state lock since when, and removing a dead holder's lock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from strata.backends.base import BackendError
from strata.errors import EXIT_ERROR
from strata.model.selection import Selection, select
from strata.output import confirm, err, out, print_json, table
from strata.state.operations import StateError, failure, live_local_holder, open_store
from strata.workspace import Workspace


def run(ws: Workspace, selection: Selection, *, as_json: bool) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd)

    def probe(stack: Any) -> dict[str, Any]:
        try:
            store = open_store(repo.root, stack)
        except StateError as exc:
            return {"stack": stack.path, "error": exc.message}
        with store:
            try:
                lock = store.current_lock()
            except BackendError as exc:
                return {"stack": stack.path, "error": str(failure(stack, store, exc))}
            return {"stack": stack.path, "backend": store.backend, "location": store.where,
                    "lock": lock.to_report() if lock else None}

    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(probe, stacks))
    held = [r for r in rows if r.get("lock")]
    failed = [r for r in rows if "error" in r]
    if as_json:
        print_json({"locks": held})
    elif not held:
        out(f"no locks held ({len(rows) - len(failed)} stack(s) checked)")
    else:
        out(table(["STACK", "BACKEND", "HOLDER", "SINCE", "OPERATION", "LOCK ID", "STATE"],
                  [[r["stack"], r["backend"], r["lock"]["who"], r["lock"]["created"] or "-",
                    r["lock"]["operation"] or "-", r["lock"]["id"] or "-", str(r["lock"].get("state", "held"))]
                   for r in held]))
    for r in failed:
        err(f"error: {r['error']}")
    return EXIT_ERROR if failed else 0


def unlock(ws: Workspace, stack_arg: str, *, yes: bool, lock_id: str | None) -> int:
    repo = ws.repository()
    repo.require_valid()
    stack = repo.resolve_stack(stack_arg, ws.cwd)
    with open_store(repo.root, stack) as store:
        try:
            holder = store.current_lock()
        except BackendError as exc:
            raise failure(stack, store, exc) from None
        if holder is None:
            out(f"{stack.path}: not locked")
            return 0
        out(f"{stack.path} ({store.backend} backend, {store.where}) is locked by {holder.describe()}")
        if lock_id is not None and holder.id != lock_id:
            raise StateError(f"{stack.path}: the lock ID is {holder.id}, not {lock_id}; nothing removed")
        live = live_local_holder(holder, repo.root / stack.path)
        if live is not None:
            raise StateError(f"{stack.path}: refusing to remove the lock: {live}; stop it first")
        if not yes:
            confirm("removing someone's lock", "Remove this lock?")
        try:
            store.force_unlock(holder)
        except BackendError as exc:
            raise failure(stack, store, exc) from None
    out(f"{stack.path}: lock removed")
    return 0
