"""freeze: per-epoch means of an adaptive method's weights, EMA, then fixed weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.freeze import freeze


def stream(num_steps, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(3, 5)) * np.array([[1.0], [10.0], [0.1]])
    return [
        (
            {"w": jnp.asarray(base * rng.uniform(0.5, 1.5, size=(3, 1)), jnp.float32)},
            jnp.asarray(rng.uniform(0.5, 2, 3), jnp.float32),
        )
        for _ in range(num_steps)
    ]


def test_epoch_means_ema_and_phase_two_against_numpy():
    data = stream(10)
    tx = freeze(asj.methods.gradient_norm_scaling(3), estimation_steps=6, epoch_length=2)
    params = {"w": jnp.zeros(5)}
    state = tx.init(params)
    update = jax.jit(lambda g, s, losses: tx.update(g, s, params, task_losses=losses))
    inner_weights, outputs = [], []
    for grads, losses in data:
        out, state = update(grads, state, losses)
        outputs.append(out["w"])
        if len(inner_weights) < 6:
            inner_weights.append(np.asarray(asj.task_weights(state)))
    # Independent replay: the inner rule is w_k = mean(n) / n_k on the per-step norms.
    norms = [np.linalg.norm(np.asarray(g["w"], np.float64), axis=1) for g, _ in data[:6]]
    expected_inner = [n.mean() / n for n in norms]
    np.testing.assert_allclose(inner_weights[:5], expected_inner[:5], rtol=1e-5)
    epochs = [np.mean(expected_inner[i : i + 2], axis=0) for i in (0, 2, 4)]
    epochs = [e * 3 / e.sum() for e in epochs]
    ema = epochs[0]
    for e in epochs[1:]:
        ema = 0.9 * ema + 0.1 * e
    ema = ema * 3 / ema.sum()
    np.testing.assert_allclose(asj.task_weights(state), ema, rtol=1e-5)
    for out, (grads, _) in zip(outputs[6:], data[6:], strict=True):
        np.testing.assert_allclose(out, ema @ np.asarray(grads["w"]), rtol=1e-5, atol=1e-6)
    assert update._cache_size() == 1


def test_mean_aggregation_and_train_step_fast_path():
    data = stream(8, seed=1)

    def loss_fn(p, scale):
        return jnp.stack(
            [jnp.sum(p["w"] ** 2), scale * jnp.sum((p["w"] - 1) ** 2), jnp.sum(p["w"])]
        )

    params = {"w": jnp.arange(5.0)}
    method = freeze(asj.methods.gradient_norm_scaling(3), 4, aggregate="mean")
    train = asj.multitask_train_step(loss_fn, method, optax.sgd(0.01))
    step = jax.jit(train.step)
    state = train.init(params)
    chain = optax.chain(
        freeze(asj.methods.gradient_norm_scaling(3), 4, aggregate="mean"), optax.sgd(0.01)
    )
    chain_state, chain_params = chain.init(params), params
    for _ in range(len(data)):
        params, state, _ = step(params, state, 10.0)
        losses, grads = asj.task_value_and_grad(loss_fn)(chain_params, 10.0)
        updates, chain_state = chain.update(grads, chain_state, chain_params, task_losses=losses)
        chain_params = optax.apply_updates(chain_params, updates)
    np.testing.assert_allclose(params["w"], chain_params["w"], rtol=1e-5)
    assert step._cache_size() == 1
    assert not bool(method.fast_path.needs_task_gradients(state.weighting))


def test_errors():
    with pytest.raises(TypeError, match="multi-task transformation"):
        freeze(optax.sgd(0.1), 5)
    with pytest.raises(ValueError, match="estimation_steps"):
        freeze(asj.equal_weights(2), 0)
    with pytest.raises(ValueError, match="Unknown aggregation"):
        freeze(asj.equal_weights(2), 3, aggregate="median")
