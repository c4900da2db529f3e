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

variable "db_identifier" {
  description = "Name of the RDS instance"
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL version"
  type        = string
}

variable "instance_class" {
  description = "RDS instance class"
  type        = string
}

variable "multi_az" {
  description = "Standby in a second zone"
  type        = bool
}

variable "backup_retention_days" {
  description = "Days of automated backups"
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

variable "allowed_security_group_ids" {
  description = "From 02-platform: the cluster nodes"
  type        = list(string)
}

module "database" {
  source = "../../../modules/database"

  identifier                 = var.db_identifier
  engine_version             = var.engine_version
  instance_class             = var.instance_class
  multi_az                   = var.multi_az
  backup_retention_days      = var.backup_retention_days
  region                     = var.region
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids
  tags                       = var.tags
}

output "db_endpoint" {
  description = "Read by 04-applications and every client"
  value       = module.database.db_endpoint
}

output "db_name" {
  description = "The default database"
  value       = module.database.db_name
}
