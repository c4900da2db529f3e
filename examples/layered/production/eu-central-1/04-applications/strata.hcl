stack {
  description = "The storefront application on the shared cluster"
  tags        = ["app"]
}

dependency "platform" {
  path = "../02-platform"

  mock_outputs = {
    cluster_name     = "acme-mock-eks"
    cluster_endpoint = "https://0123456789ABCDEF.mock.eks.acme.internal"
  }
}

dependency "databases" {
  path = "../03-databases"

  mock_outputs = {
    db_endpoint = "acme-mock-postgres.abcdef012345.mock.rds.acme.internal:5432"
  }
}

inputs = {
  app_name = "storefront"
  image    = "ghcr.io/acme/storefront:1.4.2"
  replicas = local.app_replicas
  hostname = format("shop.%s.%s.acme.example", local.region_code, strata.environment)

  cluster_name     = dependency.platform.outputs.cluster_name
  cluster_endpoint = dependency.platform.outputs.cluster_endpoint
  db_endpoint      = dependency.databases.outputs.db_endpoint
}
