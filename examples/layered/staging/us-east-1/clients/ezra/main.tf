terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# Set for every stack by the root strata.hcl (see strata_inputs.auto.tfvars after `strata generate`).
variable "project" {
  type = string
}

variable "environment" {
  type = string
}

variable "region" {
  type = string
}

variable "name_prefix" {
  type = string
}

variable "tags" {
  type = map(string)
}

variable "client_name" {
  description = "The client, from its folder name"
  type        = string
}

variable "display_name" {
  description = "The client's name for people"
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace"
  type        = string
}

variable "tier" {
  description = "Service tier"
  type        = string
}

variable "hostname" {
  description = "Public host name"
  type        = string
}

variable "database_name" {
  description = "The client's database on the shared server"
  type        = string
}

variable "vpc_id" {
  description = "From 01-foundation"
  type        = string
}

variable "cluster_name" {
  description = "From 02-platform"
  type        = string
}

variable "db_endpoint" {
  description = "From 03-databases"
  type        = string
}

module "client" {
  source = "../../../../modules/client"

  client_name   = var.client_name
  namespace     = var.namespace
  tier          = var.tier
  hostname      = var.hostname
  database_name = var.database_name
  vpc_id        = var.vpc_id
  cluster_name  = var.cluster_name
  db_endpoint   = var.db_endpoint
  tags          = merge(var.tags, { DisplayName = var.display_name })
}

output "namespace" {
  description = "The client's namespace"
  value       = module.client.namespace
}

output "client_url" {
  description = "Where the client's service answers"
  value       = module.client.client_url
}

output "database_url" {
  description = "The client's database"
  value       = module.client.database_url
}

output "vpc_id" {
  description = "The VPC of 01-foundation, passed through the client's inputs"
  value       = module.client.vpc_id
}
