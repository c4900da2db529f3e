"""The azurerm backend: state blobs in an Azure Storage container, locked with blob leases."""

from __future__ import annotations

from typing import Any

from strata.backends.base import Backend


class AzurermBackend(Backend):
    name = "azurerm"
    cloud = "azure"
    attributes = frozenset({
        "storage_account_name", "container_name", "key", "resource_group_name", "subscription_id",
        "tenant_id", "client_id", "client_id_file_path", "client_secret", "client_secret_file_path",
        "client_certificate_path", "client_certificate_password", "use_azuread_auth", "use_oidc",
        "oidc_token", "oidc_token_file_path", "oidc_request_url", "oidc_request_token", "use_msi",
        "msi_endpoint", "use_cli", "access_key", "sas_token", "environment", "endpoint", "metadata_host",
        "snapshot", "lookup_blob_endpoint", "ado_pipeline_service_connection_id", "use_aks_workload_identity",
    })
    required = ("storage_account_name", "container_name", "key")
    key_attribute = "key"

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("azurerm", values.get("storage_account_name"), values.get("container_name"), values.get("key"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"azurerm://{values.get('storage_account_name')}/{values.get('container_name')}"


BACKEND = AzurermBackend()
