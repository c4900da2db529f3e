"""Where a command runs: the working directory, the repository root, and lazily loaded state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strata.model.repository import Repository
    from strata.terraform.binary import TerraformBinary


@dataclass
class Workspace:
    cwd: Path
    chdir: Path | None = None
    _root: Path | None = field(default=None, repr=False)
    _repo: Repository | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        if self._root is None:
            from strata.config.discover import find_root

            self._root = find_root(self.chdir or self.cwd)
        return self._root

    @property
    def cache_dir(self) -> Path:
        return self.root / ".strata" / "cache"

    def repository(self) -> Repository:
        """The loaded repository (once per run)."""
        if self._repo is None:
            import gc

            from strata.model.loader import load

            # A large repository is a few hundred thousand small objects that live until the command
            # ends. The cyclic collector would scan them again and again while they are built, and once
            # more at exit (over half the run time at 1,200 stacks): build them with it off, then move
            # them out of its reach. Memory is unaffected: they are all still in use.
            gc.disable()
            try:
                self._repo = load(self.root, self.cwd)
            finally:
                gc.freeze()
                gc.enable()
        return self._repo

    def terraform(self) -> TerraformBinary:
        from strata.terraform.binary import find_binary

        return find_binary(self.repository().settings.terraform_binary, self.cache_dir)
