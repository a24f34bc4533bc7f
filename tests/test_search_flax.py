"""The one-call search on Flax models: an NNX model with nnx.Optimizer and a linen TrainState,
each against the functional search on the same numbers, then trained on with the weighted
sum (NNX: nnx.grad + optimizer.update; linen: the returned state's train_step)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

flax = pytest.importorskip("flax", reason="Flax is not installed")
from flax import nnx  # noqa: E402

import autoscale_jax as asj  # noqa: E402
import autoscale_jax.flax as asjf  # noqa: E402
from autoscale_jax import search  # noqa: E402
from autoscale_jax.search.flax_search import find_weights_linen, find_weights_nnx  # noqa: E402

OPTIONS = dict(
    budget=30,
    estimation_steps=3,
    window=1,
    chunk_size=3,
    progress=False,
    stages=(search.alpha_stage((1.0, 2.0, 3.0), (2, 4)), search.multiplier_stage((4.0,), (2,))),
)


def data():
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    x = jax.random.normal(keys[0], (128, 4))
    y = jnp.tanh(x @ jax.random.normal(keys[1], (4, 3))) * jnp.array([1.0, 10.0, 0.1])

    def batch(t):
        idx = (t * 16 + jnp.arange(16)) % 128
        return {"x": x[idx], "y": y[idx]}

    return batch, {"x": x[:32] + 0.1, "y": y[:32]}


def functional_loss(p, b):
    return jnp.mean((jnp.tanh(b["x"] @ p["trunk"]) @ p["heads"] - b["y"]) ** 2, axis=0)


class Net(nnx.Module):  # biases: Flax 0.10 keeps a None leaf for use_bias=False
    def __init__(self, rngs):
        self.trunk = nnx.Linear(4, 8, rngs=rngs)
        self.heads = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.heads(jnp.tanh(self.trunk(x)))


def kernels(model):
    return {
        name: {"kernel": jnp.asarray(layer.kernel[...]), "bias": jnp.asarray(layer.bias[...])}
        for name, layer in (("trunk", model.trunk), ("heads", model.heads))
    }


def dense_loss(p, b):  # the Net as a function of kernels and biases
    hidden = jnp.tanh(b["x"] @ p["trunk"]["kernel"] + p["trunk"]["bias"])
    return jnp.mean((hidden @ p["heads"]["kernel"] + p["heads"]["bias"] - b["y"]) ** 2, axis=0)


def test_nnx_model_and_optimizer_match_the_functional_search():
    batch, valid = data()
    model = Net(nnx.Rngs(0))
    params = kernels(model)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    def model_loss(m, b):
        return jnp.mean((m(b["x"]) - b["y"]) ** 2, axis=0)

    def model_score(m):
        return -jnp.sum(model_loss(m, valid) / jnp.array([1.0, 100.0, 0.01]))

    found = find_weights_nnx(model, optimizer, model_loss, model_score, batch, **OPTIONS)
    dense_score = lambda p: -jnp.sum(dense_loss(p, valid) / jnp.array([1.0, 100.0, 0.01]))  # noqa: E731
    want = search.find_weights(dense_loss, optax.adam(1e-2), dense_score, params, batch, **OPTIONS)
    np.testing.assert_allclose(found.weights, want.weights, rtol=1e-5)
    assert [s.survivor for s in found.report.stages] == [s.survivor for s in want.report.stages]
    got = kernels(model)  # written into the model
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want.params
    )
    # Train on with the weighted sum: nnx.grad + optimizer.update, vs the functional step.
    w = found.weights
    grads = nnx.grad(lambda m: w @ model_loss(m, batch(9)))(model)
    asjf_update = optimizer.update
    try:
        asjf_update(model, grads)
    except TypeError:  # Flax < 0.11: update(grads)
        asjf_update(grads)
    tx = optax.adam(1e-2)
    g = jax.grad(lambda p: w @ dense_loss(p, batch(9)))(want.params)
    updates, _ = tx.update(g, want.opt_state, want.params)
    expected = optax.apply_updates(want.params, updates)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        kernels(model),
        expected,
    )


def test_linen_train_state_trains_on_with_the_fixed_weights():
    import flax.linen as nn

    batch, valid = data()

    class Linen(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(3, use_bias=False, name="heads")(
                jnp.tanh(nn.Dense(8, use_bias=False, name="trunk")(x))
            )

    module = Linen()
    variables = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    state = asjf.TrainState.create(
        apply_fn=module.apply, params=variables["params"], tx=optax.adam(1e-2)
    )

    def loss(params, b):
        return jnp.mean((module.apply({"params": params}, b["x"]) - b["y"]) ** 2, axis=0)

    def score(params):
        return -jnp.sum(loss(params, valid) / jnp.array([1.0, 100.0, 0.01]))

    new, found = find_weights_linen(state, loss, score, batch, **OPTIONS)
    assert int(new.step) == found.report.steps == 3 + 4 + 2
    np.testing.assert_allclose(asj.task_weights(new.opt_state), found.weights)
    stepped, _ = new.train_step(loss, batch(9))
    g = jax.grad(lambda p: found.weights @ loss(p, batch(9)))(found.params)
    updates, _ = optax.adam(1e-2).update(g, found.opt_state, found.params)
    expected = optax.apply_updates(found.params, updates)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        stepped.params,
        expected,
    )


def test_flax_wrappers_refuse_an_optimizer_with_a_multitask_part():
    batch, _ = data()
    model = Net(nnx.Rngs(0))
    chain = optax.chain(asj.autoscale(3, 2), optax.adam(1e-2))
    optimizer = nnx.Optimizer(model, chain, wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"optimizer\.tx holds a multi\-task transformation"):
        find_weights_nnx(
            model, optimizer, lambda m, b: m(b["x"]).mean(0), lambda m: 0.0, batch, budget=30
        )
    with pytest.raises(TypeError, match=r"optimizer must be an nnx\.Optimizer"):
        find_weights_nnx(
            model, optax.adam(1e-2), lambda m, b: m(b["x"]).mean(0), lambda m: 0.0, batch, budget=30
        )
    with pytest.raises(TypeError, match=r"state must be an autoscale_jax\.flax\.TrainState"):
        find_weights_linen({"params": 1}, functional_loss, lambda p: 0.0, batch, budget=30)
