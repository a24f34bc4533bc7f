"""IMTL-L against a float64 numpy reference, its fixed point and its equivalence with UW."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.imtl_l import imtl_l
from autoscale_jax.methods.uncertainty_weighting import uncertainty_weighting


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 0.1), ("adam", 0.05)])
def test_matches_numpy_reference(optimizer, lr):
    rng = np.random.default_rng(1)
    losses = checks.loss_sequence(rng, 3, 12)
    grads = checks.gradient_sequence(rng, 3, 12)
    combined, weights, state = checks.run_updates(
        imtl_l(3, learning_rate=lr, optimizer=optimizer), grads, losses
    )
    # Weights e^{s}, s ← step(s, e^{s} L - 1): the scaled loss e^{s} L - s.
    ref_weights, ref_s = checks.reference_uncertainty(
        losses, checks.numpy_optimizer(optimizer, lr), sign=1.0
    )
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5)
    np.testing.assert_allclose(state.log_scales, ref_s, rtol=1e-5, atol=1e-6)
    expected = {k: np.einsum("k,k...->...", ref_weights[-1], grads[-1][k]) for k in grads[-1]}
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), combined[-1], expected)


def test_scaled_losses_become_equal_at_the_fixed_point():
    losses = jnp.array([0.05, 1.0, 20.0])
    tx = imtl_l(3, learning_rate=0.05)
    state = tx.init({"w": jnp.zeros(1)})
    update = jax.jit(
        lambda s: tx.update({"w": jnp.zeros(1)}, s, task_losses=losses, presummed=True)
    )
    for _ in range(800):
        _, state = update(state)
    # e^{s} L - 1 = 0: s* = -log L, so every scaled loss e^{s} L is 1 and the weights are 1/L.
    np.testing.assert_allclose(state.log_scales, -np.log(losses), atol=0.05)
    np.testing.assert_allclose(asj.task_weights(state) * losses, 1.0, atol=0.05)


def test_equals_uncertainty_weighting_with_negated_scales():
    rng = np.random.default_rng(2)
    losses = checks.loss_sequence(rng, 3, 10)
    grads = checks.gradient_sequence(rng, 3, 10)
    _, weights, state = checks.run_updates(imtl_l(3, learning_rate=0.05), grads, losses)
    _, uw_weights, uw_state = checks.run_updates(
        uncertainty_weighting(3, learning_rate=0.05), grads, losses
    )
    np.testing.assert_allclose(weights, uw_weights, rtol=1e-6)
    np.testing.assert_allclose(state.log_scales, -uw_state.log_scales, rtol=1e-6, atol=1e-7)


def test_non_finite_losses_keep_the_state_finite():
    tx = imtl_l(2, learning_rate=0.1)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    _, state = tx.update(
        {"w": jnp.ones((2, 2))}, state, params, task_losses=jnp.array([jnp.inf, 1.0])
    )
    np.testing.assert_array_equal(state.log_scales, 0.0)
    assert np.all(np.isfinite(asj.task_weights(state)))


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, lambda k: imtl_l(k, learning_rate=0.1))
