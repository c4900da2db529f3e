"""Sensitive values are never printed: one redaction mechanism for every place strata writes.

A dependency's output marked ``sensitive`` in its state reaches the dependent stack as a ``TF_VAR_*``
variable, and terraform only keeps it secret if the dependent declares that variable ``sensitive`` too.
Otherwise terraform prints it in clear: in resource triggers, outputs, and the ``var.x is "..."`` lines of
an error. So strata collects every sensitive value it reads (:class:`Secrets`, fed by the run's output
reader for every dependency whose outputs feed the run, selected or not) and replaces each with
``(sensitive value)`` wherever it writes: terminal lines, failure details, the summary table, the JSON
report, the pull-request summary and the logs it writes itself.

What counts: every string and number leaf of a sensitive value (lists and maps of secrets included): outputs
marked sensitive and resource attributes terraform marks sensitive (``sensitive_attributes``), in a state's
current version and its recent previous ones (a rotated secret's old value stays in the dependents' state until
they are applied, and their plans print it), and every value strata's own evaluation computes from a secret
(``upper(...)``, ``"user:${...}"``: :meth:`Secrets.derived`).
Strings shorter than four characters and numbers printed with fewer than four characters are left alone:
replacing every ``1`` or ``yes`` would mangle the text ("Plan: 1 to add") and hides nothing worth hiding.
Each string is also matched in the forms terraform prints it: JSON/HCL-escaped, template-escaped
(``$${``), and line by line for multi-line values (keys, certificates). Numbers match only as whole tokens.
"""

from __future__ import annotations

import io
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from strata.atomic import SECRET

REDACTED = "(sensitive value)"
MIN_SECRET_LENGTH = 4

Secret = str | int | float


def leaves(value: Any) -> Iterator[Any]:
    """The scalar leaves of a value (booleans and nulls are never secrets worth hiding)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield value


def _string_forms(secret: str) -> Iterator[str]:
    """The ways Terraform may print a string: raw, HCL/JSON-escaped, template-escaped, line by line."""
    yield secret
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    yield escaped
    yield escaped.replace("${", "$${").replace("%{", "%%{")
    yield secret.replace("${", "$${").replace("%{", "%%{")
    for line in secret.splitlines():
        if len(line.strip()) >= MIN_SECRET_LENGTH:
            yield line.strip()


class Redactor:
    """Replaces every occurrence of the given sensitive values with ``(sensitive value)``, longest first."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        strings: set[str] = set()
        numbers: set[str] = set()
        for secret in secrets:
            if isinstance(secret, str):
                strings.update(form for form in _string_forms(secret) if len(form) >= MIN_SECRET_LENGTH)
            elif isinstance(secret, (int, float)):
                forms = {json.dumps(secret)}
                if isinstance(secret, float) and secret.is_integer():
                    forms.add(str(int(secret)))
                numbers.update(form for form in forms if len(form) >= MIN_SECRET_LENGTH)
        alternatives = [re.escape(s) for s in sorted(strings, key=lambda s: (-len(s), s))]
        # numbers only as whole tokens: a sensitive 4242 must not eat the 4242 in 142420
        alternatives += [rf"(?<![\w.]){re.escape(n)}(?![\w.])" for n in sorted(numbers, key=lambda s: (-len(s), s))]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


class Secrets:
    """The sensitive values of one run. It grows while the run reads outputs (a dependency applied
    during the run has new ones); safe to use from every stack's thread."""

    def __init__(self, values: Iterable[Any] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[Secret] = set()
        self._redactor = Redactor(())
        self.add(list(values))

    def add(self, value: Any) -> None:
        """Every leaf of ``value`` is secret from now on."""
        found = {leaf for leaf in leaves(value) if isinstance(leaf, (str, int, float))}
        with self._lock:
            if found <= self._values:
                return
            self._values |= found
            self._redactor = Redactor(self._values)

    def add_outputs(self, outputs: Any) -> None:
        """The values of the outputs marked sensitive (``{"name": {"value", "sensitive", ...}}``)."""
        if not isinstance(outputs, dict):
            return
        for entry in outputs.values():
            if isinstance(entry, dict) and entry.get("sensitive"):
                self.add(entry.get("value"))

    def add_state(self, state: Any) -> None:
        """The secrets of a parsed state: its outputs marked sensitive, and each resource attribute terraform
        marks sensitive (a provider's ``sensitive`` attribute, or one set from a sensitive value)."""
        if not isinstance(state, dict):
            return
        self.add_outputs(state.get("outputs"))
        resources = state.get("resources")
        for resource in resources if isinstance(resources, list) else []:
            instances = resource.get("instances") if isinstance(resource, dict) else None
            for instance in instances if isinstance(instances, list) else []:
                if not isinstance(instance, dict) or not isinstance(instance.get("sensitive_attributes"), list):
                    continue
                for path in instance["sensitive_attributes"]:
                    self.add(_attribute(instance.get("attributes"), path))

    def derived(self, inputs: Any, result: Any) -> None:
        """``result`` was computed from ``inputs`` (a function's arguments, a template's parts): when one of
        them holds a secret, every new leaf of the result is secret too. Leaves passed through unchanged from
        an input that is not secret stay visible (``merge(dependency.db.outputs, {...})`` keeps the host)."""
        with self._lock:
            known = self._values
            tainted = False
            visible: set[Secret] = set()
            for leaf in leaves(inputs):
                if leaf in known:
                    tainted = True
                else:
                    visible.add(leaf)
        if tainted:
            self.add([leaf for leaf in leaves(result) if leaf not in visible])

    @property
    def values(self) -> frozenset[Secret]:
        with self._lock:
            return frozenset(self._values)

    def redact(self, text: str) -> str:
        return self._redactor(text)


def _attribute(attributes: Any, path: Any) -> Any:
    """The value at a ``sensitive_attributes`` path (``[{"type": "get_attr", "value": "triggers"},
    {"type": "index", "value": {"value": "password", "type": "string"}}]``); None where it does not lead."""
    if not isinstance(path, list):
        return None
    value = attributes
    for step in path:
        key = step.get("value") if isinstance(step, dict) else None
        if isinstance(step, dict) and step.get("type") == "index" and isinstance(key, dict):
            key = key.get("value")
        if isinstance(value, dict) and isinstance(key, str):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int | float) and 0 <= key < len(value):
            value = value[int(key)]
        else:
            return None
    return value


class _RedactedLog(io.TextIOWrapper):
    """A log file whose every write is redacted first."""

    def __init__(self, raw: IO[bytes], secrets: Secrets) -> None:
        super().__init__(raw, encoding="utf-8", errors="replace")
        self._secrets = secrets

    def write(self, text: str) -> int:
        return super().write(self._secrets.redact(text))


def open_log(path: Path, secrets: Secrets, *, append: bool = False) -> IO[str]:
    """A log file for writing, created 0600 (logs hold what terraform prints), redacting every write."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, SECRET)
    try:
        os.fchmod(fd, SECRET)  # an older log made with a wider mode
        raw = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
    return _RedactedLog(raw, secrets)
