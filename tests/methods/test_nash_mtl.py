"""Nash-MTL: the bargaining condition (Gα)_k = 1/α_k in float64, invariances and the cheap
``update_every`` variant with its fast path."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, flat, run_method

import autoscale_jax as asj
from autoscale_jax.methods.nash_mtl import nash_mtl

NASH = {num_tasks: nash_mtl(num_tasks) for num_tasks in (2, 3, 4)}


def test_torchjd_jacobian():
    update, alpha, state = run_method(NASH[2], TORCHJD_JACOBIAN)
    G = TORCHJD_JACOBIAN @ TORCHJD_JACOBIAN.T
    np.testing.assert_allclose(G @ alpha, 1 / alpha, rtol=1e-4)
    # ||d||² = αᵀGα = Σ_k α_k (1/α_k) = K
    np.testing.assert_allclose(update @ update, 2.0, rtol=1e-4)
    # TorchJD documents [0.0542, 0.7061, 0.7061] for its port of the official code, which clips
    # the update to norm 1: the same direction.
    np.testing.assert_allclose(update / np.linalg.norm(update), [0.0542, 0.7061, 0.7061], atol=2e-4)
    assert bool(state.solver_converged)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_bargaining_condition_in_float64(rng, num_tasks, dim):
    for _ in range(3):
        J = random_jacobian(rng, num_tasks, dim)
        update, alpha, state = run_method(NASH[num_tasks], J)
        assert bool(state.solver_converged) and np.all(alpha > 0)
        # every task improves by exactly 1/α_k: <g_k, d> = (Gα)_k = 1/α_k
        np.testing.assert_allclose((J @ J.T @ alpha) * alpha, 1.0, rtol=2e-3)
        np.testing.assert_allclose(J @ update, 1 / alpha, rtol=2e-3)


def test_two_equal_norm_tasks_hand_derived():
    # norms n, cosine ρ: n²(1 + ρ) α = 1/α, so α = 1 / (n sqrt(1 + ρ)) for both tasks.
    n, rho = 3.0, -0.6
    J = n * np.array([[1.0, 0.0, 0.0], [rho, np.sqrt(1 - rho**2), 0.0]])
    _, alpha, _ = run_method(NASH[2], J)
    np.testing.assert_allclose(alpha, 1 / (n * np.sqrt(1 + rho)), rtol=1e-4)


def test_update_invariant_to_rescaling_each_task(rng):
    J = rng.normal(size=(3, 5))
    scales = np.array([1e-3, 5.0, 300.0])
    update, alpha, _ = run_method(NASH[3], J)
    update_s, alpha_s, _ = run_method(NASH[3], J * scales[:, None])
    np.testing.assert_allclose(update_s, update, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(alpha_s, alpha / scales, rtol=1e-4)


def test_permutation_equivariance():
    checks.assert_permutation_equivariant(lambda: nash_mtl(4))


def test_zero_gradient_gets_zero_weight(rng):
    J = rng.normal(size=(3, 5))
    J[1] = 0.0
    update, alpha, _ = run_method(NASH[3], J)
    _, alpha_without, _ = run_method(NASH[2], J[[0, 2]])
    assert alpha[1] == 0.0 and np.all(np.isfinite(update))
    np.testing.assert_allclose(alpha[[0, 2]], alpha_without, rtol=1e-5)
    # exactly opposite gradients: the exact weights are unbounded; the ridge keeps them finite.
    _, alpha, _ = run_method(NASH[2], np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]]))
    assert np.all(np.isfinite(alpha)) and np.all(alpha > 0)


def test_update_every_reuses_the_weights(rng):
    tx = nash_mtl(3, update_every=3)
    update = jax.jit(tx.update)
    state = tx.init(None)
    history = []
    for step in range(7):
        J = random_jacobian(rng, 3, 5)
        out, state = update(as_task_grads(J), state)
        alpha = np.asarray(asj.task_weights(state), np.float64)
        history.append(alpha)
        np.testing.assert_allclose(flat(out), alpha @ J, rtol=1e-4, atol=1e-6 * np.abs(J).max())
        if step % 3 == 0:  # a solve step: the condition holds for this step's gradients
            np.testing.assert_allclose((J @ J.T @ alpha) * alpha, 1.0, rtol=2e-3)
        else:
            np.testing.assert_array_equal(alpha, history[-2])
        assert tx.fast_path.needs_task_gradients(state) == ((step + 1) % 3 == 0)
    assert int(state.step) == 7 and update._cache_size() == 1


def test_fast_path_matches_the_chain():
    checks.assert_fast_path_matches_chain(lambda: nash_mtl(3, update_every=2))
    assert nash_mtl(3).fast_path is None


def test_presummed_only_between_solves(rng):
    tx = nash_mtl(2, update_every=2)
    J = random_jacobian(rng, 2, 5)
    _, state = tx.update(as_task_grads(J), tx.init(None))
    summed = asj.weighted_sum(as_task_grads(J), state.task_weights)
    out, next_state = tx.update(summed, state, presummed=True)
    jax.tree.map(np.testing.assert_array_equal, out, summed)
    assert int(next_state.step) == 2
    poisoned, _ = tx.update(summed, next_state, presummed=True)  # a solve step
    assert np.all(np.isnan(flat(poisoned)))


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(nash_mtl(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="update_every"):
        nash_mtl(2, update_every=0)
    with pytest.raises(ValueError, match="leading task axis"):
        nash_mtl(3).update({"w": jnp.ones((2, 3))}, nash_mtl(3).init(None))
