"""IMTL-L: learnable loss scales that make every scaled loss equal.

Reference:
  Liu et al, Towards Impartial Multi-task Learning, 2021.
"""

from __future__ import annotations

from autoscale_jax import base
from autoscale_jax.methods._loss_weighting import (
    LearnedScaleState,
    learned_log_scale_weighting,
)
from autoscale_jax.methods._registry import MethodInfo

__all__ = ["LearnedScaleState", "imtl_l"]


def imtl_l(
    num_tasks: int,
    *,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    initial_log_scale: float = 0.0,
) -> base.MultiTaskTransformation:
    """IMTL-L: learnable ``s_k``, scaled losses ``e^{s_k} L_k - s_k``, weights ``e^{s_k}``.

    The network minimises ``Σ_k e^{s_k} L_k - s_k`` and so gets ``Σ_k e^{s_k} ∇L_k``; ``s_k``
    takes a step of an internal optimizer along its own gradient ``e^{s_k} L_k - 1``, whose
    zero ``s_k* = -log L_k`` makes every scaled loss ``e^{s_k} L_k`` equal to 1 (the weights
    tend to ``1 / L_k``, the weights of the log-loss / scale-invariant baseline). Each step
    applies ``w_k = e^{s_k}`` with the current ``s``, then updates ``s`` (the paper trains ``s``
    with the network's optimizer; here it is separate so the weighting chains with any optax
    optimizer). Under ``s → -s`` this is exactly uncertainty weighting, whose implementation
    it shares (:func:`~autoscale_jax.methods.uncertainty_weighting.uncertainty_weighting`).

    Loss-space method: its fast path never needs task gradients. Non-finite losses skip the
    ``s`` step (the state stays finite) and propagate to the update. Losses must be positive
    for the fixed point to exist.

    Args:
      num_tasks: K >= 2, static.
      learning_rate: step size of the internal optimizer of ``s``.
      optimizer: ``"adam"`` (default) or ``"sgd"``.
      initial_log_scale: ``s_k`` at initialisation (0: weights 1).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required). State:
      :class:`LearnedScaleState` (``log_scales`` is ``s``).

    Example:
      >>> tx = optax.chain(imtl_l(2, learning_rate=1e-2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Liu et al, Towards Impartial Multi-task Learning, 2021.
    """
    return learned_log_scale_weighting(
        num_tasks,
        sign=1.0,
        learning_rate=learning_rate,
        optimizer=optimizer,
        initial_log_scale=initial_log_scale,
        name="imtl_l",
    )


INFO = MethodInfo(
    name="imtl_l",
    factory=imtl_l,
    family="loss",
    reference="Liu et al, Towards Impartial Multi-task Learning, ICLR 2021",
)
