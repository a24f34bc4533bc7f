"""Flax helpers: NNX (``nnx.Optimizer``, stacked task gradients of an ``nnx.State``) and linen
(``TrainState``), each with the one-gradient phase 2, plus trunk masks from names and filters."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import shapes_in_jaxpr
from problems import float64

import autoscale_jax as asj

nnx = pytest.importorskip("flax.nnx")
nn = pytest.importorskip("flax.linen")
asjf = pytest.importorskip("autoscale_jax.flax")

K, DIM, HIDDEN = 3, 5, 7
SCALES = jnp.array([1.0, 10.0, 0.1])


def value(variable):
    """The array of a Flax variable (``get_value`` from Flax 0.12 on, ``.value`` before)."""
    getter = getattr(variable, "get_value", None)
    return getter() if getter is not None else variable.value


def data(seed=0, num_samples=32):
    kx, kt = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(kx, (num_samples, DIM))
    return x, jnp.tanh(x @ jax.random.normal(kt, (DIM, K))) * SCALES


class Net(nnx.Module):
    def __init__(self, rngs):
        self.trunk = nnx.Linear(DIM, HIDDEN, rngs=rngs)
        self.norm = nnx.BatchNorm(HIDDEN, rngs=rngs)  # non-parameter state the step must keep
        self.heads = nnx.Linear(HIDDEN, K, rngs=rngs)

    def __call__(self, x):
        return self.heads(jnp.tanh(self.norm(self.trunk(x))))


def nnx_loss(model, x, y):
    return jnp.mean((model(x) - y) ** 2, axis=0)


def nnx_setup(estimation_steps=2):
    model = Net(nnx.Rngs(0))
    mask = asjf.nnx_metric_mask(model, nnx.PathContains("trunk"))
    tx = optax.chain(
        asj.autoscale(K, estimation_steps=estimation_steps, window=1, metric_mask=mask),
        # SGD, not Adam: the trunk bias before BatchNorm has a zero gradient up to rounding,
        # which Adam would blow up to full-size steps of noise.
        optax.sgd(0.05),
    )
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)


def test_nnx_task_gradients_are_a_stacked_state_and_match_per_task_grads():
    model, _ = nnx_setup()
    x, y = data()
    model.eval()  # batch statistics fixed: per-task grads comparable with nnx.grad
    losses, task_grads = asjf.nnx_task_value_and_grad(nnx_loss)(model, x, y)
    assert value(task_grads["trunk"]["kernel"]).shape == (K, DIM, HIDDEN)
    for k in range(K):
        grad_k = nnx.grad(lambda m, k=k: nnx_loss(m, x, y)[k])(model)
        np.testing.assert_allclose(
            value(task_grads["heads"]["kernel"])[k],
            value(grad_k["heads"]["kernel"]),
            rtol=1e-5,
            atol=1e-7,
        )
    np.testing.assert_allclose(losses, nnx_loss(model, x, y), rtol=1e-6)


def test_nnx_fast_step_equals_stacked_optimizer_updates_and_phase_two_has_one_gradient():
    x, y = data()
    model_a, opt_a = nnx_setup()
    model_b, opt_b = nnx_setup()
    step = nnx.jit(asjf.nnx_train_step(nnx_loss))
    grad_fn = asjf.nnx_task_value_and_grad(nnx_loss)
    for i in range(4):  # crosses the phase switch at step 2
        assert bool(asjf.needs_task_gradients(opt_a)) == (i < 2)
        losses_a = step(model_a, opt_a, x, y)
        losses_b, task_grads = grad_fn(model_b, x, y)
        # The plain nnx.Optimizer update (its signature gained the model in Flax 0.11).
        asjf._optimizer_update(opt_b, model_b, task_grads, task_losses=losses_b)
        np.testing.assert_allclose(losses_a, losses_b, rtol=1e-5)
    state_a, state_b = nnx.state(model_a), nnx.state(model_b)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state_a, state_b
    )
    np.testing.assert_allclose(asjf.task_weights(opt_a), asjf.task_weights(opt_b), rtol=1e-6)
    np.testing.assert_allclose(asj.task_weights(opt_a), asjf.task_weights(opt_a))
    # The batch statistics moved (non-parameter state is written back by the step).
    assert not np.allclose(value(model_a.norm.mean), 0.0)

    # Phase 2: the one-gradient step has no K-stacked trunk gradient; the auto step's result
    # equals it (its lax.cond took the one-gradient branch).
    graphdef, state = nnx.split((model_a, opt_a))

    def run(state, task_gradients):
        model, opt = nnx.merge(graphdef, state)
        losses = asjf.nnx_train_step(nnx_loss)(model, opt, x, y, task_gradients=task_gradients)
        return losses, nnx.state((model, opt))

    stacked_trunk = (K, DIM, HIDDEN)
    assert stacked_trunk not in shapes_in_jaxpr(run, state, task_gradients="never")
    assert stacked_trunk in shapes_in_jaxpr(run, state, task_gradients="auto")
    (_, after_never), (_, after_auto) = run(state, "never"), run(state, "auto")
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), after_never, after_auto
    )


def test_nnx_step_without_a_multitask_part_is_refused():
    model = Net(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    with pytest.raises(TypeError, match="No multi-task transformation"):
        asjf.nnx_train_step(nnx_loss)(model, opt, *data())


def test_nnx_metric_mask_selects_the_trunk():
    model, _ = nnx_setup()
    x, y = data()
    _, task_grads = asjf.nnx_task_value_and_grad(nnx_loss)(model, x, y)
    mask = asjf.nnx_metric_mask(model, nnx.PathContains("trunk"))
    trunk = task_grads["trunk"]
    expected = asj.metrics.gramian({"b": value(trunk["bias"]), "k": value(trunk["kernel"])})
    np.testing.assert_allclose(asj.metrics.gramian(task_grads, mask), expected, rtol=1e-5)
    by_name = asj.metrics.gramian(task_grads, asjf.module_mask("trunk"))
    np.testing.assert_allclose(by_name, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="selects no"):
        asjf.nnx_metric_mask(model, nnx.PathContains("trunkk"))
    with pytest.raises(ValueError, match="at least one"):
        asjf.module_mask()


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        hidden = jnp.tanh(nn.Dense(HIDDEN, name="trunk")(x))
        return nn.Dense(K, name="heads")(hidden)


def linen_setup(estimation_steps=2, dtype=jnp.float32):
    module = LinenNet()
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, DIM)))["params"]
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    tx = optax.chain(
        asj.autoscale(K, estimation_steps, window=1, metric_mask=asjf.module_mask("trunk")),
        optax.adam(1e-2),
    )
    state = asjf.TrainState.create(apply_fn=module.apply, params=params, tx=tx)

    def loss_fn(params, x, y):
        return jnp.mean((module.apply({"params": params}, x) - y) ** 2, axis=0)

    return state, loss_fn


def test_linen_apply_gradients_takes_task_losses():
    state, loss_fn = linen_setup()
    x, y = data()
    losses, task_grads = asj.task_value_and_grad(loss_fn)(state.params, x, y)
    new = state.apply_gradients(grads=task_grads, task_losses=losses)
    chain_updates, _ = state.tx.update(
        task_grads, state.opt_state, state.params, task_losses=losses
    )
    expected = optax.apply_updates(state.params, chain_updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new.params, expected)
    assert int(new.step) == 1
    with pytest.raises(ValueError, match="task losses"):
        state.apply_gradients(grads=task_grads)


def test_linen_train_step_equals_apply_gradients_and_phase_two_has_one_gradient():
    # In float64: the fused step and apply_gradients sum in another order, and float32
    # round-off moved their results by ~3e-6 on another CPU. AutoScale's weights stay float32
    # (by design), so the two agree to a few float32 ulps, not to float64's.
    with float64():
        state_a, loss_fn = linen_setup(dtype=jnp.float64)
        state_b = state_a
        x, y = data(1)
        assert x.dtype == jnp.float64
        step = jax.jit(lambda s, x, y: s.train_step(loss_fn, x, y))
        grad_fn = asj.task_value_and_grad(loss_fn)
        rtol = 16 * float(np.finfo(np.float32).eps)
        for i in range(4):
            assert bool(state_a.needs_task_gradients()) == (i < 2)
            state_a, losses_a = step(state_a, x, y)
            losses_b, task_grads = grad_fn(state_b.params, x, y)
            state_b = state_b.apply_gradients(grads=task_grads, task_losses=losses_b)
            np.testing.assert_allclose(losses_a, losses_b, rtol=rtol)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12),
            state_a.params,
            state_b.params,
        )
        np.testing.assert_allclose(asj.task_weights(state_a), asj.task_weights(state_b), rtol=rtol)
        stacked_trunk = (K, DIM, HIDDEN)

        def run(s, task_gradients):
            return s.train_step(loss_fn, x, y, task_gradients=task_gradients)

        assert stacked_trunk not in shapes_in_jaxpr(run, state_a, task_gradients="never")
        assert stacked_trunk in shapes_in_jaxpr(run, state_a, task_gradients="auto")
        never, auto = run(state_a, "never")[0], run(state_a, "auto")[0]
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), never.params, auto.params
        )
        with pytest.raises(ValueError, match="task_gradients"):
            state_a.train_step(loss_fn, x, y, task_gradients="sometimes")
