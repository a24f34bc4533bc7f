"""Small pure-JAX solvers in task space (K×K), shared by the gradient-space methods.

Every gradient-space method here reduces to a K-dimensional problem on the Gramian
``G = J Jᵀ`` of the task gradients (rows of the Jacobian ``J``), so the solvers never touch the
P parameters. All of them are jittable, run a *fixed* iteration budget (a ``lax.while_loop``
with a maximum count) and return a :class:`SolverResult` with the iterations used and a
convergence flag; none falls back silently to another answer.

- :func:`active_set_qp`: ``min ½ zᵀQz + qᵀz`` over ``z ≥ 0`` or over the simplex, by a
  primal active-set method (the scheme of Lawson & Hanson's NNLS), exact up to
  round-off once the active set is found; :func:`face_minimizer` is its linear-algebra step.
- :func:`min_norm_simplex`: the min-norm point of the convex hull of the task gradients,
  ``min_{α ∈ Δ} αᵀGα`` (MGDA, EDM).
- :func:`box_qp`: ``min_{v ≥ u} vᵀGv`` (UPGrad's projection onto the dual cone).
- :func:`~autoscale_jax.methods._power_balance.power_balance` (its own module): ``(G w)_k =
  w_k^{-p}``, ``w > 0`` by damped Newton (Nash-MTL for ``p = 1``, FairGrad for ``p = 1/α``).

:func:`~autoscale_jax.methods._bases.as_rule` turns a solver into a rule of
:func:`~autoscale_jax.methods._bases.gramian_method` (MGDA, CAGrad, UPGrad, FairGrad, EDM,
Nash-MTL). This module imports no other module of the package but ``metrics``.

References:
  Lawson & Hanson, Solving Least Squares Problems, 1974 (ch. 23, NNLS).
  Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import metrics

# Norms below this fraction of the largest task norm count as a zero gradient.
ZERO_NORM_FRACTION = 1e-12


class SolverResult(NamedTuple):
    """Output of every solver.

    Attributes:
      solution: the final iterate (finite whenever the input is finite).
      iterations: int32 iterations used (at most the budget).
      converged: bool, whether the solver's own optimality test passed within the budget.
    """

    solution: jax.Array
    iterations: jax.Array
    converged: jax.Array


def check_hyperparameter(name: str, value: Any, minimum: float, *, strict: bool) -> None:
    """Rejects a numeric hyper-parameter below (or, if ``strict``, at) ``minimum``.

    Only Python numbers are checked: values injected as arrays (``optax.inject_hyperparams``,
    possibly traced) pass through unchecked.
    """
    if isinstance(value, int | float) and (value < minimum or (strict and value == minimum)):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum}, got {value}.")


def jacobi_scales(Q: jax.Array) -> jax.Array:
    """``1/sqrt(Q_kk)`` (1 where ``Q_kk = 0``): the diagonal scaling that gives ``Q`` a unit
    diagonal.

    Why: task Gramians mix gradient norms over many orders of magnitude; in the scaled
    variables every comparison is relative to each task's own norm, which keeps float32
    solves accurate for the small-norm tasks (which often decide the answer).
    """
    diagonal = jnp.diagonal(Q)
    usable = diagonal > 0
    return jnp.where(usable, 1.0 / jnp.sqrt(jnp.where(usable, diagonal, 1.0)), 1.0)


def face_minimizer(
    Q: jax.Array, q: jax.Array, passive: jax.Array, total: float | jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Minimiser of ``½ zᵀQz + qᵀz`` on a face: ``z_k = 0`` off ``passive`` (and ``Σ z = total``).

    Inactive rows/columns are replaced by the identity so the shapes stay static; with a
    ``total`` the system is bordered by the sum constraint. The system is solved in
    Jacobi-scaled variables (:func:`jacobi_scales`) by least squares, which keeps a face that
    round-off made singular finite without biasing regular ones.

    Args:
      Q: [K, K] symmetric positive semi-definite matrix.
      q: [K] linear term.
      passive: [K] bool, the free coordinates.
      total: the required sum of ``z`` (``None``: no sum constraint).

    Returns:
      ``(z, ν)``: the minimiser (0 off the face) and the multiplier of the sum constraint,
      such that ``(Qz + q)_k + ν = 0`` on the face (``ν = 0`` without ``total``).
    """
    k = q.shape[0]
    scales = jacobi_scales(Q)
    both = passive[:, None] & passive[None, :]
    core = jnp.where(both, Q * scales[:, None] * scales[None, :], jnp.eye(k, dtype=Q.dtype))
    rhs = jnp.where(passive, -q * scales, 0.0)
    if total is None:
        solution = jnp.linalg.lstsq(core, rhs)[0]
        return jnp.where(passive, scales * solution, 0.0), jnp.zeros((), Q.dtype)
    border = jnp.where(passive, scales, 0.0)
    system = jnp.block([[core, border[:, None]], [border[None, :], jnp.zeros((1, 1), Q.dtype)]])
    solution = jnp.linalg.lstsq(system, jnp.append(rhs, jnp.asarray(total, Q.dtype)))[0]
    return jnp.where(passive, scales * solution[:k], 0.0), solution[k]


def active_set_qp(
    Q: jax.Array,
    q: jax.Array,
    *,
    on_simplex: bool = False,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> SolverResult:
    """Solves ``min ½ zᵀQz + qᵀz`` over ``z ≥ 0`` (and ``Σ_k z_k = 1`` if ``on_simplex``).

    Primal active-set method (Lawson & Hanson's NNLS scheme, bordered by the sum constraint on
    the simplex): keep a feasible ``z`` and a passive set ``P`` of free coordinates. Each
    iteration minimises on the face of ``P`` (:func:`face_minimizer`). If that point is
    strictly positive on ``P`` it is accepted and the KKT conditions are tested: the most
    negative scaled reduced gradient ``s_k ((Qz + q)_k + ν)``, ``k ∉ P`` (``s`` the Jacobi
    scales), joins ``P`` unless it is above ``-tolerance`` (relative to the scaled problem).
    Otherwise ``z`` moves toward the face minimiser until a coordinate hits zero and leaves
    ``P``. One linear solve per iteration; finite termination, typically within 2K
    iterations; exact up to round-off once the active set is found.

    Args:
      Q: [K, K] symmetric positive semi-definite matrix.
      q: [K] linear term.
      on_simplex: add the constraint ``Σ_k z_k = 1`` (start at the best vertex instead of 0).
      max_iterations: budget of linear solves.
      tolerance: KKT tolerance, relative to the Jacobi-scaled problem.

    Returns:
      A :class:`SolverResult` with the feasible ``z`` as solution.
    """
    Q = metrics.at_least_float32(Q)
    q = q.astype(Q.dtype)
    k = q.shape[0]
    total = 1.0 if on_simplex else None
    scales = jacobi_scales(Q)
    scaled_diagonal = jnp.diagonal(Q) * scales**2
    problem_scale = jnp.maximum(jnp.max(jnp.abs(q * scales)), jnp.max(scaled_diagonal))
    dual_tolerance = tolerance * jnp.maximum(problem_scale, jnp.finfo(Q.dtype).tiny)
    indices = jnp.arange(k)

    def iterate(carry: tuple) -> tuple:
        z, passive, iteration, _ = carry
        candidate, multiplier = face_minimizer(Q, q, passive, total)
        feasible = jnp.all(jnp.where(passive, candidate > 0, True))
        # Accepted: test the KKT conditions off the face, free the most violated coordinate.
        reduced = scales * (Q @ candidate + q + multiplier)
        violation = jnp.where(passive, -jnp.inf, -reduced)
        entering = jnp.argmax(violation)
        optimal = violation[entering] <= dual_tolerance
        grown = passive | ((indices == entering) & ~optimal)
        # Rejected: step toward the candidate until the first passive coordinate hits zero.
        blocking = passive & (candidate <= 0)
        ratios = jnp.where(blocking, z / jnp.maximum(z - candidate, jnp.finfo(Q.dtype).tiny), 1.0)
        leaving = jnp.argmin(ratios)
        moved = z + jnp.clip(ratios[leaving], 0.0, 1.0) * (candidate - z)
        shrunk = passive & (moved > 0) & (indices != leaving)
        moved = jnp.where(shrunk, moved, 0.0)
        return (
            jnp.where(feasible, candidate, moved),
            jnp.where(feasible, grown, shrunk),
            iteration + 1,
            feasible & optimal,
        )

    def keep_going(carry: tuple) -> jax.Array:
        _, _, iteration, done = carry
        return ~done & (iteration < max_iterations)

    if on_simplex:  # start at the best vertex
        first = jnp.argmin(0.5 * jnp.diagonal(Q) + q)
        passive = indices == first
        z = passive.astype(Q.dtype)
    else:  # start at the origin
        passive = jnp.zeros((k,), bool)
        z = jnp.zeros((k,), Q.dtype)
    start = (z, passive, jnp.zeros((), jnp.int32), jnp.zeros((), bool))
    z, _, iterations, done = jax.lax.while_loop(keep_going, iterate, start)
    return SolverResult(z, iterations, done)


def _unit_diagonal_scale(G: jax.Array) -> jax.Array:
    """The largest diagonal entry (at least ``tiny``): dividing by it keeps entries O(1)."""
    return jnp.maximum(jnp.max(jnp.diagonal(G)), jnp.finfo(G.dtype).tiny)


def min_norm_simplex(
    G: jax.Array, *, max_iterations: int = 100, tolerance: float = 1e-6
) -> SolverResult:
    """The min-norm point of the convex hull of the task gradients: ``argmin_{α ∈ Δ} αᵀGα``.

    Solved exactly (up to round-off) by :func:`active_set_qp` on the simplex, with ``G``
    divided by its largest diagonal entry (the minimiser is scale-free). At the solution
    ``(Gα)_k ≥ αᵀGα`` for every task, with equality where ``α_k > 0``.

    Args:
      G: [K, K] Gramian.
      max_iterations: budget of the active-set solver.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`SolverResult` whose solution ``α`` lies on the simplex. Zero gradients are
      fine: the min-norm point is then 0 and ``α`` is supported on them.

    Example:
      >>> J = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
      >>> [round(float(a), 4) for a in min_norm_simplex(J @ J.T).solution]  # αJ = [0, 1, 1]
      [0.6, 0.4]
    """
    G = metrics.at_least_float32(G)
    return active_set_qp(
        G / _unit_diagonal_scale(G),
        jnp.zeros(G.shape[:1], G.dtype),
        on_simplex=True,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )


def box_qp(
    G: jax.Array, lower: jax.Array, *, max_iterations: int = 100, tolerance: float = 1e-6
) -> SolverResult:
    """``argmin_{v ≥ lower} vᵀGv`` for a positive semi-definite ``G``.

    With ``v = lower + z`` this is the non-negative QP ``min_{z ≥ 0} ½ zᵀGz + (G lower)ᵀz``.
    At the solution ``Gv ≥ 0`` and ``(Gv)_k = 0`` wherever ``v_k > lower_k`` (for UPGrad: the
    combination ``Jᵀv`` is the projection of ``Jᵀlower`` onto the dual cone of the rows of
    ``J``, Quinton & Rey 2024, Prop. 1).

    Args:
      G: [K, K] Gramian.
      lower: [K] lower bound.
      max_iterations: budget of the active-set solver.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`SolverResult` whose solution is ``v``.
    """
    G = metrics.at_least_float32(G)
    scaled = G / _unit_diagonal_scale(G)
    lower = lower.astype(G.dtype)
    result = active_set_qp(
        scaled, scaled @ lower, max_iterations=max_iterations, tolerance=tolerance
    )
    return result._replace(solution=lower + result.solution)


def unit_cosine_matrix(G: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The Gramian of the normalised gradients ``g_k / ||g_k||``, with zero gradients set apart.

    A zero gradient (norm at most ``1e-12`` of the largest) is replaced by a unit vector
    orthogonal to all others: its row and column are those of the identity. That keeps the
    problems built on this matrix well posed, and decouples the zero task from the others.

    Args:
      G: [K, K] Gramian.

    Returns:
      ``(C, norms, nonzero)``: the [K, K] cosine matrix with unit diagonal, the [K] task norms
      and the [K] mask of non-zero gradients.
    """
    G = metrics.at_least_float32(G)
    norms = metrics.task_gradient_norms(G)
    nonzero = norms > ZERO_NORM_FRACTION * jnp.max(norms)
    safe_norms = jnp.where(nonzero, norms, 1.0)
    both = nonzero[:, None] & nonzero[None, :]
    cosines = jnp.where(both, G / (safe_norms[:, None] * safe_norms[None, :]), 0.0)
    eye = jnp.eye(G.shape[0], dtype=G.dtype)
    return jnp.where(eye > 0, 1.0, cosines), norms, nonzero
