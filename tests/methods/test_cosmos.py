"""COSMOS: the loss-space weights against a float64 closed form and a float64 finite difference
of the scalarized objective; the update equals autodiff of that objective; μ = 0 is LS."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.cosmos import cosmos, cosmos_preference, cosmos_weights


def objective(losses, r, mu):
    """float64 ``Σ r L - μ cos(r, L)``."""
    return r @ losses - mu * (r @ losses) / (np.linalg.norm(r) * np.linalg.norm(losses))


def closed_form(losses, r, mu):
    """float64, written out by the quotient rule: ∂/∂L_k of <r,L>/(|r| |L|)."""
    nr, nl = np.linalg.norm(r), np.linalg.norm(losses)
    d_cos = r / (nr * nl) - (r @ losses) * losses / (nr * nl**3)
    return r - mu * d_cos


def finite_difference(losses, r, mu, h=1e-6):
    return np.array(
        [
            (objective(losses + h * e, r, mu) - objective(losses - h * e, r, mu)) / (2 * h)
            for e in np.eye(len(losses))
        ]
    )


@pytest.mark.parametrize("mu", [0.5, 2.0, 8.0])
def test_weights_match_closed_form_and_finite_difference(rng, mu):
    for _ in range(5):
        losses = rng.uniform(0.05, 3.0, 4)
        r = rng.dirichlet(np.full(4, 1.2))
        expected = closed_form(losses, r, mu)
        np.testing.assert_allclose(finite_difference(losses, r, mu), expected, rtol=1e-6, atol=1e-8)
        tx = cosmos(4, preference=r, mu=mu)
        grads = checks.gradient_sequence(rng, 4, 1)[0]
        out, state = tx.update(grads, tx.init(None), task_losses=jnp.asarray(losses, jnp.float32))
        np.testing.assert_allclose(state.task_weights, expected, rtol=2e-5, atol=2e-6 * mu)
        combined = np.einsum("k,kp->p", expected, np.asarray(grads["a"], np.float64))
        np.testing.assert_allclose(
            out["a"], combined, rtol=1e-4, atol=1e-4 * np.abs(combined).max()
        )


def test_weights_can_be_negative():
    # The loss share of task 0 is far below its preference share: the penalty wins.
    w = cosmos_weights(jnp.array([0.01, 1.0]), jnp.array([0.5, 0.5]), 2.0)
    expected = closed_form(np.array([0.01, 1.0]), np.array([0.5, 0.5]), 2.0)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert w[0] < 0 < w[1]


def test_mu_zero_is_linear_scalarization(rng):
    r = np.array([0.2, 0.5, 0.3], np.float32)
    tx = cosmos(3, preference=r, mu=0.0)
    _, weights, _ = checks.run_updates(
        tx, checks.gradient_sequence(rng, 3, 4), checks.loss_sequence(rng, 3, 4)
    )
    np.testing.assert_array_equal(weights, np.tile(r, (4, 1)))


def test_update_is_the_gradient_of_the_scalarized_loss():
    loss_fn, params, x, y = checks.make_problem(num_tasks=3)
    r, mu = jnp.array([0.2, 0.3, 0.5]), 2.0

    def scalarized(p):
        losses = loss_fn(p, x, y)
        return r @ losses - mu * (r @ losses) / (jnp.linalg.norm(r) * jnp.linalg.norm(losses))

    expected = jax.grad(scalarized)(params)
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    tx = cosmos(3, preference=r, mu=mu)
    out, _ = tx.update(task_grads, tx.init(params), params, task_losses=losses)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), out, expected)


def test_sampled_preferences_come_from_the_key(rng):
    tx = cosmos(3, sample_preferences=True, concentration=[1.0, 2.0, 3.0])
    losses = jnp.array([0.5, 1.0, 2.0])
    grads = checks.gradient_sequence(rng, 3, 1)[0]
    with pytest.raises(ValueError, match="key"):
        tx.update(grads, tx.init(None), task_losses=losses)
    update = jax.jit(lambda s, k: tx.update(grads, s, task_losses=losses, key=k))
    state = tx.init(None)
    preferences = []
    for step in range(3):
        key = jax.random.PRNGKey(step)
        _, state = update(state, key)
        r = cosmos_preference(key, 3, [1.0, 2.0, 3.0])
        np.testing.assert_allclose(state.preference, r, rtol=1e-6)
        np.testing.assert_allclose(np.sum(r), 1.0, rtol=1e-6)
        expected = closed_form(np.asarray(losses, np.float64), np.asarray(r, np.float64), 2.0)
        np.testing.assert_allclose(state.task_weights, expected, rtol=1e-5, atol=1e-6)
        preferences.append(np.asarray(r))
    assert update._cache_size() == 1
    assert not np.allclose(preferences[0], preferences[1])


def test_zero_and_non_finite_losses(rng):
    r = np.array([0.25, 0.75], np.float32)
    tx = cosmos(2, preference=r)
    grads = checks.gradient_sequence(rng, 2, 1)[0]
    _, state = tx.update(grads, tx.init(None), task_losses=jnp.zeros(2))
    np.testing.assert_array_equal(state.task_weights, r)  # cosine undefined: its term dropped
    _, state = tx.update(grads, state, task_losses=jnp.array([1.0, 0.5]))
    out, new_state = tx.update(grads, state, task_losses=jnp.array([jnp.nan, 0.5]))
    assert np.isfinite(out["a"]).all()  # NaN losses, finite gradients: previous weights
    np.testing.assert_array_equal(new_state.task_weights, state.task_weights)
    assert not np.allclose(state.task_weights, r)  # the kept weights are the previous step's


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, lambda k: cosmos(k))


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="at least 2"):
        cosmos(1)
    with pytest.raises(ValueError, match="mu"):
        cosmos(2, mu=-1.0)
    with pytest.raises(ValueError, match="shape"):
        cosmos(3, preference=[0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        cosmos(2, preference=[-0.5, 1.5])
    with pytest.raises(ValueError, match="nonzero"):
        cosmos(2, preference=[0.0, 0.0])
    with pytest.raises(ValueError, match="concentration"):
        cosmos(2, sample_preferences=True, concentration=0.0)
    with pytest.raises(ValueError, match="concentration"):
        cosmos(2, concentration=[1.0, 1.0, 1.0])
