"""EDM: equal angles with the normalised gradients, the authors' two-task formula, invariance to
per-task rescaling, against the brute-force min-norm point of the unit gradients."""

import numpy as np
from conftest import TORCHJD_JACOBIAN, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method
from solver_references import reference_min_norm_weights

from autoscale_jax.methods.edm import edm

EDM = {num_tasks: edm(num_tasks) for num_tasks in (2, 3, 4)}


def reference_edm_weights(J: np.ndarray) -> np.ndarray:
    """w_k ∝ α_k/||g_k||, Σ w = 1, α the min-norm point of the unit gradients (float64)."""
    norms = np.linalg.norm(J, axis=1)
    units = J / norms[:, None]
    raw = reference_min_norm_weights(units @ units.T) / norms
    return raw / raw.sum()


def test_two_tasks_authors_formula():
    # d = (||g_2|| g_1 + ||g_1|| g_2) / (||g_1|| + ||g_2||)
    J = TORCHJD_JACOBIAN
    n1, n2 = np.linalg.norm(J, axis=1)
    update, weights, _ = run_method(EDM[2], J)
    np.testing.assert_allclose(weights, [n2, n1] / (n1 + n2), rtol=1e-6)
    np.testing.assert_allclose(update, (n2 * J[0] + n1 * J[1]) / (n1 + n2), rtol=1e-5)
    # equal norms: equal weights (2505.10347, App. A.4)
    _, weights, _ = run_method(EDM[2], np.array([J[0] / n1, J[1] / n2]))
    np.testing.assert_allclose(weights, [0.5, 0.5], rtol=1e-6)


def test_equal_angles_with_every_task(rng):
    for _ in range(3):
        # near-orthogonal directions (every task in the support), very different norms
        J = (np.eye(4, 7) + 0.1 * rng.normal(size=(4, 7))) * 10 ** rng.uniform(-2, 2, size=(4, 1))
        update, weights, _ = run_method(EDM[4], J)
        assert np.all(weights > 0)
        cosines = J @ update / (np.linalg.norm(J, axis=1) * np.linalg.norm(update))
        np.testing.assert_allclose(cosines, cosines.mean(), rtol=1e-4)


def test_matches_the_brute_force_reference(rng):
    for _ in range(3):
        J = random_jacobian(rng, 3, 5)
        update, weights, _ = run_method(EDM[3], J)
        expected = reference_edm_weights(J)
        np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(update, expected @ J, rtol=1e-3, atol=1e-5 * np.abs(J).max())


def test_direction_invariant_to_per_task_rescaling(rng):
    J = rng.normal(size=(3, 5))
    update, _, _ = run_method(EDM[3], J)
    update_s, _, _ = run_method(EDM[3], J * np.array([[1e-3], [1.0], [300.0]]))
    cosine = update @ update_s / (np.linalg.norm(update) * np.linalg.norm(update_s))
    assert cosine >= 1 - 1e-6
    update_c, _, _ = run_method(EDM[3], 7.0 * J)  # a common scale scales the update
    np.testing.assert_allclose(update_c, 7.0 * update, rtol=1e-5, atol=1e-5 * np.abs(update).max())


def test_permutation_equivariance(rng):
    assert_permutes_with_tasks(EDM[4], random_jacobian(rng, 4, 7))


def test_zero_gradients(rng):
    J = rng.normal(size=(3, 5))
    J[1] = 0.0
    update, weights, _ = run_method(EDM[3], J)
    assert weights[1] == 0.0
    _, weights_without, _ = run_method(EDM[2], J[[0, 2]])
    np.testing.assert_allclose(weights[[0, 2]], weights_without, rtol=1e-5)
    # All zero: the base does not solve an all-zero Gramian, keeps the initial weights, says so.
    update, weights, state = run_method(EDM[3], np.zeros((3, 5)))
    np.testing.assert_array_equal(update, 0.0)
    np.testing.assert_array_equal(weights, EDM[3].init(None).task_weights)
    assert bool(state.gramian_zero)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(edm(3), 3, rng)
