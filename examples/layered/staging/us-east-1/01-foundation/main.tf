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

variable "vpc_name" {
  description = "Name of the VPC"
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; distinct for every environment and region"
  type        = string
}

variable "availability_zones" {
  description = "Zones that get a private subnet"
  type        = list(string)
}

module "network" {
  source = "../../../modules/network"

  name               = var.vpc_name
  cidr_block         = var.vpc_cidr
  availability_zones = var.availability_zones
  tags               = merge(var.tags, { Name = var.vpc_name })
}

output "vpc_id" {
  description = "Read by 02-platform, 03-databases and every client"
  value       = module.network.vpc_id
}

output "vpc_cidr" {
  description = "The VPC block"
  value       = module.network.vpc_cidr
}

output "private_subnet_ids" {
  description = "Where the cluster and the database run"
  value       = module.network.private_subnet_ids
}

output "private_subnet_cidrs" {
  description = "One block per availability zone"
  value       = module.network.private_subnet_cidrs
}
