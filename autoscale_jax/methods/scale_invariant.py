"""Scale-invariant (log-loss) baseline: minimise ``Σ_k log L_k``, i.e. weights ``1 / L_k``.

Reference:
  Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (the SI baseline).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax

from autoscale_jax import base
from autoscale_jax.methods._loss_weighting import (
    LOG_LOSS_EPS,
    log_loss_weights,
    stateless_weighting,
)
from autoscale_jax.methods._registry import MethodInfo

__all__ = ["LOG_LOSS_EPS", "ScaleInvariantState", "log_loss_weights", "scale_invariant"]


class ScaleInvariantState(NamedTuple):
    """The weights of the latest step."""

    task_weights: jax.Array


def scale_invariant(num_tasks: int, *, eps: float = LOG_LOSS_EPS) -> base.MultiTaskTransformation:
    """Scale-invariant loss: the gradient of ``Σ_k log L_k``, i.e. weights ``w_k = 1 / L_k``.

    .. math:: ∇_θ Σ_k \\log L_k = Σ_k \\frac{1}{L_k} ∇_θ L_k

    with the current losses, recomputed every step. Multiplying a task's loss by any ``c > 0``
    leaves the update unchanged (hence the name). The losses must be positive: a loss ``L_k <=
    0`` is treated as 0, i.e. gets the weight ``1/eps`` (the ``log(L + ε)`` convention), so the
    result is always defined. When a loss is not finite the weights of the previous step are
    applied and kept in the state (the non-finite gradient still reaches the update).

    Loss-space method: its fast path never needs task gradients.

    Args:
      num_tasks: K >= 2, static.
      eps: added to the (clamped) losses before inverting.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required).

    Example:
      >>> tx = optax.chain(scale_invariant(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (its SI baseline).
    """

    weights = functools.partial(log_loss_weights, eps=eps)
    return stateless_weighting(num_tasks, "scale_invariant", ScaleInvariantState, weights)


INFO = MethodInfo(
    name="scale_invariant",
    factory=scale_invariant,
    family="loss",
    reference=(
        "Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (arXiv 2202.01017), its SI "
        "baseline"
    ),
)
