terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# The databases layer: a PostgreSQL instance in the private subnets, reachable from the cluster nodes.
# null_resource stands in for aws_db_instance / aws_db_subnet_group.

variable "identifier" {
  type = string
}

variable "engine_version" {
  type = string
}

variable "instance_class" {
  type = string
}

variable "multi_az" {
  type = bool
}

variable "backup_retention_days" {
  type = number
}

variable "region" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  type = list(string)
}

variable "allowed_security_group_ids" {
  type = list(string)
}

variable "tags" {
  type    = map(string)
  default = {}
}

resource "null_resource" "subnet_group" {
  triggers = {
    name       = "${var.identifier}-subnets"
    vpc_id     = var.vpc_id
    subnet_ids = join(",", var.subnet_ids)
  }
}

resource "null_resource" "db" {
  triggers = {
    identifier       = var.identifier
    engine           = "postgres"
    engine_version   = var.engine_version
    instance_class   = var.instance_class
    multi_az         = tostring(var.multi_az)
    backup_retention = tostring(var.backup_retention_days)
    subnet_group     = null_resource.subnet_group.id
    allowed_groups   = join(",", var.allowed_security_group_ids)
    tags             = jsonencode(var.tags)
    # Drawn once, when the database is created: its endpoint derives from it, so every stack's is its own
    # (null_resource ids repeat from stack to stack; see modules/network).
    unique = uuid()
  }

  lifecycle {
    ignore_changes = [triggers["unique"]]
  }
}

locals {
  unique = sha1("${var.identifier}/${null_resource.db.triggers.unique}")
}

output "db_endpoint" {
  value = "${var.identifier}.${substr(local.unique, 0, 12)}.${var.region}.rds.acme.internal:5432"
}

output "db_name" {
  value = replace(var.identifier, "-", "_")
}
