"""IMTL-G: against the paper's closed form in float64 numpy, and its defining property."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan

import autoscale_jax as asj
from autoscale_jax.methods.imtl_g import imtl_g, imtl_g_weights


def numpy_imtl_g(J: np.ndarray) -> np.ndarray:
    """Liu et al's closed form: α_{2:K} = g_1 Uᵀ (D Uᵀ)^{-1}, α_1 = 1 - Σ α_{2:K}."""
    J = np.asarray(J, np.float64)
    units = J / np.linalg.norm(J, axis=1, keepdims=True)
    D = J[0] - J[1:]
    U = units[0] - units[1:]
    rest = J[0] @ U.T @ np.linalg.inv(D @ U.T)
    return np.concatenate([[1 - rest.sum()], rest])


def flat(update: dict) -> np.ndarray:
    return np.concatenate([np.asarray(update["a"]).ravel(), np.asarray(update["b"]).ravel()])


def run_imtl(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tx = imtl_g(J.shape[0])
    update, state = tx.update(as_task_grads(J), tx.init(None))
    return flat(update), np.asarray(asj.task_weights(state))


def weights_of(J: np.ndarray) -> np.ndarray:
    return np.asarray(imtl_g_weights(jnp.asarray(J @ J.T, jnp.float32)), np.float64)


def projections_on_units(J: np.ndarray, update: np.ndarray) -> np.ndarray:
    return J @ update / np.linalg.norm(J, axis=1)


def test_torchjd_jacobian():
    update, weights = run_imtl(TORCHJD_JACOBIAN)
    expected = numpy_imtl_g(TORCHJD_JACOBIAN)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    np.testing.assert_allclose(update, expected @ TORCHJD_JACOBIAN, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(update, [0.0766966, 1.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (5, 12)])
def test_matches_the_paper_closed_form(rng, num_tasks, dim):
    J = random_jacobian(rng, num_tasks, dim)
    update, weights = run_imtl(J)
    expected = numpy_imtl_g(J)
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    reference = expected @ J
    np.testing.assert_allclose(update, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_equal_projections_on_unit_gradients_and_weights_sum_to_one(rng, num_tasks):
    J = random_jacobian(rng, num_tasks, 8)
    update, weights = run_imtl(J)
    projected = projections_on_units(J, update)
    np.testing.assert_allclose(projected, projected[0], rtol=1e-3)
    assert projected[0] > 0
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)


def test_permuting_tasks_permutes_weights_and_keeps_the_update(rng):
    J = random_jacobian(rng, 4, 7)
    perm = np.array([2, 0, 3, 1])
    update, weights = run_imtl(J)
    update_p, weights_p = run_imtl(J[perm])
    np.testing.assert_allclose(weights_p, weights[perm], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(update_p, update, rtol=1e-4, atol=1e-5 * np.abs(update).max())


def test_update_direction_is_invariant_to_positive_task_scaling(rng):
    J = random_jacobian(rng, 3, 6)
    scales = np.array([[0.01], [3.0], [50.0]])
    update, _ = run_imtl(J)
    update_s, _ = run_imtl(J * scales)
    cosine = update @ update_s / np.linalg.norm(update) / np.linalg.norm(update_s)
    np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)


def test_two_tasks_of_equal_norm_give_equal_weights(rng):
    # Gama & Grassi 2025, App. A.4: with equal norms IMTL-G reduces to equal weights.
    J = rng.normal(size=(2, 6))
    J[1] *= np.linalg.norm(J[0]) / np.linalg.norm(J[1])
    np.testing.assert_allclose(weights_of(J), [0.5, 0.5], rtol=1e-5)


def test_identical_and_parallel_gradients_are_defined():
    g = np.array([1.0, 2.0, -2.0])
    np.testing.assert_allclose(weights_of(np.vstack([g, g, g])), [1 / 3] * 3, rtol=1e-5)
    # Parallel gradients: the singular case resolved symmetrically, weights ∝ 1 / ||g_k||.
    parallel = np.vstack([g, 4.0 * g])
    np.testing.assert_allclose(weights_of(parallel), [0.8, 0.2], rtol=1e-5)


def test_non_positive_normaliser_keeps_the_projections_positive():
    # Directions where β = C⁻¹ 1 has a negative entry; shrinking that task's norm makes
    # Σ_k β_k / ||g_k|| negative, where the paper's α would ascend every task.
    rng = np.random.default_rng(1)
    units = rng.normal(size=(3, 3))
    units /= np.linalg.norm(units, axis=1, keepdims=True)
    beta = np.linalg.solve(units @ units.T, np.ones(3))
    assert beta[2] < 0
    J = units * np.array([[1.0], [1.0], [0.01]])
    assert np.sum(beta / np.linalg.norm(J, axis=1)) < 0
    update, weights = run_imtl(J)
    np.testing.assert_allclose(np.abs(weights).sum(), 1.0, rtol=1e-5)
    projected = projections_on_units(J, update)
    np.testing.assert_allclose(projected, projected[0], rtol=1e-3)
    assert projected[0] > 0


def test_zero_gradient_task_gets_zero_weight(rng):
    J = random_jacobian(rng, 3, 6)
    J[1] = 0.0
    update, weights = run_imtl(J)
    assert np.all(np.isfinite(update)) and np.all(np.isfinite(weights))
    assert weights[1] == 0.0
    expected = numpy_imtl_g(J[[0, 2]])
    np.testing.assert_allclose(weights[[0, 2]], expected, rtol=1e-4)


def test_all_zero_and_more_tasks_than_parameters_are_defined(rng):
    update, weights = run_imtl(np.zeros((3, 4)))
    np.testing.assert_array_equal(update, 0.0)
    np.testing.assert_array_equal(weights, np.float32(1 / 3))  # all zero: initial weights kept
    J = random_jacobian(rng, 5, 2)  # rank 2: no exact equal-projection direction
    update, weights = run_imtl(J)
    assert np.all(np.isfinite(update)) and np.all(np.isfinite(weights))


def test_jit_compiles_once_and_nan_keeps_state(rng):
    assert_compiles_once_and_survives_nan(imtl_g(3), 3, rng)
