# Root of the example repository. Every strata.hcl below inherits from this one; deeper files win.
# The `strata {}` block marks the root and holds the repository settings (all optional).
strata {
  # Deployment order of the layers: a stack may depend only on a lower layer (validate checks it).
  # Without this setting layers are ordered by their numeric prefix.
  layers = ["01-foundation", "02-platform", "03-databases", "04-applications"]

  # The Terraform (or OpenTofu) command; the STRATA_TERRAFORM environment variable overrides it.
  terraform_binary = "terraform"

  # Where local state lives, relative to this folder (git-ignored).
  state_dir = ".strata/state"

  # Inputs whose names match are CIDR blocks: validate reports overlaps between stacks...
  cidr_inputs = ["*cidr*"]
  # ...that share these dimensions (one account and environment = one routable network).
  network_scope = ["cloud", "account_id", "environment"]

  # Environments whose state must be encrypted at rest: validate fails their stacks on local state.
  # This example keeps all state on local disk so it runs without a cloud account, so it names none.
  # A real repository keeps the default ["production", "prod", "prd"] and an s3/azurerm/gcs backend.
  production_environments = []

  # Other settings, shown with their defaults:
  # infer_dimensions  = true                          # environment/region/layer/client from folder names
  # environment_names = ["dev", "staging", "production", ...]
  # backend_file      = "strata_backend.tf"           # what `strata generate` writes into each stack
  # inputs_file       = "strata_inputs.auto.tfvars"
}

# How the generated pipelines (`strata ci generate`) order and gate the environments: staging is applied
# first, production after it and only once approved. Runners, parallelism and the cloud credentials of each
# environment and account go here too (docs/ci.md).
ci {
  promotion = ["staging", "production"]

  environment "production" {
    protected = true
  }
}

# The backend template for every stack. With no settings, "local" keeps each stack's state at
# .strata/state/<environment>/<region>/<layer>/terraform.tfstate (clients: .../clients/<client>/...),
# which is also strata's embedded default: this block only makes it explicit. A real repository
# would use e.g. backend "s3" { bucket = format("acme-tfstate-%s-%s", strata.environment, strata.region) }.
backend "local" {}

# A dimension set for every stack (also inferred from an s3 backend or an aws/ folder).
cloud = "aws"

locals {
  project = "acme"

  # Every VPC is a /16 of this supernet: the environment picks the tens, the region the units
  # (environment_netnum is set in <env>/strata.hcl, region_netnum in <env>/<region>/strata.hcl).
  supernet = "10.0.0.0/8"
  vpc_cidr = cidrsubnet(local.supernet, 8, local.environment_netnum + local.region_netnum)

  # acme-production-use1, acme-staging-euc1, ...
  name_prefix = format("%s-%s-%s", local.project, strata.environment, local.region_code)

  node_instance_types = {
    staging    = "t3.large"
    production = "m6i.xlarge"
  }

  # Overridden per environment with merge() in <env>/strata.hcl.
  database_defaults = {
    engine_version        = "15.5"
    instance_class        = "db.t4g.medium"
    multi_az              = false
    backup_retention_days = 7
  }
}

# Inputs every stack receives (each stack's Terraform declares these variables).
inputs = {
  project     = local.project
  environment = strata.environment
  region      = strata.region
  name_prefix = local.name_prefix

  # Deep-merged with the tags set deeper: `strata render <stack>` shows where each one comes from.
  tags = {
    Project     = local.project
    Environment = strata.environment
    Region      = strata.region
    Stack       = strata.stack.path
    ManagedBy   = "strata"
    Owner       = "platform-team"
    CostCenter  = "shared-infra"
  }
}
