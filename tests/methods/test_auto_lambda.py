"""Auto-Lambda: the closed-form meta-gradient against a float64 finite difference of the
lookahead validation loss, a float64 replay of the Adam steps on λ, and the sign of the
weight changes for aligned and opposed tasks."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import as_task_grads, random_jacobian

import autoscale_jax as asj
from autoscale_jax.methods.auto_lambda import (
    auto_lambda,
    auto_lambda_lookahead,
    auto_lambda_meta_gradient,
)


def split(v):
    """A [P] vector as the two-leaf params tree of ``as_task_grads``."""
    half = len(v) // 2
    return {"a": jnp.asarray(v[:half], jnp.float32), "b": jnp.asarray(v[half:], jnp.float32)}


def test_meta_gradient_is_the_derivative_of_the_lookahead_validation_loss(rng):
    # float64: L_val(θ) = ½||Aθ - b||², θ'(λ) = θ - η Σ λ_k g_k; central differences in λ.
    num_tasks, dim, eta = 3, 6, 0.05
    J = rng.normal(size=(num_tasks, dim))
    A, b, theta = rng.normal(size=(8, dim)), rng.normal(size=8), rng.normal(size=dim)
    lam = np.array([0.3, 1.2, 0.7])

    def val_loss(lam):
        lookahead = theta - eta * lam @ J
        return 0.5 * np.sum((A @ lookahead - b) ** 2)

    h = 1e-6
    finite_difference = np.array(
        [(val_loss(lam + h * e) - val_loss(lam - h * e)) / (2 * h) for e in np.eye(num_tasks)]
    )
    lookahead = auto_lambda_lookahead(split(theta), as_task_grads(J), lam, eta)
    np.testing.assert_allclose(checks.flat(lookahead), theta - eta * lam @ J, rtol=1e-5)
    validation_grad = A.T @ (A @ (theta - eta * lam @ J) - b)
    meta = auto_lambda_meta_gradient(as_task_grads(J), split(validation_grad), eta)
    np.testing.assert_allclose(meta, finite_difference, rtol=1e-4, atol=1e-7)


def reference_auto_lambda(Js, vs, eta, lr, init, non_negative, optimizer="adam"):
    """float64: λ ← clip(opt(λ, -η J v)), update Σ λ g with the new λ."""
    lam = np.full(len(Js[0]), init)
    opt = checks.numpy_optimizer(optimizer, lr)
    weights, updates = [], []
    for J, v in zip(Js, vs, strict=True):
        lam = opt.step(lam, -eta * (J @ v))
        if non_negative:
            lam = np.maximum(lam, 0.0)
        weights.append(lam)
        updates.append(lam @ J)
    return np.array(weights), np.array(updates)


@pytest.mark.parametrize(
    ("optimizer", "lr", "non_negative"),
    [("adam", 0.05, True), ("adam", 0.05, False), ("sgd", 2.0, True)],
)
def test_matches_float64_replay(optimizer, lr, non_negative):
    rng = np.random.default_rng(1)
    num_steps, eta = 8, 0.1
    Js = [random_jacobian(rng, 3, 6) / 10 for _ in range(num_steps)]
    # The validation gradient leans against task 0 and with task 1, so λ_0 reaches 0 (clipped).
    vs = [-J[0] / np.linalg.norm(J[0]) + J[1] / np.linalg.norm(J[1]) for J in Js]
    tx = auto_lambda(
        3, lookahead_lr=eta, learning_rate=lr, initial_weight=0.1, optimizer=optimizer,
        non_negative=non_negative,
    )  # fmt: skip
    update = jax.jit(lambda g, s, v: tx.update(g, s, validation_grads=v))
    state = tx.init(None)
    weights, outputs = [], []
    for J, v in zip(Js, vs, strict=True):
        out, state = update(as_task_grads(J), state, split(v))
        weights.append(np.asarray(asj.task_weights(state)))
        outputs.append(checks.flat(out))
    assert update._cache_size() == 1
    expected_w, expected_u = reference_auto_lambda(Js, vs, eta, lr, 0.1, non_negative, optimizer)
    np.testing.assert_allclose(weights, expected_w, rtol=1e-4, atol=1e-6)
    scale = np.abs(expected_u).max()
    np.testing.assert_allclose(outputs, expected_u, rtol=1e-4, atol=1e-5 * scale)
    np.testing.assert_allclose(state.meta_gradient, -eta * Js[-1] @ vs[-1], rtol=1e-5)
    if non_negative:
        assert expected_w[-1, 0] == 0.0 and weights[-1][0] == 0.0
    else:
        assert weights[-1][0] < 0.0


def test_aligned_task_gains_weight_and_opposed_task_loses_it(rng):
    v = rng.normal(size=6)
    orthogonal = rng.normal(size=6)
    orthogonal -= orthogonal @ v / (v @ v) * v
    J = np.stack([2.0 * v, -0.5 * v, orthogonal])
    tx = auto_lambda(3, learning_rate=0.01, initial_weight=1.0)
    state = tx.init(None)
    for _ in range(5):
        _, state = tx.update(as_task_grads(J), state, validation_grads=split(v))
    w = np.asarray(asj.task_weights(state))
    assert w[0] > 1.0 + 0.04  # aligned: descending along g_0 lowers the validation loss
    assert w[1] < 1.0 - 0.04  # opposed: it raises it
    # orthogonal: no first-order effect (Adam magnifies float32 round-off a little)
    np.testing.assert_allclose(w[2], 1.0, atol=1e-2)


def test_permuting_tasks_permutes_the_weights(rng):
    J = random_jacobian(rng, 4, 6)
    v = split(rng.normal(size=6))
    perm = np.array([2, 0, 3, 1])
    tx = auto_lambda(4, learning_rate=0.05)
    _, state = tx.update(as_task_grads(J), tx.init(None), validation_grads=v)
    _, state_p = tx.update(as_task_grads(J[perm]), tx.init(None), validation_grads=v)
    np.testing.assert_allclose(state_p.task_weights, state.task_weights[perm], rtol=1e-6)


def test_non_finite_validation_gradient_keeps_the_state(rng):
    tx = auto_lambda(3, learning_rate=0.05)
    update = jax.jit(lambda g, s, v: tx.update(g, s, validation_grads=v))
    state = tx.init(None)
    grads = as_task_grads(random_jacobian(rng, 3, 6))
    _, state = update(grads, state, split(rng.normal(size=6)))
    bad = rng.normal(size=6)
    bad[3] = np.nan
    _, new_state = update(grads, state, split(bad))
    assert update._cache_size() == 1
    jax.tree.map(np.testing.assert_array_equal, new_state._replace(step=0), state._replace(step=0))
    J = random_jacobian(rng, 3, 6)
    J[0, 1] = np.inf
    out, new_state = update(as_task_grads(J), state, split(rng.normal(size=6)))
    assert not np.all(np.isfinite(checks.flat(out)))
    np.testing.assert_array_equal(new_state.task_weights, state.task_weights)


def test_validation_gradient_is_required_and_checked():
    tx = auto_lambda(2)
    grads = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="needs the validation gradient"):
        tx.update(grads, tx.init(None))
    with pytest.raises(ValueError, match="params-shaped"):
        tx.update(grads, tx.init(None), validation_grads={"w": jnp.ones((2, 3))})
    with pytest.raises(ValueError, match="tree of the parameters"):
        tx.update(grads, tx.init(None), validation_grads={"v": jnp.ones(3)})
    assert tx.fast_path is None
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(3)}, tx.init(None), presummed=True)


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="at least 2"):
        auto_lambda(1)
    with pytest.raises(ValueError, match="lookahead_lr"):
        auto_lambda(2, lookahead_lr=0.0)
    with pytest.raises(ValueError, match="learning_rate"):
        auto_lambda(2, learning_rate=-1.0)
    with pytest.raises(ValueError, match="initial_weight"):
        auto_lambda(2, initial_weight=-0.1)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        auto_lambda(2, optimizer="rmsprop")
