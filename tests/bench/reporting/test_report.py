"""The markdown of results.md and study.md from hand-made results."""

import dataclasses

import pytest
from bench_fakes import fake_report

from autoscale_jax.bench.reporting.report import findings, markdown_table, results_markdown


def test_markdown_table_has_one_row_per_summary_with_both_conventions():
    report = fake_report()
    table = markdown_table(report)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| single_task",
        "| ls_grid",
        "| ew",
        "| autoscale_gms",
        "| pcgrad",
    ]
    assert "Δm% per-metric ↑" in rows[0] and "Δm% per-task ↑" in rows[0]
    assert "| -50.00 ± 1.00 |" in rows[3]  # ew: Δm mean ± sd over two seeds
    assert "(0.5, 1.5)" in rows[2]  # ls_grid: the grid's best weights


def test_findings_compare_ew_with_the_grid_and_name_the_best_multitask_method():
    lines = findings(fake_report())
    assert lines[0] == (
        "EW vs grid-searched LS: EW Δm -50.00 (ls_grid -5.00, difference -45.00: worse beyond "
        "seed noise); the grid cost 9.0x one EW run."
    )
    # Both Δm values and a labelled difference, never a difference that reads as a Δm.
    assert lines[1].startswith(
        "autoscale_gms: Δm -10.00 (ls_grid -5.00, difference -5.00: worse beyond seed noise; "
        "ew -50.00, difference +40.00: better beyond seed noise), at 1.10x EW wall time"
    )
    assert lines[-1] == "Best Δm%: ls_grid (-5.00)."  # the single-task row is not a candidate


def _with_delta(summary, delta, sd, seeds):
    both = {"per_metric": delta, "per_task": delta}
    sds = {"per_metric": sd, "per_task": sd}
    return dataclasses.replace(summary, delta_m_mean=both, delta_m_sd=sds, num_seeds=seeds)


@pytest.mark.parametrize(
    "ew_delta, ew_sd, seeds, verdict",
    [
        (-5.003, 0.0, 1, "difference +0.00: tie"),  # one seed, a rounding difference
        (-5.5, 1.0, 2, "difference -0.50: tie within seed noise"),
        (-5.5, 0.0, 1, "difference -0.50: worse (one seed: no noise estimate)"),
        (-9.0, 1.0, 2, "difference -4.00: worse beyond seed noise"),
    ],
    ids=["rounding-tie", "noise-tie", "one-seed", "beyond-noise"],
)
def test_a_tie_is_called_a_tie(ew_delta, ew_sd, seeds, verdict):
    report = fake_report()
    rows = {s.method: s for s in report.summaries}
    rows["ls_grid"] = _with_delta(rows["ls_grid"], -5.0, 0.0 if seeds == 1 else 1.0, seeds)
    rows["ew"] = _with_delta(rows["ew"], ew_delta, ew_sd, seeds)
    report = dataclasses.replace(report, summaries=list(rows.values()))
    assert f"ls_grid -5.00, {verdict})" in findings(report)[0]


def test_results_markdown_prints_the_timing_caveat_only_when_there_is_one():
    report = fake_report()
    quiet = results_markdown([report], {}, suite="t", wall_time_s=1.0, skipped={})
    assert "Timing caveat" not in quiet
    noisy = dataclasses.replace(report, timing_caveat="5 of 5 runs were timed over ...")
    text = results_markdown([noisy], {}, suite="t", wall_time_s=1.0, skipped={})
    assert "**Timing caveat:** 5 of 5 runs were timed over ..." in text


def _with_recipe(report):
    recipe = {"description": "Adam lr 0.001 (β1 0.9, β2 0.999), constant, 20 steps × batch 8"}
    return dataclasses.replace(
        report, recipe=recipe, selection={"before_end": 1, "runs": 5, "share": 0.2}
    )


def test_results_markdown_prints_the_recipe_and_the_share_of_early_checkpoints():
    report = _with_recipe(fake_report())
    text = results_markdown([report], {}, suite="t", wall_time_s=1.0, skipped={})
    recipe = "Recipe (every row): Adam lr 0.001 (β1 0.9, β2 0.999), constant, 20 steps × batch 8."
    assert recipe in text
    assert "Selected checkpoint before the last step: 1 of 5 runs (20%)." in text
    assert "LS grid of 3 fixed weights" in text


def test_three_tasks_read_as_a_random_search():
    report = fake_report()
    summaries = [
        dataclasses.replace(
            s, test_mean=(*s.test_mean, {"mse": 0.2}), test_sd=(*s.test_sd, {"mse": 0.0})
        )
        for s in report.summaries
    ]
    tasks = [*report.tasks, ("third", ("mse",), (False,))]
    three = dataclasses.replace(report, tasks=tasks, summaries=summaries)
    text = results_markdown([three], {}, suite="t", wall_time_s=1.0, skipped={})
    assert "LS random search of 3 fixed weightings (EW + log-uniform draws)" in text


@pytest.mark.parametrize(
    "restart_delta, verdict",
    [
        (-5.6, "|difference| ≤ 1: the recipe passes the restart check."),
        (-2.0, "the reset still moves the grid's run by 3.00 points (> 1): the recipe fails"),
    ],
    ids=["fair", "unfair"],
)
def test_the_restart_control_is_checked_against_one_point(restart_delta, verdict):
    report = fake_report()
    rows = {s.method: s for s in report.summaries}
    restart = _with_delta(rows["ls_grid"], restart_delta, 1.0, 2)
    restart = dataclasses.replace(restart, method="ls_grid_restart")
    report = dataclasses.replace(report, summaries=[*report.summaries, restart])
    (line,) = [f for f in findings(report) if f.startswith("Restart control")]
    start = f"Restart control: ls_grid_restart Δm {restart_delta:+.2f} (ls_grid -5.00"
    assert line.startswith(start)
    assert verdict in line
