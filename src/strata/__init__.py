"""strata: layered Terraform/OpenTofu across environments, regions, layers and clients."""

__version__ = "0.1.0"
