"""Offline benchmarks of multi-task optimizers, in four layers and a command line.

Each layer imports only the layers below it (``benchmarks/import_floors.py`` checks it):

1. :mod:`.datasets`: the data, one private module per source, and each benchmark defined once,
   beside its loader (:class:`~.datasets.BenchmarkDefinition`: dataset options, model, learning
   rate, what it shows); :mod:`.datasets.toy`: the analytic two-objective problem of the
   method tests.
2. :mod:`.running`: one run of one method. :mod:`~.running.recipe` (Adam and its schedule),
   :mod:`~.running.models` (the networks), :mod:`~.running.benchmark` (a loaded benchmark and
   the cache its runs share), :mod:`~.running.method_config` (the rows a suite runs),
   :mod:`~.running.chunk` (``eval_every`` compiled steps in one ``lax.scan``),
   :mod:`~.running.single_run` (train, select on validation, test),
   :mod:`~.running.search_run` (the ``autoscale_search`` row), :mod:`~.running.seeds` (a row over
   seeds), :mod:`~.running.selection` and :mod:`~.running.evaluation` (scores, Δm%),
   :mod:`~.running.run_result`, :mod:`~.running.run_store`, :mod:`~.running.run_schema` and
   :mod:`~.running.serialization` (what a run records, one file per run, JSON).
3. :mod:`.experiments`: many runs. :mod:`~.experiments.baselines` (single-task runs),
   :mod:`~.experiments.grid` (the LS grid search), :mod:`~.experiments.controls` (the rows
   derived from the grid's pick), :mod:`~.experiments.summary` (one table row per method),
   :mod:`~.experiments.experiment` (all of it on one benchmark), :mod:`~.experiments.study`
   (early MTO metrics vs final Δm%) and :mod:`~.experiments.suites` (what each suite runs).
4. :mod:`.reporting`: :mod:`~.reporting.report` (markdown) and :mod:`~.reporting.plots` (PNG).
5. :mod:`.cli` and :mod:`.cli_args`: ``autoscale-jax bench|study`` (also
   ``python -m autoscale_jax.bench``).

The modules of the earlier flat layout (``autoscale_jax.bench.grid``, ``.trainer``,
``.training``, ...) moved into these layers (CHANGELOG); ``from autoscale_jax.bench import grid``
still finds the moved module (``toy`` is ``datasets.toy``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Where each module of the flat layout lives now (``trainer`` and ``training`` were renamed).
_MOVED = {
    **{
        name: f"running.{name}"
        for name in (
            "benchmark",
            "evaluation",
            "method_config",
            "models",
            "recipe",
            "run_result",
            "run_schema",
            "run_store",
            "search_run",
            "seeds",
            "selection",
            "serialization",
        )
    },
    "trainer": "running.chunk",
    "training": "running.single_run",
    **{
        name: f"experiments.{name}"
        for name in ("baselines", "controls", "experiment", "grid", "study", "suites", "summary")
    },
    "plots": "reporting.plots",
    "report": "reporting.report",
    "toy": "datasets.toy",
}


def __getattr__(name: str) -> ModuleType:
    """``autoscale_jax.bench.<old module>``: the module at its new place (see :data:`_MOVED`)."""
    if name in _MOVED:
        return importlib.import_module(f"{__name__}.{_MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
