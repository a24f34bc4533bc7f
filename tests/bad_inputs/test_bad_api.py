"""No silent wrong results: each bad input gets an error or a documented, visible result.

(Gradients without the task axis are in test_composition.py; a premature one-gradient step in
test_train.py and test_flax.py.)"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj


@pytest.mark.parametrize(
    "weights", [[1.0, float("nan")], [1.0, -0.5], [0.0, 0.0], [float("inf"), 1.0]]
)
def test_fixed_weights_rejects_nan_negative_and_all_zero(weights):
    with pytest.raises(ValueError, match="finite, non-negative"):
        asj.fixed_weights(weights)
    with pytest.raises(ValueError, match="finite, non-negative"):
        asj.methods.get("fixed_weights", weights=weights)


def test_fixed_weights_accepts_zero_for_some_tasks():
    tx = asj.fixed_weights([0.0, 2.0])
    params = {"w": jnp.zeros(2)}
    out, _ = tx.update({"w": jnp.array([[1.0, 1.0], [3.0, -1.0]])}, tx.init(params), params)
    np.testing.assert_allclose(out["w"], [6.0, -2.0])


@pytest.mark.parametrize("factory", ["autoscale", "mgda", "upgrad"])
def test_metric_mask_typos_and_all_false_masks_fail_at_construction(factory):
    def build(mask):
        kwargs = {"estimation_steps": 3} if factory == "autoscale" else {}
        return asj.methods.get(factory, num_tasks=2, metric_mask=mask, **kwargs)

    with pytest.raises(ValueError, match="Unknown metric_mask 'shard'"):
        build("shard")
    with pytest.raises(ValueError, match="False on every leaf"):
        build({"trunk": False, "heads": False})
    with pytest.raises(ValueError, match="must be bools"):
        build({"trunk": "yes", "heads": False})
    build({"trunk": True, "heads": False})  # a valid mask builds


def test_a_predicate_that_selects_nothing_fails_at_the_first_update():
    loss_fn, params, x, y = regression_problem()
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    tx = asj.autoscale(3, 3, metric_mask=lambda path, leaf: "encoder" in str(path))
    with pytest.raises(ValueError, match="selects no parameter leaf"):
        tx.update(task_grads, tx.init(params), params, task_losses=losses)
    with pytest.raises(ValueError, match="selects no parameter leaf"):
        asj.metrics.gramian(task_grads, lambda path, leaf: False)


def test_estimation_steps_as_a_numpy_integer_behaves_like_the_int():
    loss_fn, params, x, y = regression_problem()
    results = []
    for steps in (3, np.int64(3), np.int32(3)):
        weighting = asj.autoscale(3, steps, window=np.int64(1))
        train = asj.multitask_train_step(loss_fn, weighting, optax.sgd(0.1))
        state = train.init(params)
        phases = []
        p = params
        for _ in range(4):
            phases.append(bool(train.needs_task_gradients(state)))
            p, state, _ = train.step(p, state, x, y)
        assert phases == [True, True, True, False]
        results.append(np.asarray(asj.task_weights(state)))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    for bad in (True, 3.0, 0, np.int64(-1)):
        with pytest.raises(ValueError, match="estimation_steps must be a positive int"):
            asj.autoscale(3, bad)


def test_phase_one_with_every_sample_skipped_gives_nan_weights_not_equal_weights():
    tx = asj.autoscale(2, estimation_steps=3, window=1)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    grads = {"w": jnp.array([[1.0, 0.0], [0.0, 4.0]])}
    for _ in range(3):
        _, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.nan, 1.0]))
    assert int(state.window_statistics.skipped) == 3  # says why
    assert np.all(np.isnan(asj.task_weights(state)))
    # One finite sample is enough for an estimate.
    state = tx.init(params)
    for losses in ([jnp.nan, 1.0], [1.0, 1.0], [jnp.nan, 1.0]):
        _, state = tx.update(grads, state, params, task_losses=jnp.array(losses))
    weights = np.asarray(asj.task_weights(state))
    assert np.all(np.isfinite(weights)) and weights[0] > weights[1]  # gms: 1/norm


def _cli(*args, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "autoscale_jax.bench.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "--steps must be a positive integer, got 0"),
        (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
        (["--grid", "-1"], "--grid must be 0 (no grid) or positive, got -1"),
        (["--first-seed", "-1"], "--first-seed must be 0 or positive, got -1"),
    ],
)
def test_bench_rejects_zero_steps_and_seeds_in_one_line(tmp_path, args, message):
    done = _cli("bench", "--smoke", *args, "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"autoscale-jax bench: {message}"]
    assert not (tmp_path / "out" / "results.json").exists()


def test_bench_rejects_an_unwritable_out_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = _cli("bench", "--smoke", "--out", str(blocker / "out"), tmp_path=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("autoscale-jax bench: cannot write to --out") and "Traceback" not in line


def test_one_gradient_step_during_phase_one_leaves_no_clean_weights_inside_a_chain():
    loss_fn, params, x, y = regression_problem()
    tx = optax.chain(asj.autoscale(3, 5), optax.sgd(0.1))
    train = asj.multitask_train_step(loss_fn, tx)
    state = train.init(params)
    _, state, _ = jax.jit(train.one_gradient_step)(params, state, x, y)
    assert np.all(np.isnan(asj.task_weights(state)))
