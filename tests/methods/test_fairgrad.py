"""FairGrad: the optimality condition Gw = w^{-1/α} in float64, α-fair optimality of the update,
closed forms and Nash-MTL at α = 1."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method

import autoscale_jax as asj
from autoscale_jax.methods.fairgrad import fairgrad
from autoscale_jax.methods.nash_mtl import nash_mtl

ALPHAS = (0.5, 1.0, 2.0, 5.0)
FAIR = {alpha: fairgrad(3, alpha=alpha) for alpha in ALPHAS}


def fair_utility(utilities: np.ndarray, alpha: float) -> np.ndarray:
    """Σ_k u_k^{1-α}/(1-α) (Σ log u_k for α = 1), along the last axis."""
    if alpha == 1.0:
        return np.sum(np.log(utilities), axis=-1)
    return np.sum(utilities ** (1 - alpha) / (1 - alpha), axis=-1)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_optimality_condition_in_float64(rng, alpha):
    for _ in range(3):
        J = random_jacobian(rng, 3, 5)
        update, w, state = run_method(FAIR[alpha], J)
        assert bool(state.solver_converged) and np.all(w > 0)
        np.testing.assert_allclose((J @ J.T @ w) * w ** (1 / alpha), 1.0, rtol=2e-3)
        np.testing.assert_allclose(update, w @ J, rtol=1e-4, atol=1e-6 * np.abs(J).max())


@pytest.mark.parametrize("alpha", [0.5, 2.0])
def test_update_maximises_the_alpha_fair_utility(rng, alpha):
    """Among directions of the same norm that improve every task, d has the best utility."""
    J = rng.normal(size=(3, 5)) * np.array([[0.5], [1.0], [2.0]])
    update, _, _ = run_method(FAIR[alpha], J)
    best = fair_utility(J @ update, alpha)
    candidates = update + 0.3 * np.linalg.norm(update) * rng.normal(size=(4000, 5))
    candidates *= np.linalg.norm(update) / np.linalg.norm(candidates, axis=1, keepdims=True)
    utilities = candidates @ J.T
    feasible = np.all(utilities > 0, axis=1)
    assert feasible.sum() > 100
    assert np.all(fair_utility(utilities[feasible], alpha) <= best + 1e-6 * abs(best))


@pytest.mark.parametrize("alpha", ALPHAS)
def test_orthogonal_closed_form(alpha):
    # G = diag(n²): n_k² w_k = w_k^{-1/α}, so w_k = n_k^{-2α/(1+α)}.
    norms = np.array([0.2, 1.0, 40.0])
    _, w, _ = run_method(FAIR[alpha], np.diag(norms) @ np.eye(3, 5))
    np.testing.assert_allclose(w, norms ** (-2 * alpha / (1 + alpha)), rtol=1e-4)


def test_alpha_one_is_nash_mtl(rng):
    J = random_jacobian(rng, 3, 5)
    update, w, _ = run_method(FAIR[1.0], J)
    update_nash, w_nash, _ = run_method(nash_mtl(3), J)
    np.testing.assert_allclose(w, w_nash, rtol=1e-6)
    np.testing.assert_allclose(update, update_nash, rtol=1e-6)


def test_two_equal_norm_tasks_get_equal_weights():
    J = TORCHJD_JACOBIAN.copy()
    J[1] *= np.linalg.norm(J[0]) / np.linalg.norm(J[1])
    _, w, _ = run_method(fairgrad(2, alpha=2.0), J)
    np.testing.assert_allclose(w[0], w[1], rtol=1e-5)


def test_permutation_equivariance(rng):
    assert_permutes_with_tasks(FAIR[2.0], random_jacobian(rng, 3, 5))


def test_zero_gradient_gets_zero_weight(rng):
    J = rng.normal(size=(3, 5))
    J[0] = 0.0
    update, w, _ = run_method(FAIR[2.0], J)
    assert w[0] == 0.0 and np.all(np.isfinite(update)) and np.all(w[1:] > 0)
    np.testing.assert_allclose((J[1:] @ J[1:].T @ w[1:]) * w[1:] ** 0.5, 1.0, rtol=2e-3)


def test_alpha_can_be_injected(rng):
    J = random_jacobian(rng, 3, 5)
    tx = optax.inject_hyperparams(fairgrad, static_args=("num_tasks",))(num_tasks=3, alpha=2.0)
    update = jax.jit(tx.update)
    state = tx.init(None)
    _, state = update(as_task_grads(J), state)
    np.testing.assert_allclose(asj.task_weights(state), run_method(FAIR[2.0], J)[1], rtol=1e-5)
    state.hyperparams["alpha"] = jnp.asarray(0.5, jnp.float32)
    _, state = update(as_task_grads(J), state)
    np.testing.assert_allclose(asj.task_weights(state), run_method(FAIR[0.5], J)[1], rtol=1e-5)
    assert update._cache_size() == 1


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(fairgrad(3, alpha=2.0), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        fairgrad(2, alpha=0.0)
