"""FAMO against a float64 numpy reference (softmax Jacobian, torch-style Adam), the equal-loss
equivalence of arXiv 2505.10347 and its scale invariance."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.famo import famo


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def reference_famo(losses_seq, lr=0.025, weight_decay=1e-3, min_losses=0.0, eps=1e-8):
    """float64: ξ steps on Jᵀδ (J the softmax Jacobian) before the weights c z / (L - m + ε)."""
    logits = np.zeros(len(losses_seq[0]))
    adam = checks.NumpyAdam(lr, weight_decay=weight_decay)
    previous, weights, all_logits = None, [], []
    for losses in losses_seq:
        shifted = np.asarray(losses, np.float64) - min_losses + eps
        if previous is not None:
            decrease = np.log(previous) - np.log(shifted)
            z = softmax(logits)
            jacobian = np.diag(z) - np.outer(z, z)
            logits = adam.step(logits, jacobian.T @ decrease)
        z = softmax(logits)
        weights.append((z / shifted) / np.sum(z / shifted))
        all_logits.append(logits)
        previous = shifted
    return np.array(weights), np.array(all_logits)


@pytest.mark.parametrize(
    ("lr", "weight_decay", "min_losses"), [(0.025, 1e-3, 0.0), (0.3, 0.01, 0.005)]
)
def test_matches_numpy_reference(lr, weight_decay, min_losses):
    rng = np.random.default_rng(0)
    # Losses that fall at different rates per task, so the logits really move.
    rates = np.array([0.7, 0.95, 1.0])
    losses = [(2.0 * rates**t * rng.uniform(0.9, 1.1, 3)).astype(np.float32) for t in range(15)]
    grads = checks.gradient_sequence(rng, 3, 15)
    tx = famo(3, learning_rate=lr, weight_decay=weight_decay, min_losses=min_losses)
    combined, weights, state = checks.run_updates(tx, grads, losses)
    expected, logits = reference_famo(losses, lr, weight_decay, min_losses)
    np.testing.assert_allclose(weights, expected, rtol=2e-5)
    np.testing.assert_allclose(state.logits, logits[-1], rtol=1e-4, atol=1e-6)
    assert np.ptp(state.logits) > 0.05
    # The task whose loss falls fastest (task 0) loses weight in z.
    assert np.argmin(state.logits) == 0
    for key in ("a", "b"):
        np.testing.assert_allclose(
            combined[-1][key], np.einsum("k,k...->...", expected[-1], grads[-1][key]), rtol=1e-4
        )


def test_first_step_weights_are_normalised_inverse_losses():
    J = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    tx = famo(2)
    params = {"w": jnp.zeros(3)}
    out, state = tx.update({"w": J}, tx.init(params), params, task_losses=jnp.array([1.0, 3.0]))
    # z = (1/2, 1/2): w ∝ z / L = (1/2, 1/6), normalised (c = 1 / Σ z/L) to (3/4, 1/4).
    np.testing.assert_allclose(asj.task_weights(state), [0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(out["w"], [-1.5, 1.0, 1.0], rtol=1e-6)


def test_two_tasks_with_equal_losses_get_equal_weights():
    # arXiv 2505.10347 App. A.4: equal losses (and equal gradient norms) -> equal weights.
    rng = np.random.default_rng(1)
    shared = rng.uniform(0.1, 3.0, 12).astype(np.float32)
    losses = [np.array([v, v], np.float32) for v in shared]
    grads = checks.gradient_sequence(rng, 2, 12)
    grads = [
        jax.tree.map(lambda g: g / np.linalg.norm(g, axis=1, keepdims=True), gr) for gr in grads
    ]
    combined, weights, state = checks.run_updates(famo(2, learning_rate=0.3), grads, losses)
    np.testing.assert_allclose(weights, 0.5, rtol=1e-6)
    np.testing.assert_allclose(state.logits[0], state.logits[1], atol=1e-7)
    for key in ("a", "b"):
        np.testing.assert_allclose(combined[-1][key], 0.5 * grads[-1][key].sum(0), rtol=1e-5)


def test_update_direction_is_invariant_to_rescaling_a_loss():
    rng = np.random.default_rng(2)
    grads = checks.gradient_sequence(rng, 3, 6)
    losses = checks.loss_sequence(rng, 3, 6)
    scale = np.array([1.0, 50.0, 0.02], np.float32)
    combined, _, _ = checks.run_updates(famo(3, learning_rate=0.3), grads, losses)
    scaled_grads = [jax.tree.map(lambda g: g * scale.reshape(-1, 1), gr) for gr in grads]
    scaled_losses = [loss * scale for loss in losses]
    combined_s, _, _ = checks.run_updates(famo(3, learning_rate=0.3), scaled_grads, scaled_losses)
    for a, b in zip(combined, combined_s, strict=True):
        u = np.concatenate([a["a"].ravel(), a["b"].ravel()])
        v = np.concatenate([b["a"].ravel(), b["b"].ravel()])
        np.testing.assert_allclose(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), 1.0, atol=1e-5)


def test_non_finite_losses_keep_the_state():
    tx = famo(2)
    params = {"w": jnp.zeros(1)}
    grads = {"w": jnp.ones((2, 1))}
    state = tx.init(params)
    _, state = tx.update(grads, state, params, task_losses=jnp.array([1.0, 2.0]))
    _, state = tx.update(grads, state, params, task_losses=jnp.array([0.5, 2.0]))
    before = state
    _, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.nan, 2.0]))
    np.testing.assert_array_equal(state.logits, before.logits)
    np.testing.assert_array_equal(state.previous_losses, before.previous_losses)
    np.testing.assert_array_equal(asj.task_weights(state), asj.task_weights(before))
    # A loss below its bound is clamped: finite weights.
    _, state = tx.update(grads, state, params, task_losses=jnp.array([-1.0, 2.0]))
    assert np.all(np.isfinite(asj.task_weights(state))) and np.all(np.isfinite(state.logits))


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, lambda k: famo(k, learning_rate=0.3))
