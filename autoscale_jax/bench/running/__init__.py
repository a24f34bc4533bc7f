"""One run of one method on one benchmark (the bench's second layer, above :mod:`..datasets`).

:mod:`.recipe` (Adam and its schedule), :mod:`.models` (the networks and their losses),
:mod:`.benchmark` (a loaded benchmark and the cache its runs share), :mod:`.method_config` (the
rows a suite runs), :mod:`.chunk` (``eval_every`` compiled steps), :mod:`.single_run` (train,
select on validation, test), :mod:`.search_run` (the ``autoscale_search`` row),
:mod:`.side_by_side` (fixed weightings in one program), :mod:`.run_loop` (what those three
share: a seed's start, the chunks scored on validation, the result's common fields), :mod:`.seeds`
(a row over seeds, trained or loaded), :mod:`.selection` and :mod:`.evaluation` (scores and
Δm%), :mod:`.run_result`, :mod:`.run_store`, :mod:`.run_schema` and :mod:`.serialization` (what
a run records, one file per run, JSON). Nothing here imports :mod:`..experiments`,
:mod:`..reporting` or the CLI.
"""
