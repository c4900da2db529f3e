stack {
  description = "MTN Ghana: namespace, database and ingress on the shared platform"
  tags        = ["client", "premium"]
}

inputs = {
  display_name = "MTN Ghana"
  tier         = "premium"
}
