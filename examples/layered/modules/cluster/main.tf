terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# The platform layer: an EKS-style Kubernetes cluster and its node group.
# null_resource stands in for aws_eks_cluster / aws_eks_node_group.

variable "cluster_name" {
  type = string
}

variable "kubernetes_version" {
  type = string
}

variable "node_instance_type" {
  type = string
}

variable "node_count" {
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

variable "tags" {
  type    = map(string)
  default = {}
}

resource "null_resource" "cluster" {
  triggers = {
    name       = var.cluster_name
    version    = var.kubernetes_version
    vpc_id     = var.vpc_id
    subnet_ids = join(",", var.subnet_ids)
    tags       = jsonencode(var.tags)
    # Drawn once, when the cluster is created: its endpoint and node security group derive from it, so every
    # stack's are its own (null_resource ids repeat from stack to stack; see modules/network).
    unique = uuid()
  }

  lifecycle {
    ignore_changes = [triggers["unique"]]
  }
}

resource "null_resource" "node_group" {
  triggers = {
    cluster       = null_resource.cluster.id
    instance_type = var.node_instance_type
    desired_size  = tostring(var.node_count)
  }
}

output "cluster_name" {
  value = var.cluster_name
}

locals {
  unique = sha1("${var.cluster_name}/${null_resource.cluster.triggers.unique}")
}

output "cluster_endpoint" {
  value = "https://${upper(substr(local.unique, 0, 16))}.${var.region}.eks.acme.internal"
}

output "node_security_group_id" {
  value = format("sg-0%s", substr(sha1("${local.unique}/node-group"), 0, 16))
}
