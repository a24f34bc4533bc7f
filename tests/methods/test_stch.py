"""STCH against float64 numpy and autodiff references; the μ → 0 and μ → ∞ limits; warm-up."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.stch import stch, stch_weights


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def reference_stch(losses_seq, mu, lam=None, warmup=0, log_losses=True, ideal=0.0, eps=1e-8):
    """float64 replay: warm-up weights λ/(L+ε) and the nadir mean, then K λ softmax(λ f/μ) ..."""
    k = len(losses_seq[0])
    lam = np.ones(k) if lam is None else np.asarray(lam, np.float64)
    seen, weights = [], []
    for losses in losses_seq:
        L = np.asarray(losses, np.float64)
        if log_losses:
            clamped = np.maximum(L, 0.0) + eps
            if len(seen) < warmup:
                weights.append(lam / clamped)
                seen.append(np.maximum(L, 0.0))
                continue
            nadir = np.mean(seen, axis=0) if seen else np.ones(k)
            f = np.log(clamped) - np.log(nadir + eps)
            weights.append(k * lam * softmax(lam * f / mu) / clamped)
        else:
            weights.append(k * lam * softmax(lam * (L - ideal) / mu))
    return np.array(weights)


def falling_losses(num_steps, num_tasks=3, seed=0):
    """Losses of different scales falling at different rates, so the nadir matters."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-1, 1, num_tasks)
    rates = rng.uniform(0.8, 1.0, num_tasks)
    return [
        (scales * rates**t * rng.uniform(0.9, 1.1, num_tasks)).astype(np.float32)
        for t in range(num_steps)
    ]


@pytest.mark.parametrize(("mu", "warmup"), [(1.0, 4), (0.2, 3), (3.0, 0)])
def test_log_form_with_warmup_matches_float64_replay(mu, warmup):
    losses = falling_losses(10)
    grads = checks.gradient_sequence(np.random.default_rng(1), 3, 10)
    lam = [0.5, 1.0, 2.0]
    combined, weights, state = checks.run_updates(
        stch(3, mu=mu, preferences=lam, warmup_steps=warmup), grads, losses
    )
    expected = reference_stch(losses, mu, lam, warmup)
    np.testing.assert_allclose(weights, expected, rtol=2e-5)
    if warmup:
        np.testing.assert_allclose(state.nadir, np.mean(losses[:warmup], axis=0), rtol=1e-5)
    assert int(state.warmup_count) == warmup
    for key in ("a", "b"):
        np.testing.assert_allclose(
            combined[-1][key], np.einsum("k,k...->...", expected[-1], grads[-1][key]), rtol=1e-4
        )


def test_raw_form_matches_float64_reference():
    losses = falling_losses(4)
    grads = checks.gradient_sequence(np.random.default_rng(2), 3, 4)
    lam, ideal = [0.2, 0.3, 0.5], [0.05, 0.0, 0.1]
    tx = stch(3, mu=0.7, preferences=lam, log_losses=False, ideal_point=ideal)
    _, weights, _ = checks.run_updates(tx, grads, losses)
    expected = reference_stch(losses, 0.7, lam, log_losses=False, ideal=np.array(ideal))
    np.testing.assert_allclose(weights, expected, rtol=2e-5)


@pytest.mark.parametrize("log_losses", [True, False])
def test_update_is_k_times_the_gradient_of_the_smooth_max(log_losses):
    loss_fn, params, x, y = checks.make_problem()
    lam, mu = jnp.array([1.0, 2.0, 0.5]), 0.8
    kwargs = {"warmup_steps": 0} if log_losses else {"log_losses": False}
    tx = stch(3, mu=mu, preferences=lam, **kwargs)
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    update, _ = tx.update(task_grads, tx.init(params), params, task_losses=losses)

    def objective(p):
        values = loss_fn(p, x, y)
        f = jnp.log(values + 1e-8) if log_losses else values
        return 3 * mu * jax.nn.logsumexp(lam * f / mu)

    expected = jax.grad(objective)(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), update, expected
    )


@pytest.mark.parametrize("log_losses", [True, False])
def test_small_mu_puts_all_weight_on_the_worst_weighted_task(log_losses):
    losses = jnp.array([0.5, 2.0, 1.5])
    lam = jnp.array([1.0, 0.5, 1.0])  # λ L = (0.5, 1.0, 1.5): task 2 is the worst
    ref = jnp.ones(3) if log_losses else jnp.zeros(3)
    weights = stch_weights(losses, mu=1e-4, preferences=lam, reference=ref, log_losses=log_losses)
    # Tchebycheff: the gradient of max_k λ_k f_k is λ_k* ∇f_k*, times K.
    inverse = 1.0 / (np.asarray(losses) + 1e-8) if log_losses else np.ones(3)
    expected = np.array([0.0, 0.0, 3.0]) * np.asarray(lam) * inverse
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-12)
    # Log form: λ log L = (-0.69, 0.35, 0.41) also picks task 2.


@pytest.mark.parametrize("log_losses", [True, False])
def test_large_mu_approaches_the_linear_weights(log_losses):
    losses = jnp.array([0.5, 20.0, 1.5])
    lam = jnp.array([0.2, 0.5, 0.3])
    ref = jnp.ones(3) if log_losses else jnp.zeros(3)
    weights = stch_weights(losses, mu=1e7, preferences=lam, reference=ref, log_losses=log_losses)
    inverse = 1.0 / (np.asarray(losses) + 1e-8) if log_losses else np.ones(3)
    np.testing.assert_allclose(weights, np.asarray(lam) * inverse, rtol=1e-5)


def test_log_form_is_invariant_to_rescaling_a_loss_after_warmup():
    losses = falling_losses(8)
    grads = checks.gradient_sequence(np.random.default_rng(3), 3, 8)
    scale = np.array([1.0, 1000.0, 0.001], np.float32)
    tx = stch(3, mu=0.3, warmup_steps=3, eps=1e-12)
    combined, _, _ = checks.run_updates(tx, grads, losses)
    scaled_grads = [jax.tree.map(lambda g: g * scale.reshape(-1, 1), g) for g in grads]
    combined_s, _, _ = checks.run_updates(tx, scaled_grads, [L * scale for L in losses])
    for a, b in zip(combined, combined_s, strict=True):
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-4, atol=1e-7), a, b)


def test_non_finite_losses_skip_the_nadir_and_keep_the_weights():
    tx = stch(2, warmup_steps=2)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    _, state = tx.update(grads, state, params, task_losses=jnp.array([2.0, 4.0]))
    kept = np.asarray(asj.task_weights(state))
    _, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.nan, 1.0]))
    np.testing.assert_array_equal(asj.task_weights(state), kept)
    assert int(state.warmup_count) == 1
    _, state = tx.update(grads, state, params, task_losses=jnp.array([4.0, 2.0]))
    np.testing.assert_allclose(state.nadir, [3.0, 3.0])
    _, state = tx.update(grads, state, params, task_losses=jnp.array([-1.0, 3.0]))
    assert np.all(np.isfinite(asj.task_weights(state)))  # a negative loss is clamped to 0


def test_rejects_bad_hyper_parameters():
    with pytest.raises(ValueError, match="mu"):
        stch(2, mu=0.0)
    with pytest.raises(ValueError, match="eps"):
        stch(2, eps=-1.0)
    with pytest.raises(ValueError, match="preferences"):
        stch(2, preferences=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="preferences"):
        stch(2, preferences=[1.0, -2.0])
    with pytest.raises(ValueError, match="preferences"):
        stch(2, preferences=[0.0, 0.0])
    with pytest.raises(ValueError, match="warmup_steps"):
        stch(2, warmup_steps=-1)
    with pytest.raises(ValueError, match="warmup_steps"):
        stch(2, log_losses=False, warmup_steps=5)
    with pytest.raises(ValueError, match="ideal_point"):
        stch(2, ideal_point=[0.0, 0.0])
    with pytest.raises(ValueError, match="ideal_point"):
        stch(2, log_losses=False, ideal_point=[0.0, 0.0, 1.0])


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, lambda k: stch(k, mu=0.5, warmup_steps=2))
