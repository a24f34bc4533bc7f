"""Single-task baselines: each task trained alone (weights ``e_k``: trunk + head k), the
reference of every Δm%.

Example:
  >>> baselines, runs = single_task_baselines(bench, steps=20, seeds=(0,), eval_every=10)
  >>> 0.0 <= baselines.test[0]["accuracy"] <= 1.0
  True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from autoscale_jax.bench.datasets import TaskSpec
from autoscale_jax.bench.experiments.summary import mean_metrics
from autoscale_jax.bench.running import evaluation
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress, run_seeds

__all__ = ["single_task_baselines", "single_task_row_run"]


def single_task_baselines(
    benchmark: Benchmark,
    *,
    steps: int,
    batch_size: int = 128,
    seeds: Sequence[int] = (0,),
    eval_every: int = 50,
    progress: ProgressFn = no_progress,
    store: RunStore | None = None,
) -> tuple[Baselines, list[RunResult]]:
    """Trains each task alone (weights ``e_k``: trunk + head k) and averages over seeds.

    Each run is selected on its own task's validation metrics; task k's baseline is the
    seed-mean of those runs' metrics on task k, on validation and test.

    Args:
      benchmark: the benchmark.
      steps, batch_size, seeds, eval_every: the budget (as for every other method).
      progress: called after every run.
      store: saves finished runs and loads them when resuming.

    Returns:
      ``(baselines, runs)``; runs are labelled ``single_task_<task name>``.
    """
    k = benchmark.num_tasks
    budget: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    runs: list[Any] = []
    validation: list[Any] = []
    test: list[Any] = []
    for task, spec in enumerate(benchmark.dataset.tasks):
        config = MethodConfig(
            f"single_task_{spec.name}", "fixed_weights", {"weights": np.eye(k)[task]}
        )
        task_runs = run_seeds(
            benchmark, config, seeds, progress, **budget, selection_tasks=(task,), store=store
        )
        runs += task_runs
        validation.append(mean_metrics([r.validation_metrics for r in task_runs])[task])
        test.append(mean_metrics([r.test_metrics for r in task_runs])[task])
    return Baselines(tuple(validation), tuple(test)), runs


def single_task_row_run(
    runs: Sequence[RunResult], tasks: Sequence[TaskSpec], baselines: Baselines, seed: int
) -> RunResult:
    """One seed's single-task baselines as one run of the table: task k's metrics from task
    k's own run, so its Δm% is 0 by definition.

    Args:
      runs: the single-task runs of :func:`single_task_baselines`.
      tasks: the dataset's tasks.
      baselines: the baselines those runs gave.
      seed: the seed.

    Returns:
      A run labelled ``single_task`` (its other fields are the first task's run's).
    """
    per_task = [
        next(r for r in runs if r.seed == seed and r.method == f"single_task_{t.name}")
        for t in tasks
    ]
    test = tuple(r.test_metrics[k] for k, r in enumerate(per_task))
    return dataclasses.replace(
        per_task[0],
        method="single_task",
        test_metrics=test,
        delta_m=evaluation.delta_m_both(tasks, test, baselines.test),
        weights=None,
    )
