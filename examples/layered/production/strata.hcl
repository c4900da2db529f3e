# Everything under production/. The environment would be inferred from the folder name; setting it
# here makes the value (and its origin in `strata render`) explicit.
environment = "production"
account_id  = "222222222222"

locals {
  # production VPCs: 10.20.0.0/16 (us-east-1) and 10.21.0.0/16 (eu-central-1)
  environment_netnum = 20

  database = merge(local.database_defaults, {
    instance_class        = "db.r6g.large"
    multi_az              = true
    backup_retention_days = 30
  })

  app_replicas = 3
}

inputs = {
  tags = {
    CostCenter  = "production-ops" # overrides the root's "shared-infra"
    Criticality = "high"
  }
}
