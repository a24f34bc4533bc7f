"""Seed statistics and the timing caveat."""

import dataclasses

import pytest
from bench_fakes import fake_run

from autoscale_jax.bench.experiments.summary import (
    MIN_TIMED_SECONDS,
    MIN_TIMED_STEPS,
    mean_metrics,
    sd_metrics,
    summarize,
    timing_caveat,
)


def test_summarize_averages_seeds_and_takes_the_fastest_seed_per_chunk():
    first = dataclasses.replace(fake_run("ew", seed=0), chunk_times_s=[0.5, 0.5], wall_time_s=1.0)
    second = dataclasses.replace(
        fake_run("ew", seed=1, weights=(3.0, 1.0)),
        chunk_times_s=[0.2, 0.9],
        wall_time_s=1.1,
        test_metrics=({"accuracy": 0.6}, {"mse": 0.3}),
        delta_m={"per_metric": -3.0, "per_task": -3.0},
    )
    row = summarize("ew", [first, second])
    assert row.wall_time_s == pytest.approx(0.2 + 0.5)  # other processes only ever add time
    assert row.mean_wall_time_s == pytest.approx(1.05)
    assert row.test_mean[0]["accuracy"] == pytest.approx(0.7)
    assert row.test_sd[1]["mse"] == pytest.approx(0.1)
    assert row.delta_m_mean["per_metric"] == pytest.approx(-2.0)
    assert row.delta_m_sd["per_metric"] == pytest.approx(1.0)
    assert row.weights == pytest.approx([2.0, 1.0])
    assert mean_metrics([first.test_metrics])[0] == {"accuracy": 0.8}
    assert sd_metrics([first.test_metrics, first.test_metrics])[1] == {"mse": 0.0}


def test_timing_caveat_flags_runs_that_are_too_short_or_too_few_steps():
    long_enough = fake_run("ew", steps=MIN_TIMED_STEPS, wall_time_s=MIN_TIMED_SECONDS)
    assert timing_caveat([long_enough, long_enough]) is None
    quick = fake_run("pcgrad", steps=400, wall_time_s=0.05)
    few_steps = fake_run("ew", steps=20, wall_time_s=3.0)
    caveat = timing_caveat([long_enough, quick, few_steps])
    assert caveat is not None and caveat.startswith("2 of 3 runs")
    assert "pcgrad, 0.05 s over 400 steps" in caveat  # the shortest run is named
    assert timing_caveat([few_steps]).startswith("1 of 1 runs")
