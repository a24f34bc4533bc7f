"""The loss-space base: weights from the losses and the method's own state."""

import jax.numpy as jnp
import numpy as np

import autoscale_jax as asj
from autoscale_jax.methods import _loss_weighting


def test_loss_weighting_keeps_previous_weights_when_the_step_is_not_finite():
    def step(state, losses, key):
        return 1.0 / losses, state

    tx = _loss_weighting.loss_weighting(2, "test", lambda: asj.FixedWeightsState(jnp.ones(2)), step)
    grads = {"w": jnp.eye(2)}
    update, state = tx.update(grads, tx.init(None), task_losses=jnp.array([2.0, 4.0]))
    np.testing.assert_allclose(update["w"], [0.5, 0.25])
    update, state = tx.update(grads, state, task_losses=jnp.array([0.0, 4.0]))  # 1/0 = inf
    np.testing.assert_allclose(state.task_weights, [0.5, 0.25])
    np.testing.assert_allclose(update["w"], [0.5, 0.25])
