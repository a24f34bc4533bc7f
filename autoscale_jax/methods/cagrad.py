"""CAGrad: the update that maximises the worst task improvement near the mean gradient.

Reference:
  Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._registry import MethodInfo

RESCALINGS = (None, "1+c^2", "1+c")


def _rescale_divisor(c: float, rescale: str | None) -> float:
    if rescale is None:
        return 1.0
    if rescale == "1+c^2":
        return 1.0 + c**2
    if rescale == "1+c":
        return 1.0 + c
    raise ValueError(f"Unknown rescale {rescale!r}; choose one of {RESCALINGS}.")


class _PenaltySearch(NamedTuple):
    """Carry of the search for the penalty ``μ`` whose step ``||e(μ)||`` equals the radius."""

    penalty: jax.Array
    lower: jax.Array
    upper: jax.Array
    weights: jax.Array
    qp_iterations: jax.Array
    qp_converged: jax.Array
    outer_iterations: jax.Array
    done: jax.Array


def cagrad_weights(
    G: jax.Array,
    *,
    c: float = 0.5,
    rescale: str | None = "1+c^2",
    max_iterations: int = 30,
    tolerance: float = 1e-5,
    qp_iterations: int = 100,
    qp_tolerance: float = 1e-6,
) -> solvers.SolverResult:
    """CAGrad's weights on the original gradients, from the Gramian.

    With ``b = 1/K``, ``g_0 = Jᵀb``, ``r = c ||g_0||`` and ``e = d - g_0``, the CAGrad step
    maximises the concave ``h(e) = min_k <g_k, g_0 + e>`` over ``||e|| ≤ r``. Its penalised
    version ``max_e h(e) - ||e||²/(2μ)`` has the solution ``e(μ) = μ Jᵀw(μ)`` with

    .. math:: w(μ) = \\arg\\min_{w ∈ Δ} \\; wᵀGb + \\tfrac{μ}{2} wᵀGw

    (a simplex QP solved exactly by :func:`~autoscale_jax.methods._solvers.active_set_qp`), and
    ``||e(μ)||`` is non-decreasing in ``μ``; the CAGrad step is ``e(μ*)`` with
    ``||e(μ*)|| = r``, where ``μ* = r / ||g_w||`` recovers the paper's
    ``d = g_0 + (c ||g_0|| / ||g_w||) g_w``. On a fixed support ``w(μ) = a + c'/μ`` is affine
    in ``1/μ``, so ``||e(μ)||² = A μ² + 2B μ + C`` and ``μ*`` is the root of a quadratic: the
    search takes that root (safeguarded by bisection on a bracket) and ends when
    ``| ||e(μ)|| - r | ≤ tolerance · r``, usually after 2 - 4 QPs. When the ball constraint is
    inactive (0 in the convex hull of the gradients, possible for ``c ≥ 1`` or exactly
    opposed gradients), the limit ``μ → ∞`` is taken in closed form.

    Args:
      G: [K, K] Gramian.
      c: radius of the ball around ``g_0``, relative to ``||g_0||`` (``c >= 0``).
      rescale: ``"1+c^2"``, ``"1+c"`` or ``None``.
      max_iterations: budget of the penalty search (QP solves).
      tolerance: relative tolerance on ``||e|| = r``.
      qp_iterations: budget of each simplex QP.
      qp_tolerance: relative KKT tolerance of each simplex QP.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` with the [K] weights as solution,
      the total active-set iterations, and whether the search and every QP converged.
    """
    divisor = _rescale_divisor(c, rescale)
    G = metrics.at_least_float32(G)
    k = G.shape[0]
    # Divide by the mean squared norm: the weights are unchanged and tolerances relative.
    scaled = G / jnp.maximum(jnp.mean(jnp.diagonal(G)), jnp.finfo(G.dtype).tiny)
    mean_weights = jnp.full((k,), 1.0 / k, G.dtype)
    toward_mean = scaled @ mean_weights
    radius = c * jnp.sqrt(jnp.clip(mean_weights @ toward_mean, 0.0))
    tiny = jnp.finfo(G.dtype).eps ** 2

    def quadratic(u: jax.Array, v: jax.Array) -> jax.Array:
        return u @ scaled @ v

    def search_step(carry: _PenaltySearch) -> _PenaltySearch:
        mu = carry.penalty
        qp = solvers.active_set_qp(
            scaled,
            toward_mean / mu,
            on_simplex=True,
            max_iterations=qp_iterations,
            tolerance=qp_tolerance,
        )
        w = qp.solution
        step_norm = mu * jnp.sqrt(jnp.clip(quadratic(w, w), 0.0))
        lower = jnp.where(step_norm < radius, mu, carry.lower)
        upper = jnp.where(step_norm >= radius, mu, carry.upper)
        # On this support w(μ') = a + c'/μ', so ||e(μ')||² = lead μ'² + 2 cross μ' + rest.
        support = w > 0
        a, _ = solvers.face_minimizer(scaled, jnp.zeros_like(w), support, 1.0)
        shift, _ = solvers.face_minimizer(scaled, toward_mean, support, 0.0)
        lead, cross, rest = quadratic(a, a), quadratic(a, shift), quadratic(shift, shift)
        discriminant = cross**2 - lead * (rest - radius**2)
        root = (-cross + jnp.sqrt(jnp.clip(discriminant, 0.0))) / jnp.where(lead > tiny, lead, 1.0)
        usable = (lead > tiny) & (discriminant >= 0) & (root > lower) & (root < upper)
        bisection = jnp.where(
            jnp.isfinite(upper), jnp.where(lower > 0, jnp.sqrt(lower * upper), 0.1 * upper), 10 * mu
        )
        # Ball constraint inactive: the limit μ → ∞ gives e = Jᵀc', weights b + c' (Jᵀa = 0).
        inactive = (lead <= tiny) & (rest <= radius**2)
        hit = jnp.abs(step_norm - radius) <= tolerance * radius
        return _PenaltySearch(
            penalty=jnp.where(usable, root, bisection),
            lower=lower,
            upper=upper,
            weights=jnp.where(inactive & ~hit, shift, mu * w),
            qp_iterations=carry.qp_iterations + qp.iterations,
            qp_converged=carry.qp_converged & qp.converged,
            outer_iterations=carry.outer_iterations + 1,
            done=hit | inactive,
        )

    def keep_going(carry: _PenaltySearch) -> jax.Array:
        return ~carry.done & (carry.outer_iterations < max_iterations)

    no_radius = radius <= jnp.sqrt(tiny)  # c = 0 or g_0 = 0: the step is g_0 itself
    start = _PenaltySearch(
        penalty=jnp.maximum(jnp.asarray(c, G.dtype), jnp.finfo(G.dtype).eps),
        lower=jnp.zeros((), G.dtype),
        upper=jnp.full((), jnp.inf, G.dtype),
        weights=jnp.zeros((k,), G.dtype),
        qp_iterations=jnp.zeros((), jnp.int32),
        qp_converged=jnp.ones((), bool),
        outer_iterations=jnp.zeros((), jnp.int32),
        done=no_radius,
    )
    found = jax.lax.while_loop(keep_going, search_step, start)
    weights = (mean_weights + jnp.where(no_radius, 0.0, found.weights)) / divisor
    return solvers.SolverResult(weights, found.qp_iterations, found.done & found.qp_converged)


def cagrad(
    num_tasks: int,
    *,
    c: float = 0.5,
    rescale: str | None = "1+c^2",
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    max_iterations: int = 30,
    tolerance: float = 1e-5,
) -> base.MultiTaskTransformation:
    """CAGrad: maximise the worst local task improvement within a ball around the mean gradient.

    .. math:: \\max_d \\min_k \\langle g_k, d \\rangle \\quad \\text{s.t.}
        \\quad \\|d - g_0\\| \\le c \\|g_0\\|, \\qquad g_0 = \\tfrac1K \\sum_k g_k

    With ``w`` the minimiser of the dual ``min_{w ∈ Δ} g_wᵀg_0 + c ||g_0|| ||g_w||``
    (``g_w = Σ_k w_k g_k``) the solution is

    .. math:: d = g_0 + \\frac{c \\|g_0\\|}{\\|g_w\\|} g_w,

    i.e. weights ``1/K + (c ||g_0|| / ||g_w||) w_k`` on the original gradients. ``c = 0`` is
    the mean gradient; large ``c`` approaches MGDA's direction. Instead of a generic solver on
    the (non-smooth, often ill-conditioned) dual, the step is found exactly in K-space from a
    short sequence of simplex QPs on the Gramian (a penalty search, see
    :func:`cagrad_weights`).

    Rescaling (a choice documented here because sources differ): the paper's Algorithm 1
    updates with ``d`` itself; the authors' NYUv2/Cityscapes code divides ``d`` by ``1 + c²``
    by default (their ``rescale=1``, also LibMTL's default) and their toy script by ``1 + c``.
    We default to ``"1+c^2"`` (the setting of the published experiments); pass
    ``rescale=None`` for the paper's ``d``.

    Degenerate cases: when 0 is in the convex hull of the gradients the ball constraint may be
    inactive (``g_w = 0`` at the dual optimum, possible for ``c ≥ 1``); the update is then the
    limit of the penalised step, a primal optimum of norm ``≤ c ||g_0||`` around ``g_0``.
    ``c = 0`` or ``g_0 = 0`` give ``d = g_0``; all-zero gradients a zero update. Non-finite
    gradients give non-finite updates; the state keeps the previous weights with
    ``solver_converged=False``. If the search does not meet ``tolerance`` within
    ``max_iterations`` QPs, the weights of its last QP (a feasible penalised step) are used
    and ``solver_converged`` is False.

    Args:
      num_tasks: K >= 2.
      c: the ball radius relative to ``||g_0||`` (``c >= 0``).
      rescale: ``"1+c^2"`` (default), ``"1+c"`` or ``None`` (see above).
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared
        parameters: pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      max_iterations: budget of the penalty search (simplex QPs).
      tolerance: relative tolerance on the step length ``||d - g_0|| = c ||g_0||``.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(cagrad(2, c=0.4), optax.adam(1e-3))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    solvers.check_hyperparameter("c", c, 0.0, strict=False)
    _rescale_divisor(c, rescale)

    solve = functools.partial(
        cagrad_weights, c=c, rescale=rescale, max_iterations=max_iterations, tolerance=tolerance
    )
    return _bases.solver_method(num_tasks, "cagrad", solve, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="cagrad",
    factory=cagrad,
    family="gramian",
    reference=(
        "Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021 "
        "(arXiv 2110.14048)"
    ),
)
