"""Reading strata.hcl files: discovery, parsing, schema, expressions, settings."""
