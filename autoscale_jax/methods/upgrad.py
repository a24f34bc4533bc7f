"""UPGrad: the mean of the task gradients projected onto the dual cone of all of them.

Reference:
  Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._dual_cone import SolveOptions, dual_cone_method, normalized_gramian
from autoscale_jax.methods._registry import MethodInfo


def upgrad_weights(
    G: jax.Array,
    *,
    norm_eps: float = 1e-20,
    reg_eps: float = 1e-4,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> solvers.SolverResult:
    """UPGrad's weights: ``w = Σ_i argmin_{v ≥ e_i/K} vᵀ Ĝ v`` with ``Ĝ = G / tr(G) + reg_eps·I``.

    Args:
      G: [K, K] Gramian.
      norm_eps: a Gramian whose trace is below this counts as zero (then ``Ĝ = reg_eps·I``
        and the weights are ``1/K``).
      reg_eps: ridge added to the trace-normalised Gramian.
      max_iterations: budget of each active-set solve.
      tolerance: their relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` whose solution is the [K] weights;
      iterations are the most any of the K projections used, converged whether all did.
    """
    regularized = normalized_gramian(G, norm_eps, reg_eps)
    k = regularized.shape[0]

    def project(lower: jax.Array) -> solvers.SolverResult:
        return solvers.box_qp(
            regularized, lower, max_iterations=max_iterations, tolerance=tolerance
        )

    projections = jax.vmap(project)(jnp.eye(k, dtype=regularized.dtype) / k)
    return solvers.SolverResult(
        jnp.sum(projections.solution, axis=0),
        jnp.max(projections.iterations),
        jnp.all(projections.converged),
    )


def upgrad(
    num_tasks: int,
    *,
    norm_eps: float = 1e-20,
    reg_eps: float = 1e-4,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> base.MultiTaskTransformation:
    """UPGrad: average of each task gradient projected onto the dual cone of all of them.

    With the dual cone ``C = {x : <g_k, x> ≥ 0 for all k}`` and ``π_C`` the projection onto it,

    .. math:: d = \\frac1K \\sum_i π_C(g_i).

    Each projection is a linear combination of the gradients: ``π_C(Jᵀu) = Jᵀv`` with
    ``v = argmin_{v ≥ u} vᵀGv`` (Quinton & Rey 2024, Prop. 1), a K-dimensional box-constrained
    QP solved exactly by an active-set method
    (:func:`~autoscale_jax.methods._solvers.box_qp`), so
    ``w = Σ_i argmin_{v ≥ e_i/K} vᵀGv`` and ``d = Σ_k w_k g_k``. ``d`` lies in the dual cone:
    it conflicts with no task, ``<g_k, d> = (Gw)_k ≥ 0``. UPGrad weights are invariant to a
    common positive rescaling of all gradients and permute with the tasks.

    As in TorchJD, ``G`` is first divided by its trace and ``reg_eps · I`` is added, which
    makes the QPs strictly convex; the price is that ``<g_k, d>`` may be negative by at most
    ``reg_eps · tr(G) · w_k`` (use ``reg_eps=0`` for an exactly non-conflicting update, up to
    round-off). TorchJD's ``norm_eps`` default (1e-4) treats any Gramian with trace below
    1e-4 as zero, which switches the projection off for small gradients; the default here is
    tiny so the method is scale-free, and a (numerically) all-zero Gramian gives the weights
    ``1/K`` (a zero update).

    A zero task gradient projects to 0 and its constraint ``<0, x> ≥ 0`` always holds, so it
    neither contributes to nor constrains the update. Non-finite gradients propagate to the update;
    the state then keeps the previous weights with ``solver_converged=False``. Without
    convergence within ``max_iterations`` the last feasible iterate is used and
    ``solver_converged`` is False.

    Args:
      num_tasks: K >= 2.
      norm_eps: Gramians with a smaller trace count as zero.
      reg_eps: ridge added to the trace-normalised Gramian.
      metric_mask: leaves the Gramian sees (default all; pass ``"shared"`` for the shared
        parameters only).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      max_iterations: budget of each active-set solve.
      tolerance: their relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(upgrad(2), optax.sgd(0.1))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024.
    """
    options = SolveOptions(norm_eps, reg_eps, max_iterations, tolerance)
    weights = upgrad_weights
    return dual_cone_method(
        num_tasks, "upgrad", weights, options, metric_mask=metric_mask, heads=heads
    )


INFO = MethodInfo(
    name="upgrad",
    factory=upgrad,
    family="gramian",
    reference=(
        "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 (arXiv 2406.16232)"
    ),
)
