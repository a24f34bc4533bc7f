"""Independent float64 numpy references for the K-space solvers (a helper module, not tests).

Exact answers by enumeration: the simplex QP and min-norm weights (MGDA's problem), the box QP
(UPGrad's and DualProj's dual), the simplex projection by bisection (MoCo, MoDo, SDMGrad), and
the min-norm KKT conditions. Method test modules import them from here (no test module
imports another).
"""

import itertools

import numpy as np


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


def reference_dual_cone_weights(J: np.ndarray, reg_eps: float, lowers: np.ndarray) -> np.ndarray:
    """``Σ_u argmin_{v ≥ u} vᵀĜv`` over the rows ``u`` of ``lowers``, ``Ĝ = G/tr(G) + reg_eps·I``
    with ``G = JJᵀ``, in float64: UPGrad's weights for the rows of ``I/K``, DualProj's for one
    row (its preferences)."""
    G = J @ J.T
    G = G / np.trace(G) + reg_eps * np.eye(len(J))
    return sum(reference_box_qp(G, row) for row in np.atleast_2d(lowers))


def assert_simplex_kkt(G: np.ndarray, alpha: np.ndarray, tol: float) -> None:
    """Min-norm optimality in float64: ``(Gα)_k ≥ αᵀGα`` for all k, equality on the support."""
    G, alpha = np.asarray(G, np.float64), np.asarray(alpha, np.float64)
    scale = np.max(np.diag(G))
    np.testing.assert_allclose(alpha.sum(), 1.0, atol=1e-6)
    assert alpha.min() >= 0
    slack = G @ alpha - alpha @ G @ alpha
    assert slack.min() >= -tol * scale
    assert np.all(np.abs(alpha * slack) <= tol * scale)


def numpy_project(v):
    """float64 simplex projection by bisection on θ in Σ max(v - θ, 0) = 1 (no sorting)."""
    v = np.asarray(v, np.float64)
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0)


def moderate_jacobian(rng, num_tasks=3, dim=6):
    """Rows with norms within a factor of 4, so γ = O(0.1) gives interior weights."""
    return rng.normal(size=(num_tasks, dim)) * 10 ** rng.uniform(-0.3, 0.3, (num_tasks, 1))
