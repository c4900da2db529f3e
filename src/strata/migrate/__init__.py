"""Moving resources between states: a monolith split into layered stacks, or one-off moves.

- :mod:`strata.migrate.spec` reads a migration file (HCL): the source state and the ordered rules that
  send each resource to a target stack, with optional address rewrites.
- :mod:`strata.migrate.surgery` applies those rules to parsed state JSON, in memory, in one pass: no
  terraform call per resource.
- :mod:`strata.migrate.verify` proves the result with no-op ``terraform plan`` runs, and
  :mod:`strata.migrate.journal` / :mod:`strata.migrate.runner` take the locks, back up, journal,
  write, and resume or roll back.
"""
