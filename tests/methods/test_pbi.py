"""PBI: the loss-space weights against a float64 finite-difference gradient of g_pbi, θ = 0
giving r/||r||, the d2 = 0 guard, MOEA/D's running ideal point and autodiff of the objective."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.pbi import pbi, pbi_value, pbi_weights


def g_pbi(losses, r, z, theta):
    """float64 ``d1 + θ d2``."""
    unit = r / np.linalg.norm(r)
    d1 = (losses - z) @ unit
    return d1 + theta * np.linalg.norm(losses - z - d1 * unit)


def finite_difference(losses, r, z, theta, h=1e-6):
    return np.array(
        [
            (g_pbi(losses + h * e, r, z, theta) - g_pbi(losses - h * e, r, z, theta)) / (2 * h)
            for e in np.eye(len(losses))
        ]
    )


@pytest.mark.parametrize("theta", [0.5, 5.0])
def test_weights_match_float64_finite_difference(rng, theta):
    for _ in range(5):
        losses = rng.uniform(0.1, 3.0, 4)
        r = rng.uniform(0.1, 1.0, 4)
        z = rng.uniform(-0.5, 0.1, 4)
        expected = finite_difference(losses, r, z, theta)
        tx = pbi(4, preference=r, theta=theta, ideal_point=z)
        grads = checks.gradient_sequence(rng, 4, 1)[0]
        out, state = tx.update(grads, tx.init(None), task_losses=jnp.asarray(losses, jnp.float32))
        np.testing.assert_allclose(state.task_weights, expected, rtol=1e-4, atol=1e-5 * theta)
        combined = np.einsum("k,kp->p", expected, np.asarray(grads["a"], np.float64))
        np.testing.assert_allclose(
            out["a"], combined, rtol=1e-3, atol=1e-4 * np.abs(combined).max()
        )
        value = pbi_value(jnp.asarray(losses), jnp.asarray(r), jnp.asarray(z), theta)
        np.testing.assert_allclose(value, g_pbi(losses, r, z, theta), rtol=1e-5)
    if theta > 1:  # the penalty pulls tasks above the ray down, those below up: w_k < 0 occur
        assert np.any(np.asarray(state.task_weights) < 0)


def test_theta_zero_gives_the_unit_preference(rng):
    r = np.array([1.0, 2.0, 2.0], np.float32)
    tx = pbi(3, preference=r, theta=0.0)
    _, weights, _ = checks.run_updates(
        tx, checks.gradient_sequence(rng, 3, 4), checks.loss_sequence(rng, 3, 4)
    )
    np.testing.assert_allclose(weights, np.tile(r / 3.0, (4, 1)), rtol=1e-6)


def test_on_the_ray_the_penalty_has_zero_subgradient():
    r = jnp.array([1.0, 3.0])
    w = pbi_weights(2.0 * r + 0.5, r, 0.5, 5.0)  # L - z* = 2 r: d2 = 0 up to round-off
    np.testing.assert_allclose(w, r / jnp.linalg.norm(r), rtol=1e-6)
    w = pbi_weights(jnp.array([0.5, 0.5]), r, 0.5, 5.0)  # L = z*
    np.testing.assert_allclose(w, r / jnp.linalg.norm(r), rtol=1e-6)
    # Just off the ray the penalty's full gradient θ p/||p|| is back (float32 p: atol).
    off = np.array([2.503, 6.499])
    expected = finite_difference(off, np.array([1.0, 3.0]), 0.5, 5.0, h=1e-8)
    np.testing.assert_allclose(pbi_weights(jnp.asarray(off), r, 0.5, 5.0), expected, atol=5e-3)
    assert np.abs(expected - np.asarray(r / jnp.linalg.norm(r))).max() > 1.0


def test_running_min_ideal_point_against_replay(rng):
    losses_seq = checks.loss_sequence(rng, 3, 6)
    r, theta = np.array([0.2, 0.3, 0.5]), 5.0
    tx = pbi(3, preference=r, theta=theta, ideal_point="running_min")
    _, weights, state = checks.run_updates(tx, checks.gradient_sequence(rng, 3, 6), losses_seq)
    z = None
    for losses, w in zip(losses_seq, weights, strict=True):
        losses = np.asarray(losses, np.float64)
        z = losses if z is None else np.minimum(z, losses)
        if np.allclose(losses, z):  # on the ideal point itself: d2 = 0
            np.testing.assert_allclose(w, r / np.linalg.norm(r), rtol=1e-6)
        else:
            np.testing.assert_allclose(w, finite_difference(losses, r, z, theta), rtol=1e-4)
    np.testing.assert_allclose(state.ideal_point, z, rtol=1e-6)
    # A NaN loss moves neither the ideal point nor the weights.
    _, new_state = tx.update({"w": jnp.ones((3, 2))}, state, task_losses=jnp.array([jnp.nan, 1, 1]))
    jax.tree.map(np.testing.assert_array_equal, new_state, state)


def test_update_is_the_gradient_of_the_scalarized_loss():
    loss_fn, params, x, y = checks.make_problem(num_tasks=3)
    r, z, theta = jnp.array([0.2, 0.3, 0.5]), jnp.array([0.01, 0.02, 0.03]), 5.0
    expected = jax.jit(jax.grad(lambda p: pbi_value(loss_fn(p, x, y), r, z, theta)))(params)
    losses, task_grads = jax.jit(asj.task_value_and_grad(loss_fn))(params, x, y)
    tx = pbi(3, preference=r, theta=theta, ideal_point=z)
    out, _ = tx.update(task_grads, tx.init(params), params, task_losses=losses)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), out, expected)


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    # (with "running_min" and steadily falling losses z* = L: always on the ray, w = r̂)
    checks.check_loss_space_contract(check, lambda k: pbi(k))


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="at least 2"):
        pbi(1)
    with pytest.raises(ValueError, match="theta"):
        pbi(2, theta=-1.0)
    with pytest.raises(ValueError, match="shape"):
        pbi(3, preference=[1.0, 1.0])
    with pytest.raises(ValueError, match="nonzero"):
        pbi(2, preference=[0.0, 0.0])
    with pytest.raises(ValueError, match="running_min"):
        pbi(2, ideal_point="best")
    with pytest.raises(ValueError, match="ideal_point"):
        pbi(2, ideal_point=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        pbi(2, ideal_point=[0.0, np.inf])
