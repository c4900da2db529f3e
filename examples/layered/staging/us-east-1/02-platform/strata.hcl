stack {
  description = "EKS platform: the Kubernetes cluster the applications and clients run on"
  tags        = ["kubernetes"]
}

dependency "foundation" {
  path = "../01-foundation"

  # Used by `strata render`/plans before 01-foundation has been applied.
  mock_outputs = {
    vpc_id             = "vpc-0a1b2c3d4e5f60718"
    private_subnet_ids = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
  }
}

inputs = {
  cluster_name       = join("-", [local.project, strata.environment, local.region_code, "eks"])
  kubernetes_version = "1.29"
  node_instance_type = lookup(local.node_instance_types, strata.environment, "t3.medium")
  node_count         = local.app_replicas * 2

  vpc_id     = dependency.foundation.outputs.vpc_id
  subnet_ids = dependency.foundation.outputs.private_subnet_ids

  tags = {
    Owner = "kubernetes-team" # overrides the root's "platform-team" for this stack only
  }
}
