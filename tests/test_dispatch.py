"""The dispatch of a multi-task update: the typed inputs, and what reaches the method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import regression_problem

from autoscale_jax import base, dispatch


def test_update_inputs_read_the_keywords_once():
    vjp = lambda u: (u,)  # noqa: E731
    inputs = dispatch.UpdateInputs.from_keywords(
        {"task_losses": 1.0, "key": 2, "loss_vjp": vjp, "vjp_chunk_size": 3, "extra": 4}
    )
    assert inputs.task_losses == 1.0 and inputs.key == 2 and inputs.loss_vjp is vjp
    assert inputs.vjp_chunk_size == 3 and inputs.task_gradients == "auto"
    assert inputs.presummed is False and inputs.task_mask is None and inputs.task_gramian is None
    # The dispatch's own keywords never reach the method; everything else does, as given.
    assert inputs.method_keywords == {"task_losses": 1.0, "key": 2, "extra": 4}


def _recording_transformation(seen, fast_path=None):
    def update(updates, state, params=None, **keywords):
        seen.append(keywords)
        combine = (lambda g: g) if keywords.get("presummed") else (lambda g: g.sum(0))
        return jax.tree.map(combine, updates), state

    return dispatch.multitask_transformation(lambda params: (), update, fast_path)


@pytest.mark.parametrize("fast", [False, True], ids=["stacked", "presummed"])
def test_the_method_receives_its_keywords_and_the_path_it_is_on(fast):
    loss_fn, params, x, y = regression_problem()
    losses, vjp = jax.vjp(lambda p: loss_fn(p, x, y), params)
    seen = []
    fast_path = None
    if fast:
        fast_path = base.FastPath(lambda state: False, lambda state, losses, key: jnp.ones(3))
    tx = _recording_transformation(seen, fast_path)
    updates, _ = tx.update(
        params, (), params, task_losses=losses, loss_vjp=vjp, vjp_chunk_size=2, second=5
    )
    expected = {"task_losses": losses, "second": 5} | ({"presummed": True} if fast else {})
    assert seen == [expected]
    (summed,) = vjp(jnp.ones(3))
    jax.tree.map(
        lambda u, s: np.testing.assert_allclose(u, s, rtol=1e-5, atol=1e-6), updates, summed
    )


def test_the_dispatch_refuses_a_bad_task_gradients_policy():
    loss_fn, params, x, y = regression_problem()
    losses, vjp = jax.vjp(lambda p: loss_fn(p, x, y), params)
    tx = _recording_transformation([])
    with pytest.raises(ValueError, match=r"task_gradients must be one of \('auto', 'never'\)"):
        tx.update(params, (), params, task_losses=losses, loss_vjp=vjp, task_gradients="some")
