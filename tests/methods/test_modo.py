"""MoDo against a float64 numpy replay of λ ← Π(λ - γ(J₁J₂ᵀλ + ρλ)), d = Σ λ_k g_k, and its
limit: one batch repeated with ρ = 0 reaches MGDA's min-norm weights."""

import jax.numpy as jnp
import numpy as np
import pytest
from sibling_checks import (
    assert_bad_batch_keeps_the_weights,
    assert_reaches_min_norm_weights,
    run_batches,
)
from solver_references import moderate_jacobian, numpy_project

from autoscale_jax.methods.modo import modo


def run(tx, first, second, third=None):
    """Jitted updates over sequences of batches; flat updates, weights and the last state."""
    outs, weights, _, state = run_batches(tx, first, second, third)
    return outs, weights, state


def reference_modo(first, second, gamma, rho):
    K = first[0].shape[0]
    lam = np.full(K, 1.0 / K)
    outs, weights = [], []
    for J1, J2 in zip(first, second, strict=True):
        G = np.asarray(J1, np.float64) @ np.asarray(J2, np.float64).T
        lam = numpy_project(lam - gamma * (G @ lam + rho * lam))
        outs.append(lam @ J1)
        weights.append(lam)
    return np.array(outs), np.array(weights)


@pytest.mark.parametrize(("gamma", "rho"), [(1e-3, 0.1), (0.05, 0.0), (0.2, 1.0)])
def test_matches_float64_replay(gamma, rho):
    rng = np.random.default_rng(1)
    first = [moderate_jacobian(rng) for _ in range(6)]
    second = [J + 0.5 * moderate_jacobian(rng) for J in first]
    outs, weights, state = run(modo(3, gamma=gamma, rho=rho), first, second)
    ref_outs, ref_weights = reference_modo(first, second, gamma, rho)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs, ref_outs, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(state.memory, state.task_weights)
    assert np.abs(weights - 1 / 3).max() > 1e-3  # the weights moved


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_one_batch_repeated_reaches_the_min_norm_weights(rho):
    def run_repeated(J, gamma):
        return run(modo(4, gamma=gamma, rho=rho), [J] * 1500, [J] * 1500)[:2]

    assert_reaches_min_norm_weights(run_repeated, rho, seed=2)


def test_third_batch_gives_the_weights_and_first_the_update():
    rng = np.random.default_rng(3)
    first, other, second, third = ([moderate_jacobian(rng) for _ in range(4)] for _ in range(4))
    outs, weights, _ = run(modo(3, gamma=0.05), first, second, third)
    _, weights_other, _ = run(modo(3, gamma=0.05), other, second, third)
    np.testing.assert_array_equal(weights, weights_other)
    _, ref_weights = reference_modo(second, third, 0.05, 0.1)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs, np.einsum("tk,tkp->tp", weights, first), rtol=1e-5, atol=1e-5)


def test_permuting_tasks_permutes_weights_and_keeps_updates():
    rng = np.random.default_rng(4)
    first = [moderate_jacobian(rng, 4) for _ in range(5)]
    second = [moderate_jacobian(rng, 4) for _ in range(5)]
    perm = np.array([3, 1, 0, 2])
    tx = modo(4, gamma=0.05)
    outs, weights, _ = run(tx, first, second)
    outs_p, weights_p, _ = run(tx, [J[perm] for J in first], [J[perm] for J in second])
    np.testing.assert_allclose(weights_p, weights[:, perm], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(outs_p, outs, rtol=1e-4, atol=1e-5)


def test_nan_in_either_batch_keeps_the_weights():
    rng = np.random.default_rng(5)
    J = [moderate_jacobian(rng) for _ in range(3)]
    _, _, state = run(modo(3, gamma=0.05), J, J[::-1])
    bad = moderate_jacobian(rng)
    bad[2, 0] = np.inf
    assert_bad_batch_keeps_the_weights(modo(3, gamma=0.05), state, rng, bad)


def test_rejects_missing_second_batch_and_bad_hyperparameters():
    tx = modo(2)
    grads = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="second_task_grads=g2"):
        tx.update(grads, tx.init(None), None)
    with pytest.raises(ValueError, match="structure and shapes"):
        tx.update(grads, tx.init(None), None, second_task_grads={"v": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(3)}, tx.init(None), None, presummed=True)
    for kwargs in ({"gamma": 0.0}, {"rho": -0.5}, {"heads": "own"}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            modo(2, **kwargs)
