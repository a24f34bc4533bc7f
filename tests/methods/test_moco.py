"""MoCo and the simplex projection against float64 numpy references: a bisection projection, a
replay of the tracking / projected-λ recursion, and an exact min-norm QP by support enumeration
(MoCo without tracking on a fixed Jacobian must reach MGDA's weights)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import as_task_grads
from method_checks import flat
from sibling_checks import assert_reaches_min_norm_weights, run_batches
from solver_references import moderate_jacobian, numpy_project

from autoscale_jax.methods.moco import moco, project_to_simplex


def run(tx, jacobians):
    """Jitted updates over a sequence; returns flat updates, the weights and the last state."""
    outs, weights, _, state = run_batches(tx, jacobians)
    return outs, weights, state


def reference_moco(jacobians, beta, beta_sigma, gamma, gamma_sigma, rho, columns=None):
    """float64: y ← y - β_t(y - g), λ ← Π(λ - γ_t (YYᵀ + ρI)λ), d = Σ λ_k y_k."""
    K, P = jacobians[0].shape
    y, lam = np.zeros((K, P)), np.full(K, 1.0 / K)
    columns = slice(None) if columns is None else columns
    outs, weights = [], []
    for t, J in enumerate(jacobians, start=1):
        y = y - beta / t**beta_sigma * (y - np.asarray(J, np.float64))
        G = y[:, columns] @ y[:, columns].T
        lam = numpy_project(lam - gamma / t**gamma_sigma * (G @ lam + rho * lam))
        outs.append(lam @ y)
        weights.append(lam)
    return np.array(outs), np.array(weights)


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_projection_matches_float64_bisection_on_a_batch(num_tasks):
    rng = np.random.default_rng(num_tasks)
    points = rng.normal(size=(40, num_tasks)) * 10 ** rng.uniform(-2, 1, (40, 1))
    points[0] = rng.dirichlet(np.ones(num_tasks))  # already on the simplex: unchanged
    projected = np.asarray(project_to_simplex(jnp.asarray(points, jnp.float32)))
    expected = np.array([numpy_project(p) for p in points])
    np.testing.assert_allclose(projected, expected, atol=2e-6 * np.abs(points).max())
    np.testing.assert_allclose(projected[0], points[0], atol=1e-6)
    assert np.all(projected >= 0)
    np.testing.assert_allclose(projected.sum(axis=1), 1.0, rtol=1e-5)


def test_projection_is_shift_invariant_and_permutation_equivariant():
    v = jnp.array([0.3, -1.2, 2.0, 0.7])
    perm = np.array([2, 0, 3, 1])
    base = np.asarray(project_to_simplex(v))
    np.testing.assert_allclose(project_to_simplex(v + 5.0), base, atol=1e-6)
    np.testing.assert_allclose(project_to_simplex(v[perm]), base[perm], atol=1e-7)
    # By hand: sorted (2, 0.7, 0.3, -1.2); only j = 1 passes (0.7 - (2.7 - 1)/2 < 0): θ = 1.
    np.testing.assert_allclose(base, [0.0, 0.0, 1.0, 0.0], atol=1e-7)
    # Two active entries: θ = (0.9 + 0.7 - 1)/2 = 0.3.
    np.testing.assert_allclose(project_to_simplex(jnp.array([2.0, 0.7])), [1.0, 0.0])
    np.testing.assert_allclose(project_to_simplex(jnp.array([0.9, 0.7])), [0.6, 0.4], rtol=1e-6)


@pytest.mark.parametrize(
    ("beta", "beta_sigma", "gamma", "gamma_sigma", "rho"),
    [(0.5, 0.5, 0.1, 0.5, 0.0), (0.3, 0.0, 0.05, 0.0, 0.2), (1.0, 0.0, 0.2, 0.5, 0.0)],
)
def test_matches_float64_replay(beta, beta_sigma, gamma, gamma_sigma, rho):
    rng = np.random.default_rng(1)
    jacobians = [moderate_jacobian(rng) for _ in range(8)]
    tx = moco(3, beta=beta, beta_sigma=beta_sigma, gamma=gamma, gamma_sigma=gamma_sigma, rho=rho)
    outs, weights, state = run(tx, jacobians)
    ref_outs, ref_weights = reference_moco(jacobians, beta, beta_sigma, gamma, gamma_sigma, rho)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outs, ref_outs, rtol=1e-4, atol=1e-5)
    assert np.abs(weights - 1 / 3).max() > 1e-2  # the weights moved: not a trivial replay
    assert int(state.step) == 8


def test_metric_mask_restricts_the_weight_problem():
    rng = np.random.default_rng(2)
    jacobians = [moderate_jacobian(rng) for _ in range(5)]
    tx = moco(3, metric_mask={"a": True, "b": False})
    outs, weights, _ = run(tx, jacobians)
    ref_outs, ref_weights = reference_moco(jacobians, 0.5, 0.5, 0.1, 0.5, 0.0, columns=slice(0, 3))
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(outs, ref_outs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rho", [0.0, 0.5])
def test_without_tracking_converges_to_the_min_norm_weights(rho):
    def run_repeated(J, gamma):
        tx = moco(4, beta=1.0, beta_sigma=0.0, gamma=gamma, gamma_sigma=0.0, rho=rho)
        return run(tx, [J] * 1500)[:2]

    assert_reaches_min_norm_weights(run_repeated, rho, seed=3)


def test_permuting_tasks_permutes_weights_and_keeps_updates():
    rng = np.random.default_rng(4)
    jacobians = [moderate_jacobian(rng, 4) for _ in range(5)]
    perm = np.array([1, 3, 0, 2])
    outs, weights, _ = run(moco(4), jacobians)
    outs_p, weights_p, _ = run(moco(4), [J[perm] for J in jacobians])
    np.testing.assert_allclose(weights_p, weights[:, perm], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(outs_p, outs, rtol=1e-4, atol=1e-5)


def test_nan_reaches_the_update_but_not_the_state():
    rng = np.random.default_rng(5)
    _, _, state = run(moco(3), [moderate_jacobian(rng) for _ in range(3)])
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
    J = moderate_jacobian(rng)
    J[1, 4] = np.nan
    out, new_state = jax.jit(moco(3).update)(as_task_grads(J), state, params)
    assert np.isnan(flat(out)).any()
    kept = (new_state.task_weights, new_state.tracked_gradients)
    jax.tree.map(np.testing.assert_array_equal, kept, (state.task_weights, state.tracked_gradients))
    assert int(new_state.step) == int(state.step) + 1


def test_keeps_leaf_dtype_and_rejects_bad_use():
    params = {"w": jnp.zeros(4, jnp.bfloat16)}
    tx = moco(2)
    state = tx.init(params)
    assert state.tracked_gradients["w"].dtype == jnp.float32
    out, _ = tx.update({"w": jnp.ones((2, 4), jnp.bfloat16)}, state, params)
    assert out["w"].dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"tx\.init\(params\)"):
        tx.init(None)
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(4)}, state, params, presummed=True)
    for bad in ({"beta": 0.0}, {"beta": 1.5}, {"gamma": 0.0}, {"rho": -1.0}, {"beta_sigma": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            moco(2, **bad)
