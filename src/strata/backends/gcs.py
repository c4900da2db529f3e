"""The gcs backend: state objects in a Google Cloud Storage bucket, under a prefix per stack."""

from __future__ import annotations

from typing import Any

from strata.backends.base import LIST, STRING, Backend


class GcsBackend(Backend):
    name = "gcs"
    cloud = "gcp"
    schema = {  # internal/backend/remote-state/gcs/backend.go
        "bucket": STRING, "prefix": STRING, "credentials": STRING, "access_token": STRING,
        "impersonate_service_account": STRING, "impersonate_service_account_delegates": LIST,
        "encryption_key": STRING, "kms_encryption_key": STRING, "storage_custom_endpoint": STRING,
    }
    required = ("bucket", "prefix")
    # Terraform 1.0.3 refuses these (checked with the real binary); 1.1.0 is a lower bound.
    since = {"kms_encryption_key": (1, 1, 0), "storage_custom_endpoint": (1, 1, 0)}
    key_attribute = "prefix"

    def default_settings(self, state_key: str, stack_path: str, state_dir: str) -> dict[str, Any]:
        # gcs stores <prefix>/<workspace>.tfstate, so the prefix is the key's folder
        return {"prefix": state_key.removesuffix("/terraform.tfstate")}

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("gcs", values.get("bucket"), str(values.get("prefix", "")).strip("/"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"gs://{values.get('bucket')}"


BACKEND = GcsBackend()
