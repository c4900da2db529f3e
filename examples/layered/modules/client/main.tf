terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# A client (tenant) on the shared platform: its namespace, its database and its ingress.
# null_resource stands in for the Kubernetes namespace, the database/role and the ingress rule.

variable "client_name" {
  type = string
}

variable "namespace" {
  type = string
}

variable "tier" {
  type = string
}

variable "hostname" {
  type = string
}

variable "database_name" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "cluster_name" {
  type = string
}

variable "db_endpoint" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}

resource "null_resource" "namespace" {
  triggers = {
    cluster   = var.cluster_name
    namespace = var.namespace
    tier      = var.tier
    tags      = jsonencode(var.tags)
  }
}

resource "null_resource" "database" {
  triggers = {
    server   = var.db_endpoint
    database = var.database_name
    owner    = var.client_name
  }
}

resource "null_resource" "ingress" {
  triggers = {
    namespace = null_resource.namespace.id
    hostname  = var.hostname
    vpc_id    = var.vpc_id
  }
}

output "namespace" {
  value = var.namespace
}

output "client_url" {
  value = "https://${var.hostname}"
}

output "database_url" {
  value = "postgres://${var.db_endpoint}/${var.database_name}"
}

output "vpc_id" {
  value = var.vpc_id
}
