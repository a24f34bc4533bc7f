"""UPGrad: TorchJD's reference value, a brute-force float64 projection onto the dual cone, and
the non-conflicting property on random conflicting Jacobians."""

import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method
from sibling_checks import assert_update_conflicts_with_no_task, assert_zero_gradient_is_ignored
from solver_references import reference_dual_cone_weights

from autoscale_jax.methods.upgrad import upgrad

UPGRAD = {num_tasks: upgrad(num_tasks) for num_tasks in (2, 3, 4)}
EXACT = {num_tasks: upgrad(num_tasks, reg_eps=0.0) for num_tasks in (3, 4)}


def reference_upgrad_weights(J: np.ndarray, reg_eps: float) -> np.ndarray:
    """Σ_i argmin_{v ≥ e_i/K} vᵀĜv, Ĝ = G/tr(G) + reg_eps I, by enumeration in float64."""
    return reference_dual_cone_weights(J, reg_eps, np.eye(len(J)) / len(J))


def test_torchjd_reference_value():
    # TorchJD documents UPGrad()(J) = [0.2929, 1.9004, 1.9004] (norm_eps = reg_eps = 1e-4).
    update, _, state = run_method(UPGRAD[2], TORCHJD_JACOBIAN)
    np.testing.assert_allclose(update, [0.2929, 1.9004, 1.9004], atol=1e-4)
    assert bool(state.solver_converged)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_matches_brute_force_projections(rng, num_tasks, dim):
    for _ in range(3):
        J = rng.normal(size=(num_tasks, dim)) * rng.uniform(0.2, 5.0, size=(num_tasks, 1))
        update, weights, _ = run_method(UPGRAD[num_tasks], J)
        expected = reference_upgrad_weights(J, 1e-4)
        np.testing.assert_allclose(weights, expected, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(update, expected @ J, rtol=1e-3, atol=1e-5 * np.abs(J).max())


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_update_conflicts_with_no_task(rng, num_tasks, dim):
    assert_update_conflicts_with_no_task(EXACT[num_tasks], UPGRAD[num_tasks], rng, num_tasks, dim)


def test_no_conflict_gives_the_mean_gradient(rng):
    J = np.abs(rng.normal(size=(3, 5)))  # all cosines positive: every g_i is in the dual cone
    update, weights, _ = run_method(UPGRAD[3], J)
    np.testing.assert_allclose(weights, 1 / 3, rtol=1e-5)
    np.testing.assert_allclose(update, J.mean(axis=0), rtol=1e-5)


def test_permutation_and_common_scale(rng):
    J = random_jacobian(rng, 4, 7)
    weights = assert_permutes_with_tasks(UPGRAD[4], J)
    _, weights_s, _ = run_method(UPGRAD[4], 1e-3 * J)
    np.testing.assert_allclose(weights_s, weights, rtol=1e-4, atol=1e-6)


def test_zero_gradient_neither_contributes_nor_constrains(rng):
    # the two other tasks get what UPGrad gives them alone (scaled by 2/3 for the mean)
    assert_zero_gradient_is_ignored(
        EXACT[3], UPGRAD[3], rng, lambda J: reference_upgrad_weights(J, 0.0)
    )


def test_metric_mask_selects_leaves(rng):
    J = rng.normal(size=(3, 5))
    _, weights, _ = run_method(upgrad(3, metric_mask={"a": True, "b": False}), J)
    np.testing.assert_allclose(weights, reference_upgrad_weights(J[:, :2], 1e-4), rtol=1e-3)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(upgrad(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="reg_eps must be >= 0"):
        upgrad(2, reg_eps=-1.0)
