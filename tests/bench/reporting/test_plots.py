"""Plots from hand-made reports: every function writes a PNG, whatever rows it gets."""

import dataclasses

import numpy as np
import pytest
from bench_fakes import TASKS, fake_report

from autoscale_jax.bench.experiments.study import STUDY_METRICS, StudyResult
from autoscale_jax.bench.reporting import plots


@pytest.fixture
def report():
    return fake_report()


def is_png(path):
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_first_seed_runs_are_the_table_rows_with_the_grid_best_point(report):
    chosen = plots._first_seed_runs(report)
    assert [r.method for r in chosen] == ["ls_grid", "ew", "autoscale_gms", "pcgrad"]
    assert chosen[0].weights[-1] == [0.5, 1.5]


@pytest.mark.parametrize(
    "plot",
    [
        plots.plot_weights,
        plots.plot_metrics,
        plots.plot_delta_m_vs_cost,
        plots.plot_delta_m_vs_weight_ratio,
    ],
)
def test_report_plots_write_pngs(report, plot, tmp_path):
    path = plot(report, str(tmp_path / "sub" / "figure.png"))
    assert is_png(path)


def test_weight_ratio_points_put_the_grid_in_order_and_each_method_at_its_final_ratio(report):
    grid, methods = plots.weight_ratio_points(report)
    # The grid's points sorted by w2/w1, with the mean and sd of Δm% over seeds.
    np.testing.assert_allclose([p.ratio for p in grid], [1 / 3, 1.0, 3.0])
    assert [p.delta_m for p in grid] == [-40.0, -50.0, -5.0]
    assert [p.delta_m_sd for p in grid] == [2.0, 1.0, 0.5]
    assert grid[2].label == "ls[0.5,1.5]"
    # Methods: the single-task row, the row without weights and the NaN row are left out.
    by_label = {p.label: p for p in methods}
    assert set(by_label) == {"ls_grid", "ew", "autoscale_gms"}
    assert by_label["autoscale_gms"].ratio == pytest.approx(199.0)
    assert by_label["ls_grid"].ratio == pytest.approx(grid[2].ratio)
    assert (by_label["ew"].ratio, by_label["ew"].delta_m) == (1.0, -50.0)


def test_weight_ratio_plot_works_without_a_grid_and_refuses_three_tasks(report, tmp_path):
    no_grid = dataclasses.replace(report, grid={})
    assert plots.weight_ratio_points(no_grid)[0] == []
    assert is_png(plots.plot_delta_m_vs_weight_ratio(no_grid, str(tmp_path / "ratio.png")))
    three = dataclasses.replace(report, tasks=[*TASKS, ("third", ("mae",), (False,))])
    with pytest.raises(ValueError, match="2 tasks"):
        plots.weight_ratio_points(three)


def test_study_plot_writes_a_png(tmp_path):
    study = StudyResult(
        benchmark="toy",
        weights=np.array([[0.1, 1.9], [1.0, 1.0], [1.9, 0.1]]).tolist(),
        early_metrics={name: [0.2, 0.5, 0.9] for name in STUDY_METRICS},
        delta_m=[-5.0, -20.0, -60.0],
        spearman=dict.fromkeys(STUDY_METRICS, -1.0),
        early_steps=5,
        steps=100,
    )
    assert is_png(plots.plot_study(study, str(tmp_path / "study.png")))
