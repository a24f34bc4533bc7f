"""Tests for the CAGrad two-objective toy: values, gradients, Pareto stationarity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autoscale_jax.bench.datasets import toy

# Points away from the kinks of |.|, max(., LOWER) and the switch at x2 = 0.
POINTS = [
    (-8.5, 7.5),
    (9.0, 9.0),
    (-8.5, -5.0),
    (-7.5, -0.5),
    (9.0, -1.0),
    (2.0, 3.0),
    (-3.0, -6.0),
]


def reference_losses(x, first_loss_scale=1.0):
    """Independent float64 numpy transcription of the toy's formulas."""
    x1, x2 = float(x[0]), float(x[1])
    lower = 5e-6
    f1 = np.log(max(abs(0.5 * (-x1 - 7) - np.tanh(-x2)), lower)) + 6
    f2 = np.log(max(abs(0.5 * (-x1 + 3) + np.tanh(-x2) + 2), lower)) + 6
    c1 = max(np.tanh(0.5 * x2), 0.0)
    c2 = max(np.tanh(-0.5 * x2), 0.0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return np.array([first_loss_scale * (f1 * c1 + f1_sq * c2), f2 * c1 + f2_sq * c2])


def reference_jacobian(x, step=1e-6):
    """Central finite differences of ``reference_losses`` in float64: rows = tasks."""
    x = np.asarray(x, np.float64)
    columns = []
    for i in range(2):
        offset = np.zeros(2)
        offset[i] = step
        columns.append((reference_losses(x + offset) - reference_losses(x - offset)) / (2 * step))
    return np.stack(columns, axis=1)


def brute_force_min_norm(g1, g2, num=200_001):
    weights = np.linspace(0.0, 1.0, num)[:, None]
    return np.min(np.linalg.norm(weights * g1 + (1 - weights) * g2, axis=1))


def pareto_point(x1):
    """A Pareto-stationary point in the lower half-plane with first coordinate ``x1``.

    For x2 < 0 only the quadratic bowls are active: L_k = s_k(x) c(x2), c = tanh(-x2 / 2). Both
    x1-derivatives c * 0.2 (x1 -+ 7) have opposite signs for |x1| < 7, so the gradients are
    anti-parallel (Pareto-stationary) exactly where det[g1, g2] = 0: solved here by bisection.
    """

    def gradients(x2):
        c = np.tanh(-0.5 * x2)
        dc = -0.5 * (1 - c**2)
        bowl = [((7 - x1) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20]
        bowl.append(((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20)
        slope = 0.02 * (x2 + 8)
        g1 = np.array([c * 0.2 * (x1 - 7), slope * c + bowl[0] * dc])
        g2 = np.array([c * 0.2 * (x1 + 7), slope * c + bowl[1] * dc])
        return g1, g2

    def det(x2):
        g1, g2 = gradients(x2)
        return g1[0] * g2[1] - g1[1] * g2[0]

    low, high = -12.0, -5.0
    assert np.sign(det(low)) != np.sign(det(high))
    for _ in range(200):
        middle = 0.5 * (low + high)
        if np.sign(det(middle)) == np.sign(det(low)):
            low = middle
        else:
            high = middle
    g1, g2 = gradients(low)
    assert g1 @ g2 < 0  # anti-parallel, not merely parallel
    return np.array([x1, low])


@pytest.mark.parametrize("point", POINTS)
def test_losses_match_float64_reference(point):
    np.testing.assert_allclose(
        toy.toy_losses(jnp.array(point)), reference_losses(point), rtol=1e-5, atol=1e-5
    )


def test_first_loss_scale_scales_only_the_first_loss():
    point = jnp.array([2.0, 3.0])
    np.testing.assert_allclose(
        toy.toy_losses(point, first_loss_scale=0.1), reference_losses(point, 0.1), rtol=1e-5
    )


@pytest.mark.parametrize("point", POINTS)
def test_gradients_match_central_differences(point):
    jacobian = jax.jacrev(toy.toy_losses)(jnp.array(point))
    np.testing.assert_allclose(jacobian, reference_jacobian(point), rtol=1e-3, atol=1e-5)


def test_losses_jit_and_vmap():
    points = jnp.array(POINTS, jnp.float32)
    batched = jax.jit(jax.vmap(toy.toy_losses))(points)
    expected = np.stack([reference_losses(p) for p in POINTS])
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-5)


def test_min_norm_weight_matches_grid_search():
    rng = np.random.default_rng(0)
    for _ in range(20):
        g1, g2 = rng.normal(size=(2, 5))
        g2 = g2 * rng.uniform(0.1, 5.0)  # varied norms exercise the clipping at 0 and 1
        weight = float(toy.min_norm_weight(jnp.array(g1), jnp.array(g2)))
        assert 0.0 <= weight <= 1.0
        norm = np.linalg.norm(weight * g1 + (1 - weight) * g2)
        assert norm == pytest.approx(brute_force_min_norm(g1, g2), abs=1e-5)


def test_min_norm_weight_equal_gradients_is_finite():
    g = jnp.array([1.0, 2.0])
    assert float(toy.min_norm_weight(g, g)) == 0.5


@pytest.mark.parametrize("point", POINTS)
def test_pareto_stationarity_matches_brute_force(point):
    jacobian = reference_jacobian(point)
    expected = brute_force_min_norm(jacobian[0], jacobian[1])
    assert float(toy.pareto_stationarity(jnp.array(point))) == pytest.approx(
        expected, rel=1e-3, abs=1e-5
    )


@pytest.mark.parametrize("point", toy.TOY_STARTS)
def test_min_norm_direction_descends_both_losses(point):
    # MGDA's min-norm point d satisfies <d, g_k> >= ||d||^2 for both tasks.
    jacobian = np.asarray(jax.jacrev(toy.toy_losses)(jnp.array(point)))
    weight = float(toy.min_norm_weight(jnp.array(jacobian[0]), jnp.array(jacobian[1])))
    direction = weight * jacobian[0] + (1 - weight) * jacobian[1]
    for gradient in jacobian:
        assert direction @ gradient >= direction @ direction - 1e-5


@pytest.mark.parametrize("x1", [-6.0, -2.0, 0.0, 1.0, 5.0])
def test_pareto_set_points_are_stationary(x1):
    point = pareto_point(x1)
    assert float(toy.pareto_stationarity(jnp.array(point))) < 1e-4
    assert toy.is_pareto_stationary(jnp.array(point), tol=1e-4)
    # Same set under Nash-MTL's rescaling of the first loss.
    assert toy.is_pareto_stationary(jnp.array(point), tol=1e-4, first_loss_scale=0.1)


def test_pareto_midpoint_matches_cagrad_figure():
    # CAGrad's plot marks the Pareto set's middle at (0, -8.3552).
    assert pareto_point(0.0)[1] == pytest.approx(-8.3552, abs=1e-3)


@pytest.mark.parametrize("point", toy.TOY_STARTS)
def test_start_points_are_not_stationary(point):
    jacobian = reference_jacobian(point)
    assert brute_force_min_norm(jacobian[0], jacobian[1]) > 0.05
    assert float(toy.pareto_stationarity(jnp.array(point))) > 0.05
    assert not toy.is_pareto_stationary(jnp.array(point))


def test_start_lists():
    assert set(toy.CAGRAD_STARTS) <= set(toy.TOY_STARTS)
    assert set(toy.NASH_MTL_STARTS) <= set(toy.TOY_STARTS)
    assert len(set(toy.TOY_STARTS)) == len(toy.TOY_STARTS)
