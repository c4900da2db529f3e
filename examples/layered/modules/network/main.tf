terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# The network layer: a VPC and one private subnet per availability zone.
# null_resource stands in for aws_vpc / aws_subnet so the example runs without a cloud account.

variable "name" {
  type = string
}

variable "cidr_block" {
  type = string
}

variable "availability_zones" {
  type = list(string)
}

variable "tags" {
  type    = map(string)
  default = {}
}

locals {
  # one /20 per availability zone, carved from the VPC block
  private_subnet_cidrs = [for index, zone in var.availability_zones : cidrsubnet(var.cidr_block, 4, index)]
}

resource "null_resource" "vpc" {
  triggers = {
    name       = var.name
    cidr_block = var.cidr_block
    tags       = jsonencode(var.tags)
    # Drawn once, when the VPC is created: the ids below derive from it, so every stack's VPC has its own
    # id, as in AWS. (A null_resource id would not do: the provider draws them from an unseeded generator,
    # so the first one of every stack is the same number.)
    unique = uuid()
  }

  lifecycle {
    ignore_changes = [triggers["unique"]]
  }
}

locals {
  # vpc-0 and 16 hex digits, like an AWS VPC id
  vpc_id = format("vpc-0%s", substr(sha1("${var.name}/${null_resource.vpc.triggers.unique}"), 0, 16))
}

resource "null_resource" "private_subnet" {
  count = length(var.availability_zones)

  triggers = {
    vpc               = local.vpc_id
    availability_zone = var.availability_zones[count.index]
    cidr_block        = local.private_subnet_cidrs[count.index]
  }
}

output "vpc_id" {
  value = local.vpc_id
}

output "vpc_cidr" {
  value = var.cidr_block
}

output "private_subnet_ids" {
  # subnet-0 and 16 hex digits of the VPC id and the subnet's block: unique because the VPC id is
  value = [
    for subnet in null_resource.private_subnet :
    format("subnet-0%s", substr(sha1("${subnet.triggers.vpc}/${subnet.triggers.cidr_block}"), 0, 16))
  ]
}

output "private_subnet_cidrs" {
  value = local.private_subnet_cidrs
}
