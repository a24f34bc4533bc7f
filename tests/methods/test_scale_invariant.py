"""Scale-invariant (log-loss) weighting: 1/L weights, the gradient of Σ log L, invariance."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.scale_invariant import scale_invariant


def test_weights_are_inverse_losses_and_update_is_the_log_loss_gradient():
    loss_fn, params, x, y = checks.make_problem()
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    tx = scale_invariant(3)
    update, state = tx.update(task_grads, tx.init(params), params, task_losses=losses)
    np.testing.assert_allclose(asj.task_weights(state), 1.0 / np.asarray(losses), rtol=1e-6)
    # Independent reference: autodiff of Σ_k log L_k.
    expected = jax.grad(lambda p: jnp.sum(jnp.log(loss_fn(p, x, y))))(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), update, expected
    )


def test_hand_derived_weights_on_the_torchjd_jacobian():
    J = np.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], np.float32)
    tx = scale_invariant(2)
    params = {"w": jnp.zeros(3)}
    out, state = tx.update({"w": J}, tx.init(params), params, task_losses=jnp.array([2.0, 0.5]))
    np.testing.assert_allclose(asj.task_weights(state), [0.5, 2.0], rtol=1e-6)
    np.testing.assert_allclose(out["w"], 0.5 * J[0] + 2.0 * J[1], rtol=1e-6)  # [10, 2.5, 2.5]


def test_rescaling_a_task_loss_leaves_the_update_unchanged():
    rng = np.random.default_rng(0)
    grads = checks.gradient_sequence(rng, 3, 1)[0]
    losses = checks.loss_sequence(rng, 3, 1)[0]
    scale = np.array([1.0, 100.0, 0.01], np.float32)
    tx = scale_invariant(3)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
    out, _ = tx.update(grads, tx.init(params), params, task_losses=losses)
    scaled_grads = jax.tree.map(lambda g: g * scale.reshape(-1, 1), grads)
    out_scaled, _ = tx.update(scaled_grads, tx.init(params), params, task_losses=losses * scale)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), out, out_scaled)


def test_non_positive_and_non_finite_losses_are_defined():
    tx = scale_invariant(2, eps=1e-6)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    _, state = tx.update(grads, state, params, task_losses=jnp.array([0.0, -3.0]))
    # Non-positive losses are clamped to 0: weight 1/eps, finite.
    np.testing.assert_allclose(asj.task_weights(state), [1e6, 1e6], rtol=1e-6)
    _, state = tx.update(grads, state, params, task_losses=jnp.array([4.0, 2.0]))
    _, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.nan, 2.0]))
    # A NaN loss: the previous weights are applied and kept.
    np.testing.assert_allclose(asj.task_weights(state), [0.25, 0.5], rtol=1e-6)


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, scale_invariant)
