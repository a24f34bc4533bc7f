"""GradNorm against a float64 numpy reference (numerical gradient of the GradNorm loss) and its
claimed equilibrium: weighted gradient norms proportional to r_k^α."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import as_task_grads, random_jacobian

import autoscale_jax as asj
from autoscale_jax.methods.gradnorm import gradnorm


def gradnorm_loss_gradient(w, norms, targets, h=1e-6):
    """Central differences of Σ_k |w_k n_k - target_k| with the targets held fixed."""
    loss = lambda v: np.sum(np.abs(v * norms - targets))  # noqa: E731
    return np.array([(loss(w + h * e) - loss(w - h * e)) / (2 * h) for e in np.eye(len(w))])


def reference_gradnorm(jacobians, losses_seq, alpha, optimizer, columns):
    """float64: apply w, then one optimizer step on the GradNorm loss, floor, renormalise."""
    num_tasks = jacobians[0].shape[0]
    w, initial = np.ones(num_tasks), None
    weights = []
    for J, losses in zip(jacobians, losses_seq, strict=True):
        losses = np.asarray(losses, np.float64)
        initial = losses if initial is None else initial
        weights.append(w)
        norms = np.linalg.norm(J[:, columns], axis=1)
        inverse_rates = (losses / initial) / np.mean(losses / initial)
        targets = np.mean(w * norms) * inverse_rates**alpha
        w = optimizer.step(w, gradnorm_loss_gradient(w, norms, targets))
        w = np.maximum(w, 1e-6)
        w = num_tasks * w / w.sum()
    return np.array(weights), w


@pytest.mark.parametrize(("optimizer", "lr", "alpha"), [("sgd", 0.01, 1.5), ("adam", 0.05, 0.5)])
def test_matches_numpy_reference_on_the_masked_leaf(optimizer, lr, alpha):
    rng = np.random.default_rng(0)
    jacobians = [random_jacobian(rng, 3, 8) * 0.3 for _ in range(10)]
    losses = checks.loss_sequence(rng, 3, 10)
    mask = {"a": True, "b": False}  # W = leaf "a", the first half of the columns
    tx = gradnorm(3, alpha=alpha, learning_rate=lr, optimizer=optimizer, metric_mask=mask)
    grads = [as_task_grads(J) for J in jacobians]
    combined, weights, state = checks.run_updates(tx, grads, losses)
    expected, next_weights = reference_gradnorm(
        jacobians, losses, alpha, checks.numpy_optimizer(optimizer, lr), slice(0, 4)
    )
    np.testing.assert_allclose(weights, expected, rtol=1e-4)
    np.testing.assert_allclose(state.memory.learned_weights, next_weights, rtol=1e-4)
    np.testing.assert_allclose(weights.sum(axis=1), 3.0, rtol=1e-5)
    np.testing.assert_allclose(
        state.memory.gradient_norms, np.linalg.norm(jacobians[-1][:, :4], axis=1), rtol=1e-5
    )
    assert np.ptp(weights[-1]) > 0.01
    np.testing.assert_allclose(
        combined[-1]["b"], expected[-1] @ jacobians[-1][:, 4:], rtol=1e-4, atol=1e-6
    )


def test_equal_training_rates_equalise_the_weighted_gradient_norms():
    # Constant losses: every r_k = 1, so the equilibrium is w_k ||g_k|| equal for all k.
    J = np.diag([4.0, 1.0, 0.25]).astype(np.float32)
    grads = {"w": jnp.asarray(J)}
    tx = gradnorm(3, alpha=1.5, learning_rate=0.01, metric_mask=None)
    params = {"w": jnp.zeros(3)}
    update = jax.jit(lambda s: tx.update(grads, s, params, task_losses=jnp.array([1.0, 2.0, 3.0])))
    state = tx.init(params)
    for _ in range(600):
        _, state = update(state)
    expected = 3 * np.array([1 / 4, 1.0, 4.0]) / (1 / 4 + 1 + 4)
    np.testing.assert_allclose(state.memory.learned_weights, expected, rtol=0.05)


def test_slow_tasks_gain_weight_in_proportion_to_their_rate_power_alpha():
    # Equal gradient norms; task 0's loss stays at L(0) while the others halve:
    # r = (1, 0.5, 0.5) / mean, equilibrium w ∝ r^α.
    grads = {"w": jnp.eye(3)}
    tx = gradnorm(3, alpha=1.0, learning_rate=0.01, metric_mask=None)
    params = {"w": jnp.zeros(3)}
    update = jax.jit(lambda g, s, losses: tx.update(g, s, params, task_losses=losses))
    state = tx.init(params)
    _, state = update(grads, state, jnp.array([2.0, 2.0, 2.0]))
    for _ in range(600):
        _, state = update(grads, state, jnp.array([2.0, 1.0, 1.0]))
    np.testing.assert_allclose(state.memory.learned_weights, [1.5, 0.75, 0.75], rtol=0.05)
    np.testing.assert_allclose(state.memory.initial_losses, [2.0, 2.0, 2.0])


def test_zero_gradient_and_non_finite_input_are_defined():
    J = np.array([[-4.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    tx = gradnorm(2, learning_rate=0.1, metric_mask=None)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    for _ in range(3):
        out, state = tx.update({"w": J}, state, params, task_losses=jnp.array([1.0, 1.0]))
    assert np.all(np.isfinite(out["w"])) and np.all(np.isfinite(asj.task_weights(state)))
    np.testing.assert_allclose(np.sum(state.memory.learned_weights), 2.0, rtol=1e-6)
    before = state
    nan_grads = {"w": np.where(J == -4.0, np.nan, J)}
    _, state = tx.update(nan_grads, state, params, task_losses=jnp.array([1.0, 1.0]))
    np.testing.assert_array_equal(state.memory.learned_weights, before.memory.learned_weights)
    np.testing.assert_array_equal(state.memory.gradient_norms, before.memory.gradient_norms)


def test_train_step_matches_optax_chain():
    weights = checks.assert_fast_path_matches_chain(
        lambda: gradnorm(3, learning_rate=0.05), num_steps=4
    )
    assert not np.allclose(weights, 1.0)


def test_permuting_tasks_permutes_weights():
    checks.assert_permutation_equivariant(lambda: gradnorm(4, learning_rate=0.05, metric_mask=None))


def test_has_no_fast_path_and_rejects_presummed_and_bad_arguments():
    checks.assert_needs_task_gradients(gradnorm)
    with pytest.raises(ValueError, match="alpha"):
        gradnorm(2, alpha=-1.0)
