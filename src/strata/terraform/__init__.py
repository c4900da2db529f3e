"""Everything that knows about the terraform/tofu binary: finding it, its version, running it."""
