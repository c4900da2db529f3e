region = "us-east-1"

locals {
  region_netnum      = 0 # this region's VPC is <environment>.0: 10.10.0.0/16, 10.20.0.0/16
  region_code        = "use1"
  availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
}
