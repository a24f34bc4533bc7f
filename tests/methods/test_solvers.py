"""The K-space solvers against brute-force float64 numpy references and their KKT conditions
(the references live in tests/solver_references.py, shared with the solver-based methods' tests).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, random_jacobian
from method_checks import gramian32
from solver_references import (
    assert_simplex_kkt,
    reference_box_qp,
    reference_min_norm_weights,
    reference_simplex_qp,
)

from autoscale_jax.methods import _solvers as solvers

min_norm = jax.jit(solvers.min_norm_simplex)
box_qp = jax.jit(solvers.box_qp)
simplex_qp = jax.jit(functools.partial(solvers.active_set_qp, on_simplex=True))


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (5, 3)])
def test_simplex_qp_matches_enumeration(rng, num_tasks, dim):
    for _ in range(5):
        J = random_jacobian(rng, num_tasks, dim)
        Q = J @ J.T / np.trace(J @ J.T)
        q = rng.normal(size=num_tasks) * np.sqrt(np.diag(Q))
        result = simplex_qp(jnp.asarray(Q, jnp.float32), jnp.asarray(q, jnp.float32))
        assert bool(result.converged)
        w = np.asarray(result.solution, np.float64)
        expected = reference_simplex_qp(Q, q)
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-6
        gap = 0.5 * w @ Q @ w + q @ w - (0.5 * expected @ Q @ expected + q @ expected)
        assert gap <= 1e-6 * np.abs(q).max()
        np.testing.assert_allclose(w @ J, expected @ J, atol=1e-3 * np.abs(J).max())


def test_min_norm_hand_derived_torchjd_jacobian():
    # G = [[18, -22], [-22, 38]]: α = (G22 - G12)/(G11 + G22 - 2 G12) = 60/100, αJ = [0, 1, 1].
    result = min_norm(gramian32(TORCHJD_JACOBIAN))
    np.testing.assert_allclose(result.solution, [0.6, 0.4], rtol=1e-6)
    assert bool(result.converged) and int(result.iterations) <= 4


@pytest.fixture
def x64():
    """Runs a test with float64 enabled in JAX (restored afterwards)."""
    enable_x64 = getattr(jax, "enable_x64", None)  # jax >= 0.5; jax.experimental before
    if enable_x64 is None:
        from jax.experimental import enable_x64
    with enable_x64(True):
        yield


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (4, 2), (5, 3)])
def test_min_norm_matches_enumeration_and_kkt(rng, num_tasks, dim):
    for _ in range(5):
        J = random_jacobian(rng, num_tasks, dim)
        result = min_norm(gramian32(J))
        assert bool(result.converged)
        alpha = np.asarray(result.solution, np.float64)
        expected = reference_min_norm_weights(J @ J.T)
        # The min-norm *point* is unique even when α is not (K > dim + 1). Float32 Gramians
        # resolve it to about sqrt(K eps) of the largest gradient norm.
        largest = np.linalg.norm(J, axis=1).max()
        np.testing.assert_allclose(alpha @ J, expected @ J, atol=1e-3 * largest)
        assert_simplex_kkt(J @ J.T, alpha, tol=1e-5)


def test_min_norm_is_exact_in_float64(rng, x64):
    exact = jax.jit(functools.partial(solvers.min_norm_simplex, tolerance=1e-12))
    for num_tasks, dim in [(3, 5), (4, 7), (5, 3), (5, 3)]:
        J = random_jacobian(rng, num_tasks, dim)
        result = exact(jnp.asarray(J @ J.T))
        assert result.solution.dtype == jnp.float64 and bool(result.converged)
        expected = reference_min_norm_weights(J @ J.T)
        largest = np.linalg.norm(J, axis=1).max()
        np.testing.assert_allclose(
            np.asarray(result.solution) @ J, expected @ J, atol=1e-9 * largest
        )


def test_min_norm_no_better_point_on_a_grid(rng):
    J = random_jacobian(rng, 3, 5)
    G = J @ J.T
    alpha = np.asarray(min_norm(gramian32(J)).solution, np.float64)
    steps = np.linspace(0, 1, 201)
    a, b = np.meshgrid(steps, steps)
    keep = a + b <= 1
    grid = np.stack([a[keep], b[keep], 1 - a[keep] - b[keep]], axis=1)
    grid_values = np.einsum("ni,ij,nj->n", grid, G, grid)
    assert alpha @ G @ alpha <= grid_values.min() * (1 + 1e-5) + 1e-7 * G.max()


def test_min_norm_degenerate_inputs():
    # zero gradient: the min-norm point is 0, supported on the zero task.
    J = np.array([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]])
    result = min_norm(gramian32(J))
    np.testing.assert_allclose(result.solution, [0.0, 1.0, 0.0], atol=1e-5)
    # identical gradients: any α is optimal; it must stay on the simplex and finite.
    same = min_norm(gramian32(np.ones((3, 4))))
    assert bool(same.converged)
    np.testing.assert_allclose(np.sum(same.solution), 1.0, rtol=1e-6)
    # all zero: finite and on the simplex.
    zero = min_norm(jnp.zeros((3, 3)))
    assert np.all(np.isfinite(zero.solution)) and np.isclose(np.sum(zero.solution), 1.0)


def test_budget_is_fixed_and_reported(rng):
    J = random_jacobian(rng, 5, 7)
    short = jax.jit(functools.partial(solvers.min_norm_simplex, max_iterations=1))(gramian32(J))
    assert int(short.iterations) == 1 and not bool(short.converged)
    assert np.all(np.isfinite(short.solution))


@pytest.mark.parametrize(("num_tasks", "dim"), [(3, 5), (4, 7), (4, 2)])
def test_box_qp_matches_enumeration_and_kkt(rng, num_tasks, dim):
    for _ in range(5):
        J = random_jacobian(rng, num_tasks, dim)
        G = J @ J.T / np.trace(J @ J.T) + 1e-3 * np.eye(num_tasks)
        lower = rng.uniform(0, 1, num_tasks) * (rng.uniform(size=num_tasks) > 0.3)
        result = box_qp(jnp.asarray(G, jnp.float32), jnp.asarray(lower, jnp.float32))
        assert bool(result.converged)
        v = np.asarray(result.solution, np.float64)
        np.testing.assert_allclose(v, reference_box_qp(G, lower), rtol=2e-4, atol=2e-5)
        # KKT: v ≥ lower, Gv ≥ 0, (v - lower) ⊙ Gv = 0
        assert np.all(v >= lower - 1e-6)
        assert np.all(G @ v >= -1e-5)
        assert np.all(np.abs((v - lower) * (G @ v)) <= 1e-5)


def test_solvers_compile_once():
    a = min_norm(gramian32(np.array([[1.0, 0.0], [0.5, 1.0]])))
    b = min_norm(gramian32(np.array([[2.0, 1.0], [-1.0, 3.0]])))
    assert bool(a.converged) and bool(b.converged)
    size = min_norm._cache_size()
    min_norm(gramian32(np.array([[3.0, 1.0], [1.0, -3.0]])))
    assert min_norm._cache_size() == size
