"""Seed statistics of a method's runs: one table row (:class:`MethodSummary`) per method.

A row carries the per-task test metrics and Δm% (mean ± sd over seeds), the cost (wall time
and gradient evaluations, relative to EW once every row exists: :func:`with_costs_and_ranks`),
the mean rank among the rows and the seed-mean final weights. :func:`timing_caveat` says when
runs are too short for their wall times to mean anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from autoscale_jax.bench.datasets import TaskSpec
from autoscale_jax.bench.running import evaluation
from autoscale_jax.bench.running.evaluation import CONVENTIONS
from autoscale_jax.bench.running.run_result import RunResult, TaskMetricDicts
from autoscale_jax.bench.running.selection import selected_before_end

__all__ = [
    "MIN_TIMED_SECONDS",
    "MIN_TIMED_STEPS",
    "MethodSummary",
    "mean_metrics",
    "sd_metrics",
    "summarize",
    "timing_caveat",
    "with_costs_and_ranks",
]

# Below these, a run's wall time is dominated by dispatch, timer resolution and other
# processes rather than by the method's per-step cost.
MIN_TIMED_SECONDS = 1.0
MIN_TIMED_STEPS = 50


def _reduce_metrics(
    results: Sequence[TaskMetricDicts], reduce: Callable[[list[float]], float]
) -> TaskMetricDicts:
    return tuple(
        {name: float(reduce([r[k][name] for r in results])) for name in results[0][k]}
        for k in range(len(results[0]))
    )


def mean_metrics(results: Sequence[TaskMetricDicts]) -> TaskMetricDicts:
    """Per-task metric dicts averaged over runs (e.g. seeds)."""
    return _reduce_metrics(results, np.mean)


def sd_metrics(results: Sequence[TaskMetricDicts]) -> TaskMetricDicts:
    """Per-task metric dicts' population standard deviation over runs."""
    return _reduce_metrics(results, np.std)


@dataclasses.dataclass(frozen=True)
class MethodSummary:
    """One table row: a method's seed statistics and its cost relative to EW.

    Attributes:
      method: row label.
      num_seeds: seeds aggregated.
      test_mean, test_sd: per-task metric dicts (mean and population sd over seeds).
      delta_m_mean, delta_m_sd: Δm% per convention (positive = better).
      wall_time_s: training time this row needed (a grid search counts all its grid points),
        robust to other processes: per ``eval_every`` chunk the fastest seed's time, summed
        over chunks (contention only ever adds time, as in ``timeit``).
      mean_wall_time_s: the plain mean over seeds of the same total.
      gradient_evaluations: the same for forward+backward passes.
      runs_per_seed: training runs behind one seed's result (G for the grid search).
      time_vs_ew, gradient_evaluations_vs_ew: cost relative to EW (filled by
        :func:`with_costs_and_ranks`).
      mean_rank: mean rank over all test metrics among the table's methods (lower = better).
      weights: seed-mean final task weights (None without weights).
      detail: free text, e.g. the grid point picked.
      selected_before_end: share of the seeds whose selected checkpoint is not the last step.
    """

    method: str
    num_seeds: int
    test_mean: TaskMetricDicts
    test_sd: TaskMetricDicts
    delta_m_mean: dict[str, float]
    delta_m_sd: dict[str, float]
    wall_time_s: float
    mean_wall_time_s: float
    gradient_evaluations: float
    runs_per_seed: int = 1
    time_vs_ew: float = math.nan
    gradient_evaluations_vs_ew: float = math.nan
    mean_rank: float = math.nan
    weights: list[float] | None = None
    detail: str = ""
    selected_before_end: float = math.nan


def _fastest_seed_time(runs: Sequence[RunResult]) -> float:
    """Σ over chunks of the fastest seed's chunk time (seeds share the chunk schedule)."""
    return float(np.sum(np.min([r.chunk_times_s for r in runs], axis=0)))


def summarize(
    method: str,
    runs: Sequence[RunResult],
    *,
    cost_runs: Sequence[Sequence[RunResult]] | None = None,
    detail: str = "",
) -> MethodSummary:
    """Mean ± sd over seeds of a method's runs.

    Args:
      method: row label.
      runs: one run per seed (with ``delta_m`` filled in).
      cost_runs: the runs whose cost the row carries, grouped per grid point (default: ``runs``
        alone); costs are summed over groups and averaged over seeds.
      detail: free text for the row.

    Returns:
      A :class:`MethodSummary` (costs relative to EW left NaN).
    """
    groups = [runs] if cost_runs is None else cost_runs
    deltas = {c: [r.delta_m[c] if r.delta_m else math.nan for r in runs] for c in CONVENTIONS}
    final_weights = [r.weights[-1] for r in runs if r.weights]
    return MethodSummary(
        method=method,
        num_seeds=len(runs),
        test_mean=mean_metrics([r.test_metrics for r in runs]),
        test_sd=sd_metrics([r.test_metrics for r in runs]),
        delta_m_mean={c: float(np.mean(v)) for c, v in deltas.items()},
        delta_m_sd={c: float(np.std(v)) for c, v in deltas.items()},
        wall_time_s=float(sum(_fastest_seed_time(g) for g in groups)),
        mean_wall_time_s=float(sum(np.mean([r.wall_time_s for r in g]) for g in groups)),
        gradient_evaluations=float(
            sum(np.mean([r.gradient_evaluations for r in g]) for g in groups)
        ),
        runs_per_seed=len(groups),
        weights=np.mean(final_weights, axis=0).tolist() if final_weights else None,
        detail=detail,
        selected_before_end=selected_before_end(runs) / len(runs) if runs else math.nan,
    )


def with_costs_and_ranks(
    summaries: list[MethodSummary], tasks: Sequence[TaskSpec]
) -> list[MethodSummary]:
    """Fills cost ratios vs the ``"ew"`` row and mean ranks over the multi-task rows.

    Args:
      summaries: every row of a table (costs relative to EW still NaN).
      tasks: the dataset's tasks.

    Returns:
      The rows with ``time_vs_ew``, ``gradient_evaluations_vs_ew`` and ``mean_rank`` filled
      (NaN without an ``"ew"`` row; the single-task row is not ranked).
    """
    ew = next((s for s in summaries if s.method == "ew"), None)
    ranked = [s for s in summaries if not s.method.startswith("single_task")]
    _, better, _ = (
        evaluation.flatten_metrics(tasks, ranked[0].test_mean) if ranked else ((), (), ())
    )
    flat = {s.method: evaluation.flatten_metrics(tasks, s.test_mean)[0] for s in ranked}
    usable = {m: v for m, v in flat.items() if np.all(np.isfinite(v))}
    ranks = evaluation.mean_rank(usable, better) if len(usable) > 1 else {}  # type: ignore[arg-type]
    return [
        dataclasses.replace(
            s,
            time_vs_ew=s.wall_time_s / ew.wall_time_s if ew else math.nan,
            gradient_evaluations_vs_ew=(
                s.gradient_evaluations / ew.gradient_evaluations if ew else math.nan
            ),
            mean_rank=ranks.get(s.method, math.nan),
        )
        for s in summaries
    ]


def timing_caveat(runs: Sequence[RunResult]) -> str | None:
    """A warning when runs are too short for their wall times (and ``time ×EW``) to mean much.

    Args:
      runs: the timed runs.

    Returns:
      None when every run trained at least :data:`MIN_TIMED_STEPS` steps for at least
      :data:`MIN_TIMED_SECONDS` seconds, else a sentence naming the shortest run.
    """
    short = [r for r in runs if r.wall_time_s < MIN_TIMED_SECONDS or r.steps < MIN_TIMED_STEPS]
    if not short:
        return None
    shortest = min(short, key=lambda r: r.wall_time_s)
    return (
        f"{len(short)} of {len(runs)} runs were timed over less than {MIN_TIMED_SECONDS:g} s or "
        f"{MIN_TIMED_STEPS} steps (shortest: {shortest.method}, {shortest.wall_time_s:.3g} s "
        f"over {shortest.steps} steps): their wall times and time ×EW are mostly noise."
    )
