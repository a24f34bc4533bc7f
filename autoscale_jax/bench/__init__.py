"""Offline benchmarks of multi-task optimizers, one concern per module.

What runs, from the bottom up:

- :mod:`.datasets` (one private module per data source) and :mod:`.models`: the data and the
  networks; :mod:`.toy`: small synthetic problems for the method tests.
- :mod:`.benchmark`: a dataset + model + learning rate, and the typed cache its runs share.
- :mod:`.method_config`: the methods a suite runs (row label, registry name, options);
  (methods are built from the registry: ``asj.methods.build_for``)
- :mod:`.trainer`: the compiled training chunk (``eval_every`` steps in one ``lax.scan``).
- :mod:`.training`: one run (train, select on validation, test); :mod:`.selection`: the
  validation score and which checkpoint is kept; :mod:`.evaluation`: metrics, Δm%, mean rank.
- :mod:`.seeds`: one method over seeds; :mod:`.run_store`: one file per finished run (resume).
- :mod:`.search_run`: the ``autoscale_search`` method (AutoScale's phase 1, the validation-
  guided search of :mod:`autoscale_jax.search`, the survivor trained to the end).
- :mod:`.baselines` (single-task runs), :mod:`.grid` (the LS grid search, one run per point
  or all points of a seed side by side in one vmapped program), :mod:`.summary`
  (seed statistics, one table row per method) and :mod:`.experiment` (all of it on one
  benchmark); :mod:`.study`: early MTO metrics vs final Δm% over fixed weights.
- :mod:`.report` (markdown), :mod:`.serialization` (JSON), :mod:`.plots` (PNG),
  :mod:`.suites` (smoke / quick / discriminating / full) and :mod:`.cli`
  (``autoscale-jax bench|study``).
"""
