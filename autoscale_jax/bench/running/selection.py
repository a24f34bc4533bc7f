"""Model selection on validation: the score, and which checkpoint a run keeps.

Every ``eval_every`` steps a run scores its validation metrics against a reference with
:func:`relative_score` and keeps the parameters of the best score (:func:`keep_better`); those
are evaluated once on test (:func:`selected_before_end` counts the runs whose kept checkpoint
is not their last one: a recipe long enough to select on). The reference is the single-task
baselines' validation metrics, or, for the single-task runs themselves, the untrained model's
(:func:`selection_reference`).

The score is Δm% per metric, positive = better:

.. math:: s = \\frac{1}{M} \\sum_j (-1)^{l_j} \\frac{M_j - B_j}{B_j} \\times 100
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from autoscale_jax.bench.datasets import TaskSpec
from autoscale_jax.bench.running import evaluation
from autoscale_jax.bench.running.run_result import Baselines, TaskMetricDicts

__all__ = [
    "Checkpoint",
    "keep_better",
    "relative_score",
    "selected_before_end",
    "selection_reference",
]


def _restrict(
    tasks: Sequence[TaskSpec], values: Sequence[Mapping[str, float]], keep: Sequence[int]
) -> tuple[np.ndarray, tuple[bool, ...], tuple[int, ...]]:
    flat, better, owner = evaluation.flatten_metrics(
        [tasks[k] for k in keep], [values[k] for k in keep]
    )
    return flat, better, tuple(keep[o] for o in owner)


def relative_score(
    tasks: Sequence[TaskSpec],
    values: Sequence[Mapping[str, float]],
    reference: Sequence[Mapping[str, float]],
    task_subset: Sequence[int] | None = None,
) -> float:
    """The selection score: Δm% (per metric, positive = better) of ``values`` vs ``reference``.

    ``s = mean_j (-1)^{l_j} (M_j - B_j) / B_j × 100`` over the metrics of ``task_subset`` (all
    tasks by default). A zero reference is replaced by 1e-12 (the untrained model may score 0);
    non-finite metrics score ``-inf`` so they are never selected.

    Args:
      tasks: the dataset's tasks.
      values: per-task metric dicts to score.
      reference: per-task metric dicts to compare with.
      task_subset: score only these tasks (None: all).

    Returns:
      The score in percent, ``-inf`` when a metric is not finite.

    Example:
      >>> spec = TaskSpec("t", "classification", 10, ("accuracy",), (True,))
      >>> relative_score([spec], [{"accuracy": 0.6}], [{"accuracy": 0.5}])
      20.0...
    """
    keep = list(range(len(tasks))) if task_subset is None else list(task_subset)
    flat, better, _ = _restrict(tasks, values, keep)
    base, _, _ = _restrict(tasks, reference, keep)
    if not (np.all(np.isfinite(flat)) and np.all(np.isfinite(base))):
        return -math.inf
    base = np.where(base == 0, 1e-12, base)
    return evaluation.delta_m(flat, base, better)


def selection_reference(
    baselines: Baselines | None, initial_validation: TaskMetricDicts
) -> TaskMetricDicts:
    """What validation scores compare to: the baselines, else the untrained model (step 0).

    Args:
      baselines: single-task baselines, None for the single-task runs themselves.
      initial_validation: the untrained model's validation metrics.

    Returns:
      Per-task metric dicts.
    """
    return initial_validation if baselines is None else baselines.validation


class Checkpoint(NamedTuple):
    """A candidate for selection: validation score, step, parameters and validation metrics."""

    score: float
    step: int
    params: Any
    validation: TaskMetricDicts


def keep_better(best: Checkpoint, candidate: Checkpoint) -> Checkpoint:
    """The checkpoint to keep: ``candidate`` only if it scores strictly higher.

    On a tie the earlier checkpoint stays (fewer steps for the same validation score).

    Args:
      best: the checkpoint kept so far (start from the untrained model with score ``-inf``).
      candidate: the newest checkpoint.

    Returns:
      ``candidate`` or ``best``.
    """
    return candidate if candidate.score > best.score else best


class _Selected(Protocol):
    @property
    def selected_step(self) -> int: ...

    @property
    def steps(self) -> int: ...


def selected_before_end(runs: Sequence[_Selected]) -> int:
    """How many runs kept a checkpoint before their last step (``selected_step < steps``).

    A recipe whose runs mostly select their last checkpoint is too short for selection to
    mean much: the issue's rule is that most selected checkpoints are not the last one.

    Args:
      runs: finished runs (anything with ``selected_step`` and ``steps``).

    Returns:
      The count.

    Example:
      >>> from types import SimpleNamespace as Run
      >>> runs = [Run(selected_step=700, steps=800), Run(selected_step=800, steps=800)]
      >>> selected_before_end(runs)
      1
    """
    return sum(1 for run in runs if run.selected_step < run.steps)
