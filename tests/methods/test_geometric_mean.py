"""Geometric loss strategy: the gradient of (Π L)^{1/K}, log-space stability, scale behaviour."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN

import autoscale_jax as asj
from autoscale_jax.methods.geometric_mean import geometric_mean, geometric_mean_weights


def reference_weights(losses, eps=1e-8):
    """float64 by the product formula: w_k = (Π_j L_j)^{1/K} / (K L_k)."""
    shifted = np.maximum(np.asarray(losses, np.float64), 0.0) + eps
    k = shifted.shape[0]
    return np.prod(shifted) ** (1.0 / k) / (k * shifted)


def test_update_is_the_gradient_of_the_geometric_mean():
    loss_fn, params, x, y = checks.make_problem()
    losses, task_grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    tx = geometric_mean(3)
    update, state = tx.update(task_grads, tx.init(params), params, task_losses=losses)
    np.testing.assert_allclose(asj.task_weights(state), reference_weights(losses), rtol=1e-5)
    # Independent reference: autodiff of (Π_k L_k)^{1/K}.
    expected = jax.grad(lambda p: jnp.prod(loss_fn(p, x, y)) ** (1.0 / 3.0))(params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), update, expected
    )


def test_hand_derived_weights_on_the_torchjd_jacobian():
    # L = (2, 8): geometric mean 4, weights 4 / (2·2) = 1 and 4 / (2·8) = 0.25.
    J = np.asarray(TORCHJD_JACOBIAN, np.float32)
    tx = geometric_mean(2)
    params = {"w": jnp.zeros(3)}
    out, state = tx.update({"w": J}, tx.init(params), params, task_losses=jnp.array([2.0, 8.0]))
    np.testing.assert_allclose(asj.task_weights(state), [1.0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(out["w"], [-2.5, 1.25, 1.25], rtol=1e-6)


@pytest.mark.parametrize("num_tasks", [2, 3, 7])
def test_matches_float64_reference_on_random_losses(num_tasks):
    rng = np.random.default_rng(num_tasks)
    losses = 10.0 ** rng.uniform(-3, 3, num_tasks)
    weights = geometric_mean_weights(jnp.asarray(losses, jnp.float32))
    np.testing.assert_allclose(weights, reference_weights(losses), rtol=2e-5)


def test_log_space_survives_losses_whose_product_overflows():
    # Π L = 1e40 · 1e-20 overflows float32 when formed directly; the weights are still exact.
    losses = np.array([1e20, 1e20, 1e-20], np.float64)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.prod(losses.astype(np.float32)[:2]))
    weights = np.asarray(geometric_mean_weights(jnp.asarray(losses, jnp.float32), eps=1e-30))
    geo = 1e20 ** (2 / 3) * 1e-20 ** (1 / 3)
    np.testing.assert_allclose(weights, geo / (3 * losses), rtol=1e-4)


@pytest.mark.parametrize("scale", [100.0, 0.01])
def test_rescaling_one_loss_scales_the_update_by_its_kth_root(scale):
    rng = np.random.default_rng(0)
    grads = checks.gradient_sequence(rng, 3, 1)[0]
    losses = checks.loss_sequence(rng, 3, 1)[0]
    tx = geometric_mean(3, eps=1e-12)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
    out, state = tx.update(grads, tx.init(params), params, task_losses=losses)
    factor = np.array([1.0, scale, 1.0], np.float32)
    scaled_grads = jax.tree.map(lambda g: g * factor.reshape(-1, 1), grads)
    out_scaled, state_scaled = tx.update(
        scaled_grads, tx.init(params), params, task_losses=losses * factor
    )
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b, scale ** (1 / 3) * a, rtol=1e-5), out, out_scaled
    )
    # The other tasks' weights grow by c^{1/K}, the rescaled task's by c^{1/K} / c.
    np.testing.assert_allclose(
        asj.task_weights(state_scaled),
        asj.task_weights(state) * scale ** (1 / 3) / factor,
        rtol=1e-5,
    )


def test_direction_is_the_log_loss_direction():
    losses = jnp.array([0.3, 2.0, 50.0])
    weights = np.asarray(geometric_mean_weights(losses, eps=1e-12))
    ratios = weights * np.asarray(losses)
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)


def test_non_positive_and_non_finite_losses():
    tx = geometric_mean(2, eps=1e-4)
    params = {"w": jnp.zeros(2)}
    grads = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    _, state = tx.update(grads, state, params, task_losses=jnp.array([-3.0, 1.0]))
    # A negative loss is clamped to 0: (ε · (1 + ε))^{1/2} / (2 ε) and / (2 (1 + ε)).
    np.testing.assert_allclose(
        asj.task_weights(state), reference_weights([0.0, 1.0], eps=1e-4), rtol=1e-5
    )
    assert np.all(np.isfinite(asj.task_weights(state)))
    _, state = tx.update(grads, state, params, task_losses=jnp.array([4.0, 1.0]))
    kept = np.asarray(asj.task_weights(state))
    out, state = tx.update(grads, state, params, task_losses=jnp.array([jnp.inf, 1.0]))
    np.testing.assert_array_equal(asj.task_weights(state), kept)
    np.testing.assert_allclose(out["w"], kept.sum() * np.ones(2), rtol=1e-6)


def test_jit_compiles_once_over_steps():
    rng = np.random.default_rng(1)
    _, weights, _ = checks.run_updates(
        geometric_mean(3), checks.gradient_sequence(rng, 3, 4), checks.loss_sequence(rng, 3, 4)
    )
    assert np.all(np.isfinite(weights))


def test_rejects_bad_hyper_parameters():
    with pytest.raises(ValueError, match="eps"):
        geometric_mean(2, eps=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        geometric_mean(1)
    tx = geometric_mean(2)
    with pytest.raises(ValueError, match="task losses"):
        tx.update({"w": jnp.ones((2, 2))}, tx.init(None))


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, geometric_mean)
