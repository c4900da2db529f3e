"""Dependency outputs, read straight from each dependency's state, once per run.

Reading the state object (a local file now; S3 objects and pg rows through the same backend
interface) takes a millisecond; ``terraform init`` + ``terraform output -json`` takes seconds per
dependency (Terragrunt #1438: ~18 s added per dependency). The slow path is used only for backends
strata cannot read itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from strata.backends import get_backend
from strata.backends.base import BackendError
from strata.errors import StrataError
from strata.model.stack import Stack
from strata.run.redact import Secrets
from strata.state.document import StateDocument, StateFormatError
from strata.state.operations import usable_state

Fallback = Callable[[Stack], dict[str, Any] | None]


class OutputReader:
    """Outputs per stack (name -> {"value", "type", "sensitive"}), cached until the stack changes."""

    def __init__(self, root: Path, fallback: Fallback | None = None, secrets: Secrets | None = None) -> None:
        self.root = root
        self.fallback = fallback
        self.secrets = secrets  # collects every sensitive output read, to redact it wherever strata writes
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
                self.secrets.add_outputs(result)
            with self._lock:
                self._cache[stack.path] = result
        return result

    def values(self, stack: Stack) -> dict[str, Any] | None:
        outputs = self.outputs(stack)
        return None if outputs is None else {k: v.get("value") for k, v in outputs.items()}

    def _read(self, stack: Stack) -> dict[str, Any] | None:
        if stack.backend is None:
            return None
        backend = get_backend(stack.backend.type)
        try:
            if backend is None:
                raise NotImplementedError
            store = backend.store(stack.backend.values(), self.root / stack.path, self.root)
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
        return None if doc is None else outputs_of(doc)


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
