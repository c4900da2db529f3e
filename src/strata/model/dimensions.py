"""Dimensions (cloud, account, environment, region, layer, client) and their inference from folders.

Inference is a convenience: a value set in a strata.hcl always wins. A folder name is taken as
- an environment when it is a known environment name (``strata.environment_names``) or sits under
  an ``environments/`` folder;
- a region when it looks like an AWS, GCP or Azure region, or sits under ``regions/``;
- a layer when it starts with a number and a dash (``01-foundation``, ``0-backend``) or sits under
  ``layers/``;
- a client when it sits under ``clients/`` or ``tenants/``;
- a cloud when it is ``aws``, ``azure`` or ``gcp``, or from the backend type (s3, azurerm, gcs).
The first matching folder from the repository root down is used.
"""

from __future__ import annotations

import functools
import re

DIMENSION_NAMES = ("cloud", "account_id", "environment", "region", "layer", "client")

_AWS_REGION = re.compile(
    r"^[a-z]{2}(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|northwest|southeast|southwest)-\d+$"
)
_GCP_REGION = re.compile(r"^(us|europe|asia|australia|northamerica|southamerica|me|africa)-[a-z]+\d+$")
_AZURE_REGIONS = frozenset({
    "eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus",
    "westcentralus", "canadacentral", "canadaeast", "brazilsouth", "northeurope", "westeurope", "uksouth",
    "ukwest", "francecentral", "germanywestcentral", "swedencentral", "norwayeast", "switzerlandnorth",
    "polandcentral", "italynorth", "spaincentral", "southeastasia", "eastasia", "japaneast", "japanwest",
    "australiaeast", "australiasoutheast", "centralindia", "southindia", "koreacentral", "uaenorth",
    "qatarcentral", "southafricanorth", "israelcentral", "mexicocentral",
})
_LAYER = re.compile(r"^\d+[-_][A-Za-z0-9][A-Za-z0-9_-]*$")
_CLOUDS = {"aws": "aws", "azure": "azure", "gcp": "gcp", "google": "gcp"}
BACKEND_CLOUDS = {"s3": "aws", "azurerm": "azure", "gcs": "gcp"}
STRUCTURAL_FOLDERS = frozenset({"environments", "regions", "layers", "clients", "tenants"})


def is_region(name: str) -> bool:
    return bool(_AWS_REGION.match(name) or _GCP_REGION.match(name) or name in _AZURE_REGIONS)


def is_layer(name: str) -> bool:
    return bool(_LAYER.match(name))


def infer(segments: list[str], environment_names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Dimension -> (value, folder it came from), inferred from the folders of a stack's path."""
    found: dict[str, tuple[str, str]] = {}
    envs = set(environment_names)
    parent = ""
    for seg in segments:
        if "environment" not in found and (seg in envs or parent == "environments"):
            found["environment"] = (seg, seg)
        elif "region" not in found and (is_region(seg) or parent == "regions"):
            found["region"] = (seg, seg)
        elif "layer" not in found and (is_layer(seg) or parent == "layers"):
            found["layer"] = (seg, seg)
        elif "client" not in found and parent in ("clients", "tenants"):
            found["client"] = (seg, seg)
        elif "cloud" not in found and seg in _CLOUDS:
            found["cloud"] = (_CLOUDS[seg], seg)
        parent = seg
    return found


def layer_sort_key(layer: str) -> tuple[int, str]:
    """Default layer order: by numeric prefix, then by name."""
    m = re.match(r"^(\d+)", layer)
    return (int(m.group(1)) if m else 1_000_000, layer)


# Dimension values and stack path folders end up in state keys, bucket and schema names, CI job names and
# (quoted) shell commands: ASCII letters and digits, with '.', '_' and '-' inside. Not first: '.' (hidden
# files, traversal) and '-' (read as a command-line option).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")  # fullmatch: "$" lets "a\n" through
SAFE_NAME_RULE = "allowed: ASCII letters, digits, '.', '_' and '-', starting with a letter, digit or '_'"


@functools.lru_cache(maxsize=4096)
def unsafe_name_reason(value: str) -> str | None:
    """Why ``value`` cannot be used in state paths, backend names and CI pipelines, or None when it is safe."""
    if SAFE_NAME.fullmatch(value):
        return None
    if value == "":
        return "it is empty"
    if value in (".", ".."):
        return f"{value!r} is a path traversal"
    if "/" in value or "\\" in value:
        return f"it contains a path separator ({SAFE_NAME_RULE})"
    if any(ch.isspace() for ch in value):
        return f"it contains white space ({SAFE_NAME_RULE})"
    bad = sorted({ch for ch in value if not re.match(r"[A-Za-z0-9._-]", ch)})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        return f"it contains {shown} ({SAFE_NAME_RULE})"
    return f"it starts with {value[0]!r} ({SAFE_NAME_RULE})"
