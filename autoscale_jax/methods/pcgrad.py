"""PCGrad: project each task gradient onto the normal plane of the gradients it conflicts with.

Reference:
  Yu et al, Gradient Surgery for Multi-Task Learning, 2020.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods._registry import MethodInfo


def pcgrad_coefficients(G: jax.Array, orders: jax.Array) -> jax.Array:
    """PCGrad's projected gradients in coefficient space, ``g^PC_i = Σ_j C_ij g_j``.

    For each task ``i``, starting from ``g^PC_i = g_i`` and visiting ``j ≠ i`` in ``orders[i]``:
    when ``<g^PC_i, g_j> < 0``, ``g^PC_i ← g^PC_i - <g^PC_i, g_j> / ||g_j||² · g_j``. A zero
    ``g_j`` has no conflict and is never projected on.

    Args:
      G: [K, K] Gramian of the task gradients.
      orders: [K, K] visiting orders (see :func:`projections.random_task_orders`).

    Returns:
      The [K, K] coefficient matrix C.
    """
    G = metrics.at_least_float32(G)
    squared_norms = jnp.diagonal(G)

    def project(c: jax.Array, i: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        del i
        inner = c @ G[:, j]
        conflict = (inner < 0) & (squared_norms[j] > 0)
        amount = jnp.where(conflict, -inner / jnp.where(conflict, squared_norms[j], 1.0), 0.0)
        return amount, conflict

    return projections.sequential_surgery(G, orders, project).coefficients


def pcgrad_weights(G: jax.Array, orders: jax.Array) -> jax.Array:
    """PCGrad's task weights ``w_k = Σ_i C_ik``, so that ``Σ_i g^PC_i = Σ_k w_k g_k``."""
    return jnp.sum(pcgrad_coefficients(G, orders), axis=0)


def pcgrad(
    num_tasks: int, *, metric_mask: metrics.MetricMask = None, heads: str = "weighted"
) -> base.MultiTaskTransformation:
    """PCGrad (projecting conflicting gradients), computed from the task Gramian.

    For each task ``i`` (in parallel), visit the other tasks ``j`` in a random order; whenever
    the current ``g^PC_i`` conflicts with ``g_j`` (``<g^PC_i, g_j> < 0``) project it onto the
    normal plane of ``g_j``:

    .. math:: g^{PC}_i \\leftarrow g^{PC}_i
       - \\frac{\\langle g^{PC}_i, g_j\\rangle}{\\|g_j\\|^2} g_j

    The update is ``Σ_i g^PC_i``. Every ``g^PC_i`` is a linear combination of the original
    gradients, so the surgery runs on K×K coefficients with the Gramian (see
    :mod:`autoscale_jax.methods._projections`) and the update is ``Σ_k w_k g_k`` with the
    weights kept in the state. A zero task gradient conflicts with nothing. Non-finite
    gradients pass through to the update; the state then keeps the previous weights.

    Args:
      num_tasks: K >= 2, static.
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared parameters:
        pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, key)`` needs a fresh PRNG ``key`` each step (the visiting orders) and
      ignores ``task_losses``. It always needs the per-task gradients.

    Example:
      >>> tx = optax.chain(asj.methods.pcgrad(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, key=jax.random.key(0))
      >>> asj.task_weights(state).shape
      (2,)

    Reference:
      Yu et al, Gradient Surgery for Multi-Task Learning, 2020.
    """

    def rule(G: jax.Array, losses: Any, key: jax.Array, memory: Any) -> _bases.Proposal:
        del losses
        return _bases.Proposal(
            pcgrad_weights(G, projections.random_task_orders(key, len(G))), memory
        )

    return _bases.gramian_method(
        num_tasks, "pcgrad", rule, metric_mask=metric_mask, heads=heads, needs_key=True
    )


INFO = MethodInfo(
    name="pcgrad",
    factory=pcgrad,
    family="surgery",
    reference="Yu et al, Gradient Surgery for Multi-Task Learning, 2020 (arXiv 2001.06782)",
)
