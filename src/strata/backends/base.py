"""The interface every backend type implements.

A backend turns a stack's evaluated ``backend "<type>" {}`` settings into what Terraform needs
(rendered for the Terraform version in use), says where the state lives (to catch two stacks sharing
one state), what storage it shares with others, and whether it is encrypted. Later issues add state
reading, writing and locking to the same interface, one module per type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from strata.terraform.version import Version, format_version

_FLAGS = frozenset({"encrypt", "use_lockfile", "use_path_style", "force_path_style", "use_azuread_auth", "use_oidc"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong with a backend's settings; ``attribute`` is None when it concerns the block."""

    message: str
    attribute: str | None = None
    severity: Literal["error", "warning"] = "error"


class Backend:
    name: ClassVar[str]
    attributes: ClassVar[frozenset[str]]  # every setting Terraform accepts for this type
    required: ClassVar[tuple[str, ...]] = ()
    key_attribute: ClassVar[str]  # where the state key goes by default
    cloud: ClassVar[str | None] = None
    # Settings that older Terraform releases refuse ("An argument named ... is not expected here"):
    # setting -> first release known to accept it. Where the exact release is not known, the value is a
    # lower bound (a release that certainly refuses it is below it), so strata never refuses a setting
    # that the Terraform in use accepts.
    since: ClassVar[dict[str, Version]] = {}

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        """Settings strata fills in when the configuration leaves them out (the state key)."""
        return {self.key_attribute: state_key}

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        """Problems with ``values``; ``version`` is the Terraform version when known."""
        problems = [Problem(f"needs {name!r}, which is required") for name in self.required
                    if values.get(name) in (None, "")]
        if version is not None:
            for name in sorted(values):
                first = self.since.get(name)
                if first is not None and values[name] is not None and version < first:
                    problems.append(Problem(
                        f"{name} is not supported by Terraform {format_version(version)} (it needs "
                        f"{format_version(first)} or later); remove it or use a newer Terraform", name))
        for name, value in values.items():
            if value is None:
                continue
            is_flag = name.startswith("skip_") or name in _FLAGS
            if is_flag and not isinstance(value, bool):
                problems.append(Problem(f"{name} must be true or false", name))
        return problems

    def render(self, values: dict[str, Any], version: Version | None) -> dict[str, Any]:
        """The settings to write into the generated backend block for Terraform ``version``."""
        return {k: v for k, v in values.items() if v is not None}

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        """A value equal for two stacks exactly when they would share one state."""
        raise NotImplementedError

    def storage(self, values: dict[str, Any]) -> str | None:
        """The bucket/container/database the state sits in, or None for local files."""
        return None

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        """Why the state is not encrypted at rest (or in transit), or None when it is."""
        return None

    def read_state(self, values: dict[str, Any], stack_dir: Path) -> bytes | None:
        """The stack's current state, read straight from the backend (no terraform, no init).

        None when the stack has no state yet. Backends that cannot be read directly raise
        NotImplementedError, and callers fall back to ``terraform output -json``.
        """
        raise NotImplementedError
