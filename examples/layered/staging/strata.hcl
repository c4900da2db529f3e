# Everything under staging/. The environment would be inferred from the folder name; setting it
# here makes the value (and its origin in `strata render`) explicit.
environment = "staging"
account_id  = "111111111111"

locals {
  # staging VPCs: 10.10.0.0/16 (us-east-1) and 10.11.0.0/16 (eu-central-1)
  environment_netnum = 10

  database = merge(local.database_defaults, {
    backup_retention_days = 1
  })

  app_replicas = 1
}

inputs = {
  tags = {
    CostCenter = "engineering" # overrides the root's "shared-infra"
  }
}
