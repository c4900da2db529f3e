"""Terraform/OpenTofu version numbers and the features that depend on them."""

from __future__ import annotations

import re

Version = tuple[int, int, int]

# Backend settings that appeared in a given Terraform release (../research/backends.md §2).
S3_ENDPOINTS_BLOCK: Version = (1, 6, 0)  # endpoints = {...}, use_path_style, assume_role = {...}
S3_SKIP_REQUESTING_ACCOUNT_ID: Version = (1, 6, 1)
S3_SKIP_S3_CHECKSUM: Version = (1, 6, 3)
S3_USE_LOCKFILE: Version = (1, 10, 0)
LATEST_KNOWN: Version = (1, 11, 4)


def parse_version(text: str) -> Version:
    """``"1.11.4"`` or ``"v1.0.3-beta1"`` -> ``(1, 11, 4)``; raises ValueError when there is no version."""
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"not a version: {text!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def format_version(version: Version) -> str:
    return ".".join(str(n) for n in version)
