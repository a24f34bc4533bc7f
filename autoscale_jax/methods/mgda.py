"""MGDA and MGDA-UB: the min-norm convex combination of the task gradients.

Reference:
  Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._registry import MethodInfo

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def gradient_normalizers(G: jax.Array, losses: jax.Array | None, normalization: str) -> jax.Array:
    """The per-task divisors ``s_k`` of the paper's code: 1, ``||g_k||``, ``L_k``, ``L_k ||g_k||``.

    Divisors that are not positive (a zero gradient, a non-positive loss) are replaced by 1 so
    the normalised Gramian stays finite.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}."
        )
    norms = metrics.task_gradient_norms(G)
    if normalization == "none":
        divisors = jnp.ones_like(norms)
    elif normalization == "l2":
        divisors = norms
    elif normalization == "loss":
        assert losses is not None  # checked by the caller for this normalization
        divisors = metrics.at_least_float32(losses).astype(norms.dtype)
    else:
        assert losses is not None
        divisors = metrics.at_least_float32(losses).astype(norms.dtype) * norms
    usable = divisors > metrics.EPS * jnp.maximum(jnp.max(jnp.abs(divisors)), metrics.EPS)
    return jnp.where(usable, divisors, 1.0)


def mgda_weights(
    G: jax.Array,
    losses: jax.Array | None = None,
    *,
    normalization: str = "none",
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> solvers.SolverResult:
    """MGDA's weights: ``α = argmin_{α ∈ Δ} αᵀ Ĝ α`` with ``Ĝ = diag(1/s) G diag(1/s)``.

    Args:
      G: [K, K] Gramian (of the parameters, or of the shared representation for MGDA-UB).
      losses: [K] losses, needed by ``"loss"`` and ``"loss+"``.
      normalization: ``"none"``, ``"l2"``, ``"loss"`` or ``"loss+"`` (see
        :func:`gradient_normalizers`).
      max_iterations: budget of the active-set solver.
      tolerance: its relative KKT tolerance.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` with ``α`` on the simplex.
    """
    divisors = gradient_normalizers(G, losses, normalization)
    normalized = metrics.at_least_float32(G) / (divisors[:, None] * divisors[None, :])
    return solvers.min_norm_simplex(normalized, max_iterations=max_iterations, tolerance=tolerance)


def mgda(
    num_tasks: int,
    *,
    upper_bound: bool = False,
    representation_mask: metrics.MetricMask = None,
    normalization: str = "none",
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    max_iterations: int = 100,
    tolerance: float = 1e-6,
) -> base.MultiTaskTransformation:
    """MGDA: the update is the min-norm point of the convex hull of the task gradients.

    .. math:: α = \\arg\\min_{α ∈ Δ^{K-1}} \\Big\\|\\sum_k α_k \\hat g_k\\Big\\|^2,
        \\qquad d = \\sum_k α_k g_k

    solved in K-space on the Gramian (``||Σ α_k ĝ_k||² = αᵀĜα``) by an exact active-set
    method (:func:`~autoscale_jax.methods._solvers.min_norm_simplex`). Without normalisation
    ``d`` is the min-norm element itself: ``<g_k, d> ≥ ||d||²`` for every task, so ``-d`` is a
    common descent direction, and ``d = 0`` exactly at Pareto-stationary points.

    Gradient normalisation (the paper's code): ``ĝ_k = g_k / s_k`` with ``s_k = 1`` (``"none"``),
    ``||g_k||`` (``"l2"``), ``L_k`` (``"loss"``) or ``L_k ||g_k||`` (``"loss+"``). As in the
    official code, ``α`` is computed on the normalised gradients and applied to the original
    ones (the weighted loss is ``Σ α_k L_k``); with ``"l2"`` the weights are therefore invariant
    to a positive rescaling of any task's gradient. ``task_weights`` holds ``α`` (``Σ α = 1``).

    MGDA-UB (``upper_bound=True``) computes ``α`` from the gradients of the task losses with
    respect to the *shared representation* ``z`` (the encoder output) instead of the shared
    parameters, which costs one backward pass to ``z`` per task instead of through the encoder.
    Two ways to give them:

    - ``update(..., representation_task_grads=R)`` with ``R`` a pytree whose leaves have a
      leading task axis K, e.g. ``R = jax.vmap(vjp_z)(jnp.eye(K))`` for
      ``_, vjp_z = jax.vjp(lambda z: losses_from_representation(z), z)``;
    - otherwise the Gramian is taken on the parameter leaves selected by
      ``representation_mask`` (for instance the last shared layer), see
      :func:`autoscale_jax.metrics.resolve_mask`.

    A zero task gradient puts 0 in the hull: ``α`` concentrates on it and the update is 0
    (with ``"l2"``/``"loss+"`` a zero gradient keeps divisor 1). Non-finite gradients give
    non-finite updates; the state then keeps the previous weights with
    ``solver_converged=False``. If the solver does not converge within ``max_iterations``,
    its last feasible iterate (a point of the simplex) is used and ``solver_converged`` is
    False.

    Args:
      num_tasks: K >= 2.
      upper_bound: MGDA-UB (see above).
      representation_mask: leaves standing for the shared representation when
        ``upper_bound=True`` and no ``representation_task_grads`` are passed.
      normalization: ``"none"``, ``"l2"``, ``"loss"`` or ``"loss+"`` (the last two need
        ``task_losses``).
      metric_mask: leaves the Gramian sees when ``upper_bound=False`` (default all; the paper
        uses the shared parameters: pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      max_iterations: budget of the active-set solver (linear solves).
      tolerance: relative KKT tolerance of the solver.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(mgda(2, normalization="l2"), optax.sgd(0.1))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"Unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}."
        )

    def gramian_fn(task_grads: Any, extra_args: dict) -> jax.Array:
        representation = extra_args.get("representation_task_grads")
        if representation is not None:
            checks.check_task_gradients(representation, num_tasks)
            return metrics.gramian(representation)
        if representation_mask is None:
            raise ValueError(
                "MGDA-UB needs the task gradients of the shared representation: pass "
                "update(..., representation_task_grads=...) or build mgda(..., "
                "upper_bound=True, representation_mask=...)."
            )
        return metrics.gramian(task_grads, representation_mask)

    def solve(G: jax.Array, losses: jax.Array | None) -> solvers.SolverResult:
        return mgda_weights(
            G,
            losses,
            normalization=normalization,
            max_iterations=max_iterations,
            tolerance=tolerance,
        )

    return _bases.gramian_method(
        num_tasks,
        "mgda",
        _bases.as_rule(solve),
        metric_mask=metric_mask,
        heads=heads,
        gramian_fn=gramian_fn if upper_bound else None,
        losses_required=normalization in ("loss", "loss+"),
    )


INFO = MethodInfo(
    name="mgda",
    factory=mgda,
    family="gramian",
    weight_convention="sum_to_1",
    reference=(
        "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018 "
        "(arXiv 1810.04650)"
    ),
    extra_inputs=("representation_task_grads",),
)
