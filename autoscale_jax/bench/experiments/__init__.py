"""Many runs: baselines, the LS grid and its controls, one benchmark's table, the weight study
and the suites (the bench's third layer, above :mod:`..running`).

:mod:`.baselines` (single-task runs), :mod:`.grid` (the LS grid search), :mod:`.controls` (the
rows derived from the grid's pick), :mod:`.summary` (one table row per method),
:mod:`.experiment` (all of it on one benchmark), :mod:`.study` (early MTO metrics vs final Δm%)
and :mod:`.suites` (what each suite runs). Nothing here imports :mod:`..reporting` or the CLI.
"""
