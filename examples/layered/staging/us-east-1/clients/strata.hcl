# Shared by every client stack below. This file has no stack {} block, so its dependencies and
# inputs are inherited by each clients/<client>/ stack: adding a client is one small strata.hcl.
# Paths are relative to this folder.

dependency "foundation" {
  path = "../01-foundation"

  mock_outputs = {
    vpc_id = "vpc-0a1b2c3d4e5f60718"
  }
}

dependency "platform" {
  path = "../02-platform"

  mock_outputs = {
    cluster_name = "acme-mock-eks"
  }
}

dependency "databases" {
  path = "../03-databases"

  mock_outputs = {
    db_endpoint = "acme-mock-postgres.abcdef012345.mock.rds.acme.internal:5432"
  }
}

inputs = {
  client_name   = strata.client # inferred from the folder name under clients/
  namespace     = lower(format("client-%s", strata.client))
  database_name = replace(strata.client, "-", "_")
  hostname      = format("%s.%s.%s.acme.example", strata.client, local.region_code, strata.environment)

  vpc_id       = dependency.foundation.outputs.vpc_id # produced in 01-foundation, two layers down
  cluster_name = dependency.platform.outputs.cluster_name
  db_endpoint  = dependency.databases.outputs.db_endpoint

  tags = {
    Owner      = "client-success" # overrides the root's "platform-team" for every client
    Client     = strata.client
    ClientCode = upper(replace(strata.client, "-", ""))
  }
}
