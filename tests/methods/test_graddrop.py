"""GradDrop: against a float64 numpy implementation with the same uniform draws."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan

import autoscale_jax as asj
from autoscale_jax.methods.graddrop import graddrop, graddrop_combine, graddrop_uniforms


def numpy_graddrop(J: np.ndarray, uniforms: np.ndarray, leak=0.0) -> np.ndarray:
    """Chen et al's sign purity and masks, element by element, in float64 (J is [K, P])."""
    J = np.asarray(J, np.float64)
    leak = np.broadcast_to(np.asarray(leak, np.float64), (J.shape[0],))
    out = np.zeros(J.shape[1])
    for p in range(J.shape[1]):
        column = J[:, p]
        magnitude = np.abs(column).sum()
        purity = 0.5 * (1 + column.sum() / magnitude) if magnitude > 0 else 0.5
        for k, g in enumerate(column):
            kept = (purity > uniforms[p] and g > 0) or (purity < uniforms[p] and g < 0)
            out[p] += (leak[k] + (1 - leak[k]) * kept) * g
    return out


def flat(tree: dict) -> np.ndarray:
    return np.concatenate([np.asarray(tree["a"]).ravel(), np.asarray(tree["b"]).ravel()])


def run_graddrop(J: np.ndarray, key: jax.Array, leak=0.0) -> tuple[np.ndarray, np.ndarray]:
    """GradDrop's update and the uniforms it drew (rebuilt from the same key)."""
    tx = graddrop(J.shape[0], leak=leak)
    grads = as_task_grads(J)
    update, _ = tx.update(grads, tx.init(None), key=key)
    return flat(update), flat(graddrop_uniforms(key, grads))


def test_torchjd_jacobian_hand_derived():
    # Column 0: components -4 and 6, P = (1 + 2/10)/2 = 0.6; columns 1, 2: P = 1 (kept).
    grads = {"a": jnp.asarray(TORCHJD_JACOBIAN[:, :1]), "b": jnp.asarray(TORCHJD_JACOBIAN[:, 1:])}
    keep_positive = {"a": jnp.array([0.59]), "b": jnp.array([0.999, 0.5])}
    keep_negative = {"a": jnp.array([0.61]), "b": jnp.array([0.999, 0.5])}
    np.testing.assert_allclose(flat(graddrop_combine(grads, keep_positive)), [6.0, 2.0, 2.0])
    np.testing.assert_allclose(flat(graddrop_combine(grads, keep_negative)), [-4.0, 2.0, 2.0])


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
@pytest.mark.parametrize("leak", [0.0, 0.3])
def test_matches_numpy_reference_with_same_uniforms(rng, num_tasks, dim, leak):
    J = random_jacobian(rng, num_tasks, dim)
    update, uniforms = run_graddrop(J, jax.random.key(7), leak=leak)
    expected = numpy_graddrop(J, uniforms, leak)
    np.testing.assert_allclose(update, expected, rtol=1e-5, atol=1e-6 * np.abs(J).max())


def test_per_task_leak_matches_reference(rng):
    J = random_jacobian(rng, 3, 8)
    leak = [1.0, 0.0, 0.5]
    update, uniforms = run_graddrop(J, jax.random.key(1), leak=leak)
    np.testing.assert_allclose(
        update, numpy_graddrop(J, uniforms, leak), rtol=1e-5, atol=1e-6 * np.abs(J).max()
    )


def test_sign_is_kept_with_probability_purity():
    # Column with components -4 and 6 repeated: the positive sign should win 60% of the time.
    num = 4000
    grads = {"w": jnp.tile(jnp.array([[-4.0], [6.0]]), (1, num))}
    tx = graddrop(2)
    update, _ = tx.update(grads, tx.init(None), key=jax.random.key(0))
    values = np.asarray(update["w"])
    assert set(np.unique(values)) <= {-4.0, 6.0}
    assert abs(np.mean(values == 6.0) - 0.6) < 4 * np.sqrt(0.24 / num)


def test_agreeing_signs_are_the_plain_sum(rng):
    J = np.abs(random_jacobian(rng, 3, 6))
    J[:, 3:] *= -1  # every column has one sign across tasks
    update, _ = run_graddrop(J, jax.random.key(2))
    np.testing.assert_allclose(update, J.sum(axis=0), rtol=1e-5)


def test_full_leak_is_the_plain_sum(rng):
    J = random_jacobian(rng, 3, 6)
    update, _ = run_graddrop(J, jax.random.key(2), leak=1.0)
    np.testing.assert_allclose(update, J.sum(axis=0), rtol=1e-5, atol=1e-6 * np.abs(J).max())


def test_each_element_keeps_one_sign(rng):
    J = random_jacobian(rng, 4, 9)
    update, _ = run_graddrop(J, jax.random.key(5))
    positive = np.where(J > 0, J, 0).sum(axis=0)
    negative = np.where(J < 0, J, 0).sum(axis=0)
    assert np.all(np.isclose(update, positive, rtol=1e-5) | np.isclose(update, negative, rtol=1e-5))


def test_zero_gradient_task_and_zero_elements_are_finite(rng):
    J = random_jacobian(rng, 3, 6)
    J[1] = 0.0
    J[:, 0] = 0.0
    update, uniforms = run_graddrop(J, jax.random.key(3))
    assert np.all(np.isfinite(update))
    assert update[0] == 0.0
    np.testing.assert_allclose(update, numpy_graddrop(J, uniforms), rtol=1e-5, atol=1e-7)


def test_keeps_the_leaf_dtype(rng):
    grads = {"w": jnp.asarray(random_jacobian(rng, 2, 4), jnp.bfloat16)}
    update, _ = graddrop(2).update(grads, graddrop(2).init(None), key=jax.random.key(0))
    assert update["w"].dtype == jnp.bfloat16


def test_jit_compiles_once_and_nan_propagates(rng):
    assert_compiles_once_and_survives_nan(graddrop(3), 3, rng)


def test_has_no_task_weights_and_checks_arguments(rng):
    tx = graddrop(2)
    grads = as_task_grads(random_jacobian(rng, 2, 4))
    state = tx.init(None)
    with pytest.raises(ValueError, match="No multi-task state"):
        asj.task_weights(state)
    with pytest.raises(ValueError, match="PRNG key"):
        tx.update(grads, state)
    with pytest.raises(ValueError, match="leak"):
        graddrop(2, leak=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="leak"):
        graddrop(2, leak=1.5)


def test_chains_first_in_optax(rng):
    J = random_jacobian(rng, 2, 4)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    tx = optax.chain(graddrop(2), optax.sgd(1.0))
    key = jax.random.key(0)
    updates, _ = tx.update(as_task_grads(J), tx.init(params), params, key=key)
    uniforms = flat(graddrop_uniforms(key, as_task_grads(J)))
    np.testing.assert_allclose(-flat(updates), numpy_graddrop(J, uniforms), rtol=1e-5, atol=1e-6)
