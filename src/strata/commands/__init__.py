"""One module per command; argument parsing lives in strata.main."""
