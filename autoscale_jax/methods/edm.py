"""EDM: the equiangular direction of the normalised task gradients.

Reference:
  Katrutsa et al, Follow the bisector: a simple method for multi-objective optimization, 2020.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._registry import MethodInfo


def edm_weights(
    G: jax.Array, *, max_iterations: int = 100, tolerance: float = 1e-6
) -> solvers.SolverResult:
    """EDM's weights on the original gradients: ``w_k ∝ α_k / ||g_k||``, ``Σ_k w_k = 1``.

    ``α`` is the min-norm point of the convex hull of the unit vectors ``g_k / ||g_k||``,
    found on their Gramian (the cosine matrix). Zero gradients are set apart (see
    :func:`~autoscale_jax.methods._solvers.unit_cosine_matrix`) and get weight 0; if every
    gradient is zero all weights are 0.

    Args:
      G: [K, K] Gramian.
      max_iterations: budget of the active-set solver.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` whose solution is the [K] weights.
    """
    cosines, norms, nonzero = solvers.unit_cosine_matrix(G)
    result = solvers.min_norm_simplex(cosines, max_iterations=max_iterations, tolerance=tolerance)
    per_unit_norm = jnp.where(nonzero, result.solution / jnp.where(nonzero, norms, 1.0), 0.0)
    total = jnp.sum(per_unit_norm)
    weights = jnp.where(total > 0, per_unit_norm / jnp.where(total > 0, total, 1.0), 0.0)
    return result._replace(solution=weights)


def edm(
    num_tasks: int,
    *,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> base.MultiTaskTransformation:
    """EDM (equiangular direction method): follow the bisector of the normalised gradients.

    With unit gradients ``ĝ_k = g_k / ||g_k||``, the min-norm point of their convex hull,
    ``d̂ = Σ_k α_k ĝ_k`` with ``α = argmin_{α ∈ Δ} ||Σ_k α_k ĝ_k||²``, satisfies
    ``<ĝ_k, d̂> = ||d̂||²`` for every task in its support: it makes *equal angles* with those
    normalised gradients (with all of them when every ``α_k > 0``), so every task's loss
    decreases at the same relative rate. The update rescales it to

    .. math:: d = γ \\sum_k α_k \\hat g_k = \\sum_k w_k g_k,
        \\qquad γ = \\frac{1}{\\sum_j α_j / \\|g_j\\|},
        \\qquad w_k = γ \\frac{α_k}{\\|g_k\\|}

    i.e. weights on the original gradients that sum to 1 (for two tasks,
    ``d = (||g_2|| g_1 + ||g_1|| g_2) / (||g_1|| + ||g_2||)``, as in the authors' code). The
    *direction* of ``d`` depends only on the normalised gradients, so it is invariant to a
    positive rescaling of any task's gradient; its length ``γ ||d̂||`` is a harmonic-type
    mean of the gradient norms (scaling every gradient by ``s`` scales ``d`` by ``s``).

    Zero task gradients are left out of the bisector (weight 0); all-zero gradients give a
    zero update; the transformation then keeps its previous weights and sets ``gramian_zero``
    (an all-zero Gramian is not solved). Non-finite gradients propagate to the update; the
    state then keeps the previous weights with ``solver_converged=False``. Without convergence
    within ``max_iterations`` the solver's last feasible iterate is used and
    ``solver_converged`` is False.

    Args:
      num_tasks: K >= 2.
      metric_mask: leaves the Gramian sees (default all; pass ``"shared"`` to measure angles on
        the shared parameters only).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      max_iterations: budget of the active-set solver.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(edm(2), optax.sgd(0.1))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Katrutsa et al, Follow the bisector: a simple method for multi-objective optimization,
      2020.
    """

    solve = functools.partial(edm_weights, max_iterations=max_iterations, tolerance=tolerance)
    return _bases.solver_method(num_tasks, "edm", solve, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="edm",
    factory=edm,
    family="gramian",
    weight_convention="sum_to_1",
    reference=(
        "Katrutsa et al, Follow the bisector: a simple method for multi-objective optimization, "
        "2020 (arXiv 2007.06937)"
    ),
)
