"""DualProj: TorchJD's reference value, a float64 enumeration of the box QP, a float64 primal
projection onto the dual cone (scipy), and the non-conflicting property."""

import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method
from scipy.optimize import nnls
from sibling_checks import assert_update_conflicts_with_no_task, assert_zero_gradient_is_ignored
from solver_references import reference_dual_cone_weights

from autoscale_jax.methods.dualproj import dualproj

DUALPROJ = {num_tasks: dualproj(num_tasks) for num_tasks in (2, 3, 4)}
EXACT = {num_tasks: dualproj(num_tasks, reg_eps=0.0) for num_tasks in (2, 3, 4)}


def reference_dualproj_weights(J: np.ndarray, reg_eps: float, lower=None) -> np.ndarray:
    """argmin_{v ≥ u} vᵀĜv, Ĝ = G/tr(G) + reg_eps I, u = 1/K, by enumeration in float64."""
    lower = np.full(len(J), 1 / len(J)) if lower is None else lower
    return reference_dual_cone_weights(J, reg_eps, lower)


def primal_projection(J: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Projection of x onto {y : Jy ≥ 0} in float64, by Moreau's decomposition: x minus its
    projection onto the polar cone {-Jᵀλ : λ ≥ 0}, the latter a non-negative least squares."""
    lam, _ = nnls(-J.T, x)
    return x + J.T @ lam


def test_torchjd_reference_value():
    # TorchJD documents DualProj()(J) = [0.5563, 1.1109, 1.1109] (norm_eps = reg_eps = 1e-4).
    update, _, state = run_method(DUALPROJ[2], TORCHJD_JACOBIAN)
    np.testing.assert_allclose(update, [0.5563, 1.1109, 1.1109], atol=1e-4)
    assert bool(state.solver_converged)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (4, 3)])
def test_matches_enumeration_and_primal_projection(rng, num_tasks, dim):
    for _ in range(3):
        J = rng.normal(size=(num_tasks, dim)) * rng.uniform(0.2, 5.0, size=(num_tasks, 1))
        update, weights, _ = run_method(DUALPROJ[num_tasks], J)
        expected = reference_dualproj_weights(J, 1e-4)
        np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(update, expected @ J, rtol=1e-3, atol=1e-5 * np.abs(J).max())
        # without the ridge, the update is the Euclidean projection of the mean gradient
        update, _, _ = run_method(EXACT[num_tasks], J)
        projected = primal_projection(J, J.mean(axis=0))
        np.testing.assert_allclose(update, projected, atol=1e-4 * np.abs(J).max())


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_update_conflicts_with_no_task(rng, num_tasks, dim):
    assert_update_conflicts_with_no_task(EXACT[num_tasks], DUALPROJ[num_tasks], rng, num_tasks, dim)


def test_non_conflicting_mean_is_kept():
    # g_1 and g_2 conflict (cos < 0), but their mean with g_3 conflicts with none of them.
    J = np.array([[1.0, -0.2, 0.0, 0.5], [-0.3, 1.0, 0.4, 0.0], [1.0, 1.0, 0.3, 0.2]])
    assert (J @ J.T)[0, 1] < 0 and np.all(J @ J.mean(axis=0) > 0)
    update, weights, _ = run_method(DUALPROJ[3], J)
    np.testing.assert_allclose(weights, 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(update, J.mean(axis=0), rtol=1e-6)


def test_preferences_are_projected(rng):
    J = random_jacobian(rng, 3, 5)
    lower = np.array([0.2, 0.5, 0.3])
    _, weights, _ = run_method(dualproj(3, preferences=lower), J)
    np.testing.assert_allclose(weights, reference_dualproj_weights(J, 1e-4, lower), rtol=1e-3)
    # the projection is positively homogeneous: projecting the sum is K times the mean's
    _, sum_weights, _ = run_method(dualproj(3, preferences=[1.0, 1.0, 1.0]), J)
    _, mean_weights, _ = run_method(DUALPROJ[3], J)
    np.testing.assert_allclose(sum_weights, 3 * mean_weights, rtol=1e-4)


def test_permutation_and_common_scale(rng):
    J = random_jacobian(rng, 4, 7)
    weights = assert_permutes_with_tasks(DUALPROJ[4], J)
    _, weights_s, _ = run_method(DUALPROJ[4], 1e-3 * J)
    np.testing.assert_allclose(weights_s, weights, rtol=1e-4, atol=1e-6)
    _, weights_s, _ = run_method(DUALPROJ[4], 250.0 * J)
    np.testing.assert_allclose(weights_s, weights, rtol=1e-4, atol=1e-6)


def test_zero_gradient_neither_contributes_nor_constrains(rng):
    # π_C((g_1 + g_2 + 0)/3) = (2/3) π_C((g_1 + g_2)/2), C the dual cone of g_1, g_2 alone
    weights, state = assert_zero_gradient_is_ignored(
        EXACT[3], DUALPROJ[3], rng, lambda J: reference_dualproj_weights(J, 0.0)
    )
    # all zero: not solved, initial weights kept
    np.testing.assert_array_equal(weights, DUALPROJ[3].init(None).task_weights)
    assert bool(state.gramian_zero)


def test_metric_mask_selects_leaves(rng):
    J = rng.normal(size=(3, 5))
    _, weights, _ = run_method(dualproj(3, metric_mask={"a": True, "b": False}), J)
    np.testing.assert_allclose(weights, reference_dualproj_weights(J[:, :2], 1e-4), rtol=1e-3)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(dualproj(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reg_eps must be >= 0"):
        dualproj(2, reg_eps=-1.0)
    with pytest.raises(ValueError, match="norm_eps must be >= 0"):
        dualproj(2, norm_eps=-1.0)
    with pytest.raises(ValueError, match="shape"):
        dualproj(3, preferences=[0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        dualproj(2, preferences=[1.0, -0.5])
    with pytest.raises(ValueError, match="num_tasks"):
        dualproj(1)
