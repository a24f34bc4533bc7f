"""What the experiments hand to :mod:`autoscale_jax.bench.reporting`: one benchmark's table
(:class:`BenchmarkReport`, made by
:func:`~autoscale_jax.bench.experiments.experiment.run_benchmark`) and the weight study
(:class:`StudyResult`, made by :func:`~autoscale_jax.bench.experiments.study.weight_study`).
Plain data: the reports and plots read them without importing the code that trains.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from autoscale_jax.bench.experiments.summary import MethodSummary
from autoscale_jax.bench.running.run_result import Baselines, RunResult

__all__ = ["STUDY_METRICS", "BenchmarkReport", "StudyResult"]


@dataclasses.dataclass(frozen=True)
class BenchmarkReport:
    """Everything :func:`run_benchmark` measured on one benchmark.

    Attributes:
      benchmark, note, description: what was run.
      tasks: ``[(task name, metrics, higher_is_better)]``.
      budget: steps, batch size, eval_every, seeds, grid size.
      recipe: the recipe every row trained with (:meth:`Recipe.as_dict`, with the steps and
        batch size of this report's runs) and its one-line ``description``.
      selection: how many of the report's runs selected a checkpoint before their last step
        (``{"before_end", "runs", "share"}``, see :func:`selection.selected_before_end`).
      baselines: single-task baselines.
      summaries: table rows (single-task baseline first, then EW, grid LS, methods).
      grid: the LS grid search (see :func:`grid.grid_info`); empty without one.
      runs: every run (baselines, grid points, methods).
      failures: ``{method: error message}`` for methods that could not run.
      timing_caveat: why the wall times mean little (runs too short), None when they are fine.
    """

    benchmark: str
    note: str
    description: str
    tasks: list[tuple[str, tuple[str, ...], tuple[bool, ...]]]
    budget: dict[str, Any]
    baselines: Baselines
    summaries: list[MethodSummary]
    grid: dict[str, Any]
    runs: list[RunResult]
    failures: dict[str, str]
    timing_caveat: str | None = None
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    selection: dict[str, Any] = dataclasses.field(default_factory=dict)


STUDY_METRICS = (
    "gradient_magnitude_similarity",
    "condition_number",
    "loss_scale_entropy",
    "mean_cosine_similarity",
)


class StudyResult(NamedTuple):
    """The weight study on one benchmark.

    Attributes:
      benchmark: its name.
      weights: ``[N, K]`` fixed weights trained.
      early_metrics: ``{metric: [N]}`` mean of the probes at steps ``<= early_steps`` (at each
        run's weights, on the shared trunk).
      delta_m: ``[N]`` final test Δm% (per-metric convention, positive = better).
      spearman: ``{metric: ρ(early metric, Δm%)}``.
      early_steps: the last step counted as early.
      steps: training steps per run.
    """

    benchmark: str
    weights: list[list[float]]
    early_metrics: dict[str, list[float]]
    delta_m: list[float]
    spearman: dict[str, float]
    early_steps: int
    steps: int
