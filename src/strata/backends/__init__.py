"""State backends: one module per type, all behind :class:`strata.backends.base.Backend`."""

from __future__ import annotations

import importlib

from strata.backends.base import Backend

BACKEND_TYPES = ("local", "s3", "azurerm", "gcs", "pg")
_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend | None:
    """The backend implementation for a type name, or None when strata does not know the type."""
    if name not in BACKEND_TYPES:
        return None
    if name not in _loaded:
        module = importlib.import_module(f"strata.backends.{name}")
        _loaded[name] = module.BACKEND
    return _loaded[name]
