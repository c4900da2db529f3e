stack {
  description = "Network foundation: the VPC and one private subnet per availability zone"
  tags        = ["network"]
}

inputs = {
  vpc_name           = format("%s-vpc", local.name_prefix)
  vpc_cidr           = local.vpc_cidr # the only CIDR input: one distinct /16 per environment and region
  availability_zones = local.availability_zones
}
