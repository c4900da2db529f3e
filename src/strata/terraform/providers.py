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
import re
import shutil
import tempfile
from pathlib import Path

from strata.atomic import SECRET, write_text_atomic
from strata.terraform.hclwrite import attributes, hcl_string

_PLUGIN_CACHE = re.compile(r"(?m)^[ \t]*plugin_cache_dir[ \t]*=.*$")
_INSTALLATION = re.compile(r"(?m)^[ \t]*provider_installation[ \t]*\{[ \t]*")
IMPLIED_MIRRORS = ("~/.terraform.d/plugins", "~/.local/share/terraform/plugins",
                   "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins")


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
            write_text_atomic(self.config_file, text, mode=SECRET)
        return {"TF_CLI_CONFIG_FILE": str(self.config_file), "CHECKPOINT_DISABLE": "1"}

    def config_text(self) -> str:
        """The CLI configuration: the store first, then the user's own configuration, kept as written."""
        header = ("# Written by strata: providers are installed once into the store below and linked into\n"
                  "# every stack (safe for parallel init). Regenerated on every run.\n")
        store = f"\n  filesystem_mirror {{\n    path = {hcl_string(str(self.dir))}\n  }}\n"
        user = _read(self.user_config)
        if user is None:
            return header + f"provider_installation {{{store}{_implied_methods()}}}\ndisable_checkpoint = true\n"
        # plugin_cache_dir is the mechanism that breaks under parallel init: this store replaces it
        text = _PLUGIN_CACHE.sub("# (plugin cache left out by strata: unsafe for parallel init)", user)
        block = _INSTALLATION.search(text)
        if block is None:
            text = text.rstrip("\n") + f"\n\nprovider_installation {{{store}{_implied_methods()}}}\n"
        else:
            text = text[:block.end()] + store + text[block.end():]
        if not re.search(r"(?m)^[ \t]*disable_checkpoint[ \t]*=", text):
            text = text.rstrip("\n") + "\ndisable_checkpoint = true"
        return f"{header}# The rest is {self.user_config}.\n{text.rstrip()}\n"

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


def _read(config: str | None) -> str | None:
    if not config or config.endswith(".json"):
        return None  # a JSON CLI configuration is not merged; terraform's defaults apply after the store
    try:
        return Path(os.path.expanduser(config)).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _implied_methods() -> str:
    """Terraform's defaults when no provider_installation block is given: the local mirror folders,
    then the registry for everything they do not hold."""
    mirrors = [os.path.expanduser(p) for p in IMPLIED_MIRRORS if os.path.isdir(os.path.expanduser(p))]
    text = "".join(f"  filesystem_mirror {{\n    path = {hcl_string(m)}\n  }}\n" for m in mirrors)
    mirrored = sorted({_provider_address(m, p) for m in mirrors for p in Path(m).glob("*/*/*") if p.is_dir()})
    if mirrored:
        return text + "  direct {\n" + attributes({"exclude": mirrored}, indent=2) + "  }\n"
    return text + "  direct {}\n"
