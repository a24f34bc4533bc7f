"""Uncertainty weighting against a float64 numpy reference and its analytic fixed point."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_checks import (
    LOSS_SPACE_CHECKS,
    check_loss_space_contract,
    gradient_sequence,
    loss_sequence,
    numpy_optimizer,
    reference_uncertainty,
    run_updates,
)

import autoscale_jax as asj
from autoscale_jax.methods.uncertainty_weighting import uncertainty_weighting

# ---------------------------------------------------------------------------------------------
# Uncertainty weighting.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.1), ("adam", 0.05)])
def test_matches_numpy_reference(optimizer, lr):
    rng = np.random.default_rng(0)
    losses = loss_sequence(rng, 3, 12)
    grads = gradient_sequence(rng, 3, 12)
    method = uncertainty_weighting(3, learning_rate=lr, optimizer=optimizer)
    combined, weights, state = run_updates(method, grads, losses)
    ref_weights, ref_s = reference_uncertainty(losses, numpy_optimizer(optimizer, lr))
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5)
    np.testing.assert_allclose(state.log_scales, ref_s, rtol=1e-5, atol=1e-6)
    expected = {k: np.einsum("k,k...->...", ref_weights[-1], grads[-1][k]) for k in grads[-1]}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), combined[-1], expected)


@pytest.mark.parametrize(("optimizer", "lr", "steps"), [("sgd", 0.5, 300), ("adam", 0.05, 600)])
def test_converges_to_analytic_fixed_point_log_loss(optimizer, lr, steps):
    losses = jnp.array([0.2, 1.0, 8.0])
    tx = uncertainty_weighting(3, learning_rate=lr, optimizer=optimizer)
    state = tx.init({"w": jnp.zeros(2)})
    update = jax.jit(lambda g, s: tx.update(g, s, task_losses=losses, presummed=True))
    for _ in range(steps):
        _, state = update({"w": jnp.zeros(2)}, state)
    # Fixed point of 1 - exp(-s) L = 0: s* = log L, weights 1 / L (weighted losses all 1).
    np.testing.assert_allclose(state.log_scales, np.log([0.2, 1.0, 8.0]), atol=0.05)
    np.testing.assert_allclose(asj.task_weights(state) * losses, 1.0, atol=0.05)


@pytest.mark.parametrize("check", LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    check_loss_space_contract(check, lambda k: uncertainty_weighting(k, learning_rate=0.1))


def test_non_finite_losses_skip_the_scale_step():
    tx = uncertainty_weighting(2, learning_rate=0.1)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    grads = {"w": jnp.ones((2, 2))}
    _, state = tx.update(grads, state, params, task_losses=jnp.array([2.0, 3.0]))
    before = state
    out, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.nan, 3.0]))
    np.testing.assert_array_equal(state.log_scales, before.log_scales)
    assert np.all(np.isfinite(out["w"]))  # finite gradients, finite weights: finite update
    assert np.all(np.isfinite(asj.task_weights(state)))


def test_works_under_inject_hyperparams():
    tx = optax.inject_hyperparams(uncertainty_weighting, static_args=("num_tasks", "optimizer"))(
        num_tasks=2, learning_rate=0.1, optimizer="sgd"
    )
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    _, state = tx.update({"w": jnp.ones((2, 2))}, state, params, task_losses=jnp.array([2.0, 0.5]))
    # s ← s - 0.1 (1 - L): from 0 to 0.1 (L - 1).
    np.testing.assert_allclose(state.inner_state.log_scales, [0.1, -0.05], rtol=1e-6)


def test_requires_losses_and_rejects_bad_arguments():
    tx = uncertainty_weighting(2)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="task losses"):
        tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params)
    with pytest.raises(ValueError, match="leading task axis"):
        tx.update({"w": jnp.ones((3, 2))}, tx.init(params), params, task_losses=jnp.ones(2))
    with pytest.raises(ValueError, match="optimizer"):
        uncertainty_weighting(2, optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate"):
        uncertainty_weighting(2, learning_rate=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        uncertainty_weighting(1)
