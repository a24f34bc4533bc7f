"""The power-balance solver of Nash-MTL and FairGrad: ``(G w)_k = w_k^{-p}``, ``w > 0``.

Solved in the scale-free variables of the cosine matrix by damped Newton on a strictly convex
potential, with a fixed iteration budget and a convergence flag like every solver of
:mod:`autoscale_jax.methods._solvers`.

References:
  Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (arXiv 2202.01017).
  Ban & Ji, Fair Resource Allocation in Multi-Task Learning, 2024 (arXiv 2402.15638).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autoscale_jax.methods._solvers import SolverResult, check_hyperparameter, unit_cosine_matrix

# Round-off allowance (in machine epsilons) when the line search compares function values.
_ROUNDOFF_ULPS = 64.0


def _roundoff(magnitude: jax.Array) -> jax.Array:
    """A few ulps of ``magnitude``: the noise floor of a float comparison at that size."""
    return _ROUNDOFF_ULPS * jnp.finfo(magnitude.dtype).eps * magnitude


def _power_potential(beta: jax.Array, power: jax.Array) -> jax.Array:
    """``h_p(β)`` with ``h_p'(β) = β^{-p}``: ``(β^{1-p} - 1)/(1-p)``, or ``log β`` for ``p = 1``.

    Written with ``where`` so that ``p`` may be a traced (injected) hyper-parameter.
    """
    exponent = 1.0 - power
    is_log = exponent == 0
    safe_exponent = jnp.where(is_log, 1.0, exponent)
    return jnp.where(is_log, jnp.log(beta), (beta**safe_exponent - 1.0) / safe_exponent)


def _newton_power_balance(
    C: jax.Array,
    a: jax.Array,
    power: float | jax.Array,
    *,
    max_iterations: int,
    tolerance: float,
    max_backtracks: int = 40,
) -> SolverResult:
    """Solves ``(Cβ)_k = a_k β_k^{-p}``, ``β > 0``, for a positive definite ``C``.

    The equation is the stationarity condition of the strictly convex
    ``Φ(β) = ½ βᵀCβ - Σ_k a_k h_p(β_k)`` (Hessian ``C + p diag(a β^{-p-1}) ≻ 0``), minimised by
    Newton steps kept inside ``β > 0`` (fraction to the boundary) with Armijo backtracking on
    ``Φ``. Converged when every relative residual
    ``|(Cβ)_k - a_k β_k^{-p}| / ((|C|β)_k + a_k β_k^{-p})`` is at most ``tolerance``.
    """

    def residual(beta: jax.Array) -> jax.Array:
        return C @ beta - a * beta ** (-power)

    def relative_residual(beta: jax.Array) -> jax.Array:
        scale = jnp.abs(C) @ beta + a * beta ** (-power)
        return jnp.max(jnp.abs(residual(beta)) / scale)

    def potential(beta: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``Φ(β)`` and the magnitude of its terms (for the round-off allowance)."""
        quadratic = 0.5 * beta @ (C @ beta)
        barrier = a * _power_potential(beta, jnp.asarray(power))
        magnitude = 0.5 * beta @ (jnp.abs(C) @ beta) + jnp.sum(jnp.abs(barrier))
        return quadratic - jnp.sum(barrier), magnitude

    def iterate(carry: tuple) -> tuple:
        beta, iteration, _ = carry
        grad = residual(beta)
        hessian = C + jnp.diag(power * a * beta ** (-power - 1.0))
        direction = -jnp.linalg.solve(hessian, grad)
        slope = grad @ direction
        to_boundary = jnp.where(direction < 0, -beta / jnp.where(direction < 0, direction, -1), 1)
        longest = jnp.minimum(1.0, 0.9 * jnp.min(to_boundary))
        value, magnitude = potential(beta)
        allowance = _roundoff(magnitude)

        def too_long(inner: tuple) -> jax.Array:
            t, count = inner
            trial, _ = potential(beta + t * direction)
            return (trial > value + 1e-4 * t * slope + allowance) & (count < max_backtracks)

        t, _ = jax.lax.while_loop(
            too_long, lambda inner: (0.5 * inner[0], inner[1] + 1), (longest, 0)
        )
        beta = beta + t * direction
        return beta, iteration + 1, relative_residual(beta) <= tolerance

    def keep_going(carry: tuple) -> jax.Array:
        _, iteration, done = carry
        return ~done & (iteration < max_iterations)

    start = jnp.ones_like(a)
    first = (start, jnp.zeros((), jnp.int32), relative_residual(start) <= tolerance)
    beta, iterations, done = jax.lax.while_loop(keep_going, iterate, first)
    return SolverResult(beta, iterations, jnp.asarray(done))


def power_balance(
    G: jax.Array,
    power: float | jax.Array = 1.0,
    *,
    reg_eps: float = 1e-6,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
) -> SolverResult:
    """Solves ``(G w)_k = w_k^{-p}`` for ``w > 0``: Nash-MTL (``p = 1``) and FairGrad (``p = 1/α``).

    With ``n_k = ||g_k||``, the cosine matrix ``C = diag(n)^{-1} G diag(n)^{-1}`` and
    ``w_k = λ β_k / n_k`` (``λ = n_max^{(p-1)/(1+p)}``) the system becomes
    ``(Cβ)_k = (n_k/n_max)^{p-1} β_k^{-p}``, which is solved by damped Newton on a strictly
    convex potential. Working on ``C`` makes the solve independent of the gradients' scales
    (for ``p = 1`` the update ``Σ_k w_k g_k`` is exactly invariant to rescaling any task).

    A solution is guaranteed only when 0 is not in the convex hull of the gradients (exactly
    opposite gradients, for instance, have none: the weights would grow without bound), so
    ``reg_eps · I`` is added to ``C``: the solution then always exists and is finite, and for
    well-posed inputs it moves by ``O(reg_eps)``. A zero gradient (norm below ``1e-12`` of the
    largest) cannot satisfy its equation; it is decoupled from the others and gets ``w_k = 0``
    (its gradient contributes nothing whatever its weight).

    Args:
      G: [K, K] Gramian.
      power: ``p > 0``.
      reg_eps: ridge added to the cosine matrix.
      max_iterations: Newton iteration budget.
      tolerance: relative residual tolerance (see ``_newton_power_balance``).

    Returns:
      A :class:`SolverResult` whose solution is ``w`` (finite for finite ``G``; the last Newton
      iterate when not converged).

    Example:
      >>> power_balance(jnp.eye(2) * 4.0).solution     # orthogonal, norms 2: w = 1/2
      Array([0.5, 0.5], dtype=float32)
    """
    check_hyperparameter("power", power, 0.0, strict=True)
    C, norms, nonzero = unit_cosine_matrix(G)
    C = C + reg_eps * jnp.eye(G.shape[0], dtype=C.dtype)
    safe_norms = jnp.where(nonzero, norms, 1.0)
    largest = jnp.max(norms)
    reference = jnp.where(largest > 0, largest, 1.0)
    a = jnp.where(nonzero, (safe_norms / reference) ** (power - 1.0), 1.0)
    result = _newton_power_balance(C, a, power, max_iterations=max_iterations, tolerance=tolerance)
    scale = reference ** ((power - 1.0) / (1.0 + power))
    weights = jnp.where(nonzero, scale * result.solution / safe_norms, 0.0)
    return result._replace(solution=weights)
