"""strata bootstrap: create and repair what the selected stacks' backends need, idempotently.

:mod:`.targets` turns stacks into the backend resources they need (one S3 bucket + lock table + KMS
key per environment/region, one PostgreSQL database/schema set); :mod:`.aws` and :mod:`.pg` create,
check and repair them; :mod:`.emit` writes the same AWS resources as a Terraform stack instead.
"""
