"""The evaluated model of one stack: its dimensions, backend, inputs and dependencies, with provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strata.config import ast
from strata.config.evaluate import Context
from strata.errors import Source


@dataclass(slots=True)
class Setting:
    """A value and where it came from. ``children`` holds an object whose keys have their own origin."""

    value: Any
    source: Source
    children: dict[str, Setting] | None = None

    def has_deferred(self) -> bool:
        """Whether some part of the value reads dependency outputs."""
        if self.children is not None:
            return any(c.has_deferred() for c in self.children.values())
        return isinstance(self.value, Deferred)

    def plain(self) -> Any:
        """The value without provenance (deferred dependency outputs stay as :class:`Deferred`)."""
        if self.children is not None:
            return {k: v.plain() for k, v in self.children.items()}
        return self.value


@dataclass(slots=True)
class Deferred:
    """An input that reads dependency outputs: evaluated when the dependency's state is known."""

    expr: ast.Expr
    ctx: Context
    references: list[str]

    def __repr__(self) -> str:
        return " + ".join(self.references) if self.references else "<dependency output>"


@dataclass(slots=True)
class Dependency:
    """An edge to another stack. ``name`` is None for ordering-only ``dependencies = [...]`` entries."""

    name: str | None
    path: str  # repository-relative path of the stack depended on
    source: Source
    mock_outputs: dict[str, Any] | None = None
    used: bool = False  # whether inputs read its outputs


@dataclass(slots=True)
class BackendConfig:
    """The backend a stack's state lives in, before version-specific rendering."""

    type: str
    settings: dict[str, Setting]
    source: Source
    embedded: bool = False  # no backend block applies: strata's local default

    def values(self) -> dict[str, Any]:
        return {k: v.plain() for k, v in self.settings.items()}


@dataclass(slots=True)
class Stack:
    """A Terraform root module managed by strata."""

    path: str  # repository-relative POSIX path, e.g. "production/us-east-1/01-foundation"
    name: str
    config_file: str  # display path of the stack's own strata.hcl
    source: Source  # its stack {} block
    description: str = ""
    tags: tuple[str, ...] = ()
    dimensions: dict[str, Setting] = field(default_factory=dict)
    locals: dict[str, Setting] = field(default_factory=dict)
    inputs: dict[str, Setting] = field(default_factory=dict)
    dependencies: list[Dependency] = field(default_factory=list)
    backend: BackendConfig | None = None
    bootstrap: dict[str, Setting] = field(default_factory=dict)  # how `strata bootstrap` builds the backend
    state_key: str = ""  # the default state key, before any override
    config_chain: tuple[str, ...] = ()  # the strata.hcl files it inherits, root first (display paths)
    read_files: frozenset[str] = frozenset()  # files read through file() while evaluating it

    def dimension(self, name: str) -> str | None:
        setting = self.dimensions.get(name)
        return None if setting is None else setting.value

    @property
    def environment(self) -> str | None:
        return self.dimension("environment")

    @property
    def region(self) -> str | None:
        return self.dimension("region")

    @property
    def layer(self) -> str | None:
        return self.dimension("layer")

    @property
    def client(self) -> str | None:
        return self.dimension("client")

    def dependency_paths(self) -> list[str]:
        return [d.path for d in self.dependencies]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            **{name: self.dimension(name) for name in
               ("cloud", "account_id", "environment", "region", "layer", "client")},
            "dependencies": sorted({d.path for d in self.dependencies}),
            "backend": self.backend.type if self.backend else None,
        }
