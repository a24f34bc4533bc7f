"""Multi-task evaluation: per-task metrics, Δm% against single-task baselines, mean rank.

Sign convention: in this library a **positive Δm% means better than the single-task
baselines** (the convention of Gama & Grassi 2025, arXiv 2505.10347). Papers that follow
Navon et al. 2022 report the negated number (lower is better); negate ours to compare.

References:
  Maninis et al, Attentive Single-Tasking of Multiple Tasks, 2019 (Δm).
  Gama & Grassi, Uniform Loss vs. Specialized Optimization: A Comparative Analysis in
  Multi-Task Learning, 2025 (per-task averaging, sign).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from autoscale_jax.bench.datasets import Split, TaskSpec

__all__ = [
    "CONVENTIONS",
    "METRIC_NAMES",
    "average_ranks",
    "delta_m",
    "delta_m_both",
    "flatten_metrics",
    "mean_rank",
    "split_metrics",
    "task_metrics",
]

METRIC_NAMES = ("accuracy", "f1", "mse", "mae")
CONVENTIONS = ("per_metric", "per_task")


def _align(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Drops a trailing singleton axis of ``predictions`` when ``targets`` lacks it."""
    if predictions.shape == targets.shape:
        return predictions
    if predictions.shape[:-1] == targets.shape and predictions.shape[-1] == 1:
        return predictions[..., 0]
    raise ValueError(
        f"predictions of shape {predictions.shape} do not match targets of shape {targets.shape}"
    )


def _binary_f1(predicted: np.ndarray, actual: np.ndarray) -> float:
    """F1 = 2 TP / (2 TP + FP + FN); 0 when there is neither a positive nor a prediction."""
    true_positive = np.sum(predicted & actual)
    denominator = 2 * true_positive + np.sum(predicted & ~actual) + np.sum(~predicted & actual)
    return float(2 * true_positive / denominator) if denominator > 0 else 0.0


def task_metrics(spec: TaskSpec, predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The metrics ``spec.metrics`` of one task.

    * classification, ``"accuracy"``: ``mean(argmax_c predictions[:, c] == targets)`` with
      ``predictions [N, C]`` (logits or probabilities) and int labels ``[N]``;
    * binary, ``"accuracy"``: ``mean((predictions > 0) == targets)`` with logits ``[N]`` or
      ``[N, 1]`` and 0/1 targets ``[N]``; ``"f1"``: ``2 TP / (2 TP + FP + FN)`` (0 if undefined);
    * ``"mse"``: ``mean((predictions - targets)^2)`` over all elements;
    * ``"mae"``: ``mean(|predictions - targets|)`` over all elements.

    Args:
      spec: the task.
      predictions: model outputs for ``N`` examples (logits for classification and binary).
      targets: the split's targets for this task.

    Returns:
      ``{metric name: value}`` in the order of ``spec.metrics``.

    Raises:
      ValueError: for an unknown metric, a metric that does not fit the task kind, or
        mismatched shapes.

    Example:
      >>> spec = TaskSpec("t", "regression", 1, ("mae",), (False,))
      >>> task_metrics(spec, np.array([[1.0], [3.0]]), np.array([[0.0], [3.0]]))
      {'mae': 0.5}

    Reference: Maninis et al, Attentive Single-Tasking of Multiple Tasks, 2019.
    """
    predictions = np.asarray(predictions)
    targets = np.asarray(targets)
    if predictions.shape[0] != targets.shape[0]:
        raise ValueError(f"{predictions.shape[0]} predictions for {targets.shape[0]} targets")
    results: dict[str, float] = {}
    for metric in spec.metrics:
        if metric == "accuracy" and spec.kind == "classification":
            if predictions.ndim != targets.ndim + 1:
                raise ValueError("classification predictions need a trailing class axis")
            results[metric] = float(np.mean(np.argmax(predictions, axis=-1) == targets))
        elif metric in ("accuracy", "f1") and spec.kind == "binary":
            predicted = _align(predictions, targets) > 0
            actual = targets > 0.5
            if metric == "accuracy":
                results[metric] = float(np.mean(predicted == actual))
            else:
                results[metric] = _binary_f1(predicted, actual)
        elif metric in ("mse", "mae") and spec.kind in ("regression", "reconstruction"):
            error = _align(predictions, targets).astype(np.float64) - targets
            value = np.mean(error**2) if metric == "mse" else np.mean(np.abs(error))
            results[metric] = float(value)
        elif metric in METRIC_NAMES:
            raise ValueError(f"metric {metric!r} does not apply to a {spec.kind} task")
        else:
            raise ValueError(f"unknown metric {metric!r}; known: {METRIC_NAMES}")
    return results


def split_metrics(
    specs: Sequence[TaskSpec], outputs: Sequence[np.ndarray], split: Split
) -> tuple[dict[str, float], ...]:
    """:func:`task_metrics` of every task on a split, over each task's labelled examples only
    (``split.masks``; every example when it is ``None``).

    Args:
      specs: the dataset's tasks.
      outputs: the model's outputs on ``split.inputs``, one array per task.
      split: the examples and their targets (and masks, for partial labels).

    Returns:
      One ``{metric: value}`` dict per task.
    """
    if split.masks is None:
        return tuple(
            task_metrics(spec, out, target)
            for spec, out, target in zip(specs, outputs, split.targets, strict=True)
        )
    return tuple(
        task_metrics(spec, out[mask], target[mask])
        for spec, out, target, mask in zip(specs, outputs, split.targets, split.masks, strict=True)
    )


def flatten_metrics(
    specs: Sequence[TaskSpec], results: Sequence[Mapping[str, float]]
) -> tuple[np.ndarray, tuple[bool, ...], tuple[int, ...]]:
    """Lines up per-task metric dicts into the flat inputs of :func:`delta_m`.

    Args:
      specs: the dataset's tasks.
      results: one ``task_metrics`` dict per task, same order.

    Returns:
      ``(values [M], higher_is_better [M], task_of_metric [M])`` over every metric of every task.

    Raises:
      ValueError: if a task's metrics are missing or the lengths differ.

    Example:
      >>> specs = (TaskSpec("a", "classification", 10, ("accuracy",), (True,)),)
      >>> flatten_metrics(specs, [{"accuracy": 0.9}])
      (array([0.9]), (True,), (0,))
    """
    if len(specs) != len(results):
        raise ValueError(f"{len(specs)} tasks but {len(results)} result dicts")
    values, better, owner = [], [], []
    for task, (spec, result) in enumerate(zip(specs, results, strict=True)):
        for metric, higher in zip(spec.metrics, spec.higher_is_better, strict=True):
            if metric not in result:
                raise ValueError(f"task {spec.name!r} lacks metric {metric!r}")
            values.append(float(result[metric]))
            better.append(bool(higher))
            owner.append(task)
    return np.asarray(values, np.float64), tuple(better), tuple(owner)


def _as_vector(
    values: Mapping[str, float] | Sequence[float] | np.ndarray,
    keys: Sequence[str] | None,
    name: str,
) -> np.ndarray:
    if isinstance(values, Mapping):
        if keys is None:
            raise ValueError(f"{name} is a mapping but metrics is not")
        if set(values) != set(keys):
            raise ValueError(
                f"{name} keys {sorted(values)} differ from metrics keys {sorted(keys)}"
            )
        return np.asarray([values[k] for k in keys])
    return np.asarray(values)


def _as_vector_of_ids(
    ids: Mapping[str, Hashable] | Sequence[Hashable], keys: Sequence[str] | None
) -> list[Hashable]:
    # Task ids may be strings, so they are kept as a Python list rather than a numpy array.
    if isinstance(ids, Mapping):
        if keys is None or set(ids) != set(keys):
            raise ValueError("task_of_metric keys must match the metrics keys")
        return [ids[k] for k in keys]
    return list(ids)


def delta_m(
    metrics: Mapping[str, float] | Sequence[float] | np.ndarray,
    baseline: Mapping[str, float] | Sequence[float] | np.ndarray,
    higher_is_better: Mapping[str, bool] | Sequence[bool],
    *,
    convention: str = "per_metric",
    task_of_metric: Mapping[str, Hashable] | Sequence[Hashable] | None = None,
) -> float:
    r"""Relative multi-task performance Δm% against single-task baselines (positive = better).

    Each metric contributes its signed relative difference
    :math:`r_j = (-1)^{l_j} (M_j - B_j) / B_j \times 100`, with :math:`l_j = 1` when lower is
    better, so :math:`r_j > 0` whenever the multi-task model beats the baseline on metric j.

    * ``"per_metric"`` (Maninis et al. 2019): :math:`\Delta m = \frac{1}{M} \sum_j r_j`.
    * ``"per_task"`` (2505.10347): average :math:`r_j` within each task, then over tasks,
      :math:`\Delta m = \frac{1}{K} \sum_k \frac{1}{|J_k|} \sum_{j \in J_k} r_j`; requires
      ``task_of_metric``. Both conventions agree when every task has one metric.

    In this library **positive Δm% means better than the single-task baselines** (the sign of
    2505.10347); papers after Navon et al. 2022 report :math:`-\Delta m` (lower is better).

    Args:
      metrics: the multi-task model's ``M`` metric values, as a sequence or a ``{name: value}``
        mapping.
      baseline: the single-task baselines ``B_j``, same layout (a mapping must have the same
        keys as ``metrics``); none may be zero.
      higher_is_better: one flag per metric, same layout.
      convention: ``"per_metric"`` or ``"per_task"``.
      task_of_metric: task id (any hashable) of every metric, same layout; needed for
        ``"per_task"``.

    Returns:
      Δm in percent.

    Raises:
      ValueError: on mismatched lengths or keys, a zero baseline, non-finite values, an unknown
        convention, or ``"per_task"`` without ``task_of_metric``.

    Example:
      Accuracy 0.92 vs 0.90 (higher better) and MSE 0.012 vs 0.010 (lower better):
      r = (+2.222, -20.0), so Δm = -8.89 %.

      >>> round(delta_m([0.92, 0.012], [0.90, 0.010], [True, False]), 2)
      -8.89

    Reference: Maninis et al, Attentive Single-Tasking of Multiple Tasks, 2019; Gama & Grassi,
    Uniform Loss vs. Specialized Optimization: A Comparative Analysis in Multi-Task Learning,
    2025.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    keys = list(metrics) if isinstance(metrics, Mapping) else None
    values = _as_vector(metrics, keys, "metrics").astype(np.float64)
    base = _as_vector(baseline, keys, "baseline").astype(np.float64)
    better = _as_vector(higher_is_better, keys, "higher_is_better").astype(bool)
    if not (values.ndim == base.ndim == better.ndim == 1):
        raise ValueError("metrics, baseline and higher_is_better must be flat")
    if not (len(values) == len(base) == len(better)) or len(values) == 0:
        raise ValueError(
            f"lengths differ or are zero: {len(values)} metrics, {len(base)} baselines, "
            f"{len(better)} higher_is_better flags"
        )
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(base))):
        raise ValueError("metrics and baselines must be finite")
    if np.any(base == 0):
        raise ValueError("a baseline of 0 makes the relative difference undefined")
    signed = np.where(better, 1.0, -1.0) * (values - base) / base * 100.0
    if convention == "per_metric":
        return float(np.mean(signed))
    if task_of_metric is None:
        raise ValueError("convention='per_task' needs task_of_metric")
    owners = list(_as_vector_of_ids(task_of_metric, keys))
    if len(owners) != len(signed):
        raise ValueError(f"{len(owners)} task ids for {len(signed)} metrics")
    per_task = [
        np.mean([r for r, o in zip(signed, owners, strict=True) if o == task])
        for task in dict.fromkeys(owners)
    ]
    return float(np.mean(per_task))


def delta_m_both(
    tasks: Sequence[TaskSpec],
    values: Sequence[Mapping[str, float]],
    baseline: Sequence[Mapping[str, float]],
) -> dict[str, float]:
    """Δm% in both conventions (positive = better than the single-task baselines).

    Args:
      tasks: the dataset's tasks.
      values: the multi-task model's per-task metric dicts.
      baseline: the single-task baselines' per-task metric dicts.

    Returns:
      ``{"per_metric": ..., "per_task": ...}`` (see :func:`delta_m`); NaN when a metric of
      ``values`` is not finite.

    Example:
      >>> spec = TaskSpec("t", "regression", 1, ("mae",), (False,))
      >>> delta_m_both([spec], [{"mae": 0.5}], [{"mae": 0.5}])
      {'per_metric': 0.0, 'per_task': 0.0}
    """
    flat, better, owner = flatten_metrics(tasks, values)
    base, _, _ = flatten_metrics(tasks, baseline)
    if not np.all(np.isfinite(flat)):
        return dict.fromkeys(CONVENTIONS, math.nan)
    return {c: delta_m(flat, base, better, convention=c, task_of_metric=owner) for c in CONVENTIONS}


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` in increasing order; tied values share the mean of their ranks
    (finite values; :func:`mean_rank` and Spearman's correlation rank with it).

    Example:
      >>> average_ranks(np.array([0.3, 0.1, 0.3])).tolist()
      [2.5, 1.0, 2.5]
    """
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse]


def mean_rank(
    scores: Mapping[str, Sequence[float]], higher_is_better: Sequence[bool]
) -> dict[str, float]:
    r"""Mean rank (MR) of each method over all metrics.

    For every metric j, methods are ranked 1 (best) to n; tied methods all get the mean of the
    ranks they span (e.g. two methods tied for first both get 1.5). Then
    :math:`\mathrm{MR}_i = \frac{1}{M} \sum_j \mathrm{rank}_{ij}`; lower is better.

    Args:
      scores: ``{method: [M metric values]}``.
      higher_is_better: one flag per metric.

    Returns:
      ``{method: mean rank}`` in the order of ``scores``.

    Raises:
      ValueError: if a method has the wrong number of metrics, a value is not finite, or
        ``scores`` or ``higher_is_better`` is empty.

    Example:
      >>> mean_rank({"ew": [0.9, 0.02], "ls": [0.8, 0.01]}, [True, False])
      {'ew': 1.5, 'ls': 1.5}

    Reference: Lin et al, Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning, 2022 (mean rank as a summary across metrics).
    """
    better = np.asarray(higher_is_better, bool)
    if not scores or better.ndim != 1 or better.size == 0:
        raise ValueError("scores and higher_is_better must be non-empty")
    rows = {method: np.asarray(values, np.float64) for method, values in scores.items()}
    for method, row in rows.items():
        if row.shape != better.shape:
            raise ValueError(
                f"{method!r} has {row.size} metrics, higher_is_better has {better.size}"
            )
    matrix = np.stack(list(rows.values()))
    if not np.all(np.isfinite(matrix)):
        raise ValueError("scores must be finite")
    # Flip higher-is-better metrics so that lower is always better: rank 1 is the best.
    oriented = np.where(better, -matrix, matrix)
    ranks = np.stack([average_ranks(oriented[:, j]) for j in range(oriented.shape[1])], axis=1)
    return {method: float(r) for method, r in zip(rows, ranks.mean(axis=1), strict=True)}
