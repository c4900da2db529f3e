"""A Terraform state file (format version 4): parsed once, checked, rewritten with a new serial.

Terraform's rules (statemgr/migrate.go, research/backends.md §4): a state keeps its lineage for life;
every write raises the serial; a write with a lower serial, or the same serial with other content, or
another lineage over a non-empty state, is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from strata.errors import StateFormatError as StateFormatError

# The largest serial strata accepts: every JSON reader keeps it exact (2**53 - 1), and a state written
# once a millisecond would take 285,000 years to reach it. A larger one is damage, not history.
MAX_SERIAL = 2**53 - 1


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
        out = []
        version = self.version
        if version != 4 or isinstance(version, bool):
            out.append(f"its format version {version!r} is not 4, the only one strata reads (Terraform 0.12 "
                       "and later write it)")
        if not self.lineage:
            out.append("it has no lineage")
        serial_problem = self.serial_problem()
        if serial_problem:
            out.append(serial_problem)
        if not isinstance(self.data.get("resources", []), list):
            out.append("resources is not a list")
        if not isinstance(self.data.get("outputs", {}), dict):
            out.append("outputs is not an object")
        return out

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

    def with_identity(self, serial: int, lineage: str) -> bytes:
        """These contents as a state with ``serial`` and ``lineage``, laid out as Terraform writes it."""
        data = dict(self.data)
        data["serial"] = serial
        data["lineage"] = lineage
        first: tuple[str, ...] = ("version", "terraform_version", "serial", "lineage")
        ordered = {k: data[k] for k in first if k in data}
        ordered.update({k: v for k, v in data.items() if k not in ordered})
        try:
            return (json.dumps(ordered, indent=2) + "\n").encode()
        except RecursionError:
            raise StateFormatError("it is nested too deeply to be written back") from None

    def summary(self) -> dict[str, Any]:
        return {"serial": self.serial, "lineage": self.lineage, "resources": self.resource_count,
                "terraform_version": self.terraform_version, "sha256": self.sha256, "size": len(self.raw)}
