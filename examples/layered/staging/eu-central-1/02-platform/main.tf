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

variable "cluster_name" {
  description = "Name of the EKS cluster"
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version"
  type        = string
}

variable "node_instance_type" {
  description = "Instance type of the worker nodes"
  type        = string
}

variable "node_count" {
  description = "Number of worker nodes"
  type        = number
}

variable "vpc_id" {
  description = "From 01-foundation"
  type        = string
}

variable "subnet_ids" {
  description = "From 01-foundation"
  type        = list(string)
}

module "cluster" {
  source = "../../../modules/cluster"

  cluster_name       = var.cluster_name
  kubernetes_version = var.kubernetes_version
  node_instance_type = var.node_instance_type
  node_count         = var.node_count
  region             = var.region
  vpc_id             = var.vpc_id
  subnet_ids         = var.subnet_ids
  tags               = var.tags
}

output "cluster_name" {
  description = "Read by 04-applications and every client"
  value       = module.cluster.cluster_name
}

output "cluster_endpoint" {
  description = "The Kubernetes API endpoint"
  value       = module.cluster.cluster_endpoint
}

output "node_security_group_id" {
  description = "Allowed to reach the database"
  value       = module.cluster.node_security_group_id
}
