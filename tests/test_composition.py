"""optax composition: the public phase query, gradient accumulation with a task axis, and
gradients that lack the task axis."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj

WRAPPERS = {
    "bare": lambda tx: tx,
    "chain": lambda tx: optax.chain(tx, optax.adam(1e-2)),
    "inject_hyperparams": lambda tx: optax.inject_hyperparams(
        lambda learning_rate: optax.chain(tx, optax.sgd(learning_rate))
    )(learning_rate=0.1),
    "apply_if_finite": lambda tx: asj.accumulation.apply_if_finite(
        optax.chain(tx, optax.sgd(0.1)), 3
    ),
    "named_chain": lambda tx: optax.named_chain(("weighting", tx), ("sgd", optax.sgd(0.1))),
}


@pytest.mark.parametrize("wrap", WRAPPERS.values(), ids=WRAPPERS.keys())
def test_needs_task_gradients_follows_the_phase_through_wrappers(wrap):
    loss_fn, params, x, y = regression_problem()
    tx = wrap(asj.autoscale(3, estimation_steps=2, window=1))
    optimizer = optax.sgd(0.1) if wrap is WRAPPERS["bare"] else None  # else inside the chain
    train = asj.multitask_train_step(loss_fn, tx, optimizer)
    state = train.init(params)
    answers = []
    for _ in range(4):
        answers.append(bool(asj.needs_task_gradients(tx, state.weighting)))
        params, state, _ = train.step(params, state, x, y)
    assert answers == [True, True, False, False]
    # Under jit the answer is a traced bool of the same value.
    assert not bool(jax.jit(lambda s: asj.needs_task_gradients(tx, s))(state.weighting))


def test_needs_task_gradients_is_static_for_fixed_families():
    params = {"w": jnp.zeros(3)}
    for name, expected in [("pcgrad", True), ("mgda", True), ("famo", False), ("dwa", False)]:
        tx = optax.chain(asj.methods.get(name, num_tasks=2), optax.sgd(0.1))
        assert asj.needs_task_gradients(tx, tx.init(params)) is expected, name
    tx = asj.fixed_weights([1.0, 2.0])
    assert asj.needs_task_gradients(tx, tx.init(params)) is False


def test_needs_task_gradients_without_a_multitask_part_is_refused():
    tx = optax.chain(optax.adam(1e-3))
    with pytest.raises(TypeError, match="no multi-task transformation"):
        asj.needs_task_gradients(tx, tx.init({"w": jnp.zeros(3)}))


def test_optax_multisteps_around_a_multitask_chain_fails_with_a_pointer():
    params = {"w": jnp.zeros(3)}
    tx = optax.MultiSteps(optax.chain(asj.autoscale(2, 3), optax.adam(1e-3)), 2)
    with pytest.raises((ValueError, TypeError)) as info:
        tx.update({"w": jnp.ones((2, 3))}, tx.init(params), params, task_losses=jnp.ones(2))
    # optax >= 0.2.4 hands the method its parameter-shaped accumulator: our error names the
    # fix. optax 0.2.3 fails before, in its own lax.cond (accumulator shapes differ).
    message = str(info.value)
    assert "autoscale_jax.multi_steps" in message or "acc_grads" in message, message


def test_multi_steps_equals_one_step_on_the_large_batch():
    """Two micro-batches accumulated == one step on their union (mean losses, equal sizes):
    AutoScale's estimation, its weights and the parameters all agree, across the phase switch."""
    loss_fn, params, x, y = regression_problem(seed=4, num_samples=64)

    def chain():
        return optax.chain(asj.autoscale(3, estimation_steps=3, window=1), optax.adam(1e-2))

    big = asj.multitask_train_step(loss_fn, chain())
    # The step cannot see AutoScale's phase inside multi_steps: the inner chain restarts Adam
    # at the switch itself, as the big-batch step does.
    inner = asj.restart_at_phase_switch(chain())
    micro = asj.multitask_train_step(loss_fn, asj.multi_steps(inner, every_k=2, num_tasks=3))
    big_params, big_state = params, big.init(params)
    micro_params, micro_state = params, micro.init(params)
    micro_step = jax.jit(micro.step)
    halves = [(x[:32], y[:32]), (x[32:], y[32:])]
    for _ in range(5):
        big_params, big_state, _ = big.step(big_params, big_state, x, y)
        for i, (xs, ys) in enumerate(halves):
            before = micro_params
            micro_params, micro_state, _ = micro_step(micro_params, micro_state, xs, ys)
            if i == 0:  # the first micro-batch of a cycle only accumulates
                jax.tree.map(np.testing.assert_array_equal, micro_params, before)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
            micro_params,
            big_params,
        )
        np.testing.assert_allclose(
            asj.task_weights(micro_state), asj.task_weights(big_state), rtol=1e-5
        )
    assert micro_step._cache_size() == 1
    assert int(micro_state.weighting.mini_step) == 0


def test_multi_steps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_k"):
        asj.multi_steps(asj.equal_weights(2), 0, 2)
    with pytest.raises(ValueError, match="parameters"):
        asj.multi_steps(asj.equal_weights(2), 2, 2).init(None)


def test_combined_update_accumulation_inside_the_chain_keeps_the_fast_path():
    """The documented alternative: optax.MultiSteps *after* the multi-task part."""
    loss_fn, params, x, y = regression_problem()
    tx = optax.chain(asj.fixed_weights([1.0, 0.5, 2.0]), optax.MultiSteps(optax.sgd(0.1), 2))
    train = asj.multitask_train_step(loss_fn, tx)
    state = train.init(params)
    p1, state, _ = train.one_gradient_step(params, state, x, y)
    jax.tree.map(np.testing.assert_array_equal, p1, params)  # accumulated only
    p2, state, _ = train.one_gradient_step(p1, state, x, y)
    plain = asj.linear_scalarization_step(loss_fn, jnp.array([1.0, 0.5, 2.0]), optax.sgd(0.1))
    expected, _, _ = plain.step(params, plain.init(params), x, y)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p2, expected)


@pytest.mark.parametrize("name", ["autoscale", "pcgrad", "famo", "fixed_weights", "mgda"])
def test_gradients_without_the_task_axis_are_refused_when_params_are_given(name):
    """Leaves of shape [K, d] that are really parameter-shaped gradients (K == d here)."""
    tx = asj.methods.build_for(name, 3, **({"estimation_steps": 2} if name == "autoscale" else {}))
    params = {"w": jnp.zeros(3), "b": jnp.zeros((3, 2))}
    grads = {"w": jnp.ones(3), "b": jnp.ones((3, 2))}  # first dimension 3 == K by accident
    with pytest.raises(ValueError, match="parameters' shapes"):
        tx.update(grads, tx.init(params), params, task_losses=jnp.ones(3), key=jax.random.key(0))
