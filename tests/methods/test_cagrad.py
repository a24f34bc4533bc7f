"""CAGrad: TorchJD's reference value, a float64 primal/dual sandwich and hand-derived cases."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import (
    assert_compiles_once_and_flags_nan,
    assert_permutes_with_tasks,
    flat,
    run_method,
)

import autoscale_jax as asj
from autoscale_jax.methods.cagrad import cagrad

PAPER = {num_tasks: cagrad(num_tasks, rescale=None) for num_tasks in (2, 3, 4)}


def simplex_grid(num_tasks: int, resolution: int) -> np.ndarray:
    """All points of the simplex with coordinates in multiples of 1/resolution."""
    points = [
        c
        for c in itertools.product(range(resolution + 1), repeat=num_tasks - 1)
        if sum(c) <= resolution
    ]
    head = np.array(points, np.float64) / resolution
    return np.concatenate([head, 1 - head.sum(axis=1, keepdims=True)], axis=1)


def test_torchjd_reference_value():
    # TorchJD documents CAGrad(c=0.5)(J) = [0.1835, 1.2041, 1.2041] (Algorithm 1, no rescaling).
    update, _, state = run_method(PAPER[2], TORCHJD_JACOBIAN)
    np.testing.assert_allclose(update, [0.1835, 1.2041, 1.2041], atol=1e-4)
    assert bool(state.solver_converged)


@pytest.mark.parametrize(("num_tasks", "dim", "resolution"), [(3, 5, 300), (4, 7, 60)])
def test_primal_optimality_against_a_dual_grid(rng, num_tasks, dim, resolution):
    """max_{||d - g0|| ≤ c||g0||} min_k <g_k, d> = min_{w ∈ Δ} g_wᵀg0 + c||g0|| ||g_w||."""
    c = 0.5
    for _ in range(2):
        J = rng.normal(size=(num_tasks, dim)) * rng.uniform(0.3, 3.0, size=(num_tasks, 1))
        update, weights, _ = run_method(PAPER[num_tasks], J)
        g0 = J.mean(axis=0)
        radius = c * np.linalg.norm(g0)
        np.testing.assert_allclose(update, weights @ J, rtol=1e-5, atol=1e-6)
        assert np.linalg.norm(update - g0) <= radius * (1 + 1e-4)
        worst = np.min(J @ update)
        # upper bound: the dual objective at every grid point (weak duality) ...
        grid = simplex_grid(num_tasks, resolution)
        combined = grid @ J
        dual = combined @ g0 + radius * np.linalg.norm(combined, axis=1)
        assert worst <= dual.min() + 1e-5 * np.abs(J).max() ** 2
        # ... and it is attained up to the grid's resolution.
        assert worst >= dual.min() - 2e-3 * np.abs(dual).max()
        # no feasible point of the ball does better (random boundary points).
        directions = rng.normal(size=(2000, dim))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        candidates = g0 + radius * directions
        assert worst >= np.min(candidates @ J.T, axis=1).max() - 1e-5 * np.abs(J).max() ** 2


def test_two_equal_norm_tasks_hand_derived():
    # equal norms: w = (1/2, 1/2), g_w = g0, so d = (1 + c) g0 and weights (1 + c)/2 / (1 + c²).
    J = np.array([[1.0, 2.0, 0.0], [2.0, -1.0, 0.5]])
    J[1] *= np.linalg.norm(J[0]) / np.linalg.norm(J[1])
    c = 0.4
    for rescale, divisor in ((None, 1.0), ("1+c^2", 1 + c**2), ("1+c", 1 + c)):
        _, weights, _ = run_method(cagrad(2, c=c, rescale=rescale), J)
        np.testing.assert_allclose(weights, (1 + c) / 2 / divisor, rtol=1e-5)


def test_c_zero_is_the_mean_gradient(rng):
    J = random_jacobian(rng, 3, 5)
    update, weights, _ = run_method(cagrad(3, c=0.0), J)
    np.testing.assert_allclose(weights, 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(update, J.mean(axis=0), rtol=1e-5, atol=1e-6 * np.abs(J).max())


def test_worst_task_improves_over_the_mean_gradient(rng):
    for _ in range(3):
        J = random_jacobian(rng, 4, 7)
        update, _, _ = run_method(PAPER[4], J)
        g0 = J.mean(axis=0)
        assert np.min(J @ update) >= np.min(J @ g0) - 1e-5 * np.abs(J @ g0).max()


def test_permuting_tasks_permutes_weights(rng):
    # an iterative solve (duality gap 1e-6): agreement to 1e-3
    assert_permutes_with_tasks(PAPER[4], rng.normal(size=(4, 7)), rtol=1e-3)


def test_degenerate_gradients_are_finite(rng):
    J = random_jacobian(rng, 3, 5)
    J[0] = 0.0
    update, weights, _ = run_method(PAPER[3], J)
    assert np.all(np.isfinite(update)) and np.all(np.isfinite(weights))
    update, weights, _ = run_method(PAPER[3], np.zeros((3, 5)))
    np.testing.assert_array_equal(update, 0.0)
    assert np.all(np.isfinite(weights))
    # exactly opposite gradients (0 in the hull) with c ≥ 1
    _, weights, _ = run_method(cagrad(2, c=1.5), np.array([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]]))
    assert np.all(np.isfinite(weights))


def test_c_can_be_injected(rng):
    J = rng.normal(size=(3, 5))
    tx = optax.inject_hyperparams(cagrad, static_args=("num_tasks",))(num_tasks=3, c=0.0)
    update = jax.jit(tx.update)
    out, state = update(as_task_grads(J), tx.init(None))
    np.testing.assert_allclose(flat(out), J.mean(axis=0), rtol=1e-5, atol=1e-6)
    state.hyperparams["c"] = jnp.asarray(0.5, jnp.float32)
    out, state = update(as_task_grads(J), state)
    np.testing.assert_allclose(
        asj.task_weights(state), run_method(cagrad(3), J)[1], rtol=1e-4, atol=1e-6
    )
    assert update._cache_size() == 1


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(cagrad(3), 3, rng)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rescale"):
        cagrad(2, rescale="sqrt")
    with pytest.raises(ValueError, match="c must be >= 0"):
        cagrad(2, c=-0.1)
