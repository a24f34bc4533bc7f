"""ConFIG: against a float64 numpy reimplementation of the paper's Eq. 2 on the Jacobian (a
pseudo-inverse of the unit gradients, not the Gramian), the paper's two-task closed form, and
the equal-projection property."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, random_jacobian
from method_checks import assert_compiles_once_and_flags_nan, assert_permutes_with_tasks, run_method

from autoscale_jax.methods.config import config, config_weights

CONFIG = {num_tasks: config(num_tasks) for num_tasks in (2, 3, 4)}


def reference_config(J: np.ndarray, preferences=None) -> np.ndarray:
    """d = (Σ_k g_kᵀ g_u) g_u, g_u = U(pinv(Û) p), Û the unit rows (zero rows stay 0), float64."""
    J = np.asarray(J, np.float64)
    norms = np.linalg.norm(J, axis=1, keepdims=True)
    units = np.divide(J, norms, out=np.zeros_like(J), where=norms > 0)
    p = np.ones(len(J)) if preferences is None else np.asarray(preferences, np.float64)
    direction = np.linalg.pinv(units, rcond=1e-6) @ p
    length = np.linalg.norm(direction)
    if length < 1e-9:
        return np.zeros(J.shape[1])
    unit = direction / length
    return np.sum(J @ unit) * unit


def weights_of(J: np.ndarray, update: np.ndarray) -> np.ndarray:
    """The combination of the (linearly independent) rows of J that gives ``update``."""
    return np.linalg.solve(J @ J.T, J @ update)


def two_task_config(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """The paper's pseudo-inverse-free form for two tasks, from orthogonal components:
    g_v = U(U(O(g_1, g_2)) + U(O(g_2, g_1))), O(a, b) = b - (aᵀb/|a|²) a,
    d = (g_1ᵀg_v + g_2ᵀg_v) g_v."""

    def unit(x):
        return x / np.linalg.norm(x)

    def orthogonal(a, b):
        return b - (a @ b) / (a @ a) * a

    v = unit(unit(orthogonal(g1, g2)) + unit(orthogonal(g2, g1)))
    return (g1 @ v + g2 @ v) * v


def unit_projections(J: np.ndarray, update: np.ndarray) -> np.ndarray:
    return (J / np.linalg.norm(J, axis=1, keepdims=True)) @ update


def test_two_task_closed_form(rng):
    for J in [TORCHJD_JACOBIAN, random_jacobian(rng, 2, 5), random_jacobian(rng, 2, 5)]:
        update, _, _ = run_method(CONFIG[2], J)
        expected = two_task_config(J[0], J[1])
        np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7)])
def test_matches_float64_reference(rng, num_tasks, dim):
    for _ in range(4):
        J = random_jacobian(rng, num_tasks, dim)
        update, weights, _ = run_method(CONFIG[num_tasks], J)
        expected = reference_config(J)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(update, expected, rtol=1e-3, atol=1e-4 * scale)
        np.testing.assert_allclose(weights, weights_of(J, expected), rtol=2e-3)


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (4, 4)])
def test_equal_positive_projections_on_unit_gradients(rng, num_tasks, dim):
    conflicts = checked = 0
    for _ in range(10):
        J = random_jacobian(rng, num_tasks, dim)
        if np.linalg.cond(J / np.linalg.norm(J, axis=1, keepdims=True)) > 100:
            continue  # float32 resolves the cosine matrix to ~sqrt(K eps): see the x64 test
        checked += 1
        conflicts += np.any(J @ J.T < 0)
        update, _, _ = run_method(CONFIG[num_tasks], J)
        projections = unit_projections(J, update)
        assert projections.min() > 0
        np.testing.assert_allclose(projections, projections.mean(), rtol=1e-3)
        # the length rule: |d| = Σ_k <g_k, d/|d|>
        np.testing.assert_allclose(np.linalg.norm(update) ** 2, np.sum(J @ update), rtol=1e-4)
    assert checked >= 7 and conflicts >= 5


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def test_ill_conditioned_jacobian_in_float64(x64):
    # unit rows with condition number ~1600: below float32's resolution of the cosine matrix
    rng = np.random.default_rng(3)
    J = rng.normal(size=(4, 4))
    J[3] = J[0] + J[1] - J[2] + 1e-3 * rng.normal(size=4)
    assert np.linalg.cond(J / np.linalg.norm(J, axis=1, keepdims=True)) > 1000
    weights = np.asarray(config_weights(jnp.asarray(J @ J.T, jnp.float64)))
    update = weights @ J
    np.testing.assert_allclose(update, reference_config(J), rtol=1e-6)
    np.testing.assert_allclose(
        unit_projections(J, update), unit_projections(J, update)[0], rtol=1e-6
    )


def test_preferences_set_the_ratio_of_projections(rng):
    J = random_jacobian(rng, 3, 6)
    preferences = np.array([1.0, 2.0, 0.5])
    update, _, _ = run_method(config(3, preferences=preferences), J)
    projections = unit_projections(J, update)
    np.testing.assert_allclose(projections / projections[0], preferences, rtol=1e-3)
    np.testing.assert_allclose(update, reference_config(J, preferences), rtol=1e-3, atol=1e-6)


def test_rank_deficient_jacobians_use_the_pseudo_inverse(rng):
    # more tasks than parameters, and a task that is the sum of two others
    wide = random_jacobian(rng, 4, 3)
    dependent = rng.normal(size=(3, 5))
    dependent[2] = dependent[0] + dependent[1]
    for J in (wide, dependent):
        update, weights, _ = run_method(CONFIG[len(J)], J)
        assert np.all(np.isfinite(weights))
        expected = reference_config(J)
        np.testing.assert_allclose(update, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_zero_and_opposite_gradients_give_no_nan(rng):
    J = rng.normal(size=(3, 5))
    J[1] = 0.0
    update, weights, _ = run_method(CONFIG[3], J)
    assert weights[1] == 0.0
    # the zero task drops out: the two others get their own ConFIG update
    np.testing.assert_allclose(update, two_task_config(J[0], J[2]), rtol=1e-4, atol=1e-6)
    update, weights, state = run_method(CONFIG[3], np.zeros((3, 5)))
    np.testing.assert_array_equal(update, 0.0)  # all zero: not solved, initial weights kept
    np.testing.assert_array_equal(weights, CONFIG[3].init(None).task_weights)
    assert bool(state.gramian_zero)
    g = rng.normal(size=5)
    update, weights, _ = run_method(CONFIG[2], np.stack([g, -3.0 * g]))
    np.testing.assert_array_equal(weights, 0.0)  # pinv(Û) 1 = 0: no conflict-free direction


def test_weights_from_the_gramian_alone(rng):
    J = random_jacobian(rng, 3, 5)
    weights = np.asarray(config_weights(jnp.asarray(J @ J.T, jnp.float32)), np.float64)
    np.testing.assert_allclose(weights @ J, reference_config(J), rtol=1e-3, atol=1e-6)


def test_permutation_and_common_scale(rng):
    J = random_jacobian(rng, 4, 7)
    weights = assert_permutes_with_tasks(CONFIG[4], J)
    for factor in (1e-3, 300.0):
        _, weights_s, _ = run_method(CONFIG[4], factor * J)
        np.testing.assert_allclose(weights_s, weights, rtol=1e-4)


def test_metric_mask_selects_leaves(rng):
    J = rng.normal(size=(3, 6))
    _, weights, _ = run_method(config(3, metric_mask={"a": True, "b": False}), J)
    expected = reference_config(J[:, :3])
    np.testing.assert_allclose(weights, weights_of(J[:, :3], expected), rtol=1e-3)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(config(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        config(3, preferences=[1.0, 1.0])
    with pytest.raises(ValueError, match="positive"):
        config(2, preferences=[1.0, 0.0])
    with pytest.raises(ValueError, match="rtol must be >= 0"):
        config(2, rtol=-1e-3)
