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
  }
}

resource "null_resource" "private_subnet" {
  count = length(var.availability_zones)

  triggers = {
    vpc               = null_resource.vpc.id
    availability_zone = var.availability_zones[count.index]
    cidr_block        = local.private_subnet_cidrs[count.index]
  }
}

output "vpc_id" {
  value = "vpc-${null_resource.vpc.id}"
}

output "vpc_cidr" {
  value = var.cidr_block
}

output "private_subnet_ids" {
  value = [for subnet in null_resource.private_subnet : "subnet-${subnet.id}"]
}

output "private_subnet_cidrs" {
  value = local.private_subnet_cidrs
}
