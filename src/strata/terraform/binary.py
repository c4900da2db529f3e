"""Find the terraform or tofu binary and read its version once.

The binary is, in order: ``$STRATA_TERRAFORM``, the root ``strata { terraform_binary = ... }``
setting, then ``terraform`` on PATH. Its version is cached under ``.strata/cache`` keyed by the
binary's path, size and modification time, so most runs never start it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from strata.atomic import SECRET, private_dir, write_atomic
from strata.errors import StrataError
from strata.terraform.version import Version, format_version, parse_version

ENV_BINARY = "STRATA_TERRAFORM"


@dataclass(frozen=True, slots=True)
class TerraformBinary:
    path: str
    version: Version
    flavor: str  # "terraform" or "tofu"

    def describe(self) -> str:
        name = "OpenTofu" if self.flavor == "tofu" else "Terraform"
        return f"{name} {format_version(self.version)} ({self.path})"


def find_binary(configured: str, cache_dir: Path | None) -> TerraformBinary:
    """The binary to use and its version; raises :class:`StrataError` when there is none."""
    wanted = os.environ.get(ENV_BINARY) or configured
    path = shutil.which(wanted)
    if path is None:
        origin = f"${ENV_BINARY}" if os.environ.get(ENV_BINARY) else "strata { terraform_binary }"
        raise StrataError(
            f"cannot find {wanted!r} (from {origin}): install Terraform or OpenTofu, put it on PATH, "
            f"or set {ENV_BINARY}=/path/to/terraform"
        )
    path = os.path.realpath(path)
    stat = os.stat(path)
    key = f"{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = cache_dir / "binaries.json" if cache_dir else None
    cached = _read_cache(cache_file)
    known = _cached_version(cached.get(key))
    if known is not None:
        return TerraformBinary(path, *known)
    version, flavor = _ask_version(path)
    cached[key] = [format_version(version), flavor]
    _write_cache(cache_file, cached)
    return TerraformBinary(path, version, flavor)


def _ask_version(path: str) -> tuple[Version, str]:
    try:
        proc = subprocess.run([path, "version", "-json"], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CHECKPOINT_DISABLE": "1"}, check=False)
    except OSError as exc:
        raise StrataError(f"cannot run {path}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise StrataError(f"{path} version did not answer within 60 s") from None
    flavor = "tofu" if "tofu" in os.path.basename(path).lower() else "terraform"
    try:
        data = json.loads(proc.stdout)
        text = data.get("terraform_version") or data.get("version") or ""
    except json.JSONDecodeError:
        text = proc.stdout
    if "opentofu" in proc.stdout.lower():
        flavor = "tofu"
    try:
        return parse_version(str(text)), flavor
    except ValueError:
        raise StrataError(f"{path} did not report a version (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[:200]}") from None


def _cached_version(entry: object) -> tuple[Version, str] | None:
    """A cache entry ``[version, flavor]``; anything else (a damaged or edited file) means ask again."""
    if not isinstance(entry, list) or len(entry) != 2 or not all(isinstance(x, str) for x in entry):
        return None
    if entry[1] not in ("terraform", "tofu"):
        return None
    try:
        return parse_version(entry[0]), entry[1]
    except (ValueError, TypeError, IndexError):
        return None


def _read_cache(path: Path | None) -> dict[str, list[str]]:
    if path is None:
        return {}
    from strata.config.discover import read_config

    try:
        data = json.loads(read_config(path, str(path), 1024 * 1024))
    except (StrataError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path | None, data: dict[str, list[str]]) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError):
        write_atomic(private_dir(path.parent) / path.name, json.dumps(data, sort_keys=True).encode(),
                     mode=SECRET, durable=False)
