"""Policy as code on every plan: checkov on each stack's saved plan, the repository's own checks too.

- :mod:`strata.config.policy` reads the ``policy {}`` block (threshold, skips, the folder of custom checks);
- :mod:`strata.policy.checkov` finds checkov (never imported: its own environment), runs it, reads its report;
- :mod:`strata.policy.check` checks one stack's plan and judges the findings (the engine calls it per stack,
  in parallel, after the plan is saved; the result is kept in the saved plan's record);
- :mod:`strata.policy.gate` lets ``apply --plan`` apply a failed plan only with ``--override-policy REASON``,
  and records each override;
- :mod:`strata.policy.report` prints the results under the run's summary.
"""
