"""Everything on one benchmark: single-task baselines, the LS grid (a random search for K > 2),
its control rows (:mod:`.controls`) and every method on every seed, summarised into a
:class:`BenchmarkReport` (one table row per method), with the recipe every row trained with.

Example:
  >>> from autoscale_jax.bench.experiments.grid import ls_weight_grid
  >>> from autoscale_jax.bench.running.method_config import default_methods
  >>> methods = [c for c in default_methods(2, 20) if c.label in ("ew", "autoscale_gms")]
  >>> report = run_benchmark(bench, methods, steps=20, seeds=(0,), eval_every=10,
  ...                        weight_grid=ls_weight_grid(2, 3))
  >>> [s.method for s in report.summaries][:3]
  ['single_task', 'ls_grid', 'ew']
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from autoscale_jax.bench.experiments.baselines import single_task_baselines, single_task_row_run
from autoscale_jax.bench.experiments.controls import control_config, control_detail, control_runs
from autoscale_jax.bench.experiments.grid import grid_info, grid_search
from autoscale_jax.bench.experiments.results import BenchmarkReport
from autoscale_jax.bench.experiments.summary import (
    summarize,
    timing_caveat,
    with_costs_and_ranks,
)
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_store import RunStore, RunStoreError
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress, run_seeds
from autoscale_jax.bench.running.selection import selected_before_end

__all__ = ["BenchmarkReport", "run_benchmark"]


def _grid_kind(benchmark: Benchmark) -> str:
    if benchmark.num_tasks == 2:
        return "fixed weights (grid)"
    return "fixed weights (random search: EW + log-uniform draws)"


def run_benchmark(
    benchmark: Benchmark,
    methods: Sequence[MethodConfig],
    *,
    steps: int,
    batch_size: int = 128,
    seeds: Sequence[int] = (0, 1, 2),
    eval_every: int = 50,
    weight_grid: np.ndarray | None = None,
    progress: ProgressFn = no_progress,
    store: RunStore | None = None,
    vmapped_grid: bool = True,
    grid_controls: Sequence[str] = (),
) -> BenchmarkReport:
    """Baselines, grid-searched LS and every method on every seed, summarised.

    Order: single-task baselines (K × seeds runs), the LS grid (``len(weight_grid)`` × seeds
    runs; ``None`` skips it, see :func:`grid.ls_weight_grid`), the ``grid_controls`` rows on
    the grid's pick (seeds runs each), then ``methods`` × seeds. Every run trains with
    ``benchmark.recipe``'s optimizer over ``steps``. A
    method that raises is recorded in ``failures`` and skipped; the others go on (a
    :class:`~run_store.RunStoreError` is no method's failure: it propagates). Warns
    (``UserWarning``) when runs are too short for their timing to mean anything.

    Args:
      benchmark: the benchmark.
      methods: the methods (include ``MethodConfig("ew", "equal_weights")``: costs are
        relative to it).
      steps, batch_size, seeds, eval_every: the budget of every run.
      weight_grid: ``[G, K]`` fixed weights to grid-search, or None.
      progress: called after every run.
      store: saves finished runs and loads them when resuming.
      vmapped_grid: train each seed's grid points side by side in one compiled program
        (:func:`grid.vmapped_grid_runs`; the same runs up to float round-off).
      grid_controls: labels of :data:`controls.GRID_CONTROLS` to run on the grid's pick (none
        without a grid).

    Returns:
      A :class:`BenchmarkReport` whose summaries carry Δm% (both conventions), mean rank and
      cost relative to EW.
    """
    budget: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    common: dict[str, Any] = {**budget, "seeds": tuple(seeds), "progress": progress, "store": store}
    tasks = benchmark.dataset.tasks
    baselines, baseline_runs = single_task_baselines(benchmark, **common)
    summaries = [
        summarize(
            "single_task",
            [single_task_row_run(baseline_runs, tasks, baselines, seed) for seed in seeds],
            cost_runs=[
                [r for r in baseline_runs if r.method == f"single_task_{t.name}"] for t in tasks
            ],
            detail="each task trained alone (weights e_k); Δm = 0 by definition",
        )
    ]
    all_runs = list(baseline_runs)
    grid: dict[str, Any] = {}
    if weight_grid is not None:
        search = grid_search(
            benchmark, weight_grid, baselines=baselines, vmapped=vmapped_grid, **common
        )
        grid = grid_info(search)
        summaries.append(
            summarize(
                "ls_grid",
                search.best_runs,
                cost_runs=search.runs,
                detail=f"best of {len(search.weights)} {_grid_kind(benchmark)} on validation"
                f"{' (vmapped)' if vmapped_grid else ''}: "
                f"{np.round(search.weights[search.best_index], 3).tolist()}",
            )
        )
        all_runs += [r for point in search.runs for r in point]
        pick = search.weights[search.best_index]
        for label in grid_controls:
            control = control_runs(benchmark, label, pick, baselines=baselines, **common)
            all_runs += control
            detail = control_detail(label, control_config(label, pick, steps=steps))
            summaries.append(summarize(label, control, detail=detail))
    failures: dict[str, str] = {}
    for config in methods:
        try:
            method_runs = run_seeds(
                benchmark, config, seeds, progress, baselines=baselines, store=store, **budget
            )
        except RunStoreError:
            raise  # the run files, not the method: the CLI reports it and stops
        except Exception as err:  # a broken method must not sink the whole suite
            failures[config.label] = f"{type(err).__name__}: {err}"
            continue
        all_runs += method_runs
        summaries.append(summarize(config.label, method_runs))
    caveat = timing_caveat(all_runs)
    recipe = dataclasses.replace(benchmark.recipe, steps=steps, batch_size=batch_size)
    before_end = selected_before_end(all_runs)
    if caveat is not None:
        warnings.warn(f"{benchmark.name}: {caveat}", stacklevel=2)
    return BenchmarkReport(
        benchmark=benchmark.name,
        note=benchmark.note,
        description=benchmark.dataset.description,
        tasks=[(t.name, t.metrics, t.higher_is_better) for t in tasks],
        budget={
            **budget,
            "seeds": list(seeds),
            "grid_size": 0 if weight_grid is None else len(weight_grid),
        },
        baselines=baselines,
        summaries=with_costs_and_ranks(summaries, tasks),
        grid=grid,
        runs=all_runs,
        failures=failures,
        timing_caveat=caveat,
        recipe={**recipe.as_dict(), "description": recipe.describe()},
        selection={
            "before_end": before_end,
            "runs": len(all_runs),
            "share": before_end / len(all_runs) if all_runs else float("nan"),
        },
    )
