"""Dependency outputs, read straight from each dependency's state, once per run.

Reading the state object (a local file now; S3 objects and pg rows through the same backend
interface) takes a millisecond; ``terraform init`` + ``terraform output -json`` takes seconds per
dependency (Terragrunt #1438: ~18 s added per dependency). The slow path is used only for backends
strata cannot read itself.

Reading a stack's state also feeds the run's :class:`Secrets`: the sensitive values of the current state and
of its :data:`PREVIOUS_VERSIONS` newest previous versions (a secret rotated in a dependency stays in its
dependents' state, and in their plans, until they are applied). A dependency with an ``errored.tfstate``
is refused: its real state is in that file, and the outputs in its backend are stale.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from strata.backends import get_backend
from strata.backends.base import BackendError, StateStore
from strata.errors import StrataError
from strata.model.stack import BackendConfig, Stack
from strata.run.redact import Secrets
from strata.state.document import StateDocument, StateFormatError
from strata.state.operations import usable_state

Fallback = Callable[[Stack], dict[str, Any] | None]

# How many previous versions of a state are read for the secrets they held: a few object reads (S3), rows
# (pg) or files (local) per stack and run; enough for the applies between a rotation and the dependents' next.
PREVIOUS_VERSIONS = 5
# Where terraform leaves the state it could not save (in the stack's folder): see strata.run.engine
ERRORED_STATE = "errored.tfstate"


class OutputReader:
    """Outputs per stack (name -> {"value", "type", "sensitive"}), cached until the stack changes."""

    def __init__(self, root: Path, fallback: Fallback | None = None, secrets: Secrets | None = None,
                 ignore_errored_state: bool = False) -> None:
        self.root = root
        self.fallback = fallback
        self.secrets = secrets  # collects every sensitive value read, to redact it wherever strata writes
        self.ignore_errored_state = ignore_errored_state  # read outputs although an errored.tfstate waits
        self._cache: dict[str, dict[str, Any] | None] = {}
        self._lock = threading.Lock()
        self._reading: dict[str, threading.Lock] = {}  # one reader per stack (the fallback may run init)

    def forget(self, stack: Stack) -> None:
        """The stack was applied or destroyed: read it again next time."""
        with self._lock:
            self._cache.pop(stack.path, None)

    def outputs(self, stack: Stack) -> dict[str, Any] | None:
        """The stack's outputs, or None when it has no state (or a state without resources and outputs)."""
        with self._lock:
            if stack.path in self._cache:
                return self._cache[stack.path]
            reading = self._reading.setdefault(stack.path, threading.Lock())
        with reading:
            with self._lock:
                if stack.path in self._cache:
                    return self._cache[stack.path]
            result = self._read(stack)
            if self.secrets is not None:
                self.secrets.add_outputs(result)  # the fallback's (terraform output -json)
            with self._lock:
                self._cache[stack.path] = result
        return result

    def values(self, stack: Stack) -> dict[str, Any] | None:
        outputs = self.outputs(stack)
        return None if outputs is None else {k: v.get("value") for k, v in outputs.items()}

    def learn_secrets(self, stack: Stack) -> None:
        """Collect the secrets of the stack's own state and its previous versions, before terraform runs in it
        (it may print them). Best effort: where strata cannot read the state, terraform decides."""
        if self.secrets is None or stack.backend is None:
            return
        try:
            with self._store(stack, stack.backend) as store:
                self._learn(store, store.read())
        except (NotImplementedError, StrataError, OSError):
            return

    def _store(self, stack: Stack, config: BackendConfig) -> StateStore:
        """The stack's state store; NotImplementedError for a backend strata cannot read itself."""
        backend = get_backend(config.type)
        if backend is None:
            raise NotImplementedError
        return backend.store(config.values(), self.root / stack.path, self.root)

    def _learn(self, store: StateStore, current: bytes | None) -> None:
        """Add the secrets of ``current`` and of the newest previous versions (best effort: listing or
        reading versions may need a permission that reading the state does not)."""
        if self.secrets is None:
            return
        try:
            ids = [v.id for v in store.versions()[:PREVIOUS_VERSIONS + 1] if not v.current][:PREVIOUS_VERSIONS]
        except StrataError:
            ids = []
        found = [current]
        if ids:
            with ThreadPoolExecutor(max_workers=len(ids)) as pool:
                found += pool.map(lambda version: _version_or_none(store, version), ids)
        for data in found:
            try:
                if data is not None:
                    self.secrets.add_state(StateDocument.parse(data).data)
            except StateFormatError:
                continue

    def _refuse_errored(self, stack: Stack) -> None:
        """Its real state is in errored.tfstate: the outputs in its backend are stale (unless told otherwise)."""
        rel = errored_state(self.root, stack)
        if self.ignore_errored_state or rel is None:
            return
        raise StrataError(f"{rel} holds the state terraform could not save in an earlier run of {stack.path or '.'}: "
                          f"its outputs in the backend are stale. Push it with `strata state push {stack.path or '.'} "
                          f"{rel}` (which then moves it aside), or pass --ignore-errored-state to use the outputs "
                          "as saved")

    def _read(self, stack: Stack) -> dict[str, Any] | None:
        if stack.backend is None:
            return None
        self._refuse_errored(stack)
        try:
            store = self._store(stack, stack.backend)
        except BackendError as exc:
            raise StrataError(f"cannot read the outputs of {stack.path} ({stack.backend.type} backend): "
                              f"{exc}") from None
        except NotImplementedError:
            if self.fallback is None:
                raise StrataError(f"strata cannot read {stack.backend.type} state by itself yet; "
                                  f"use `strata run {stack.path} -- output -json`") from None
            return self.fallback(stack)
        with store:
            # a damaged state, or one emptied while its history shows it had state, is an error here:
            # mock outputs are for stacks never applied (strata.state.operations.usable_state)
            doc = usable_state(stack, store)
            self._learn(store, doc.raw if doc is not None else None)
        return None if doc is None else outputs_of(doc)


def errored_state(root: Path, stack: Stack) -> str | None:
    """The errored.tfstate terraform left in the stack's folder (repository-relative), or None."""
    rel = os.path.join(stack.path, ERRORED_STATE)
    return rel if (root / rel).is_file() else None


def _version_or_none(store: StateStore, version: str) -> bytes | None:
    try:
        return store.read_version(version)
    except StrataError:
        return None


def outputs_of(doc: StateDocument) -> dict[str, Any] | None:
    """Outputs of a parsed state; None for an empty state (no resources, no outputs)."""
    if doc.is_empty():
        return None
    return {name: dict(entry) for name, entry in doc.outputs.items() if isinstance(entry, dict)}


def parse_outputs(data: bytes, stack: Stack) -> dict[str, Any] | None:
    """Outputs of a state file (format version 4); None for an empty state."""
    try:
        doc = StateDocument.parse(data)
    except StateFormatError as exc:
        raise StrataError(f"the state of {stack.path} ({stack.backend.type if stack.backend else 'local'} "
                          f"backend) is not usable: {exc}") from None
    return outputs_of(doc)
