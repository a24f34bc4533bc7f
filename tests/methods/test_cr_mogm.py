"""CR-MOGM: an EMA over the inner method's weights, replayed in float64 against an exact
min-norm reference; alpha = 0 is the inner method; the fast path of a loss-space inner method."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import optax
import pytest
from conftest import as_task_grads, random_jacobian
from solver_references import reference_min_norm_weights

import autoscale_jax as asj
from autoscale_jax.methods._bases import Proposal, gramian_method
from autoscale_jax.methods.cr_mogm import cr_mogm
from autoscale_jax.methods.famo import famo
from autoscale_jax.methods.graddrop import graddrop
from autoscale_jax.methods.mgda import mgda
from autoscale_jax.methods.pcgrad import pcgrad


def jacobians(seed, num_steps, num_tasks=3, dim=6):
    rng = np.random.default_rng(seed)
    # comparable norms: the min-norm weights are then well conditioned in float32
    return [rng.normal(size=(num_tasks, dim)) for _ in range(num_steps)]


def run(tx, Js, **kwargs):
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
    update = jax.jit(lambda g, s: tx.update(g, s, params, **kwargs))
    state = tx.init(params)
    outputs, weights, inner_weights = [], [], []
    for J in Js:
        out, state = update(as_task_grads(J), state)
        outputs.append(checks.flat(out))
        weights.append(np.asarray(asj.task_weights(state)))
        inner_weights.append(np.asarray(state.inner.task_weights))
    assert update._cache_size() == 1
    return np.array(outputs), np.array(weights), np.array(inner_weights), state


@pytest.mark.parametrize("init_weights", [None, [1 / 3, 1 / 3, 1 / 3]])
def test_ema_of_min_norm_weights_against_float64_replay(init_weights):
    Js = jacobians(0, 8)
    alpha = 0.7
    outputs, weights, inner_weights, state = run(
        cr_mogm(mgda(3), alpha=alpha, init_weights=init_weights), Js
    )
    # Independent float64 replay: exact min-norm weights by support enumeration, then the EMA.
    proposals = [reference_min_norm_weights(J @ J.T) for J in Js]
    average = proposals[0] if init_weights is None else np.asarray(init_weights, np.float64)
    expected = []
    for t, proposal in enumerate(proposals):
        if t > 0 or init_weights is not None:
            average = alpha * average + (1 - alpha) * proposal
        expected.append(average)
    expected = np.array(expected)
    np.testing.assert_allclose(inner_weights, proposals, atol=2e-5)
    np.testing.assert_allclose(weights, expected, atol=2e-5)
    for out, w, J in zip(outputs, expected, Js, strict=True):
        np.testing.assert_allclose(out, w @ J, atol=1e-4)
    # The averaged weights really differ from the inner ones (the EMA is not a no-op).
    assert np.abs(weights[-1] - inner_weights[-1]).max() > 1e-2
    assert int(state.step) == len(Js)


def test_alpha_zero_reproduces_the_inner_method():
    Js = jacobians(1, 5)
    outputs, weights, _, _ = run(cr_mogm(mgda(3), alpha=0.0), Js)
    inner = mgda(3)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
    update = jax.jit(lambda g, s: inner.update(g, s, params))
    state = inner.init(params)
    for J, out, w in zip(Js, outputs, weights, strict=True):
        expected, state = update(as_task_grads(J), state)
        np.testing.assert_allclose(out, checks.flat(expected), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(w, state.task_weights, rtol=1e-6)


def test_key_and_losses_pass_through_to_the_inner_method():
    Js = jacobians(2, 4)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"a": jnp.zeros(3), "b": jnp.zeros(3)}
    wrapped, inner = cr_mogm(pcgrad(3), alpha=0.0), pcgrad(3)
    state_w, state_i = wrapped.init(params), inner.init(params)
    update_w = jax.jit(lambda g, s, k: wrapped.update(g, s, params, key=k))
    update_i = jax.jit(lambda g, s, k: inner.update(g, s, params, key=k))
    for J, key in zip(Js, keys, strict=True):
        out_w, state_w = update_w(as_task_grads(J), state_w, key)
        out_i, state_i = update_i(as_task_grads(J), state_i, key)
        np.testing.assert_allclose(checks.flat(out_w), checks.flat(out_i), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="key"):
        wrapped.update(as_task_grads(Js[0]), state_w, params)
    tx = cr_mogm(famo(3))
    with pytest.raises(ValueError, match="task losses"):
        tx.update(as_task_grads(Js[0]), tx.init(params), params)


def test_nan_gradient_reaches_the_update_but_not_the_weights(rng):
    tx = cr_mogm(mgda(3), alpha=0.5)
    update = jax.jit(lambda g, s: tx.update(g, s))
    state = tx.init(None)
    for _ in range(3):
        _, state = update(as_task_grads(random_jacobian(rng, 3, 6)), state)
    J = random_jacobian(rng, 3, 6)
    J[1, 2] = np.nan
    out, new_state = update(as_task_grads(J), state)
    assert update._cache_size() == 1
    assert np.isnan(checks.flat(out)).any()
    np.testing.assert_array_equal(new_state.task_weights, state.task_weights)
    np.testing.assert_array_equal(new_state.inner.task_weights, state.inner.task_weights)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_state))


def test_permuting_tasks_permutes_the_averaged_weights():
    checks.assert_permutation_equivariant(lambda: cr_mogm(famo(4, learning_rate=0.3), alpha=0.6))


def test_loss_space_inner_method_keeps_a_correct_fast_path():
    def factory():
        return cr_mogm(famo(3, learning_rate=0.3), alpha=0.6)

    weights = checks.assert_fast_path_matches_chain(factory)
    assert not np.allclose(weights, weights[0])
    checks.assert_presummed_matches_stacked(factory)


def test_fast_path_weights_are_the_ema_of_the_inner_fast_path():
    tx, inner = cr_mogm(famo(3), alpha=0.6), famo(3)
    state, state_i = tx.init(None), inner.init(None)
    grads = as_task_grads(random_jacobian(np.random.default_rng(3), 3, 6))
    losses = [jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, 2.0, 2.5])]
    previous = None
    for task_losses in losses:
        w = tx.fast_path.weights(state, task_losses, None)
        w_inner = inner.fast_path.weights(state_i, task_losses, None)
        expected = w_inner if previous is None else 0.6 * previous + 0.4 * w_inner
        np.testing.assert_allclose(w, expected, rtol=1e-6)
        _, state = tx.update(grads, state, task_losses=task_losses)
        _, state_i = inner.update(grads, state_i, task_losses=task_losses)
        previous = np.asarray(expected)


def test_gradient_methods_have_no_fast_path():
    tx = cr_mogm(mgda(2))
    assert tx.fast_path is None
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(3)}, tx.init(None), presummed=True)


def inverse_norm_rule(G, losses, key, memory):
    return Proposal(weights=1.0 / jnp.sqrt(jnp.diag(G)))


def test_gramian_inner_method_solving_every_other_step_keeps_its_fast_path():
    def factory():
        inner = gramian_method(3, "inverse_norm", inverse_norm_rule, update_every=2)
        return cr_mogm(inner, alpha=0.5)

    tx = factory()
    state = tx.init(None)
    assert bool(tx.fast_path.needs_task_gradients(state))
    _, state = tx.update(as_task_grads(random_jacobian(np.random.default_rng(4), 3, 6)), state)
    assert not bool(tx.fast_path.needs_task_gradients(state))
    weights = checks.assert_fast_path_matches_chain(factory, num_steps=4)
    assert not np.allclose(weights, weights[0])


def test_errors():
    with pytest.raises(TypeError, match="multi-task transformation"):
        cr_mogm(optax.sgd(0.1))
    with pytest.raises(ValueError, match="alpha"):
        cr_mogm(mgda(2), alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        cr_mogm(mgda(2), alpha=-0.1)
    with pytest.raises(ValueError, match="init_weights"):
        cr_mogm(mgda(2), init_weights=[[1.0, 2.0]])
    with pytest.raises(ValueError, match="init_weights must have shape"):
        cr_mogm(mgda(3), init_weights=[0.5, 0.5]).init(None)
    with pytest.raises(TypeError, match="graddrop"):
        cr_mogm(graddrop(2)).init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        tx = cr_mogm(mgda(3))
        tx.update({"w": jnp.ones((2, 4))}, tx.init(None))
