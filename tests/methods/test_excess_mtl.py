"""ExcessMTL against a float64 numpy replay; weight moves toward larger excess risks."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import as_task_grads

import autoscale_jax as asj
from autoscale_jax.methods.excess_mtl import excess_mtl


def reference_excess_mtl(jacobians, step_size, eps=1e-7, columns=None):
    """float64: H += g², E = Σ g²/sqrt(H+ε) over ``columns``, r = E/E(first), EG on K·simplex."""
    k, p = jacobians[0].shape
    columns = np.arange(p) if columns is None else columns
    H, weights, initial = np.zeros((k, len(columns))), np.ones(k), None
    all_weights, updates = [], []
    for J in jacobians:
        g = np.asarray(J, np.float64)[:, columns]
        H += g**2
        excess = np.sum(g**2 / np.sqrt(H + eps), axis=1)
        initial = excess if initial is None else initial
        weights = weights * np.exp(step_size * excess / initial)
        weights = k * weights / weights.sum()
        all_weights.append(weights)
        updates.append(weights @ np.asarray(J, np.float64))
    return np.array(all_weights), np.array(updates)


def drifting_jacobians(num_steps, num_tasks=3, dim=8, seed=0):
    """A fixed Jacobian with per-step, per-task gradient scales, so excess ratios differ."""
    rng = np.random.default_rng(seed)
    base_j = rng.normal(size=(num_tasks, dim)) * 10.0 ** rng.uniform(-1, 1, (num_tasks, 1))
    trends = rng.uniform(-0.3, 0.3, num_tasks)
    return [
        base_j * np.exp(trends * t)[:, None] * rng.uniform(0.7, 1.3, (num_tasks, dim))
        for t in range(num_steps)
    ]


def run(tx, jacobians):
    """Runs jitted updates; returns the weights and flat updates per step and the last state."""
    grads = [as_task_grads(J) for J in jacobians]
    combined, weights, state = checks.run_updates(tx, grads, [None] * len(grads))
    return weights, np.array([checks.flat(c) for c in combined]), state


@pytest.mark.parametrize("step_size", [1e-2, 0.5])
def test_matches_float64_replay(step_size):
    jacobians = drifting_jacobians(8)
    weights, updates, state = run(excess_mtl(3, step_size=step_size), jacobians)
    expected_w, expected_u = reference_excess_mtl(jacobians, step_size)
    np.testing.assert_allclose(weights, expected_w, rtol=2e-5)
    scale = np.abs(expected_u).max()
    np.testing.assert_allclose(updates, expected_u, rtol=1e-4, atol=1e-5 * scale)
    assert np.ptp(weights[-1]) > (0.01 if step_size < 0.1 else 0.5)
    np.testing.assert_allclose(weights.sum(axis=1), 3.0, rtol=1e-6)
    assert np.all(weights > 0)
    assert int(state.step) == 8


def test_hand_derived_two_steps():
    # Step 1: r = 1 for both tasks, weights stay 1. Step 2: task 0's gradient doubles, so
    # H_0 = 5 g², E_0 = 4 g²/(√5 |g|) and r_0 = 4/√5; task 1 repeats: r_1 = 1/√2.
    g = np.array([[1.0, -2.0, 0.5, 3.0], [0.5, 1.0, -1.0, 2.0]])
    tx = excess_mtl(2, step_size=1.0, metric_mask=None, eps=1e-12)
    weights, updates, _ = run(tx, [g, g * np.array([[2.0], [1.0]])])
    np.testing.assert_allclose(weights[0], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(updates[0], g.sum(axis=0), rtol=1e-6)
    logits = np.array([4 / np.sqrt(5), 1 / np.sqrt(2)])
    np.testing.assert_allclose(weights[1], 2 * np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_task_with_larger_excess_risk_gains_weight():
    # Task 0's gradient grows (further from convergence), task 1's shrinks.
    rng = np.random.default_rng(1)
    g = rng.normal(size=(2, 6))
    jacobians = [g * np.array([[1.2**t], [0.8**t]]) for t in range(6)]
    weights, _, _ = run(excess_mtl(2, step_size=0.5, metric_mask=None), jacobians)
    assert np.all(np.diff(weights[:, 0]) > 0)
    assert np.all(np.diff(weights[:, 1]) < 0)
    np.testing.assert_allclose(weights.sum(axis=1), 2.0, rtol=1e-6)


def test_metric_mask_selects_the_leaves_that_count():
    jacobians = drifting_jacobians(5, dim=8, seed=2)
    tx = excess_mtl(3, step_size=0.5, metric_mask={"a": True, "b": False})
    weights, updates, state = run(tx, jacobians)
    expected_w, expected_u = reference_excess_mtl(jacobians, 0.5, columns=np.arange(4))
    np.testing.assert_allclose(weights, expected_w, rtol=2e-5)
    # Every leaf gets the weighted sum, counted or not; uncounted leaves accumulate nothing.
    np.testing.assert_allclose(updates, expected_u, rtol=1e-4, atol=1e-5 * np.abs(expected_u).max())
    assert not np.any(np.asarray(state.squared_gradient_sums["b"]))


def test_default_mask_leaves_out_a_task_head():
    # Leaf "b" is nonzero for task 0 only (a head): the default "shared" mask drops it.
    jacobians = drifting_jacobians(4, dim=8, seed=3)
    for J in jacobians:
        J[1:, 4:] = 0.0
    weights, _, _ = run(excess_mtl(3, step_size=0.5), jacobians)
    expected_w, _ = reference_excess_mtl(jacobians, 0.5, columns=np.arange(4))
    np.testing.assert_allclose(weights, expected_w, rtol=2e-5)
    all_leaves, _, _ = run(excess_mtl(3, step_size=0.5, metric_mask=None), jacobians)
    assert not np.allclose(all_leaves, weights, rtol=1e-3)


def test_zero_gradient_task_waits_for_its_reference():
    g = np.array([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    jacobians = [g, g, g + np.array([[0.0], [1.0]])]
    weights, _, state = run(excess_mtl(2, step_size=1.0, metric_mask=None, eps=1e-12), jacobians)
    assert np.all(np.isfinite(weights))
    # Steps 1, 2: r = (1, 0), (1/√2, 0); step 3: task 1 gets its first estimate, r_1 = 1.
    np.testing.assert_allclose(state.initial_excess, [np.abs(g[0]).sum(), 4.0], rtol=1e-5)
    logits = np.array([1.0 + 1 / np.sqrt(2) + 1 / np.sqrt(3), 0.0 + 0.0 + 1.0])
    np.testing.assert_allclose(weights[-1], 2 * np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_permutation_equivariant():
    checks.assert_permutation_equivariant(lambda: excess_mtl(4, step_size=0.5))


def test_jit_compiles_once_and_nan_propagates():
    jacobians = drifting_jacobians(4)
    tx = excess_mtl(3, step_size=0.5)
    params = {"a": jnp.zeros(4), "b": jnp.zeros(4)}
    update = jax.jit(tx.update)
    state = tx.init(params)
    for J in jacobians[:3]:
        _, state = update(as_task_grads(J), state, params)
    bad = jacobians[3].copy()
    bad[1, 2] = np.nan
    out, new_state = update(as_task_grads(bad), state, params)
    assert update._cache_size() == 1
    assert np.isnan(checks.flat(out)).any()
    kept = new_state._replace(step=state.step)
    jax.tree.map(np.testing.assert_array_equal, kept, state)
    assert int(new_state.step) == int(state.step) + 1
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_state))


def test_rejects_bad_hyper_parameters_and_calls():
    with pytest.raises(ValueError, match="step_size"):
        excess_mtl(2, step_size=0.0)
    with pytest.raises(ValueError, match="eps"):
        excess_mtl(2, eps=-1e-7)
    tx = excess_mtl(2)
    with pytest.raises(ValueError, match="parameters"):
        tx.init(None)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(2)}, tx.init(params), params, presummed=True)
    with pytest.raises(ValueError, match="leading task axis"):
        tx.update({"w": jnp.ones((3, 2))}, tx.init(params), params)
    assert tx.fast_path is None
    assert asj.task_weights(tx.init(params)).shape == (2,)
