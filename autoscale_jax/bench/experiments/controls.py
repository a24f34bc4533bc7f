"""The rows derived from the grid's pick, which put every other row on an equal footing.

- ``ls_grid_restart`` (**the restart control**): the grid's weights trained from step 0, with
  Adam's moments reset once after 5% of training (the step where AutoScale's phase 1 ends,
  :func:`~autoscale_jax.bench.running.method_config.search_options`). On a fair recipe it ties with
  ``ls_grid`` (within 1 Δm point): a row that gains from a restart then gains from its
  method, not from repairing the optimizer. With constant Adam (β2 = 0.999) on the
  discriminating benchmarks the reset alone was worth 1.9–5.7 points.
- ``ls_grid_on_search`` (**the control of the search**): AutoScale's gms phase 1, then the
  grid's weights with a fresh Adam state, i.e. the schedule of ``autoscale_search`` with the
  grid's pick as its only candidate: the like-for-like comparison for the search's pick.

Both cost one run per seed and are labelled in the table like any row.

Example:
  >>> GRID_CONTROLS
  ('ls_grid_restart', 'ls_grid_on_search')
  >>> control_config("ls_grid_restart", np.array([0.5, 1.5]), steps=800).options["restart_at"]
  40
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import (
    GRID_CONTROLS,
    GRID_ON_SEARCH,
    GRID_RESTART,
    SEARCH_METHOD,
    MethodConfig,
    search_options,
)
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress, run_seeds
from autoscale_jax.bench.running.side_by_side import vmapped_seed

__all__ = ["GRID_CONTROLS", "GRID_ON_SEARCH", "GRID_RESTART", "control_config", "control_runs"]

DETAILS = {
    GRID_RESTART: "the grid's weights from step 0, Adam reset once after step {restart_at}",
    GRID_ON_SEARCH: "gms phase 1 ({estimation_steps} steps), then the grid's weights with a "
    "fresh Adam state (the search's schedule)",
}


def control_config(label: str, weights: np.ndarray, *, steps: int) -> MethodConfig:
    """The method of a control row for the grid's pick ``weights`` and a ``steps`` budget.

    Args:
      label: one of :data:`GRID_CONTROLS`.
      weights: ``[K]`` the grid's pick.
      steps: the run's steps (the restart / phase switch is at 5% of them).

    Returns:
      A :class:`MethodConfig`: fixed weights with option ``restart_at``, or the search with
      the pick as its only candidate.
    """
    weights = np.asarray(weights, np.float64)
    options = search_options(len(weights), steps)
    if label == GRID_RESTART:
        restart = {"weights": weights, "restart_at": options["estimation_steps"]}
        return MethodConfig(label, "fixed_weights", restart)
    if label == GRID_ON_SEARCH:
        options.pop("refine_rungs", None)
        options.pop("factors", None)
        options.update(candidates=[weights.tolist()], rungs=(1, 2))
        return MethodConfig(label, SEARCH_METHOD, options)
    raise ValueError(f"Unknown control row {label!r}; choose from {GRID_CONTROLS}")


def control_runs(
    benchmark: Benchmark,
    label: str,
    weights: np.ndarray,
    *,
    seeds: Sequence[int],
    steps: int,
    batch_size: int = 128,
    eval_every: int = 50,
    baselines: Baselines | None = None,
    progress: ProgressFn = no_progress,
    store: RunStore | None = None,
) -> tuple[RunResult, ...]:
    """One control row's runs, one per seed (loaded from ``store`` when it resumes).

    Args:
      benchmark: the benchmark.
      label: one of :data:`GRID_CONTROLS`.
      weights: ``[K]`` the grid's pick.
      seeds, steps, batch_size, eval_every, baselines, progress, store: as in
        :func:`~autoscale_jax.bench.running.seeds.run_seeds`.

    Returns:
      The runs, labelled ``label``.
    """
    config = control_config(label, weights, steps=steps)
    budget: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    if label == GRID_ON_SEARCH:
        return run_seeds(
            benchmark, config, seeds, progress, baselines=baselines, store=store, **budget
        )
    restart_at = config.options["restart_at"]
    return tuple(
        vmapped_seed(benchmark, [config], s, budget, baselines, progress, store, restart_at)[0]
        for s in seeds
    )


def control_detail(label: str, config: MethodConfig) -> str:
    """The table's free text for a control row."""
    return DETAILS[label].format(**config.options)
