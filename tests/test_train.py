"""The fast-path train step: equivalence with the optax chain, one compilation, and an
end-to-end check that AutoScale balances three regression tasks of very different scales."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import shapes_in_jaxpr
from problems import SCALES, regression_problem

import autoscale_jax as asj


@pytest.mark.parametrize("restart", [True, False], ids=["restart", "carry"])
def test_fast_path_matches_optax_chain_across_the_phase_switch(restart):
    # The step restarts Adam at the switch (restart_moments=True): the raw chain does it with
    # asj.restart_at_phase_switch; restart_moments=False is the plain chain.
    loss_fn, params, x, y = regression_problem()
    weighting = asj.autoscale(3, estimation_steps=6, window=2, metric_mask="shared")
    train = asj.multitask_train_step(loss_fn, weighting, optax.adam(1e-2), restart_moments=restart)
    step = jax.jit(train.step)
    state = train.init(params)
    chain = optax.chain(asj.autoscale(3, 6, window=2, metric_mask="shared"), optax.adam(1e-2))
    if restart:
        chain = asj.restart_at_phase_switch(chain)
    chain_state = chain.init(params)
    chain_params = params
    grad_fn = asj.task_value_and_grad(loss_fn)
    for _ in range(12):
        params, state, losses = step(params, state, x, y)
        chain_losses, task_grads = grad_fn(chain_params, x, y)
        updates, chain_state = chain.update(
            task_grads, chain_state, chain_params, task_losses=chain_losses
        )
        chain_params = optax.apply_updates(chain_params, updates)
        np.testing.assert_allclose(losses, chain_losses, rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, chain_params
    )
    np.testing.assert_allclose(asj.task_weights(state), asj.task_weights(chain_state), rtol=1e-5)
    assert step._cache_size() == 1  # the phase switch at step 6 did not recompile


def test_phase_two_equals_plain_linear_scalarization():
    loss_fn, params, x, y = regression_problem(seed=1)
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 4, window=2), optax.sgd(0.05))
    state = train.init(params)
    for _ in range(4):
        params, state, _ = train.step(params, state, x, y)
    plain = asj.linear_scalarization_step(loss_fn, asj.task_weights(state), optax.sgd(0.05))
    plain_params, plain_state = params, plain.init(params)
    for _ in range(3):
        params, state, _ = train.step(params, state, x, y)
        plain_params, plain_state, _ = plain.step(plain_params, plain_state, x, y)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), params, plain_params)


def test_one_gradient_step_equals_step_after_phase_one():
    loss_fn, params, x, y = regression_problem(seed=2)
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 3, window=1), optax.adam(1e-2))
    step, fast = jax.jit(train.step), jax.jit(train.one_gradient_step)
    state = train.init(params)
    for _ in range(3):
        params, state, _ = step(params, state, x, y)
    a_params, a_state, a_losses = step(params, state, x, y)
    b_params, b_state, b_losses = fast(params, state, x, y)
    np.testing.assert_allclose(a_losses, b_losses, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), a_params, b_params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), a_state, b_state)


def test_donated_steps_train_like_undonated_ones_across_the_phase_switch():
    # The documented loop jits both steps with donate_argnums=(0, 1): it must accept the
    # initial state and give the undonated run's numbers.
    loss_fn, params, x, y = regression_problem(seed=4)
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 3, window=1), optax.adam(1e-2))
    plain = (jax.jit(train.step), jax.jit(train.one_gradient_step))
    donated = tuple(
        jax.jit(f, donate_argnums=(0, 1)) for f in (train.step, train.one_gradient_step)
    )
    runs = []
    for step, fast in (plain, donated):
        p, state = jax.tree.map(jnp.copy, (params, train.init(params)))
        for i in range(6):
            p, state, _ = (step if i < 3 else fast)(p, state, x, y)
        runs.append((p, asj.task_weights(state)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), *runs)


def test_one_gradient_step_during_phase_one_is_loud_and_refused_without_fast_path():
    loss_fn, params, x, y = regression_problem(seed=3)
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 5), optax.sgd(0.1))
    state = train.init(params)
    assert bool(train.needs_task_gradients(state))
    with pytest.raises(ValueError, match="still needs per-task gradients"):
        train.one_gradient_step(params, state, x, y)  # eagerly: refused
    # Under jit it cannot raise: the parameters and the reported weights turn NaN.
    new_params, new_state, _ = jax.jit(train.one_gradient_step)(params, state, x, y)
    assert np.all(np.isnan(new_params["trunk"]))
    assert np.all(np.isnan(asj.task_weights(new_state)))
    pcgrad = asj.multitask_train_step(loss_fn, asj.methods.pcgrad(3), optax.sgd(0.1))
    with pytest.raises(ValueError, match="no fast path"):
        pcgrad.one_gradient_step(params, pcgrad.init(params), x, y, key=jax.random.PRNGKey(0))


def test_fast_path_weights_are_nan_during_phase_one():
    tx = asj.autoscale(2, 3)
    state = tx.init({"w": jnp.zeros(2)})
    assert bool(tx.fast_path.needs_task_gradients(state))
    assert np.all(np.isnan(tx.fast_path.weights(state, jnp.ones(2), None)))
    state = state._replace(step=jnp.array(3, jnp.int32))
    assert not bool(tx.fast_path.needs_task_gradients(state))
    np.testing.assert_allclose(tx.fast_path.weights(state, jnp.ones(2), None), [1.0, 1.0])


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tx: optax.chain(tx, optax.sgd(0.1)),
        lambda tx: asj.accumulation.apply_if_finite(optax.chain(tx, optax.sgd(0.1)), 3),
        lambda tx: optax.inject_hyperparams(
            lambda learning_rate: optax.chain(tx, optax.sgd(learning_rate))
        )(learning_rate=0.1),
    ],
    ids=["chain", "apply_if_finite", "inject_hyperparams"],
)
def test_fast_path_survives_optax_wrappers(wrap):
    loss_fn, params, x, y = regression_problem()
    method = asj.methods.famo(3)
    direct = asj.multitask_train_step(loss_fn, method, optax.sgd(0.1))
    wrapped = asj.multitask_train_step(loss_fn, wrap(method))
    p_direct, s_direct = params, direct.init(params)
    p_wrapped, s_wrapped = params, wrapped.init(params)
    step = jax.jit(wrapped.step)
    for _ in range(3):
        p_direct, s_direct, _ = jax.jit(direct.step)(p_direct, s_direct, x, y)
        p_wrapped, s_wrapped, _ = step(p_wrapped, s_wrapped, x, y)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), p_wrapped, p_direct
    )
    np.testing.assert_allclose(asj.task_weights(s_wrapped), asj.task_weights(s_direct), rtol=1e-5)
    # One backward pass: the K stacked trunk gradients never exist inside the wrapped step.
    stacked_trunk = (3, *params["trunk"].shape)
    assert stacked_trunk not in shapes_in_jaxpr(wrapped.step, p_wrapped, s_wrapped, x, y)
    with_tasks = asj.multitask_train_step(loss_fn, wrap(asj.methods.mgda(3)))
    assert stacked_trunk in shapes_in_jaxpr(with_tasks.step, params, with_tasks.init(params), x, y)


def test_update_every_fast_path_inside_a_chain_matches_the_direct_step():
    loss_fn, params, x, y = regression_problem(seed=1)
    direct = asj.multitask_train_step(
        loss_fn, asj.methods.nash_mtl(3, update_every=2), optax.sgd(0.05)
    )
    chained = asj.multitask_train_step(
        loss_fn, optax.chain(asj.methods.nash_mtl(3, update_every=2), optax.sgd(0.05))
    )
    pa, sa, pb, sb = params, direct.init(params), params, chained.init(params)
    step_a, step_b = jax.jit(direct.step), jax.jit(chained.step)
    for _ in range(4):
        pa, sa, _ = step_a(pa, sa, x, y)
        pb, sb, _ = step_b(pb, sb, x, y)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), pa, pb)
    assert step_b._cache_size() == 1


def test_a_chain_without_a_multitask_part_is_refused():
    loss_fn, params, x, y = regression_problem()
    train = asj.multitask_train_step(loss_fn, optax.chain(optax.sgd(0.1)))
    with pytest.raises(TypeError, match="No multi-task transformation"):
        train.step(params, train.init(params), x, y)


def train(weighting, steps, seed=0):
    """Trains the regression problem; returns the loss function, data, the Gramians of the
    shared trunk at every step, the final state and the final losses."""
    loss_fn, params, x, y = regression_problem(seed)
    train = asj.multitask_train_step(loss_fn, weighting, optax.adam(3e-3))
    step = jax.jit(train.step)
    grad_fn = jax.jit(asj.task_value_and_grad(loss_fn))
    state = train.init(params)
    gramians = []
    for _ in range(steps):
        gramians.append(asj.metrics.gramian(grad_fn(params, x, y)[1], "shared"))
        params, state, _ = step(params, state, x, y)
    return gramians, state, loss_fn(params, x, y)


@pytest.mark.slow
def test_end_to_end_autoscale_balances_three_scales():
    phase_one = 60
    weighting = asj.autoscale(3, estimation_steps=phase_one, window=10, metric_mask="shared")
    gramians, state, losses = train(weighting, steps=600)
    _, _, equal_losses = train(asj.equal_weights(3), steps=600)
    # w* aggregates the last half of phase 1: on that span's mean Gramian the weighted task
    # gradient norms agree within 10% (unweighted they differ by about 100x).
    mean_G = jnp.mean(jnp.stack(gramians[phase_one // 2 : phase_one]), axis=0)
    norms = asj.metrics.task_gradient_norms(mean_G)
    weighted = asj.task_weights(state) * norms
    assert float(jnp.max(norms) / jnp.min(norms)) > 20
    assert float(jnp.max(weighted) / jnp.min(weighted)) <= 1.10
    # Equal weights neglect the small-scale task; AutoScale does not.
    small = int(np.argmin(SCALES))
    assert float(losses[small]) <= float(equal_losses[small])
