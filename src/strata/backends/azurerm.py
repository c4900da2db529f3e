"""The azurerm backend: state blobs in an Azure Storage container, locked with blob leases."""

from __future__ import annotations

from typing import Any

from strata.backends.base import BOOL, STRING, Backend


class AzurermBackend(Backend):
    name = "azurerm"
    cloud = "azure"
    schema = {  # internal/backend/remote-state/azure/backend.go
        **dict.fromkeys((
            "storage_account_name", "container_name", "key", "resource_group_name", "subscription_id",
            "tenant_id", "client_id", "client_id_file_path", "client_secret", "client_secret_file_path",
            "client_certificate_path", "client_certificate_password", "oidc_token", "oidc_token_file_path",
            "oidc_request_url", "oidc_request_token", "msi_endpoint", "access_key", "sas_token", "environment",
            "endpoint", "metadata_host", "ado_pipeline_service_connection_id"), STRING),
        **dict.fromkeys(("use_azuread_auth", "use_oidc", "use_msi", "use_cli", "snapshot", "lookup_blob_endpoint",
                         "use_aks_workload_identity"), BOOL),
    }
    required = ("storage_account_name", "container_name", "key")
    # Terraform 1.0.3 refuses these (checked with the real binary); OIDC arrived in 1.2 and
    # lookup_blob_endpoint in 1.11; for the others 1.1.0 is a lower bound.
    since = {
        "use_oidc": (1, 2, 0), "oidc_token": (1, 2, 0), "oidc_token_file_path": (1, 2, 0),
        "oidc_request_url": (1, 2, 0), "oidc_request_token": (1, 2, 0),
        "use_cli": (1, 1, 0), "client_id_file_path": (1, 1, 0), "client_secret_file_path": (1, 1, 0),
        "use_aks_workload_identity": (1, 1, 0), "ado_pipeline_service_connection_id": (1, 1, 0),
        "lookup_blob_endpoint": (1, 11, 0),
    }
    key_attribute = "key"

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("azurerm", values.get("storage_account_name"), values.get("container_name"), values.get("key"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"azurerm://{values.get('storage_account_name')}/{values.get('container_name')}"


BACKEND = AzurermBackend()
