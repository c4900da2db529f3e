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


@dataclass(frozen=True, slots=True)
class StateDocument:
    raw: bytes
    data: dict[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> StateDocument:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise StateFormatError("it is not JSON (damaged, or not a Terraform state)") from None
        if not isinstance(data, dict):
            raise StateFormatError("it is JSON but not a Terraform state (not an object)")
        return cls(raw, data)

    @property
    def version(self) -> Any:
        return self.data.get("version")

    @property
    def serial(self) -> int:
        serial = self.data.get("serial")
        return serial if isinstance(serial, int) and not isinstance(serial, bool) else -1

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
        return sum(len(r.get("instances") or []) for r in self.resources if r.get("mode") == "managed")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def is_empty(self) -> bool:
        """No resources and no outputs: Terraform lets anything overwrite such a state."""
        return not self.resources and not self.outputs

    def problems(self) -> list[str]:
        """Why this is not a sound version-4 state (empty when it is)."""
        out = []
        if self.version != 4:
            out.append(f"format version is {self.version!r}, not 4")
        if not self.lineage:
            out.append("it has no lineage")
        if self.serial < 0:
            out.append("its serial is not a whole number")
        if not isinstance(self.data.get("resources", []), list):
            out.append("resources is not a list")
        return out

    def with_identity(self, serial: int, lineage: str) -> bytes:
        """These contents as a state with ``serial`` and ``lineage``, laid out as Terraform writes it."""
        data = dict(self.data)
        data["serial"] = serial
        data["lineage"] = lineage
        first: tuple[str, ...] = ("version", "terraform_version", "serial", "lineage")
        ordered = {k: data[k] for k in first if k in data}
        ordered.update({k: v for k, v in data.items() if k not in ordered})
        return (json.dumps(ordered, indent=2) + "\n").encode()

    def summary(self) -> dict[str, Any]:
        return {"serial": self.serial, "lineage": self.lineage, "resources": self.resource_count,
                "terraform_version": self.terraform_version, "sha256": self.sha256, "size": len(self.raw)}
