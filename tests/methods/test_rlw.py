"""Random loss weighting: key handling, reproducibility and the weight distributions."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.rlw import random_loss_weighting

NUM_DRAWS = 4000


def draw_many(distribution, num_tasks, weights_sum=None):
    """Weights of the first step for NUM_DRAWS keys (vmapped over the key)."""
    tx = random_loss_weighting(num_tasks, distribution=distribution, weights_sum=weights_sum)
    params = {"w": jnp.zeros(1)}
    state = tx.init(params)
    grads = {"w": jnp.ones((num_tasks, 1))}

    def first_weights(key):
        _, new_state = tx.update(grads, state, params, key=key)
        return asj.task_weights(new_state)

    return np.asarray(
        jax.jit(jax.vmap(first_weights))(jax.random.split(jax.random.PRNGKey(0), NUM_DRAWS))
    )


def test_missing_key_is_a_clear_error():
    tx = random_loss_weighting(2)
    params = {"w": jnp.zeros(1)}
    with pytest.raises(ValueError, match="needs a PRNG key"):
        tx.update({"w": jnp.ones((2, 1))}, tx.init(params), params)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        tx.fast_path.weights(tx.init(params), jnp.ones(2), None)


def test_reproducible_for_a_key_and_new_draws_every_step():
    rng = np.random.default_rng(0)
    grads, losses = checks.gradient_sequence(rng, 3, 4), checks.loss_sequence(rng, 3, 4)
    key = jax.random.PRNGKey(7)
    keys = [key] * 4  # the same key every step: the step count is folded in
    combined, weights, _ = checks.run_updates(random_loss_weighting(3), grads, losses, keys)
    combined_again, weights_again, _ = checks.run_updates(
        random_loss_weighting(3), grads, losses, keys
    )
    np.testing.assert_array_equal(weights, weights_again)
    jax.tree.map(np.testing.assert_array_equal, combined, combined_again)
    assert len({tuple(np.round(w, 6)) for w in weights}) == 4
    # Step t draws softmax(N(0, I)) from fold_in(key, t), scaled to sum K.
    expected = 3 * jax.nn.softmax(jax.random.normal(jax.random.fold_in(key, 2), (3,)))
    np.testing.assert_allclose(weights[2], expected, rtol=1e-6)
    for key_name in ("a", "b"):
        np.testing.assert_allclose(
            combined[2][key_name],
            np.einsum("k,k...->...", weights[2], grads[2][key_name]),
            rtol=1e-5,
        )


def test_dirichlet_weights_have_the_flat_dirichlet_moments():
    num_tasks = 3
    weights = draw_many("dirichlet", num_tasks)
    assert np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(axis=1), num_tasks, rtol=1e-5)
    # Dir(1): E λ_k = 1/K, Var λ_k = (K-1) / (K² (K+1)); scaled by K: mean 1, var (K-1)/(K+1).
    np.testing.assert_allclose(weights.mean(axis=0), 1.0, atol=0.05)
    np.testing.assert_allclose(weights.var(axis=0), (num_tasks - 1) / (num_tasks + 1), rtol=0.1)


@pytest.mark.parametrize("num_tasks", [2, 4])
def test_normal_weights_match_a_numpy_softmax_of_gaussians(num_tasks):
    weights = draw_many("normal", num_tasks)
    assert np.all(weights > 0)
    np.testing.assert_allclose(weights.sum(axis=1), num_tasks, rtol=1e-5)
    np.testing.assert_allclose(weights.mean(axis=0), 1.0, atol=0.05)  # exchangeable: mean S/K
    # Independent Monte Carlo reference for the spread of K softmax(z), z ~ N(0, I).
    z = np.random.default_rng(0).normal(size=(200_000, num_tasks))
    reference = num_tasks * np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights.std(axis=0), reference.std(axis=0), rtol=0.08)


def test_weights_sum_one_is_the_papers_simplex():
    weights = draw_many("normal", 3, weights_sum=1.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(weights.mean(axis=0), 1 / 3, atol=0.02)


def test_rejects_unknown_distribution():
    with pytest.raises(ValueError, match="distribution"):
        random_loss_weighting(2, distribution="uniform")


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS[:3])
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, random_loss_weighting, random=True)
