"""PCGrad: against a float64 numpy implementation on the raw gradient vectors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan, flat

import autoscale_jax as asj
from autoscale_jax.methods._projections import random_task_orders
from autoscale_jax.methods.pcgrad import pcgrad, pcgrad_weights


def numpy_pcgrad(J: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Yu et al's Algorithm 1 on the raw vectors, with the given visiting orders, in float64."""
    J = np.asarray(J, np.float64)
    total = np.zeros(J.shape[1])
    for i in range(J.shape[0]):
        g = J[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            inner = g @ J[j]
            if inner < 0:
                g = g - inner / (J[j] @ J[j]) * J[j]
        total += g
    return total


def make_conflict(J: np.ndarray) -> np.ndarray:
    """Reflects task 1 across the normal plane of task 0 when needed, so <g_0, g_1> < 0."""
    J = J.copy()
    inner = J[0] @ J[1]
    if inner > 0:
        J[1] -= 2 * inner / (J[0] @ J[0]) * J[0]
    return J


def run_pcgrad(J: np.ndarray, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    tx = pcgrad(J.shape[0])
    update, state = tx.update(as_task_grads(J), tx.init(None), key=key)
    return flat(update), np.asarray(asj.task_weights(state))


def test_torchjd_jacobian_hand_derived():
    # <g1, g2> = -22, ||g1||² = 18, ||g2||² = 38: each task adds the other's projection.
    update, weights = run_pcgrad(TORCHJD_JACOBIAN, jax.random.key(0))
    np.testing.assert_allclose(weights, [1 + 22 / 18, 1 + 22 / 38], rtol=1e-6)
    np.testing.assert_allclose(update, [0.5847953, 3.8011696, 3.8011696], rtol=1e-5)
    np.testing.assert_allclose(update, numpy_pcgrad(TORCHJD_JACOBIAN, [[0, 1], [0, 1]]), rtol=1e-5)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (6, 9)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_reference_with_same_orders(rng, num_tasks, dim, seed):
    J = random_jacobian(rng, num_tasks, dim)
    key = jax.random.key(seed)
    update, weights = run_pcgrad(J, key)
    expected = numpy_pcgrad(J, np.asarray(random_task_orders(key, num_tasks)))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-5 * scale)
    # The state's weights reproduce the update: Σ_k w_k g_k.
    np.testing.assert_allclose(weights @ J, expected, rtol=1e-4, atol=1e-5 * scale)


def test_explicit_orders_matter_and_match_reference():
    # Three tasks where the order of projections changes the result.
    J = np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-0.5, -1.0, 1.0]])
    G = jnp.asarray(J @ J.T, jnp.float32)
    order_a = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    order_b = np.array([[2, 1, 0], [2, 1, 0], [2, 1, 0]])
    w_a = np.asarray(pcgrad_weights(G, jnp.asarray(order_a)))
    w_b = np.asarray(pcgrad_weights(G, jnp.asarray(order_b)))
    np.testing.assert_allclose(w_a @ J, numpy_pcgrad(J, order_a), atol=1e-6)
    np.testing.assert_allclose(w_b @ J, numpy_pcgrad(J, order_b), atol=1e-6)
    assert not np.allclose(w_a, w_b)


def test_random_orders_are_permutations():
    orders = np.asarray(random_task_orders(jax.random.key(3), 5))
    assert orders.shape == (5, 5)
    for row in orders:
        assert sorted(row) == list(range(5))


@pytest.mark.parametrize("seed", range(3))
def test_two_tasks_output_conflicts_with_neither(seed):
    rng = np.random.default_rng(seed)
    J = make_conflict(random_jacobian(rng, 2, 6))
    assert J[0] @ J[1] < 0
    update, _ = run_pcgrad(J, jax.random.key(seed))
    scale = np.linalg.norm(update) * np.linalg.norm(J, axis=1)
    assert np.all(J @ update >= -1e-5 * scale)


def test_no_conflict_is_the_plain_sum(rng):
    J = np.abs(random_jacobian(rng, 3, 5))  # all inner products positive
    update, weights = run_pcgrad(J, jax.random.key(0))
    np.testing.assert_allclose(weights, np.ones(3))
    np.testing.assert_allclose(update, J.sum(axis=0), rtol=1e-5)


def test_two_tasks_permuting_tasks_permutes_weights(rng):
    # With K = 2 the visiting order is irrelevant, so PCGrad is deterministic.
    J = make_conflict(random_jacobian(rng, 2, 5))
    update, weights = run_pcgrad(J, jax.random.key(0))
    update_p, weights_p = run_pcgrad(J[::-1].copy(), jax.random.key(1))
    np.testing.assert_allclose(weights_p, weights[::-1], rtol=1e-5)
    np.testing.assert_allclose(update_p, update, rtol=1e-5, atol=1e-6 * np.abs(update).max())


def test_zero_gradient_task_is_finite_and_ignored(rng):
    J = random_jacobian(rng, 3, 6)
    J[1] = 0.0
    key = jax.random.key(4)
    update, weights = run_pcgrad(J, key)
    assert np.all(np.isfinite(update)) and np.all(np.isfinite(weights))
    expected = numpy_pcgrad(J, np.asarray(random_task_orders(key, 3)))
    np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_jit_compiles_once_and_nan_keeps_state(rng):
    assert_compiles_once_and_survives_nan(pcgrad(3), 3, rng)


def test_needs_a_key_and_task_gradients(rng):
    tx = pcgrad(2)
    grads = as_task_grads(random_jacobian(rng, 2, 4))
    with pytest.raises(ValueError, match="PRNG key"):
        tx.update(grads, tx.init(None))
    with pytest.raises(ValueError, match="per-task gradients"):
        tx.update(grads, tx.init(None), key=jax.random.key(0), presummed=True)
    with pytest.raises(ValueError, match="leading task axis"):
        pcgrad(3).update(grads, pcgrad(3).init(None), key=jax.random.key(0))


def test_chains_first_in_optax_and_exposes_weights(rng):
    J = random_jacobian(rng, 2, 4)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    tx = optax.chain(pcgrad(2), optax.sgd(1.0))
    state = tx.init(params)
    updates, state = tx.update(as_task_grads(J), state, params, key=jax.random.key(0))
    weights = np.asarray(asj.task_weights(state))
    np.testing.assert_allclose(-flat(updates), weights @ J, rtol=1e-5, atol=1e-6)
