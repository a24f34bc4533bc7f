"""MGDA / MGDA-UB: the update is the min-norm point of the convex hull of the task gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method
from solver_references import assert_simplex_kkt, reference_min_norm_weights

import autoscale_jax as asj
from autoscale_jax.methods.mgda import mgda

MGDA = {num_tasks: mgda(num_tasks) for num_tasks in (2, 3, 4)}
MGDA_L2 = mgda(3, normalization="l2")


def test_torchjd_jacobian_hand_derived():
    # α = (G22 - G12) / (G11 + G22 - 2 G12) = 60/100 and αJ = [0, 1, 1].
    update, weights, state = run_method(MGDA[2], TORCHJD_JACOBIAN)
    np.testing.assert_allclose(weights, [0.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(update, [0.0, 1.0, 1.0], atol=1e-6)
    assert bool(state.solver_converged)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_update_is_the_brute_force_min_norm_point(rng, num_tasks, dim):
    for _ in range(3):
        J = random_jacobian(rng, num_tasks, dim)
        update, weights, _ = run_method(MGDA[num_tasks], J)
        expected = reference_min_norm_weights(J @ J.T)
        largest = np.linalg.norm(J, axis=1).max()
        np.testing.assert_allclose(update, expected @ J, atol=1e-3 * largest)
        np.testing.assert_allclose(update, weights @ J, rtol=1e-4, atol=1e-6 * largest)
        assert_simplex_kkt(J @ J.T, weights, tol=1e-5)
        # -d is a common descent direction: <g_k, d> ≥ ||d||² for every task.
        assert np.all(J @ update >= update @ update - 1e-4 * largest**2)


def test_no_shorter_point_on_a_dense_grid(rng):
    J = random_jacobian(rng, 3, 5)
    update, _, _ = run_method(MGDA[3], J)
    steps = np.linspace(0, 1, 301)
    a, b = np.meshgrid(steps, steps)
    keep = a + b <= 1
    grid = np.stack([a[keep], b[keep], 1 - a[keep] - b[keep]], axis=1)
    grid_norms = np.linalg.norm(grid @ J, axis=1)
    assert np.linalg.norm(update) <= grid_norms.min() * (1 + 1e-4) + 1e-6


def test_permuting_tasks_permutes_weights(rng):
    # comparable norms, so that α itself (not only the point) is well conditioned in float32
    assert_permutes_with_tasks(MGDA[4], rng.normal(size=(4, 7)))


def test_l2_weights_ignore_per_task_scales(rng):
    J = random_jacobian(rng, 3, 5)
    scales = np.array([[1e-3], [7.0], [250.0]])
    _, weights, _ = run_method(MGDA_L2, J)
    _, weights_scaled, _ = run_method(MGDA_L2, J * scales)
    np.testing.assert_allclose(weights_scaled, weights, rtol=1e-4, atol=1e-6)
    units = J / np.linalg.norm(J, axis=1, keepdims=True)
    np.testing.assert_allclose(weights, reference_min_norm_weights(units @ units.T), atol=1e-4)


@pytest.mark.parametrize("normalization", ["loss", "loss+"])
def test_loss_normalizations_against_numpy(rng, normalization):
    J = random_jacobian(rng, 3, 5)
    losses = np.array([0.5, 3.0, 20.0], np.float32)
    divisors = losses * (np.linalg.norm(J, axis=1) if normalization == "loss+" else 1.0)
    normalized = J / divisors[:, None]
    expected = reference_min_norm_weights(normalized @ normalized.T)
    update, weights, _ = run_method(
        mgda(3, normalization=normalization), J, task_losses=jnp.asarray(losses)
    )
    np.testing.assert_allclose(weights, expected, atol=2e-4)
    # as in the official code the weights apply to the *original* gradients
    np.testing.assert_allclose(update, weights @ J, rtol=1e-4, atol=1e-5 * np.abs(J).max())
    with pytest.raises(ValueError, match="task losses"):
        mgda(3, normalization=normalization).update(as_task_grads(J), mgda(3).init(None))


def test_zero_gradient_gives_a_zero_finite_update(rng):
    J = random_jacobian(rng, 3, 5)
    J[1] = 0.0
    for tx in (MGDA[3], MGDA_L2):
        update, weights, _ = run_method(tx, J)
        assert np.all(np.isfinite(weights)) and np.all(np.isfinite(update))
        np.testing.assert_allclose(update, 0.0, atol=1e-5 * np.abs(J).max())


def test_upper_bound_uses_the_representation_gradients(rng):
    J = random_jacobian(rng, 3, 5)
    representation = rng.normal(size=(3, 4, 2))  # [K, batch, features]
    R = representation.reshape(3, -1)
    expected = reference_min_norm_weights(R @ R.T)
    tx = mgda(3, upper_bound=True)
    update = jax.jit(tx.update)
    out, state = update(
        as_task_grads(J),
        tx.init(None),
        representation_task_grads={"z": jnp.asarray(representation, jnp.float32)},
    )
    np.testing.assert_allclose(asj.task_weights(state), expected, atol=1e-4)
    np.testing.assert_allclose(
        np.concatenate([out["a"].ravel(), out["b"].ravel()]),
        np.asarray(asj.task_weights(state)) @ J,
        rtol=1e-4,
        atol=1e-5 * np.abs(J).max(),
    )
    with pytest.raises(ValueError, match="representation"):
        tx.update(as_task_grads(J), tx.init(None))


def test_upper_bound_with_a_representation_mask(rng):
    J = random_jacobian(rng, 3, 5)
    last_layer = J[:, 2:]  # leaf "b" of as_task_grads
    tx = mgda(3, upper_bound=True, representation_mask={"a": False, "b": True})
    _, weights, _ = run_method(tx, J)
    np.testing.assert_allclose(
        weights, reference_min_norm_weights(last_layer @ last_layer.T), atol=1e-4
    )
    # without upper_bound the whole Jacobian counts, and metric_mask selects leaves
    _, weights_all, _ = run_method(MGDA[3], J)
    np.testing.assert_allclose(weights_all, reference_min_norm_weights(J @ J.T), atol=1e-4)
    _, weights_masked, _ = run_method(mgda(3, metric_mask={"a": False, "b": True}), J)
    np.testing.assert_allclose(weights_masked, weights, atol=1e-6)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(mgda(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="normalization"):
        mgda(2, normalization="max")
    with pytest.raises(ValueError, match="at least 2"):
        mgda(1)
    tx = mgda(2)
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(3)}, tx.init(None), presummed=True)
