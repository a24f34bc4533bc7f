"""IMTL-G: the combination of task gradients with equal projections on every task direction.

Only the gradient part of impartial multi-task learning lives here; IMTL-L (loss scaling) is a
loss-space method with its own module.

Reference:
  Liu et al, Towards Impartial Multi-task Learning, 2021.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._projections import imtl_g_weights
from autoscale_jax.methods._registry import MethodInfo

__all__ = ["imtl_g", "imtl_g_weights"]


def imtl_g(
    num_tasks: int,
    *,
    rtol: float | None = None,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """IMTL-G (impartial multi-task learning, gradient balance), computed from the Gramian.

    Finds the combination ``g = Σ_k α_k g_k`` with ``Σ_k α_k = 1`` whose projection on every
    unit task gradient ``u_k = g_k / ||g_k||`` is the same, so no task dominates the update's
    direction:

    .. math:: \\langle g, u_1 \\rangle = \\dots = \\langle g, u_K \\rangle, \\quad
       α_{2:K} = g_1 U^T (D U^T)^{-1}, \\ α_1 = 1 - \\textstyle\\sum_{k \\ge 2} α_k

    (``D``, ``U`` the differences of gradients and unit gradients to task 1). Everything is
    computed in K-space from the Gramian, see :func:`imtl_g_weights` for the formula used and
    for the degenerate cases (singular systems use a pseudo-inverse; a zero task gradient gets
    weight 0). The direction of the update is invariant to positive rescaling of any task
    gradient. The weights sum to 1 as in the paper (not to K). Non-finite gradients pass
    through to the update; the state then keeps the previous weights.

    Args:
      num_tasks: K >= 2, static.
      rtol: relative eigenvalue cut-off for the pseudo-inverse (``None``: ``10 · K · eps``).
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared parameters:
        pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None)`` ignores ``task_losses`` and ``key``. It always needs the per-task
      gradients.

    Example:
      >>> tx = optax.chain(asj.methods.imtl_g(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params)
      >>> asj.task_weights(state).shape
      (2,)

    Reference:
      Liu et al, Towards Impartial Multi-task Learning, 2021.
    """

    weights = functools.partial(imtl_g_weights, rtol=rtol)
    uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
    options = {"metric_mask": metric_mask, "heads": heads, "init_weights": uniform}
    return _bases.weights_method(num_tasks, "imtl_g", weights, **options)


INFO = MethodInfo(
    name="imtl_g",
    factory=imtl_g,
    family="gramian",
    weight_convention="sum_to_1",
    reference="Liu et al, Towards Impartial Multi-task Learning, ICLR 2021",
)
