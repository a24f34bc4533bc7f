"""GradVac: raise each pair's gradient cosine to an adaptive (EMA) target.

Reference:
  Wang et al, Gradient Vaccine: Investigating and Improving Multi-task Optimization in
  Massively Multilingual Models, 2021.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods._registry import MethodInfo

# The correction divides by sqrt(1 - φ̂²): targets are clipped to |φ̂| <= 1 - 1e-4 inside the
# formula (the comparison φ < φ̂ uses the unclipped target) so a target that has converged to
# ±1 gives a large but finite correction instead of inf.
_MAX_ABS_TARGET = 1.0 - 1e-4


class GradVacSurgery(NamedTuple):
    """One step of GradVac in coefficient space (see :func:`gradvac_surgery`).

    Attributes:
      coefficients: [K, K] C with ``g^PC_i = Σ_j C_ij g_j``.
      cosines: [K, K] cosine ``φ_ij`` observed when task ``i`` visited task ``j`` (before that
        pair's correction).
      defined: [K, K] bool, where ``φ_ij`` was defined (both gradients non-zero, ``i ≠ j``).
    """

    coefficients: jax.Array
    cosines: jax.Array
    defined: jax.Array


def gradvac_surgery(G: jax.Array, targets: jax.Array, orders: jax.Array) -> GradVacSurgery:
    """GradVac's corrections for one step, from the Gramian, targets and visiting orders.

    For each task ``i`` from ``g^PC_i = g_i``, visiting ``j ≠ i`` in ``orders[i]``: with
    ``φ_ij = cos(g^PC_i, g_j)``, if ``φ_ij < φ̂_ij``

    .. math::
       g^{PC}_i \\leftarrow g^{PC}_i + \\frac{\\|g^{PC}_i\\| \\big(\\hat φ_{ij}
       \\sqrt{1 - φ_{ij}^2} - φ_{ij} \\sqrt{1 - \\hat φ_{ij}^2}\\big)}
       {\\|g_j\\| \\sqrt{1 - \\hat φ_{ij}^2}}\\, g_j

    which makes ``cos(g^PC_i, g_j) = φ̂_ij`` exactly. Pairs with a zero gradient have no
    cosine and are never corrected.

    Args:
      G: [K, K] Gramian.
      targets: [K, K] EMA targets ``φ̂``.
      orders: [K, K] visiting orders (see :func:`projections.random_task_orders`).

    Returns:
      A :class:`GradVacSurgery`.
    """
    G = metrics.at_least_float32(G)
    targets = targets.astype(G.dtype)
    norms = metrics.task_gradient_norms(G)

    def vaccinate(c: jax.Array, i: jax.Array, j: jax.Array) -> tuple[jax.Array, tuple]:
        norm_i = jnp.sqrt(jnp.clip(c @ G @ c, 0.0))
        norm_j = norms[j]
        denom = norm_i * norm_j
        defined = (denom > 0) & (i != j)
        cosine = jnp.clip((c @ G[:, j]) / jnp.where(defined, denom, 1.0), -1.0, 1.0)
        target = targets[i, j]
        clipped = jnp.clip(target, -_MAX_ABS_TARGET, _MAX_ABS_TARGET)
        sin_target = jnp.sqrt(1.0 - clipped**2)
        amount = (
            norm_i
            * (clipped * jnp.sqrt(1.0 - cosine**2) - cosine * sin_target)
            / (jnp.where(defined, norm_j, 1.0) * sin_target)
        )
        apply = defined & (cosine < target)
        return jnp.where(apply, amount, 0.0), (jnp.where(defined, cosine, 0.0), defined)

    surgery = projections.sequential_surgery(G, orders, vaccinate)
    cosines, defined = surgery.observations
    return GradVacSurgery(surgery.coefficients, cosines, defined)


def update_targets(
    targets: jax.Array, cosines: jax.Array, defined: jax.Array, beta: float
) -> jax.Array:
    """EMA ``φ̂_ij ← (1 - β) φ̂_ij + β φ_ij`` where ``φ_ij`` was defined; others unchanged."""
    moved = (1.0 - beta) * targets + beta * cosines.astype(targets.dtype)
    return jnp.where(defined, moved, targets)


def gradvac(
    num_tasks: int,
    *,
    beta: float = 1e-2,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """GradVac (Gradient Vaccine), computed from the task Gramian.

    Like PCGrad, each task ``i`` visits the others in a random order, but instead of only
    removing negative cosines it raises ``φ_ij = cos(g^PC_i, g_j)`` to an adaptive target
    ``φ̂_ij`` whenever ``φ_ij < φ̂_ij``, with the closed-form correction of
    :func:`gradvac_surgery` (adding the right multiple of ``g_j``). The targets are EMAs of the
    observed cosines,

    .. math:: \\hat φ_{ij} \\leftarrow (1 - β)\\, \\hat φ_{ij} + β\\, φ_{ij}, \\quad
       \\hat φ_{ij}^{(0)} = 0,

    updated after every step with the cosine seen before that pair's correction. With all
    targets at 0 the correction is exactly PCGrad's projection, so the first step (and every
    step with ``beta=0``) equals PCGrad with the same orders. The update is ``Σ_i g^PC_i``,
    computed as ``Σ_k w_k g_k`` with the coefficient weights kept in the state.

    This applies GradVac to all parameters at once (the paper's "whole model" granularity; it
    also studies per-layer targets). A pair involving a zero gradient has no cosine: it is not
    corrected and its target does not move. A non-finite Gramian leaves the state (weights and
    targets) unchanged; the update carries the non-finite gradients.

    Args:
      num_tasks: K >= 2, static.
      beta: EMA rate ``β`` in [0, 1] of the targets (the paper uses 1e-2).
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared parameters:
        pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, key)`` needs a fresh PRNG ``key`` each step (the visiting orders) and
      ignores ``task_losses``. It always needs the per-task gradients.

    Example:
      >>> tx = optax.chain(asj.methods.gradvac(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, key=jax.random.key(0))
      >>> asj.task_weights(state).shape, state[0].memory.shape  # the [K, K] targets φ̂
      ((2,), (2, 2))

    Reference:
      Wang et al, Gradient Vaccine: Investigating and Improving Multi-task Optimization in
      Massively Multilingual Models, 2021.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    # Only a concrete beta can be checked (optax.inject_hyperparams passes arrays).
    if isinstance(beta, int | float) and not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta!r}.")

    def rule(G: jax.Array, losses: Any, key: jax.Array, targets: jax.Array) -> _bases.Proposal:
        del losses
        surgery = gradvac_surgery(G, targets, projections.random_task_orders(key, num_tasks))
        weights = jnp.sum(surgery.coefficients, axis=0)
        return _bases.Proposal(
            weights, update_targets(targets, surgery.cosines, surgery.defined, beta)
        )

    return _bases.gramian_method(
        num_tasks,
        "gradvac",
        rule,
        metric_mask=metric_mask,
        heads=heads,
        needs_key=True,
        init_memory=jnp.zeros((num_tasks, num_tasks), jnp.float32),
    )


INFO = MethodInfo(
    name="gradvac",
    factory=gradvac,
    family="surgery",
    reference=(
        "Wang et al, Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
        "Massively Multilingual Models, 2021 (arXiv 2010.05874)"
    ),
)
