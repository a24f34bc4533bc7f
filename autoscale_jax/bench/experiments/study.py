"""The weight study: do good fixed weights show high GMS and low condition number early on?

:func:`weight_study` trains the LS grid, averages the MTO metrics of the shared trunk over the
first few percent of training and correlates each with the final Δm% (Spearman's ρ).

Example:
  >>> study = weight_study(bench, grid_size=3, steps=40, eval_every=20)
  >>> -1.0 <= study.spearman["gradient_magnitude_similarity"] <= 1.0
  True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from autoscale_jax.bench.experiments.baselines import single_task_baselines
from autoscale_jax.bench.experiments.grid import grid_search, ls_weight_grid
from autoscale_jax.bench.experiments.results import STUDY_METRICS, StudyResult
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.evaluation import average_ranks
from autoscale_jax.bench.running.run_result import RunResult
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress

__all__ = ["STUDY_METRICS", "StudyResult", "spearman_correlation", "weight_study"]


def spearman_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation ρ: the Pearson correlation of the (tie-averaged) ranks.

    .. math:: ρ = \\frac{\\mathrm{cov}(r_x, r_y)}{σ_{r_x} σ_{r_y}}

    (equal to ``1 - 6 Σ d_i² / (n (n² - 1))`` when there are no ties). NaN when fewer than two
    points or when either variable is constant; pairs with a non-finite value are dropped.

    Example:
      >>> spearman_correlation([1, 2, 3, 4], [10, 20, 30, 40])
      1.0
      >>> spearman_correlation([1, 2, 2, 3], [1, 3, 2, 4])   # ranks (1, 2.5, 2.5, 4)
      0.9486...
    """
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be vectors of equal length, got {xs.shape} and {ys.shape}")
    keep = np.isfinite(xs) & np.isfinite(ys)
    rx, ry = average_ranks(xs[keep]), average_ranks(ys[keep])
    if len(rx) < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float(np.sum(rx * ry) / np.sqrt(np.sum(rx**2) * np.sum(ry**2)))


def _early_values(result: RunResult, name: str, early_steps: int) -> np.ndarray:
    """A probe metric's values at steps ``0 .. early_steps``."""
    keep = np.asarray(result.probe_steps) <= early_steps
    return np.asarray(result.probe_metrics[name], np.float64)[keep]


def weight_study(
    benchmark: Benchmark,
    *,
    grid_size: int = 9,
    steps: int = 1000,
    batch_size: int = 128,
    seed: int = 0,
    early_fraction: float = 0.05,
    probe_every: int = 10,
    max_ratio: float = 1000.0,
    eval_every: int = 50,
    progress: ProgressFn = no_progress,
) -> StudyResult:
    """Does a good fixed weighting show high GMS and low condition number early on?

    Trains the LS grid (:func:`ls_weight_grid`) for ``steps`` steps each, measuring the MTO
    metrics of the shared trunk at the run's weights every ``probe_every`` steps; averages the
    probes of the first ``early_fraction`` of training (step 0 included) and correlates each
    with the final Δm% (Spearman). Baselines are trained with the same budget and seed.

    Args:
      benchmark: the benchmark.
      grid_size: fixed weightings to train (see :func:`grid.ls_weight_grid`).
      steps, batch_size, seed: the budget of every run.
      early_fraction: the share of training whose probes count as early.
      probe_every: steps between probes (and validation checkpoints) of the grid runs.
      max_ratio: the largest weight ratio of a two-task grid.
      eval_every: steps between validation checkpoints of the baselines.
      progress: called after every run.

    Returns:
      A :class:`StudyResult`.
    """
    baselines, _ = single_task_baselines(
        benchmark,
        steps=steps,
        batch_size=batch_size,
        seeds=(seed,),
        eval_every=eval_every,
        progress=progress,
    )
    early_steps = max(probe_every, round(early_fraction * steps))
    grid = grid_search(
        benchmark,
        ls_weight_grid(benchmark.num_tasks, grid_size, max_ratio=max_ratio),
        steps=steps,
        batch_size=batch_size,
        seeds=(seed,),
        eval_every=probe_every,  # the probes ride on the validation checkpoints
        baselines=baselines,
        progress=progress,
    )
    results = [point[0] for point in grid.runs]
    early = {
        name: [float(np.mean(_early_values(r, name, early_steps))) for r in results]
        for name in STUDY_METRICS
    }
    deltas = [(r.delta_m or {})["per_metric"] for r in results]
    return StudyResult(
        benchmark=benchmark.name,
        weights=grid.weights.tolist(),
        early_metrics=early,
        delta_m=deltas,
        spearman={name: spearman_correlation(early[name], deltas) for name in STUDY_METRICS},
        early_steps=early_steps,
        steps=steps,
    )
