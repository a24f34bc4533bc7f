"""GradVac: against a float64 numpy implementation on the raw vectors, with the same orders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan

import autoscale_jax as asj
from autoscale_jax.methods._projections import random_task_orders
from autoscale_jax.methods.gradvac import gradvac, gradvac_surgery
from autoscale_jax.methods.pcgrad import pcgrad

MAX_ABS_TARGET = 1 - 1e-4  # the documented clip of the target inside the correction


def numpy_gradvac(J, targets, orders, beta):
    """Wang et al's Algorithm 1 on the raw vectors in float64.

    Returns the update, the EMA targets after the step and the corrected task gradients.
    """
    J = np.asarray(J, np.float64)
    new_targets = np.array(targets, np.float64)
    corrected = []
    for i in range(J.shape[0]):
        g = J[i].copy()
        for j in orders[i]:
            norm_i, norm_j = np.linalg.norm(g), np.linalg.norm(J[j])
            if j == i or norm_i == 0 or norm_j == 0:
                continue
            phi = np.clip(g @ J[j] / (norm_i * norm_j), -1, 1)
            target = targets[i][j]
            if phi < target:
                t = np.clip(target, -MAX_ABS_TARGET, MAX_ABS_TARGET)
                coef = norm_i * (t * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - t**2))
                g = g + coef / (norm_j * np.sqrt(1 - t**2)) * J[j]
            new_targets[i, j] = (1 - beta) * target + beta * phi
        corrected.append(g)
    return np.sum(corrected, axis=0), new_targets, np.array(corrected)


def flat(update: dict) -> np.ndarray:
    return np.concatenate([np.asarray(update["a"]).ravel(), np.asarray(update["b"]).ravel()])


def close(actual, expected, rtol=2e-4):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_torchjd_jacobian_first_step_is_pcgrad():
    tx = gradvac(2)
    update, state = tx.update(as_task_grads(TORCHJD_JACOBIAN), tx.init(None), key=jax.random.key(0))
    # Targets start at 0, where the vaccine is exactly PCGrad's projection.
    close(flat(update), [0.5847953, 3.8011696, 3.8011696], rtol=1e-5)
    cosine = -22 / np.sqrt(18 * 38)
    np.testing.assert_allclose(state.memory, 0.01 * cosine * (1 - np.eye(2)), rtol=1e-5)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_first_step_equals_pcgrad_with_same_key(rng, num_tasks, dim):
    J = random_jacobian(rng, num_tasks, dim)
    key = jax.random.key(11)
    vac = gradvac(num_tasks)
    pc = pcgrad(num_tasks)
    update_vac, state_vac = vac.update(as_task_grads(J), vac.init(None), key=key)
    update_pc, state_pc = pc.update(as_task_grads(J), pc.init(None), key=key)
    close(flat(update_vac), flat(update_pc), rtol=1e-5)
    close(state_vac.task_weights, state_pc.task_weights, rtol=1e-5)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_steps_match_numpy_reference(rng, num_tasks, dim):
    base = random_jacobian(rng, num_tasks, dim)
    beta = 0.5  # a fast EMA so the targets matter within a few steps
    tx = gradvac(num_tasks, beta=beta)
    update_fn = jax.jit(lambda g, s, k: tx.update(g, s, key=k))
    state = tx.init(None)
    targets = np.zeros((num_tasks, num_tasks))
    corrections = 0
    for step in range(4):
        J = base + 0.5 * rng.normal(size=base.shape) * np.abs(base).max(axis=1, keepdims=True)
        key = jax.random.key(step)
        orders = np.asarray(random_task_orders(key, num_tasks))
        expected, targets_next, _ = numpy_gradvac(J, targets, orders, beta)
        corrections += np.sum(targets > 0)  # positive targets: corrections beyond PCGrad
        update, state = update_fn(as_task_grads(J), state, key)
        close(flat(update), expected)
        close(np.asarray(asj.task_weights(state)) @ J, expected)
        np.testing.assert_allclose(state.memory, targets_next, atol=1e-5)
        targets = np.asarray(state.memory, np.float64)
    assert corrections > 0


def test_correction_reaches_the_target_exactly(rng):
    J = random_jacobian(rng, 2, 6)
    targets = jnp.array([[0.0, 0.5], [0.3, 0.0]])
    G = jnp.asarray(J @ J.T, jnp.float32)
    surgery = gradvac_surgery(G, targets, jnp.array([[0, 1], [1, 0]]))
    corrected = np.asarray(surgery.coefficients, np.float64) @ J
    for i, j in [(0, 1), (1, 0)]:
        cosine = corrected[i] @ J[j] / np.linalg.norm(corrected[i]) / np.linalg.norm(J[j])
        initial = J[i] @ J[j] / np.linalg.norm(J[i]) / np.linalg.norm(J[j])
        if initial < targets[i, j]:
            np.testing.assert_allclose(cosine, targets[i, j], atol=1e-5)
        else:
            np.testing.assert_allclose(corrected[i], J[i], rtol=1e-6)
    _, _, reference = numpy_gradvac(J, np.asarray(targets), [[0, 1], [1, 0]], 0.0)
    close(corrected, reference)


def test_beta_zero_is_pcgrad_at_every_step(rng):
    vac, pc = gradvac(3, beta=0.0), pcgrad(3)
    state_vac, state_pc = vac.init(None), pc.init(None)
    for step in range(3):
        grads = as_task_grads(random_jacobian(rng, 3, 6))
        key = jax.random.key(step)
        update_vac, state_vac = vac.update(grads, state_vac, key=key)
        update_pc, state_pc = pc.update(grads, state_pc, key=key)
        close(flat(update_vac), flat(update_pc), rtol=1e-5)
    np.testing.assert_array_equal(state_vac.memory, 0.0)


def test_zero_gradient_task_is_finite_and_keeps_its_targets(rng):
    J = random_jacobian(rng, 3, 6)
    J[2] = 0.0
    tx = gradvac(3, beta=0.5)
    state = tx.init(None)._replace(memory=jnp.full((3, 3), 0.2))
    key = jax.random.key(4)
    update, new_state = tx.update(as_task_grads(J), state, key=key)
    assert np.all(np.isfinite(flat(update)))
    np.testing.assert_allclose(new_state.memory[2], 0.2)
    np.testing.assert_allclose(new_state.memory[:, 2], 0.2)
    orders = np.asarray(random_task_orders(key, 3))
    expected, targets, _ = numpy_gradvac(J, np.full((3, 3), 0.2), orders, 0.5)
    close(flat(update), expected)
    np.testing.assert_allclose(new_state.memory, targets, atol=1e-6)


def test_target_near_one_gives_a_finite_correction(rng):
    tx = gradvac(2, beta=1.0)
    same = random_jacobian(rng, 1, 5)
    _, state = tx.update(
        as_task_grads(np.vstack([same, same])), tx.init(None), key=jax.random.key(0)
    )
    np.testing.assert_allclose(state.memory[0, 1], 1.0, atol=1e-6)
    J = random_jacobian(rng, 2, 5)
    update, state = tx.update(as_task_grads(J), state, key=jax.random.key(1))
    assert np.all(np.isfinite(flat(update))) and np.all(np.isfinite(state.task_weights))
    expected, _, _ = numpy_gradvac(J, np.ones((2, 2)), [[0, 1], [0, 1]], 1.0)
    close(flat(update), expected, rtol=1e-3)


def test_jit_compiles_once_and_nan_keeps_state(rng):
    assert_compiles_once_and_survives_nan(gradvac(3, beta=0.5), 3, rng)


def test_checks_arguments(rng):
    grads = as_task_grads(random_jacobian(rng, 2, 4))
    with pytest.raises(ValueError, match="PRNG key"):
        gradvac(2).update(grads, gradvac(2).init(None))
    with pytest.raises(ValueError, match="beta"):
        gradvac(2, beta=1.5)
