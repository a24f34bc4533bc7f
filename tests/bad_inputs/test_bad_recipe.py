"""A benchmark's recipe and the rows built on it: each bad input is a clear error, before any
training, that names the argument."""

from typing import Any, NamedTuple

import numpy as np
import pytest

from autoscale_jax.bench.experiments.controls import control_config
from autoscale_jax.bench.experiments.grid import vmapped_grid_runs
from autoscale_jax.bench.running.recipe import Recipe


class Case(NamedTuple):
    id: str
    run: Any
    error: type
    match: str


def _restart_of(state):
    return lambda: Recipe.restart(state)


def _vmapped_restart(restart_at):
    # Checked before the benchmark is touched: no benchmark needed.
    return lambda: vmapped_grid_runs(None, np.ones((1, 2)), steps=30, restart_at=restart_at)


CASES = [
    Case("lr-zero", lambda: Recipe(learning_rate=0.0), ValueError, r"Recipe.learning_rate .* > 0"),
    Case("lr-nan", lambda: Recipe(learning_rate=float("nan")), ValueError, "learning_rate"),
    Case("b1-one", lambda: Recipe(b1=1.0), ValueError, r"Recipe.b1 must be in \[0, 1\)"),
    Case("b2-negative", lambda: Recipe(b2=-0.1), ValueError, r"Recipe.b2 must be in \[0, 1\)"),
    Case("schedule-unknown", lambda: Recipe(schedule="step"), ValueError, "Recipe.schedule"),
    Case(
        "warmup-one",
        lambda: Recipe(schedule="warmup_cosine", warmup_fraction=1.0),
        ValueError,
        r"Recipe.warmup_fraction must be in \[0, 1\)",
    ),
    Case(
        "warmup-on-constant",
        lambda: Recipe(warmup_fraction=0.05),
        ValueError,
        "warmup_fraction needs schedule='warmup_cosine'",
    ),
    Case("steps-zero", lambda: Recipe(steps=0), ValueError, "Recipe.steps must be a positive"),
    Case("steps-float", lambda: Recipe(steps=8.5), ValueError, "Recipe.steps must be a positive"),
    Case("batch-bool", lambda: Recipe(batch_size=True), ValueError, "Recipe.batch_size"),
    Case(
        "schedule-without-total-steps",
        lambda: Recipe(schedule="warmup_cosine").optimizer(),
        ValueError,
        "'warmup_cosine' schedule needs total_steps",
    ),
    Case(
        "total-steps-zero",
        lambda: Recipe().optimizer_key(0),
        ValueError,
        "total_steps must be positive",
    ),
    Case(
        "restart-of-another-optimizer",
        _restart_of((np.zeros(2),)),
        TypeError,
        "Recipe.restart expects the state of Recipe.optimizer",
    ),
    Case(
        "control-unknown",
        lambda: control_config("ls_grid_reset", np.ones(2), steps=800),
        ValueError,
        "Unknown control row 'ls_grid_reset'",
    ),
    Case("restart-at-zero", _vmapped_restart(0), ValueError, r"restart_at must be in \(0, steps"),
    Case("restart-at-end", _vmapped_restart(30), ValueError, r"restart_at must be in \(0, steps"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_recipe_input_is_a_clear_error(case):
    with pytest.raises(case.error, match=case.match):
        case.run()
