"""The K-space solvers against brute-force float64 numpy references and their KKT conditions.

This module also holds the references and checks the solver-based method test modules
(MGDA, CAGrad, Nash-MTL, UPGrad, FairGrad, EDM) import.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import flat, gramian32

import autoscale_jax as asj
from autoscale_jax.methods import _solvers as solvers

# ---------------------------------------------------------------------------------------------
# Shared float64 references and checks (imported by the solver-based method test modules).
# ---------------------------------------------------------------------------------------------


def reference_simplex_qp(Q: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``argmin_{w ∈ Δ} ½ wᵀQw + qᵀw`` by enumerating supports and solving their KKT systems.

    On a support S the optimum solves ``Q_SS w_S + q_S = λ 1, 1ᵀw_S = 1``; some optimal support
    gives a regular system (for the min-norm problem: affinely independent points,
    Carathéodory), so the best feasible candidate over all supports is optimal.
    """
    Q, q = np.asarray(Q, np.float64), np.asarray(q, np.float64)
    k = Q.shape[0]
    best_value, best = np.inf, None
    for size in range(1, k + 1):
        for support in itertools.combinations(range(k), size):
            idx = list(support)
            system = np.zeros((size + 1, size + 1))
            system[:size, :size] = Q[np.ix_(idx, idx)]
            system[:size, size] = -1.0
            system[size, :size] = 1.0
            rhs = np.append(-q[idx], 1.0)
            solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
            if not np.allclose(system @ solution, rhs, atol=1e-9) or solution[:size].min() < 0:
                continue
            w = np.zeros(k)
            w[idx] = solution[:size]
            value = 0.5 * w @ Q @ w + q @ w
            if value < best_value - 1e-14:
                best_value, best = value, w
    return best


def reference_min_norm_weights(G: np.ndarray) -> np.ndarray:
    """``argmin_{α ∈ Δ} αᵀGα`` (see :func:`reference_simplex_qp`)."""
    return reference_simplex_qp(G, np.zeros(len(G)))


def reference_box_qp(G: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``argmin_{v ≥ lower} vᵀGv`` (G positive definite) by enumerating the free coordinates."""
    G = np.asarray(G, np.float64)
    k = G.shape[0]
    best_value, best = np.inf, None
    for size in range(k + 1):
        for free in itertools.combinations(range(k), size):
            v = np.array(lower, np.float64)
            idx = list(free)
            bound = [i for i in range(k) if i not in free]
            if idx:
                v[idx] = np.linalg.solve(G[np.ix_(idx, idx)], -G[np.ix_(idx, bound)] @ v[bound])
            if np.any(v < lower - 1e-12):
                continue
            if v @ G @ v < best_value:
                best_value, best = v @ G @ v, v
    return best


def assert_simplex_kkt(G: np.ndarray, alpha: np.ndarray, tol: float) -> None:
    """Min-norm optimality in float64: ``(Gα)_k ≥ αᵀGα`` for all k, equality on the support."""
    G, alpha = np.asarray(G, np.float64), np.asarray(alpha, np.float64)
    scale = np.max(np.diag(G))
    np.testing.assert_allclose(alpha.sum(), 1.0, atol=1e-6)
    assert alpha.min() >= 0
    slack = G @ alpha - alpha @ G @ alpha
    assert slack.min() >= -tol * scale
    assert np.all(np.abs(alpha * slack) <= tol * scale)


_JITTED_UPDATES: dict = {}


def run_method(tx, J: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray, object]:
    """One jitted update on the two-leaf pytree of ``J``: (flat update, weights, state).

    The jitted update is cached per transformation, so reusing one ``tx`` across calls (with
    the same shapes) compiles once.
    """
    if tx not in _JITTED_UPDATES:
        _JITTED_UPDATES[tx] = jax.jit(tx.update)
    update, state = _JITTED_UPDATES[tx](as_task_grads(J), tx.init(None), **kwargs)
    return flat(update), np.asarray(asj.task_weights(state), np.float64), state


def assert_permutes_with_tasks(tx, J: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Permuting the tasks permutes the weights and leaves the update unchanged (up to
    ``rtol`` of the largest entry); returns the weights."""
    perm = np.roll(np.arange(len(J)), 1)
    update, weights, _ = run_method(tx, J)
    update_p, weights_p, _ = run_method(tx, J[perm])
    np.testing.assert_allclose(weights_p, weights[perm], rtol=rtol, atol=rtol * weights.max())
    np.testing.assert_allclose(update_p, update, rtol=rtol, atol=rtol * np.abs(update).max())
    return weights


def assert_compiles_once_and_flags_nan(tx, num_tasks: int, rng, **kwargs) -> None:
    """Jitted update compiles once over new values; a NaN gradient reaches the update, keeps
    the previous (finite) weights and flags the solve as not converged."""
    update = jax.jit(lambda g, s: tx.update(g, s, **kwargs))
    state = tx.init(None)
    for _ in range(3):
        _, state = update(as_task_grads(random_jacobian(rng, num_tasks, 6)), state)
        assert bool(state.solver_converged)
    assert update._cache_size() == 1
    J = random_jacobian(rng, num_tasks, 6)
    J[1, 2] = np.nan
    out, new_state = update(as_task_grads(J), state)
    assert update._cache_size() == 1
    assert np.isnan(flat(out)).any()
    np.testing.assert_array_equal(new_state.task_weights, state.task_weights)
    assert not bool(new_state.solver_converged)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_state))


# ---------------------------------------------------------------------------------------------
# Tests of the solvers.
# ---------------------------------------------------------------------------------------------

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
