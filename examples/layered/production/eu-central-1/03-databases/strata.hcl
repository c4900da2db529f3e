stack {
  description = "PostgreSQL (RDS) in the private subnets, reachable from the cluster nodes"
  tags        = ["data"]
}

dependency "foundation" {
  path = "../01-foundation"

  mock_outputs = {
    vpc_id             = "vpc-0a1b2c3d4e5f60718"
    private_subnet_ids = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002", "subnet-0a1b2c3d4e5f60003"]
  }
}

dependency "platform" {
  path = "../02-platform"

  mock_outputs = {
    node_security_group_id = "sg-0f1e2d3c4b5a69788"
  }
}

inputs = {
  db_identifier         = format("%s-postgres", local.name_prefix)
  engine_version        = local.database.engine_version
  instance_class        = local.database.instance_class
  multi_az              = local.database.multi_az
  backup_retention_days = local.database.backup_retention_days

  vpc_id                     = dependency.foundation.outputs.vpc_id
  subnet_ids                 = dependency.foundation.outputs.private_subnet_ids
  allowed_security_group_ids = [dependency.platform.outputs.node_security_group_id]

  tags = {
    DataClassification = "confidential"
  }
}
