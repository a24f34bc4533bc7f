"""The recipe: its optimizer and schedule, the restart, and that every kind of row trains with
it (a run, the vmapped grid, the search's schedule)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from bench_tiny import BUDGET, STEPS, tiny_benchmark, tiny_report

from autoscale_jax.bench.experiments.controls import GRID_CONTROLS
from autoscale_jax.bench.experiments.experiment import run_benchmark
from autoscale_jax.bench.experiments.grid import ls_weight_grid, vmapped_grid_runs
from autoscale_jax.bench.running import single_run
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.recipe import DEFAULT_RECIPE, Recipe
from autoscale_jax.bench.running.run_store import run_key

COSINE = Recipe(learning_rate=3e-3, b2=0.99, schedule="warmup_cosine", warmup_fraction=0.1)


def test_the_default_recipe_is_the_suites_constant_adam():
    params = {"w": jnp.ones(3)}
    assert DEFAULT_RECIPE.learning_rate_schedule() == 1e-3
    default, plain = DEFAULT_RECIPE.optimizer(800), optax.adam(1e-3)
    assert jax.tree.structure(default.init(params)) == jax.tree.structure(plain.init(params))
    assert DEFAULT_RECIPE.setup_fields() == ()  # run files of the default keep their key
    assert DEFAULT_RECIPE.optimizer_key(800) == DEFAULT_RECIPE.optimizer_key(30)
    assert DEFAULT_RECIPE.describe() == (
        "Adam lr 0.001 (β1 0.9, β2 0.999), constant, 800 steps × batch 128"
    )


def test_warmup_cosine_rises_then_decays_to_zero_over_the_runs_steps():
    schedule = COSINE.learning_rate_schedule(200)
    values = np.array([float(schedule(t)) for t in (0, 10, 20, 110, 200)])
    np.testing.assert_allclose(values, [0.0, 1.5e-3, 3e-3, 1.5e-3, 0.0], atol=1e-9)
    assert COSINE.optimizer_key(200) != COSINE.optimizer_key(100)  # another horizon
    changed = (("b2", 0.99), ("schedule", "warmup_cosine"), ("warmup_fraction", 0.1))
    assert COSINE.setup_fields() == changed


def test_restart_zeroes_adams_moments_and_keeps_the_schedule_running():
    optimizer, params = COSINE.optimizer(100), {"w": jnp.array([1.0, -2.0])}
    state = optimizer.init(params)
    for _ in range(7):
        _, state = optimizer.update({"w": jnp.array([0.5, 3.0])}, state, params)
    restarted = Recipe.restart(state)
    fresh = optimizer.init(params)
    for got, want in zip(jax.tree.leaves(restarted[0]), jax.tree.leaves(fresh[0]), strict=True):
        np.testing.assert_array_equal(got, want)
    assert int(restarted[1].count) == 7  # the learning rate goes on at step 7
    # Stacked states (candidates side by side) restart the same way.
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    assert int(jnp.max(jnp.abs(Recipe.restart(stacked)[0].nu["w"]))) == 0


def test_another_recipe_is_another_run_for_the_run_files():
    bench = tiny_benchmark()
    config = MethodConfig("ew", "equal_weights")
    keys = [
        run_key(dataclasses.replace(bench, recipe=r), config, seed=0, **BUDGET)
        for r in (DEFAULT_RECIPE, COSINE, dataclasses.replace(DEFAULT_RECIPE, b2=0.99))
    ]
    assert len({k.setup for k in keys}) == 3


def test_a_run_and_the_vmapped_grid_train_with_the_same_recipe():
    # Shares the data and jitted functions, never a compiled trainer.
    bench = dataclasses.replace(tiny_benchmark(), recipe=COSINE)
    weights = np.array([0.5, 1.5])
    config = MethodConfig("ls", "fixed_weights", {"weights": weights})
    sequential = single_run.run(bench, config, seed=0, **BUDGET)
    (vmapped,) = vmapped_grid_runs(bench, weights[None], seed=0, **BUDGET)
    np.testing.assert_allclose(vmapped.validation_scores, sequential.validation_scores, rtol=1e-4)
    default = single_run.run(tiny_benchmark(), config, seed=0, **BUDGET)
    assert not np.allclose(default.validation_scores, sequential.validation_scores, rtol=1e-3)
    # Every compiled trainer of this benchmark's recipe carries the recipe's optimizer key.
    cosine_keys = {k.optimizer for k in bench.cache.trainers if "warmup_cosine" in k.optimizer}
    assert cosine_keys == {COSINE.optimizer_key(STEPS)}


def test_the_restart_control_resets_once_and_keeps_the_evaluation_schedule():
    bench, weights = tiny_benchmark(), np.array([[0.5, 1.5]])
    (plain,) = vmapped_grid_runs(bench, weights, seed=0, **BUDGET)
    (reset,) = vmapped_grid_runs(bench, weights, seed=0, restart_at=15, **BUDGET)
    assert reset.validation_steps == plain.validation_steps == [10, 20, 30]
    assert reset.validation_scores[0] == pytest.approx(plain.validation_scores[0])  # before it
    assert reset.validation_scores[1] != pytest.approx(plain.validation_scores[1], rel=1e-4)
    assert reset.options == {"weights": "[0.5, 1.5]", "restart_at": "15"}
    assert reset.gradient_evaluations == STEPS and len(reset.chunk_times_s) == 3


def test_every_row_of_a_report_shares_the_recipe_and_the_report_prints_it():
    bench = dataclasses.replace(tiny_benchmark(), recipe=COSINE)
    report = run_benchmark(
        bench,
        [MethodConfig("ew", "equal_weights")],
        seeds=(0,),
        weight_grid=ls_weight_grid(2, 2, max_ratio=30.0),
        grid_controls=GRID_CONTROLS,
        **BUDGET,
    )
    rows = {s.method: s for s in report.summaries}
    assert list(rows) == ["single_task", "ls_grid", *GRID_CONTROLS, "ew"]
    pick = report.grid["weights"][report.grid["best_index"]]
    assert rows["ls_grid_restart"].detail == (
        "the grid's weights from step 0, Adam reset once after step 10"
    )
    on_search = next(r for r in report.runs if r.method == "ls_grid_on_search")
    np.testing.assert_allclose(on_search.extras["stages"][0]["weights"], pick, rtol=1e-6)
    # gms phase 1 (10 steps, K passes each), then the pick alone (one pass a step).
    assert on_search.gradient_evaluations == 2 * 10 + (STEPS - 10)
    assert report.recipe["schedule"] == "warmup_cosine" and report.recipe["steps"] == STEPS
    assert report.recipe["description"].startswith("Adam lr 0.003 (β1 0.9, β2 0.99), warm-up")
    before = sum(r.selected_step < r.steps for r in report.runs)
    assert report.selection == {
        "before_end": before,
        "runs": len(report.runs),
        "share": before / len(report.runs),
    }
    assert tiny_report().recipe["schedule"] == "constant"
