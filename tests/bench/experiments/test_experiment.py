"""A whole benchmark on a tiny budget: baselines, the LS grid, EW, summaries and costs."""

import math

import numpy as np
import pytest
from bench_tiny import tiny_benchmark, tiny_report

from autoscale_jax.bench.experiments.grid import weights_label
from autoscale_jax.bench.running import evaluation
from autoscale_jax.bench.running.selection import relative_score


def test_single_task_delta_m_against_itself_is_zero_in_both_conventions():
    bench, report = tiny_benchmark(), tiny_report()
    single = report.summaries[0]
    assert single.method == "single_task"
    assert single.delta_m_mean == {"per_metric": 0.0, "per_task": 0.0}
    assert evaluation.delta_m_both(
        bench.dataset.tasks, report.baselines.test, report.baselines.test
    ) == {"per_metric": 0.0, "per_task": 0.0}
    # Each baseline is its own task's run, selected on that task's validation metric only.
    for k, spec in enumerate(bench.dataset.tasks):
        (task_run,) = [r for r in report.runs if r.method == f"single_task_{spec.name}"]
        assert task_run.test_metrics[k] == report.baselines.test[k]
        assert task_run.weights[-1] == [1.0 if j == k else 0.0 for j in range(2)]


def test_grid_search_picks_the_validation_best_weights():
    bench, report = tiny_benchmark(), tiny_report()
    grid = report.grid
    scores = np.asarray(grid["validation_scores"])
    assert grid["best_index"] == int(np.argmax(scores))
    for index, weights in enumerate(grid["weights"]):
        (point,) = [r for r in report.runs if r.method == weights_label(np.array(weights))]
        # The score is Δm% on validation against the single-task validation baselines.
        expected = relative_score(
            bench.dataset.tasks, point.validation_metrics, report.baselines.validation
        )
        assert point.selection_score == pytest.approx(expected)
        assert scores[index] == pytest.approx(point.selection_score)
        # One seed: the point's Δm% is its run's, with no spread.
        assert grid["test_delta_m"][index] == point.delta_m["per_metric"]
        assert grid["test_delta_m_sd"][index] == 0.0
    rows = {s.method: s for s in report.summaries}
    best_runs = [r for r in report.runs if r.method == grid["best_label"]]
    assert rows["ls_grid"].test_mean == best_runs[0].test_metrics
    assert rows["ls_grid"].gradient_evaluations_vs_ew == pytest.approx(2.0)  # two grid runs
    assert rows["ew"].time_vs_ew == pytest.approx(1.0)
    assert math.isfinite(rows["ew"].mean_rank) and math.isnan(rows["single_task"].mean_rank)


def test_tiny_runs_carry_a_timing_caveat():
    report = tiny_report()  # 30-step runs
    assert report.timing_caveat is not None and "30 steps" in report.timing_caveat
