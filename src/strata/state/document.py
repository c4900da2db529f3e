"""A Terraform state file (format version 4): parsed once, checked, rewritten with a new serial.

Terraform's rules (statemgr/migrate.go, research/backends.md §4): a state keeps its lineage for life;
every write raises the serial; a write with a lower serial, or the same serial with other content, or
another lineage over a non-empty state, is refused. :meth:`StateDocument.problems` also checks resources
and outputs against the layout Terraform's version-4 reader takes (statefile/version4.go), each problem named
at its JSON path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from strata.errors import StateFormatError as StateFormatError

# The largest serial strata accepts: every JSON reader keeps it exact (2**53 - 1), and a state written
# once a millisecond would take 285,000 years to reach it. A larger one is damage, not history.
MAX_SERIAL = 2**53 - 1

# The header: which state a file is and who wrote it. Terraform leaves it out when it compares two states
# (statefile.StatesMarshalEqual): a rewrite by a newer terraform with nothing else changed is the same state.
HEADER = ("version", "terraform_version", "serial", "lineage")

# How many problems in resources and outputs are named before the rest are counted: enough to act on.
SHOWN_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class StateDocument:
    raw: bytes
    data: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> StateDocument:
        """The state in ``raw``; StateFormatError (never another exception) for anything else."""
        if not raw.strip():
            raise StateFormatError("it is not JSON: it is empty (no bytes, or only whitespace)")
        if b"\0" in raw:
            raise StateFormatError("it is not JSON: it holds NUL bytes (binary or damaged, not a Terraform state)")
        try:
            data = json.loads(raw)
        except RecursionError:
            raise StateFormatError("it is nested too deeply (about a thousand levels or more) to be a "
                                   "Terraform state") from None
        except (ValueError, UnicodeDecodeError):
            raise StateFormatError("it is not JSON (damaged, truncated, or not a Terraform state)") from None
        if not isinstance(data, dict):
            kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
            kind = "null" if data is None else kinds.get(type(data), type(data).__name__)
            raise StateFormatError(f"it is JSON but not a Terraform state ({kind}, not an object)")
        return cls(raw, data)

    @property
    def version(self) -> Any:
        return self.data.get("version")

    @property
    def serial(self) -> int:
        """The serial; -1 when it is not a whole number from 0 to :data:`MAX_SERIAL` (see :meth:`problems`)."""
        serial = self.data.get("serial")
        if isinstance(serial, int) and not isinstance(serial, bool) and 0 <= serial <= MAX_SERIAL:
            return serial
        return -1

    @property
    def valid_serial(self) -> int | None:
        """The serial, or None where :attr:`serial` says -1: what a report shows."""
        return None if self.serial_problem() else self.serial

    @property
    def lineage(self) -> str:
        lineage = self.data.get("lineage")
        return lineage if isinstance(lineage, str) else ""

    @property
    def terraform_version(self) -> str:
        return str(self.data.get("terraform_version", ""))

    @property
    def resources(self) -> list[dict[str, Any]]:
        resources = self.data.get("resources")
        return [r for r in resources if isinstance(r, dict)] if isinstance(resources, list) else []

    @property
    def outputs(self) -> dict[str, Any]:
        outputs = self.data.get("outputs")
        return outputs if isinstance(outputs, dict) else {}

    @property
    def resource_count(self) -> int:
        """Managed resource instances, as ``terraform state list`` counts them (data sources excluded)."""
        return sum(len(r["instances"]) for r in self.resources
                   if r.get("mode") == "managed" and isinstance(r.get("instances"), list))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def is_empty(self) -> bool:
        """No resources and no outputs: Terraform lets anything overwrite such a state."""
        return not self.resources and not self.outputs

    def problems(self) -> list[str]:
        """Why this is not a sound version-4 state (empty when it is)."""
        out = self._version_problems()
        if not self.lineage:
            out.append("it has no lineage")
        serial_problem = self.serial_problem()
        if serial_problem:
            out.append(serial_problem)
        return out + self._body_problems()

    def content_problems(self) -> list[str]:
        """:meth:`problems` but for the identity (serial, lineage), which a write sets anew."""
        return self._version_problems() + self._body_problems()

    def _version_problems(self) -> list[str]:
        version = self.version
        if version != 4 or isinstance(version, bool):
            return [f"its format version {version!r} is not 4, the only one strata reads (Terraform 0.12 and "
                    "later write it)"]
        return []

    def _body_problems(self) -> list[str]:
        """Resources and outputs not laid out as Terraform's version-4 format has them, each at its JSON path."""
        found: list[str] = []
        resources, outputs = self.data.get("resources", []), self.data.get("outputs", {})
        if isinstance(resources, list):
            found += _resource_problems(resources)
        else:
            found.append("resources is not a list")
        if isinstance(outputs, dict):
            found += _output_problems(outputs)
        else:
            found.append("outputs is not an object")
        if len(found) > SHOWN_PROBLEMS:
            found[SHOWN_PROBLEMS:] = [f"and {len(found) - SHOWN_PROBLEMS} more problem(s) in resources or outputs"]
        return found

    def serial_problem(self) -> str | None:
        """Why the serial is not one Terraform can read and strata can count on, or None."""
        serial = self.data.get("serial")
        if "serial" not in self.data:
            return "it has no serial"
        if not isinstance(serial, int) or isinstance(serial, bool):
            return f"its serial {json.dumps(serial)[:40]} is not a whole number"
        if serial < 0:
            return f"its serial {serial} is negative"
        if serial > MAX_SERIAL:
            return (f"its serial {str(serial)[:40]} is absurd (above {MAX_SERIAL}; a state gains one per write)")
        return None

    def same_contents(self, other: StateDocument) -> bool:
        """Whether both hold the same resources, outputs and check results (the :data:`HEADER` aside)."""
        if self.raw == other.raw:
            return True
        try:
            return _contents(self.data) == _contents(other.data)
        except RecursionError:  # too deep to compare: not the same as far as strata can tell
            return False

    def conflicts_with(self, other: StateDocument) -> bool:
        """Two states claiming to be one version (same lineage and serial) with other contents: Terraform
        gives every change a new serial, so one of them is a lost update or was edited by hand."""
        return (self.serial_problem() is None and self.serial == other.serial and bool(self.lineage)
                and self.lineage == other.lineage and not self.same_contents(other))

    def with_identity(self, serial: int, lineage: str) -> bytes:
        """These contents as a state with ``serial`` and ``lineage``, laid out as Terraform writes it."""
        data = dict(self.data)
        data["serial"] = serial
        data["lineage"] = lineage
        ordered = {k: data[k] for k in HEADER if k in data}
        ordered.update({k: v for k, v in data.items() if k not in ordered})
        try:
            return (json.dumps(ordered, indent=2) + "\n").encode()
        except RecursionError:
            raise StateFormatError("it is nested too deeply to be written back") from None

    def summary(self) -> dict[str, Any]:
        return {"serial": self.serial, "lineage": self.lineage, "resources": self.resource_count,
                "terraform_version": self.terraform_version, "sha256": self.sha256, "size": len(self.raw)}


def _contents(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in HEADER}


_MISSING = object()


def _wrong(path: str, value: Any, want: str) -> str:
    """``path`` holds ``value`` (or nothing) where Terraform wants ``want``."""
    if value is _MISSING:
        return f"{path} is missing (it must be {want})"
    if isinstance(value, (dict, list)):  # by kind: the value itself may be large
        shown = "an object" if isinstance(value, dict) else "an array"
    else:
        text = json.dumps(value)
        shown = text if len(text) <= 40 else text[:39] + "…"
    return f"{path} is {shown}, not {want}"


def _resource_problems(resources: list[Any]) -> Iterator[str]:
    """What Terraform's version-4 reader (statefile/version4.go) would refuse in ``resources``."""
    for n, resource in enumerate(resources):
        path = f"resources[{n}]"
        if not isinstance(resource, dict):
            yield _wrong(path, resource, "an object")
            continue
        mode = resource.get("mode", _MISSING)
        if mode not in ("managed", "data"):
            yield _wrong(f"{path}.mode", mode, '"managed" or "data"')
        for key in ("type", "name", "provider"):
            value = resource.get(key, _MISSING)
            if not isinstance(value, str) or not value:
                yield _wrong(f"{path}.{key}", value, "a non-empty string")
        if not isinstance(resource.get("module", ""), str):
            yield _wrong(f"{path}.module", resource["module"], "a string")
        instances = resource.get("instances", _MISSING)
        if not isinstance(instances, list):
            yield _wrong(f"{path}.instances", instances, "a list")
            continue
        for i, instance in enumerate(instances):
            yield from _instance_problems(f"{path}.instances[{i}]", instance)


def _instance_problems(path: str, instance: Any) -> Iterator[str]:
    if not isinstance(instance, dict):
        yield _wrong(path, instance, "an object")
        return
    schema_version = instance.get("schema_version", _MISSING)
    if type(schema_version) is not int or not 0 <= schema_version < 2**64:
        yield _wrong(f"{path}.schema_version", schema_version, "a whole number")
    key = instance.get("index_key")
    if key is not None and not isinstance(key, str) and type(key) is not int:
        yield _wrong(f"{path}.index_key", key, "a whole number or a string")
    if "attributes" in instance:
        if not isinstance(instance["attributes"], dict):
            yield _wrong(f"{path}.attributes", instance["attributes"], "an object")
    elif "attributes_flat" in instance:
        flat = instance["attributes_flat"]
        if not isinstance(flat, dict):
            yield _wrong(f"{path}.attributes_flat", flat, "an object")
        elif not all(isinstance(v, str) for v in flat.values()):
            yield f"{path}.attributes_flat holds a value that is not a string"
    else:
        yield f"{path} has no attributes (nor attributes_flat)"


def _output_problems(outputs: dict[str, Any]) -> Iterator[str]:
    for name, output in outputs.items():
        if not isinstance(output, dict):
            yield _wrong(f"outputs.{name}", output, "an object")
        elif "value" not in output:
            yield f"outputs.{name} has no value"
