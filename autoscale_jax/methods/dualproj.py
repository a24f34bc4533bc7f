"""DualProj: the mean of the task gradients projected onto the dual cone of all of them.

Reference:
  Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 (arXiv 2406.16232).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._dual_cone import SolveOptions, dual_cone_method, normalized_gramian
from autoscale_jax.methods._registry import MethodInfo


def dualproj_weights(
    G: jax.Array,
    preferences: jax.Array | None = None,
    *,
    norm_eps: float = 1e-20,
    reg_eps: float = 1e-4,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> solvers.SolverResult:
    """DualProj's weights: ``w = argmin_{v ≥ u} vᵀ Ĝ v`` with ``Ĝ = G / tr(G) + reg_eps·I``.

    Args:
      G: [K, K] Gramian.
      preferences: [K] combination ``u`` to project (default ``1/K``: the mean gradient).
      norm_eps: a Gramian whose trace is below this counts as zero (then ``Ĝ = reg_eps·I``
        and the weights are ``u``).
      reg_eps: ridge added to the trace-normalised Gramian.
      max_iterations: budget of the active-set solve.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` whose solution is the [K] weights.
    """
    regularized = normalized_gramian(G, norm_eps, reg_eps)
    k, dtype = regularized.shape[0], regularized.dtype
    lower = jnp.full((k,), 1.0 / k, dtype) if preferences is None else preferences
    return solvers.box_qp(
        regularized, jnp.asarray(lower, dtype), max_iterations=max_iterations, tolerance=tolerance
    )


def dualproj(
    num_tasks: int,
    *,
    preferences: Sequence[float] | jax.Array | None = None,
    norm_eps: float = 1e-20,
    reg_eps: float = 1e-4,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> base.MultiTaskTransformation:
    """DualProj: the mean task gradient projected onto the dual cone of the task gradients.

    With the dual cone ``C = {x : <g_k, x> ≥ 0 for all k}`` and ``π_C`` the Euclidean
    projection onto it,

    .. math:: d = π_C\\Big(\\sum_k u_k g_k\\Big), \\qquad u = \\tfrac1K \\mathbf 1
       \\ \\text{(default)}.

    The projection is a combination of the gradients, ``π_C(Jᵀu) = Jᵀw`` with
    ``w = argmin_{v ≥ u} vᵀGv`` (Quinton & Rey 2024, Prop. 1): one K-dimensional box QP solved
    exactly by an active-set method (:func:`~autoscale_jax.methods._solvers.box_qp`). This is
    UPGrad's sibling: UPGrad averages the K projections of the single gradients, DualProj
    projects their mean once (the dual-cone projection of GEM, Lopez-Paz & Ranzato 2017,
    Eq. 11). ``d`` conflicts with no task, ``<g_k, d> = (Gw)_k ≥ 0``, and equals the mean
    gradient when the mean already conflicts with no task (``w = u``). The weights are
    invariant to a common positive rescaling of the gradients and permute with the tasks.

    As in TorchJD (and :func:`~autoscale_jax.methods.upgrad.upgrad` here), ``G`` is divided by
    its trace and ``reg_eps · I`` is added, which makes the QP strictly convex; then
    ``<g_k, d>`` may be negative by at most ``reg_eps · tr(G) · w_k`` (``reg_eps=0``: exactly
    non-conflicting, up to round-off). ``norm_eps`` is tiny by default (TorchJD: 1e-4) so the
    method is scale-free; an all-zero Gramian is not solved (a zero update; the state keeps its
    previous weights and sets ``gramian_zero``). A zero
    task gradient neither contributes to nor constrains the update. Non-finite gradients
    propagate to the update; the state keeps the previous weights with
    ``solver_converged=False``, as it does when the solver runs out of ``max_iterations``.

    Args:
      num_tasks: K >= 2.
      preferences: [K] non-negative combination ``u`` to project (default ``1/K``; TorchJD's
        ``pref_vector``; ones give the projected sum).
      norm_eps: Gramians with a smaller trace count as zero.
      reg_eps: ridge added to the trace-normalised Gramian.
      metric_mask: leaves the Gramian sees (default all; ``"shared"``: the shared parameters).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      max_iterations: budget of the active-set solve.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(dualproj(2), optax.sgd(0.1))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024
      (arXiv 2406.16232).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if preferences is not None:
        preferences = jnp.asarray(preferences, jnp.float32)
        if preferences.shape != (num_tasks,):
            raise ValueError(
                f"preferences must have shape ({num_tasks},), got {preferences.shape}."
            )
        if not isinstance(preferences, jax.core.Tracer) and bool(jnp.any(preferences < 0)):
            raise ValueError(f"preferences must be non-negative, got {preferences}.")

    options = SolveOptions(norm_eps, reg_eps, max_iterations, tolerance)
    weights = functools.partial(dualproj_weights, preferences=preferences)
    return dual_cone_method(
        num_tasks, "dualproj", weights, options, metric_mask=metric_mask, heads=heads
    )


INFO = MethodInfo(
    name="dualproj",
    factory=dualproj,
    family="gramian",
    reference=(
        "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 (arXiv 2406.16232)"
    ),
)
