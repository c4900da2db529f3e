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

variable "app_name" {
  description = "Name of the application"
  type        = string
}

variable "image" {
  description = "Container image"
  type        = string
}

variable "replicas" {
  description = "Number of pods"
  type        = number
}

variable "hostname" {
  description = "Public host name"
  type        = string
}

variable "cluster_name" {
  description = "From 02-platform"
  type        = string
}

variable "cluster_endpoint" {
  description = "From 02-platform"
  type        = string
}

variable "db_endpoint" {
  description = "From 03-databases"
  type        = string
}

module "application" {
  source = "../../../modules/application"

  app_name         = var.app_name
  image            = var.image
  replicas         = var.replicas
  hostname         = var.hostname
  cluster_name     = var.cluster_name
  cluster_endpoint = var.cluster_endpoint
  db_endpoint      = var.db_endpoint
  tags             = var.tags
}

output "app_url" {
  description = "Where the application answers"
  value       = module.application.app_url
}
