stack {
  description = "Ezra: namespace, database and ingress on the shared platform"
  tags        = ["client"]
}

inputs = {
  display_name = "Ezra"
  tier         = "standard"
}
