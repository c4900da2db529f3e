"""One provider store shared by every stack, safe under parallel ``terraform init``.

Terraform's own ``plugin_cache_dir`` is not safe when several inits fill it at once (terraform#31964:
"text file busy", checksum mismatches, half-written files). strata keeps its own store instead, laid
out as a filesystem mirror (``.strata/providers/<host>/<namespace>/<type>/<version>/<os_arch>``) and
listed first in the CLI configuration it gives terraform. Terraform only ever *reads* a mirror and
links unpacked providers from it, so parallel inits cannot collide. A provider the store lacks is
installed by terraform into that one stack, as usual; strata then copies it into the store (once,
under a file lock, renamed into place atomically) and replaces the stack's copy with a link. N stacks
hold about one copy of each provider.

The user's own CLI configuration (``TF_CLI_CONFIG_FILE`` or ``~/.terraformrc``): its installation
methods (mirrors, direct) and credentials are kept, after the store; its ``plugin_cache_dir`` is
dropped because it is the unsafe mechanism this replaces.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from strata.terraform.hclwrite import attributes, hcl_string

IMPLIED_MIRRORS = ("~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
                   "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins")
METHODS = ("filesystem_mirror", "network_mirror", "direct", "dev_overrides")


class ProviderStore:
    def __init__(self, root: Path, user_config: str | None = None) -> None:
        self.dir = root / ".strata" / "providers"
        self.config_file = root / ".strata" / "terraform.rc"
        self.user_config = user_config

    def prepare(self) -> dict[str, str]:
        """Write the CLI configuration; returns the environment that points terraform at it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        text = self.config_text()
        try:
            current = self.config_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            tmp = self.config_file.with_suffix(".tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.config_file)
        return {"TF_CLI_CONFIG_FILE": str(self.config_file), "CHECKPOINT_DISABLE": "1"}

    def config_text(self) -> str:
        methods, credentials = _user_methods(self.user_config)
        if not methods:  # terraform's defaults when no provider_installation block is given
            mirrors = [os.path.expanduser(p) for p in IMPLIED_MIRRORS if os.path.isdir(os.path.expanduser(p))]
            methods = [("filesystem_mirror", {"path": p}) for p in mirrors]
            # as terraform does implicitly: what a local mirror holds is not looked up in the registry
            mirrored = sorted({_provider_address(m, p) for m in mirrors for p in Path(m).glob("*/*/*")
                               if p.is_dir()})
            methods.append(("direct", {"exclude": mirrored} if mirrored else {}))
        lines = ["# Written by strata: providers are installed once into the store below and linked into",
                 "# every stack (safe for parallel init). Regenerated on every run.",
                 "provider_installation {",
                 "  filesystem_mirror {",
                 f"    path = {hcl_string(str(self.dir))}",
                 "  }"]
        for kind, values in methods:
            lines.append(f"  {kind} {{")
            if values:
                lines.append(attributes(values, indent=2).rstrip("\n"))
            lines.append("  }")
        lines.append("}")
        for host, values in credentials:
            lines.append(f"credentials {hcl_string(host)} {{")
            lines.append(attributes(values, indent=1).rstrip("\n"))
            lines.append("}")
        lines.append("disable_checkpoint = true")
        return "\n".join(lines) + "\n"

    def harvest(self, stack_dir: Path) -> int:
        """Copy providers a stack installed itself into the store and link them; returns bytes saved."""
        installed = stack_dir / ".terraform" / "providers"
        if not installed.is_dir():
            return 0
        saved = 0
        for package in sorted(installed.glob("*/*/*/*/*")):
            rel = package.relative_to(installed)
            target = self.dir / rel
            if package.is_symlink() or not package.is_dir():
                continue  # already linked from a mirror or the store
            if not target.is_dir():
                self._add(package, target)
            size = _size(package)
            shutil.rmtree(package)
            os.symlink(target, package)
            saved += size
        return saved

    def _add(self, package: Path, target: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if target.is_dir():
                return  # another stack added it while we waited
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
            try:
                shutil.copytree(package, tmp, dirs_exist_ok=True, symlinks=False)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise


def _provider_address(mirror: str, path: Path) -> str:
    return path.relative_to(mirror).as_posix()


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _user_methods(config: str | None) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    """Installation methods and credentials from the user's CLI configuration file, if it has any."""
    if not config:
        return [], []
    path = Path(os.path.expanduser(config))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return [], []
    from strata.config.parse import parse_text
    from strata.errors import ConfigError

    try:
        body = parse_text(text, str(path))
    except ConfigError:
        return [], []
    methods: list[tuple[str, dict[str, Any]]] = []
    credentials: list[tuple[str, dict[str, Any]]] = []
    for block in body.blocks:
        if block.type == "provider_installation":
            for inner in block.body.blocks:
                if inner.type in METHODS:
                    methods.append((inner.type, _literal_attributes(inner.body.attributes)))
        elif block.type == "credentials" and block.labels:
            credentials.append((block.labels[0], _literal_attributes(block.body.attributes)))
    return methods, credentials


def _literal_attributes(attrs: list[Any]) -> dict[str, Any]:
    from strata.config import ast

    out: dict[str, Any] = {}
    for attr in attrs:
        expr = attr.expr
        if isinstance(expr, ast.Literal):
            out[attr.name] = expr.value
        elif isinstance(expr, ast.TupleExpr) and all(isinstance(i, ast.Literal) for i in expr.items):
            out[attr.name] = [i.value for i in expr.items if isinstance(i, ast.Literal)]
    return out
