region = "eu-central-1"

locals {
  region_netnum      = 1 # this region's VPC is <environment>.1: 10.11.0.0/16, 10.21.0.0/16
  region_code        = "euc1"
  availability_zones = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
}

inputs = {
  tags = {
    DataResidency = "eu"
  }
}
