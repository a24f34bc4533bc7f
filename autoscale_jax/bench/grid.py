"""Grid search of fixed linear-scalarization weights, selected on validation: the expensive
baseline every method is compared with (``G`` runs per seed).

Example:
  >>> grid = grid_search(bench, ls_weight_grid(2, 9), steps=800, seeds=(0, 1, 2))
  >>> grid.weights[grid.best_index]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from autoscale_jax.bench.benchmark import Benchmark
from autoscale_jax.bench.method_config import MethodConfig
from autoscale_jax.bench.run_result import Baselines, RunResult
from autoscale_jax.bench.run_store import RunStore
from autoscale_jax.bench.seeds import ProgressFn, no_progress, run_seeds

__all__ = ["GridSearchResult", "grid_info", "grid_search", "ls_weight_grid", "weights_label"]


def ls_weight_grid(
    num_tasks: int, size: int, *, max_ratio: float = 1000.0, seed: int = 0
) -> np.ndarray:
    """Fixed linear-scalarization weights to grid-search, each row summing to K.

    - K = 2: ``w = 2 (a, 1 - a)`` with ``a = 1 / (1 + r)`` and the ratio ``r = w_2 / w_1``
      log-uniform in ``[1/max_ratio, max_ratio]`` (odd ``size`` includes equal weights), so
      the grid is as fine at ``a = 0.005`` as at ``a = 0.5`` (mixed CE + MSE pairs need
      ratios of 100 and more).
    - K > 2: equal weights then ``size - 1`` draws from a flat Dirichlet, times K.

    Args:
      num_tasks: K.
      size: grid points G.
      max_ratio: the largest ratio ``w_2 / w_1`` for K = 2.
      seed: seeds the Dirichlet draws for K > 2.

    Returns:
      ``[G, K]`` weights.

    Example:
      >>> ls_weight_grid(2, 3, max_ratio=3.0)
      array([[1.5, 0.5],
             [1. , 1. ],
             [0.5, 1.5]])
    """
    if size < 1:
        raise ValueError("size must be positive")
    if num_tasks == 2:
        ratios = np.geomspace(1 / max_ratio, max_ratio, size) if size > 1 else np.ones(1)
        a = 1.0 / (1.0 + ratios)
        return 2.0 * np.stack([a, 1.0 - a], axis=1)
    draws = np.random.default_rng(seed).dirichlet(np.ones(num_tasks), size - 1)
    return num_tasks * np.concatenate([np.full((1, num_tasks), 1.0 / num_tasks), draws])


class GridSearchResult(NamedTuple):
    """A grid search of fixed LS weights, selected on validation.

    Attributes:
      weights: ``[G, K]`` grid.
      validation_scores: ``[G]`` seed-mean selection scores.
      best_index: the grid point with the best mean validation score.
      runs: ``runs[g]`` holds the seeds' runs of grid point g.
    """

    weights: np.ndarray
    validation_scores: np.ndarray
    best_index: int
    runs: tuple[tuple[RunResult, ...], ...]

    @property
    def best_runs(self) -> tuple[RunResult, ...]:
        return self.runs[self.best_index]


def weights_label(weights: np.ndarray) -> str:
    """The row label of a grid point, e.g. ``"ls[0.5,1.5]"``."""
    return "ls[" + ",".join(f"{w:.3g}" for w in weights) + "]"


def grid_search(
    benchmark: Benchmark,
    weight_grid: np.ndarray,
    *,
    steps: int,
    batch_size: int = 128,
    seeds: Sequence[int] = (0,),
    eval_every: int = 50,
    baselines: Baselines | None = None,
    progress: ProgressFn = no_progress,
    store: RunStore | None = None,
) -> GridSearchResult:
    """Trains every fixed weight vector of ``weight_grid`` on every seed; picks by validation.

    The pick is the grid point whose seed-mean validation score (:func:`relative_score`) is
    highest; its test metrics are what the grid search reports. Cost: ``G`` runs per seed.

    Args:
      benchmark: the benchmark.
      weight_grid: ``[G, K]`` fixed weights (see :func:`ls_weight_grid`).
      steps, batch_size, seeds, eval_every, baselines: as in :func:`seeds.run_seeds`.
      progress: called after every run.
      store: saves finished runs and loads them when resuming.

    Returns:
      A :class:`GridSearchResult`.
    """
    budget = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    runs = []
    for weights in np.asarray(weight_grid, np.float64):
        config = MethodConfig(weights_label(weights), "fixed_weights", {"weights": weights})
        runs.append(
            run_seeds(
                benchmark, config, seeds, progress, **budget, baselines=baselines, store=store
            )
        )
    scores = np.array([np.mean([r.selection_score for r in point]) for point in runs])
    return GridSearchResult(np.asarray(weight_grid), scores, int(np.argmax(scores)), tuple(runs))


def grid_info(grid: GridSearchResult) -> dict[str, Any]:
    """The grid search as a report records it (plain lists, JSON-friendly).

    Args:
      grid: a finished grid search (with baselines, so runs carry Δm%).

    Returns:
      ``{"weights", "validation_scores", "best_index", "best_label", "test_delta_m",
      "test_delta_m_sd"}``: the last two are the per-metric test Δm% of every grid point,
      mean and population sd over seeds.
    """
    deltas = [[r.delta_m["per_metric"] for r in point] for point in grid.runs]
    return {
        "weights": grid.weights.tolist(),
        "validation_scores": grid.validation_scores.tolist(),
        "best_index": grid.best_index,
        "best_label": grid.best_runs[0].method,
        "test_delta_m": [float(np.mean(d)) for d in deltas],
        "test_delta_m_sd": [float(np.std(d)) for d in deltas],
    }
