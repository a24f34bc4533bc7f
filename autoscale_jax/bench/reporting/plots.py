"""PNG plots of benchmark reports and of the weight study (matplotlib, Agg backend).

- :func:`plot_weights`: the task weights over training, one panel per method (seed 0).
- :func:`plot_metrics`: the MTO metrics of the shared trunk over training (GMS, condition
  number, mean cosine, loss-scale entropy), one line per method (seed 0).
- :func:`plot_delta_m_vs_cost`: Δm% (mean ± sd over seeds) against wall time relative to EW.
- :func:`plot_delta_m_vs_weight_ratio`: for two tasks, Δm% against the weight ratio w2/w1: the
  LS grid as a line (mean ± sd over seeds) and each method's final weights as a point.
- :func:`plot_study`: early MTO metric vs final Δm% for a grid of fixed weights, with ρ.

Every function writes one PNG and returns its path.

Example:
  >>> from autoscale_jax.bench.experiments.experiment import run_benchmark
  >>> from autoscale_jax.bench.running.method_config import MethodConfig
  >>> report = run_benchmark(bench, [MethodConfig("ew", "equal_weights")], steps=20,
  ...                        seeds=(0,), eval_every=10)
  >>> plot_delta_m_vs_cost(report, "multi_mnist_delta_m_vs_cost.png")
  'multi_mnist_delta_m_vs_cost.png'
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display

import matplotlib.pyplot as plt
import numpy as np

from autoscale_jax.bench.experiments.results import STUDY_METRICS, BenchmarkReport, StudyResult
from autoscale_jax.bench.running.run_result import RunResult
from autoscale_jax.bench.running.side_by_side import weights_label

__all__ = [
    "RatioPoint",
    "plot_delta_m_vs_cost",
    "plot_delta_m_vs_weight_ratio",
    "plot_metrics",
    "plot_study",
    "plot_weights",
    "weight_ratio_points",
]

METRIC_PANELS = (
    ("gradient_magnitude_similarity", "GMS (1 = equal norms)", False),
    ("condition_number", "condition number (log)", True),
    ("mean_cosine_similarity", "mean cosine", False),
    ("loss_scale_entropy", "loss-scale entropy (1 = balanced)", False),
)


def _first_seed_runs(report: BenchmarkReport) -> list[RunResult]:
    """One run per table row (the first seed); the grid search's row is its best point."""
    first_seed = report.budget["seeds"][0]
    best_grid_label = report.grid.get("best_label") if report.grid else None
    chosen = []
    for summary in report.summaries:
        label = best_grid_label if summary.method == "ls_grid" else summary.method
        match = [r for r in report.runs if r.seed == first_seed and r.method == label]
        if match and summary.method != "single_task":
            chosen.append(dataclasses.replace(match[0], method=summary.method))
    return chosen


def _save(figure: plt.Figure, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def plot_weights(report: BenchmarkReport, path: str) -> str:
    """Task weights after every step, one panel per method with weights (log scale).

    Args:
      report: a benchmark's report.
      path: the PNG to write (its folder is created).

    Returns:
      ``path``.
    """
    runs = [r for r in _first_seed_runs(report) if r.weights]
    columns = min(4, max(1, len(runs)))
    rows = max(1, math.ceil(len(runs) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), squeeze=False)
    task_names = [name for name, _, _ in report.tasks]
    for ax, result in zip(axes.flat, runs, strict=False):
        weights = np.asarray(result.weights, np.float64)
        for k in range(weights.shape[1]):
            label = task_names[k] if weights.shape[1] <= 4 else None
            ax.plot(result.weight_steps, weights[:, k], lw=1.2, label=label)
        positive = weights[np.isfinite(weights) & (weights > 0)]
        if positive.size and positive.max() / positive.min() > 20:
            ax.set_yscale("log")
        ax.set_title(result.method, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(runs) :]:
        ax.axis("off")
    if runs and len(task_names) <= 4:
        axes.flat[0].legend(fontsize=7)
    figure.suptitle(f"{report.benchmark}: task weights over training (seed 0)", fontsize=11)
    figure.supxlabel("step", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)


def plot_metrics(report: BenchmarkReport, path: str) -> str:
    """MTO metrics of the shared trunk at each method's current weights, over training.

    Args:
      report: a benchmark's report.
      path: the PNG to write (its folder is created).

    Returns:
      ``path``.
    """
    runs = _first_seed_runs(report)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))
    colours = plt.get_cmap("tab20")
    for ax, (name, title, log) in zip(axes.flat, METRIC_PANELS, strict=True):
        for i, result in enumerate(runs):
            values = np.asarray(result.probe_metrics[name], np.float64)
            style = "-" if result.method.startswith(("autoscale", "ls_grid", "ew")) else ":"
            ax.plot(
                result.probe_steps,
                values,
                style,
                color=colours(i % 20),
                lw=1.3,
                label=result.method,
            )
        if log:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.suptitle(
        f"{report.benchmark}: MTO metrics of the shared trunk at the weights in use (seed 0)",
        fontsize=11,
    )
    figure.tight_layout()
    return _save(figure, path)


def plot_delta_m_vs_cost(report: BenchmarkReport, path: str) -> str:
    """Δm% (per-metric, mean ± sd over seeds) against wall time relative to EW (log x).

    Args:
      report: a benchmark's report.
      path: the PNG to write (its folder is created).

    Returns:
      ``path``.
    """
    rows = [
        s
        for s in report.summaries
        if s.method != "single_task" and math.isfinite(s.delta_m_mean["per_metric"])
    ]
    figure, ax = plt.subplots(figsize=(8, 5.5))
    for s in rows:
        delta_m, sd = s.delta_m_mean["per_metric"], s.delta_m_sd["per_metric"]
        _labelled_point(
            ax,
            s.method,
            (s.time_vs_ew, delta_m, sd),
            highlight=s.method.startswith("autoscale"),
            reference=s.method in ("ew", "ls_grid"),
        )
    title = f"{report.benchmark}: quality vs cost"
    _delta_m_axes(ax, "wall time relative to one EW run (log)", title)
    return _save(figure, path)


class RatioPoint(NamedTuple):
    """A point of :func:`plot_delta_m_vs_weight_ratio`: per-metric Δm% at a weight ratio."""

    label: str
    ratio: float
    delta_m: float
    delta_m_sd: float


def _ratio(weights: Sequence[float]) -> float:
    """w2 / w1, NaN when it is not a positive finite number."""
    ratio = weights[1] / weights[0] if weights[0] > 0 else math.nan
    return ratio if math.isfinite(ratio) and ratio > 0 else math.nan


def weight_ratio_points(report: BenchmarkReport) -> tuple[list[RatioPoint], list[RatioPoint]]:
    """The LS grid's points and the methods' points of a two-task report.

    Args:
      report: a report on a benchmark with two tasks.

    Returns:
      ``(grid, methods)``: the grid points sorted by ratio, labelled with their row label (empty
      without a grid search); then one point per table row with final weights (the seed mean)
      and a finite Δm%, the single-task row left out.

    Raises:
      ValueError: when the report does not have two tasks.
    """
    if len(report.tasks) != 2:
        raise ValueError(
            f"a weight ratio needs 2 tasks, {report.benchmark} has {len(report.tasks)}"
        )
    grid = report.grid or {}
    weights = grid.get("weights", [])
    means = grid.get("test_delta_m", [])
    sds = grid.get("test_delta_m_sd", [0.0] * len(means))
    grid_points = sorted(
        (
            RatioPoint(weights_label(np.asarray(w)), _ratio(w), m, sd)
            for w, m, sd in zip(weights, means, sds, strict=True)
        ),
        key=lambda point: point.ratio,
    )
    method_points = [
        RatioPoint(
            s.method, _ratio(s.weights), s.delta_m_mean["per_metric"], s.delta_m_sd["per_metric"]
        )
        for s in report.summaries
        if s.method != "single_task"
        and s.weights is not None
        and math.isfinite(_ratio(s.weights))
        and math.isfinite(s.delta_m_mean["per_metric"])
    ]
    return grid_points, method_points


def _merge_coincident(points: Sequence[RatioPoint]) -> list[RatioPoint]:
    """One point per position, labels joined: EW often is the grid's best point too."""
    merged: dict[tuple[float, float], RatioPoint] = {}
    for point in points:
        position = (point.ratio, point.delta_m)
        if position in merged:
            point = merged[position]._replace(label=f"{merged[position].label}, {point.label}")
        merged[position] = point
    return list(merged.values())


def _labelled_point(
    ax: plt.Axes,
    label: str,
    point: tuple[float, float, float],
    *,
    highlight: bool,
    reference: bool = False,
) -> None:
    """One method's Δm% ± sd, ``point = (x, Δm%, sd)``, labelled: AutoScale rows (``highlight``)
    as red circles, the reference rows as black circles, the others as blue squares."""
    x, delta_m, sd = point
    big = highlight or reference
    ax.errorbar(
        x,
        delta_m,
        yerr=sd,
        fmt="o" if big else "s",
        color="tab:red" if highlight else "black" if reference else "tab:blue",
        ms=6 if big else 4,
        capsize=2,
    )
    ax.annotate(label, (x, delta_m), fontsize=7, xytext=(4, 3), textcoords="offset points")


def _delta_m_axes(ax: plt.Axes, xlabel: str, title: str) -> None:
    """A log x axis, the zero line of Δm% and the labels of a Δm% plot."""
    ax.set_xscale("log")
    ax.axhline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Δm% per-metric (higher is better; 0 = single-task)")
    ax.set_title(title)


def plot_delta_m_vs_weight_ratio(report: BenchmarkReport, path: str) -> str:
    """Δm% (per-metric) against the weight ratio w2/w1 (log x) for a two-task benchmark.

    The LS grid is a line with error bars (sd over seeds); every method with final weights is
    a labelled point at the ratio of its seed-mean final weights.

    Args:
      report: a report on a benchmark with two tasks.
      path: the PNG to write.

    Returns:
      ``path``.
    """
    grid, methods = weight_ratio_points(report)
    (first, _, _), (second, _, _) = report.tasks
    figure, ax = plt.subplots(figsize=(8, 5.5))
    if grid:
        ax.errorbar(
            [p.ratio for p in grid],
            [p.delta_m for p in grid],
            yerr=[p.delta_m_sd for p in grid],
            fmt="-o",
            color="grey",
            ms=4,
            capsize=2,
            label="LS grid (mean ± sd over seeds)",
        )
    for point in _merge_coincident(methods):
        _labelled_point(
            ax,
            point.label,
            (point.ratio, point.delta_m, point.delta_m_sd),
            highlight="autoscale" in point.label,
        )
    _delta_m_axes(
        ax,
        f"weight ratio w2 / w1 = w({second}) / w({first}) (log)",
        f"{report.benchmark}: quality vs task weights",
    )
    if grid:
        ax.legend(fontsize=8)
    return _save(figure, path)


def plot_study(study: StudyResult, path: str, metrics: Sequence[str] = STUDY_METRICS) -> str:
    """One scatter per metric: early value vs final Δm%, coloured by log weight ratio.

    Args:
      study: the weight study.
      path: the PNG to write (its folder is created).
      metrics: one panel per metric.

    Returns:
      ``path``.
    """
    weights = np.asarray(study.weights, np.float64)
    colour = np.log10(weights[:, -1] / weights[:, 0]) if weights.shape[1] == 2 else None
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.6), squeeze=False)
    for ax, name in zip(axes.flat, metrics, strict=True):
        points = ax.scatter(study.early_metrics[name], study.delta_m, c=colour, cmap="viridis")
        if name == "condition_number":
            ax.set_xscale("log")
        ax.set_xlabel(f"{name} (first {study.early_steps} steps)", fontsize=8)
        ax.set_title(f"Spearman ρ = {study.spearman[name]:+.2f}", fontsize=10)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("final Δm% (per-metric)")
    if colour is not None:
        figure.colorbar(points, ax=axes.ravel().tolist(), label="log10(w2 / w1)")
    figure.suptitle(f"{study.benchmark}: early MTO metrics vs final Δm% over fixed weights")
    return _save(figure, path)
