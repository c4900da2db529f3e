terraform {
  required_version = ">= 1.0.3"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "~> 2.1"
    }
  }
}

# The applications layer: a service deployed on the cluster, talking to the database.
# null_resource stands in for the Kubernetes deployment, service and ingress.

variable "app_name" {
  type = string
}

variable "image" {
  type = string
}

variable "replicas" {
  type = number
}

variable "hostname" {
  type = string
}

variable "cluster_name" {
  type = string
}

variable "cluster_endpoint" {
  type = string
}

variable "db_endpoint" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}

resource "null_resource" "deployment" {
  triggers = {
    app              = var.app_name
    image            = var.image
    replicas         = tostring(var.replicas)
    cluster          = var.cluster_name
    cluster_endpoint = var.cluster_endpoint
    database         = var.db_endpoint
  }
}

resource "null_resource" "ingress" {
  triggers = {
    deployment = null_resource.deployment.id
    hostname   = var.hostname
  }
}

output "app_url" {
  value = "https://${var.hostname}"
}
