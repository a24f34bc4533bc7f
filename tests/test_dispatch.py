"""The dispatch of a multi-task update: the typed inputs, and what reaches the method."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj
from autoscale_jax import base, dispatch


def test_update_inputs_read_the_keywords_once():
    vjp = lambda u: (u,)  # noqa: E731
    inputs = dispatch.UpdateInputs.from_keywords(
        {"task_losses": 1.0, "key": 2, "loss_vjp": vjp, "vjp_chunk_size": 3, "extra": 4}
    )
    assert inputs.task_losses == 1.0 and inputs.key == 2 and inputs.loss_vjp is vjp
    assert inputs.vjp_chunk_size == 3 and inputs.task_gradients == "auto"
    assert inputs.presummed is False and inputs.task_mask is None and inputs.task_gramian is None
    # A keyword that is not a field is a method's own input, kept by name.
    assert inputs.method_inputs == {"extra": 4}
    # The typed form is the object itself.
    assert dispatch.UpdateInputs.from_keywords({"inputs": inputs}) is inputs
    # The method never sees the dispatch's own fields.
    method = inputs.for_method(presummed=True)
    assert method == dispatch.UpdateInputs(
        task_losses=1.0, key=2, presummed=True, method_inputs={"extra": 4}
    )


@pytest.mark.parametrize(
    "keywords",
    [
        pytest.param({"inputs": {"task_losses": 1.0}}, id="a_dict"),
        pytest.param({"inputs": dispatch.UpdateInputs(), "key": 1}, id="with_loose_keywords"),
    ],
)
def test_the_typed_form_is_one_update_inputs_alone(keywords):
    with pytest.raises(ValueError, match=r"update\(\.\.\., inputs=\.\.\.\) takes one"):
        dispatch.UpdateInputs.from_keywords(keywords)


def _recording_transformation(seen, fast_path=None):
    def update(updates, state, params, inputs):
        seen.append(inputs)
        combine = (lambda g: g) if inputs.presummed else (lambda g: g.sum(0))
        return jax.tree.map(combine, updates), state

    return dispatch.multitask_transformation(lambda params: (), update, fast_path)


@pytest.mark.parametrize("fast", [False, True], ids=["stacked", "presummed"])
@pytest.mark.parametrize("typed", [False, True], ids=["keywords", "typed"])
def test_the_method_receives_its_inputs_and_the_path_it_is_on(fast, typed):
    loss_fn, params, x, y = regression_problem()
    losses, vjp = jax.vjp(lambda p: loss_fn(p, x, y), params)
    seen = []
    fast_path = None
    if fast:
        fast_path = base.FastPath(lambda state: False, lambda state, losses, key: jnp.ones(3))
    tx = _recording_transformation(seen, fast_path)
    keywords = {"task_losses": losses, "loss_vjp": vjp, "vjp_chunk_size": 2, "second": 5}
    if typed:
        keywords = {"inputs": dispatch.UpdateInputs.from_keywords(keywords)}
    updates, _ = tx.update(params, (), params, **keywords)
    expected = dispatch.UpdateInputs(
        task_losses=losses, presummed=fast, method_inputs={"second": 5}
    )
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


_WRAPPED = {
    "autoscale": lambda: asj.autoscale(3, 2, window=1),
    "freeze": lambda: asj.methods.freeze(asj.methods.get("mgda", num_tasks=3), 2),
    "cr_mogm": lambda: asj.methods.cr_mogm(asj.methods.get("mgda", num_tasks=3)),
    "multi_steps": lambda: asj.multi_steps(
        optax.chain(asj.autoscale(3, 2, window=1), optax.sgd(0.1)), 2, 3
    ),
    "apply_if_finite": lambda: asj.accumulation.apply_if_finite(
        optax.chain(asj.autoscale(3, 2, window=1), optax.sgd(0.1)), 1
    ),
}


@pytest.mark.parametrize("name", list(_WRAPPED))
def test_the_typed_form_updates_bitwise_as_the_keywords(name):
    """``update(..., inputs=UpdateInputs(...))`` is the same call as the loose keywords,
    through the wrappers that pass the object on (a task absent: the mask reaches them)."""
    loss_fn, params, x, y = regression_problem()
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    keywords = {"task_losses": losses, "task_mask": jnp.array([True, False, True])}
    typed = {"inputs": dispatch.UpdateInputs.from_keywords(keywords)}
    results = []
    for given in (keywords, typed):
        tx = _WRAPPED[name]()
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update(task_grads, state, params, **given)
        results.append((updates, state))
    jax.tree.map(np.testing.assert_array_equal, results[0], results[1])
