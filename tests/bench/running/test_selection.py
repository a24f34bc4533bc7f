"""Model selection: the validation score and which checkpoint is kept."""

import dataclasses
import math

import pytest
from bench_fakes import fake_run

from autoscale_jax.bench.datasets import TaskSpec
from autoscale_jax.bench.experiments.summary import summarize
from autoscale_jax.bench.running.run_result import Baselines
from autoscale_jax.bench.running.selection import (
    Checkpoint,
    keep_better,
    relative_score,
    selected_before_end,
    selection_reference,
)


def test_relative_score_is_the_signed_mean_relative_difference():
    tasks = [
        TaskSpec("a", "classification", 10, ("accuracy",), (True,)),
        TaskSpec("b", "regression", 1, ("mae",), (False,)),
    ]
    values, reference = [{"accuracy": 0.6}, {"mae": 0.3}], [{"accuracy": 0.5}, {"mae": 0.2}]
    # +20 % on accuracy, -50 % on MAE (lower is better).
    assert relative_score(tasks, values, reference) == pytest.approx(-15.0)
    assert relative_score(tasks, values, reference, task_subset=(0,)) == pytest.approx(20.0)
    zero = relative_score(tasks, values, [{"accuracy": 0.0}, {"mae": 0.2}], (0,))
    assert math.isfinite(zero) and zero > 0
    broken = [{"accuracy": 0.6}, {"mae": float("nan")}]
    assert relative_score(tasks, broken, reference) == -math.inf


def test_keep_better_keeps_the_earlier_checkpoint_on_ties():
    start = Checkpoint(-math.inf, 0, "initial", ())
    first = keep_better(start, Checkpoint(5.0, 10, "a", ()))
    assert first.step == 10
    assert keep_better(first, Checkpoint(5.0, 20, "b", ())).step == 10  # tie: earlier stays
    assert keep_better(first, Checkpoint(6.0, 30, "c", ())).params == "c"
    # A diverged checkpoint (-inf) never replaces the untrained model.
    assert keep_better(start, Checkpoint(-math.inf, 10, "nan", ())).step == 0


def test_selection_reference_is_the_baselines_else_the_untrained_model():
    initial = ({"accuracy": 0.1},)
    baselines = Baselines(validation=({"accuracy": 0.9},), test=({"accuracy": 0.8},))
    assert selection_reference(baselines, initial) == ({"accuracy": 0.9},)
    assert selection_reference(None, initial) is initial


def test_selected_before_end_counts_runs_that_kept_an_earlier_checkpoint():
    last = fake_run("ew", seed=0)  # selected its last step
    early = dataclasses.replace(fake_run("ew", seed=1), selected_step=10)
    assert selected_before_end([last, early, early]) == 2
    assert summarize("ew", [last, early]).selected_before_end == 0.5
