"""The markdown of results.md and study.md from hand-made results."""

import dataclasses

from bench_fakes import fake_report

from autoscale_jax.bench.report import findings, markdown_table, results_markdown


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
    assert lines[0].startswith("EW vs grid-searched LS: Δm -50.00 vs -5.00 (-45.00: EW worse")
    assert lines[-1] == "Best Δm%: ls_grid (-5.00)."  # the single-task row is not a candidate


def test_results_markdown_prints_the_timing_caveat_only_when_there_is_one():
    report = fake_report()
    quiet = results_markdown([report], {}, suite="t", wall_time_s=1.0, skipped={})
    assert "Timing caveat" not in quiet
    noisy = dataclasses.replace(report, timing_caveat="5 of 5 runs were timed over ...")
    text = results_markdown([noisy], {}, suite="t", wall_time_s=1.0, skipped={})
    assert "**Timing caveat:** 5 of 5 runs were timed over ..." in text
