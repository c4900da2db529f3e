"""Which Terraform (or OpenTofu) version the generated pipelines install.

The version the repository pins wins: ``.terraform-version`` (``.opentofu-version`` for tofu) or a ``terraform``
/ ``opentofu`` line of ``.tool-versions`` in the root. Else the ``required_version`` constraints of the stacks'
``.tf`` files: an exact version (``= 1.9.8``) is used as it is; otherwise the newest release strata knows,
when it satisfies them all. A constraint that excludes it asks for a pin, since guessing a release that exists
would be worse than asking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from strata.errors import StrataError
from strata.model.repository import Repository
from strata.terraform.version import LATEST_KNOWN, Version, format_version, parse_version

LATEST_TOFU: Version = (1, 9, 1)
_REQUIRED = re.compile(r'^\s*required_version\s*=\s*"([^"]*)"', re.MULTILINE)
_CONSTRAINT = re.compile(r"^\s*(=|!=|>=|<=|>|<|~>)?\s*v?(\d+(?:\.\d+){0,2})(?:-[\w.]+)?\s*$")
_EXACT = re.compile(r"^\s*=?\s*v?(\d+\.\d+\.\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Tool:
    name: str  # "terraform" or "tofu"
    version: str  # an exact release, e.g. "1.11.4"
    origin: str  # where the version comes from, for a comment in the pipeline

    @property
    def zip_name(self) -> str:
        return f"{self.name}_{self.version}_linux_amd64.zip"

    @property
    def sums_name(self) -> str:
        return f"{self.name}_{self.version}_SHA256SUMS"

    @property
    def download_url(self) -> str:
        """The folder of the official release (HashiCorp's release site; OpenTofu's GitHub releases)."""
        if self.name == "tofu":
            return f"https://github.com/opentofu/opentofu/releases/download/v{self.version}"
        return f"https://releases.hashicorp.com/terraform/{self.version}"


def tool(repo: Repository) -> Tool:
    """The binary and exact version the pipelines install for ``repo``."""
    name = "tofu" if Path(repo.settings.terraform_binary).name.startswith("tofu") else "terraform"
    pinned = _pinned(repo.root, name)
    if pinned is not None:
        return Tool(name, *pinned)
    constraints = _required_versions(repo)
    exact = {m.group(1) for c, _ in constraints for m in [_EXACT.match(c)] if m}
    if len(exact) == 1:
        return Tool(name, exact.pop(), "required_version of " + constraints[0][1])
    latest = LATEST_TOFU if name == "tofu" else LATEST_KNOWN
    pin_file = ".opentofu-version" if name == "tofu" else ".terraform-version"
    for text, where in constraints:
        if not satisfies(latest, text):
            raise StrataError(f"{where}: required_version = {text!r} excludes {name} {format_version(latest)}, the "
                              f"release the pipelines would install; pin one in {pin_file} at the repository root")
    return Tool(name, format_version(latest), f"the newest release strata knows; pin another in {pin_file}")


def _pinned(root: Path, name: str) -> tuple[str, str] | None:
    own = ".opentofu-version" if name == "tofu" else ".terraform-version"
    path = root / own
    if path.is_file():
        text = path.read_text(errors="replace").strip()
        if not re.fullmatch(r"\d+\.\d+\.\d+", text):
            raise StrataError(f"{own}: {text[:40]!r} is not a version like 1.9.8 (the pipelines install exactly it)")
        return text, own
    tool_versions = root / ".tool-versions"
    if tool_versions.is_file():
        for line in tool_versions.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == ("opentofu" if name == "tofu" else "terraform") \
                    and re.fullmatch(r"\d+\.\d+\.\d+", fields[1]):
                return fields[1], ".tool-versions"
    return None


def _required_versions(repo: Repository) -> list[tuple[str, str]]:
    """``(constraint, file)`` of every ``required_version`` in the stacks' own ``.tf`` files, sorted."""
    found: list[tuple[str, str]] = []
    for path in sorted(repo.stacks):
        folder = repo.root / path
        for tf in sorted(folder.glob("*.tf")):
            try:
                text = tf.read_text(errors="replace")
            except OSError:
                continue
            found += [(m.group(1), repo.display(f"{path}/{tf.name}")) for m in _REQUIRED.finditer(text)]
    return found


def satisfies(version: Version, constraints: str) -> bool:
    """Whether ``version`` meets Terraform's ``constraints`` (``">= 1.5, < 2.0"``, ``"~> 1.9.0"``); a part it
    cannot read counts as met."""
    for part in constraints.split(","):
        m = _CONSTRAINT.match(part)
        if not m:
            continue
        op, text = m.group(1) or "=", m.group(2)
        want = parse_version(text)
        if op == "=" and version != want:
            return False
        if op == "!=" and version == want:
            return False
        if (op == ">" and not version > want) or (op == ">=" and not version >= want) \
                or (op == "<" and not version < want) or (op == "<=" and not version <= want):
            return False
        if op == "~>":
            digits = text.count(".") + 1
            upper = (want[0] + 1, 0, 0) if digits <= 2 else (want[0], want[1] + 1, 0)
            if not want <= version < upper:
                return False
    return True
