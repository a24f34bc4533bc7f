"""What one run records (:class:`RunResult`) and the single-task baselines runs compare to.

Both are plain data (floats, ints, lists, dicts) so they round-trip through JSON:
:func:`run_result_from_json` rebuilds a run from the dict :func:`serialization.to_jsonable` made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Baselines", "RunResult", "TaskMetricDicts", "run_result_from_json"]

# One {metric name: value} dict per task, in the dataset's task order.
TaskMetricDicts = tuple[dict[str, float], ...]


class Baselines(NamedTuple):
    """Single-task baselines: per-task metric dicts (means over seeds) on both splits."""

    validation: TaskMetricDicts
    test: TaskMetricDicts


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Everything one run records (JSON-friendly: plain floats, ints, lists and dicts).

    Attributes:
      benchmark, method, method_name, options, seed, steps, batch_size, eval_every: the setup
        (``method`` is the row label, ``method_name`` the registry name).
      selected_step: step whose parameters were kept (best validation score).
      selection_score: that score (see :func:`selection.relative_score`).
      validation_metrics, test_metrics: per-task metric dicts at the selected step.
      delta_m: test Δm% vs the baselines, ``{"per_metric", "per_task"}``; None without baselines.
      wall_time_s: seconds spent in training steps (compilation and evaluation excluded).
      chunk_times_s: the same per ``eval_every`` chunk.
      compile_time_s: seconds spent compiling the trainer (0 when reused from a previous run).
      gradient_evaluations: forward+backward passes over the run (K per task-gradient step).
      weight_steps, weights: task weights after those steps (None without weights).
      estimator_steps, estimator_metrics: AutoScale's own metric snapshots during phase 1.
      probe_steps, probe_metrics: MTO metrics of the shared trunk at the current weights.
      validation_steps, validation_scores: the selection score every ``eval_every`` steps.
      train_losses: mean training losses [K] of every ``eval_every`` chunk.
      extras: method-specific facts (``autoscale_search``: its stages' candidates, rung
        scores and survivors); empty for most methods.
    """

    benchmark: str
    method: str
    method_name: str
    options: dict[str, str]
    seed: int
    steps: int
    batch_size: int
    eval_every: int
    selected_step: int
    selection_score: float
    validation_metrics: TaskMetricDicts
    test_metrics: TaskMetricDicts
    delta_m: dict[str, float] | None
    wall_time_s: float
    chunk_times_s: list[float]
    compile_time_s: float
    gradient_evaluations: int
    weight_steps: list[int]
    weights: list[list[float]] | None
    estimator_steps: list[int]
    estimator_metrics: dict[str, list[float]]
    probe_steps: list[int]
    probe_metrics: dict[str, list[float]]
    validation_steps: list[int]
    validation_scores: list[float]
    train_losses: list[list[float]]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_result_from_json(payload: Mapping[str, Any]) -> RunResult:
    """Rebuilds a :class:`RunResult` from its JSON dict (the inverse of ``to_jsonable``).

    Args:
      payload: a dict with one entry per :class:`RunResult` field; non-finite floats must have
        been kept (``to_jsonable(..., strict=False)``), since ``None`` is not a float.

    Returns:
      The run, with the per-task metric dicts as tuples again.

    Raises:
      TypeError: when fields are missing or unknown (a file of another version).
    """
    fields = dict(payload)
    for name in ("validation_metrics", "test_metrics"):
        fields[name] = tuple(dict(metrics) for metrics in fields[name])
    return RunResult(**fields)
