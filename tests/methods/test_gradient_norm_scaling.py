"""Gradient-norm scaling: every weighted task gradient gets the common norm S, each step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.gradient_norm_scaling import gradient_norm_scaling


def test_weights_equalise_norms_against_numpy(rng):
    J = rng.normal(size=(3, 6)) * np.array([[0.1], [1.0], [30.0]])
    grads = {"a": jnp.asarray(J[:, :2], jnp.float32), "b": jnp.asarray(J[:, 2:], jnp.float32)}
    params = {"a": jnp.zeros(2), "b": jnp.zeros(4)}
    tx = gradient_norm_scaling(3)
    updates, state = jax.jit(lambda g, s: tx.update(g, s, params))(grads, tx.init(params))
    norms = np.linalg.norm(J, axis=1)
    expected_w = norms.mean() / norms
    np.testing.assert_allclose(asj.task_weights(state), expected_w, rtol=1e-5)
    np.testing.assert_allclose(updates["b"], expected_w @ J[:, 2:], rtol=1e-4, atol=1e-5)


def test_target_norm_and_mask(rng):
    grads = {"trunk": jnp.array([[3.0, 4.0], [0.0, 1.0]]), "head": jnp.array([[0.0], [100.0]])}
    params = {"trunk": jnp.zeros(2), "head": jnp.zeros(1)}
    tx = gradient_norm_scaling(2, target_norm=2.0, metric_mask="shared")
    _, state = tx.update(grads, tx.init(params), params)
    # measured on the trunk only: norms 5 and 1.
    np.testing.assert_allclose(asj.task_weights(state), [0.4, 2.0], rtol=1e-6)


def test_permutation_and_zero_gradient(rng):
    J = rng.normal(size=(3, 4))
    params = {"w": jnp.zeros(4)}
    tx = gradient_norm_scaling(3)
    perm = np.array([1, 2, 0])
    _, s = tx.update({"w": jnp.asarray(J, jnp.float32)}, tx.init(params), params)
    _, sp = tx.update({"w": jnp.asarray(J[perm], jnp.float32)}, tx.init(params), params)
    np.testing.assert_allclose(
        asj.task_weights(sp), np.asarray(asj.task_weights(s))[perm], rtol=1e-6
    )
    J[1] = 0.0
    updates, s = tx.update({"w": jnp.asarray(J, jnp.float32)}, tx.init(params), params)
    assert np.all(np.isfinite(asj.task_weights(s))) and np.all(np.isfinite(updates["w"]))


def test_rejects_wrong_task_axis():
    tx = gradient_norm_scaling(3)
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params)
