"""The multi-task contract helpers: validation, combination, weights lookup."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autoscale_jax as asj
from autoscale_jax import base


def test_weighted_sum_against_numpy_and_keeps_dtype():
    grads = {
        "a": jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], jnp.bfloat16),
        "b": jnp.arange(3.0),
    }
    out = base.weighted_sum(grads, jnp.array([1.0, 0.5, -1.0]))
    np.testing.assert_allclose(np.asarray(out["a"], np.float32), [1 + 1.5 - 5, 2 + 2 - 6])
    assert out["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(out["b"], 0 + 0.5 - 2)


def test_task_weights_lookup_through_wrappers():
    params = {"w": jnp.zeros(2)}
    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    chain = optax.chain(injected, asj.fixed_weights([3.0, 1.0]))
    np.testing.assert_allclose(asj.task_weights(chain.init(params)), [3.0, 1.0])
    np.testing.assert_allclose(asj.task_weights({"opt": [chain.init(params)]}), [3.0, 1.0])
    with pytest.raises(ValueError, match="No multi-task state"):
        asj.task_weights(injected.init(params))
