"""Grid search of fixed linear-scalarization weights, selected on validation: the expensive
baseline every method is compared with (``G`` runs per seed).

Two ways to train the grid, with the same result up to float round-off: one run per grid point
(:func:`autoscale_jax.bench.running.seeds.run_seeds`), or all ``G`` points of a seed side by side
in one compiled program (``vmapped=True``:
:func:`~autoscale_jax.bench.running.side_by_side.vmapped_grid_runs`, ``jax.vmap`` over the
weights and the parameter / optimizer-state copies). Either way the grid costs ``G`` runs of
gradient evaluations per seed; the vmapped program saves dispatch and uses the cores better, and
each grid point's run carries ``1/G`` of the program's wall time.

Example:
  >>> grid = grid_search(bench, ls_weight_grid(2, 3), steps=20, eval_every=10, vmapped=True)
  >>> grid.weights[grid.best_index].shape
  (2,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress, run_seeds
from autoscale_jax.bench.running.side_by_side import vmapped_grid_runs, vmapped_seed, weights_label

__all__ = [
    "GridSearchResult",
    "grid_info",
    "grid_search",
    "ls_weight_grid",
    "vmapped_grid_runs",
    "weights_label",
]


def ls_weight_grid(
    num_tasks: int, size: int, *, max_ratio: float = 1000.0, seed: int = 0
) -> np.ndarray:
    """Fixed linear-scalarization weights to grid-search, each row summing to K.

    - K = 2: ``w = 2 (a, 1 - a)`` with ``a = 1 / (1 + r)`` and the ratio ``r = w_2 / w_1``
      log-uniform in ``[1/max_ratio, max_ratio]`` (odd ``size`` includes equal weights), so
      the grid is as fine at ``a = 0.005`` as at ``a = 0.5`` (mixed CE + MSE pairs need
      ratios of 100 and more).
    - K > 2: equal weights then ``size - 1`` random weightings, log-uniform: each
      ``log w_k`` uniform in ``[0, log max_ratio]``, rescaled to sum to K (ratios between
      tasks up to ``max_ratio``; a flat Dirichlet almost never gives the ratios of 100 and
      more that mixed CE + MSE tasks need).

    Args:
      num_tasks: K.
      size: grid points G.
      max_ratio: the largest ratio ``w_2 / w_1`` for K = 2 (between any two tasks for K > 2).
      seed: seeds the random draws for K > 2.

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
    logs = np.random.default_rng(seed).uniform(0.0, np.log(max_ratio), (size - 1, num_tasks))
    draws = np.exp(logs)
    draws = draws / draws.sum(axis=1, keepdims=True)
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


def _grid_configs(weight_grid: np.ndarray) -> list[MethodConfig]:
    return [
        MethodConfig(weights_label(w), "fixed_weights", {"weights": w})
        for w in np.asarray(weight_grid, np.float64)
    ]


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
    vmapped: bool = False,
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
      vmapped: train a seed's ``G`` points side by side in one program
        (:func:`vmapped_grid_runs`) instead of one run after another.

    Returns:
      A :class:`GridSearchResult`.
    """
    budget: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    configs = _grid_configs(weight_grid)
    if vmapped:
        per_seed = [
            vmapped_seed(benchmark, configs, seed, budget, baselines, progress, store)
            for seed in seeds
        ]
        runs = [tuple(seed_runs[g] for seed_runs in per_seed) for g in range(len(configs))]
    else:
        runs = [
            run_seeds(benchmark, c, seeds, progress, **budget, baselines=baselines, store=store)
            for c in configs
        ]
    scores = np.array([np.mean([r.selection_score for r in point]) for point in runs])
    return GridSearchResult(np.asarray(weight_grid), scores, int(np.argmax(scores)), tuple(runs))


def grid_info(grid: GridSearchResult) -> dict[str, Any]:
    """The grid search as a report records it (plain lists, JSON-friendly).

    Args:
      grid: a finished grid search (with baselines, so runs carry Δm%).

    Returns:
      ``{"kind", "weights", "validation_scores", "best_index", "best_label", "test_delta_m",
      "test_delta_m_sd"}``: ``kind`` is ``"grid"`` for two tasks, ``"random search"`` for
      more (equal weights + log-uniform draws, :func:`ls_weight_grid`); the last two are the
      per-metric test Δm% of every point, mean and population sd over seeds.
    """
    deltas = [[(r.delta_m or {})["per_metric"] for r in point] for point in grid.runs]
    return {
        "kind": "grid" if grid.weights.shape[1] == 2 else "random search",
        "weights": grid.weights.tolist(),
        "validation_scores": grid.validation_scores.tolist(),
        "best_index": grid.best_index,
        "best_label": grid.best_runs[0].method,
        "test_delta_m": [float(np.mean(d)) for d in deltas],
        "test_delta_m_sd": [float(np.std(d)) for d in deltas],
    }
