"""Uncertainty weighting (UW): learnable log-variances weigh the task losses.

This module also holds what the loss-space methods share: their update (stacked or presummed
gradients) and fast path, the small optimizer that trains a method's own K-vector (log-scales,
GradNorm's weights, FAMO's logits) and the learned-log-scale transformation that
:mod:`autoscale_jax.methods.imtl_l` reuses.

Reference:
  Kendall et al, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry and
  Semantics, 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base
from autoscale_jax.methods._loss_weighting import loss_weighting
from autoscale_jax.methods._scale_parameters import descend, scale_optimizer


class LearnedScaleState(NamedTuple):
    """State of :func:`uncertainty_weighting` and :func:`~autoscale_jax.methods.imtl_l.imtl_l`.

    Attributes:
      task_weights: [K] weights applied at the latest step.
      log_scales: [K] the learnable ``s_k`` the next step uses (UW: ``s_k = log σ_k²``, weights
        ``exp(-s_k)``; IMTL-L: weights ``exp(s_k)``).
      optimizer_state: state of the internal optimizer of ``s``.
    """

    task_weights: jax.Array
    log_scales: jax.Array
    optimizer_state: Any


def learned_log_scale_weighting(
    num_tasks: int,
    *,
    sign: float,
    learning_rate: Any,
    optimizer: str,
    initial_log_scale: float,
    name: str,
) -> base.MultiTaskTransformation:
    """Weights ``exp(sign · s_k)`` with ``s`` trained on ``Σ_k exp(sign · s_k) L_k - sign · s_k``.

    The gradient of that loss in ``s_k`` is ``sign · (exp(sign · s_k) L_k - 1)``: zero at
    ``s_k = -sign · log L_k``, where every weighted loss equals 1. ``sign = -1`` is uncertainty
    weighting, ``sign = +1`` IMTL-L; the two are the same method under ``s → -s``.
    """
    tx = scale_optimizer(optimizer, learning_rate)

    def init_state() -> LearnedScaleState:
        log_scales = jnp.full((num_tasks,), initial_log_scale, jnp.float32)
        return LearnedScaleState(
            task_weights=jnp.exp(sign * log_scales),
            log_scales=log_scales,
            optimizer_state=tx.init(log_scales),
        )

    def step(state: LearnedScaleState, losses: jax.Array, key: Any) -> tuple:
        del key
        weights = jnp.exp(sign * state.log_scales)
        # d/ds_k of exp(sign s_k) L_k - sign s_k: the scale's own gradient, losses held fixed.
        scale_gradient = sign * (weights * losses - 1.0)
        log_scales, optimizer_state = descend(
            tx, state.log_scales, scale_gradient, state.optimizer_state
        )
        return weights, LearnedScaleState(weights, log_scales, optimizer_state)

    return loss_weighting(num_tasks, name, init_state, step)


def uncertainty_weighting(
    num_tasks: int,
    *,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    initial_log_variance: float = 0.0,
) -> base.MultiTaskTransformation:
    """Uncertainty weighting: learnable ``s_k = log σ_k²``, weights ``exp(-s_k)``.

    The method minimises, jointly over the network and ``s``,

    .. math:: L(θ, s) = Σ_k e^{-s_k} L_k(θ) + s_k,

    so the network gets ``Σ_k e^{-s_k} ∇L_k`` and ``s_k`` its own gradient
    ``1 - e^{-s_k} L_k``. For a constant loss the fixed point is ``s_k* = log L_k`` (weight
    ``1 / L_k``: every weighted loss equals 1). Each step applies ``w_k = exp(-s_k)`` with the
    current ``s`` and then takes one step of an internal optimizer on ``s`` (the paper trains
    ``s`` with the network's optimizer; here it is separate so the weighting chains with any
    optax optimizer). Kendall et al write ``1/(2σ²) L + log σ`` for regression losses: that is
    this loss times 1/2.

    Loss-space method: its fast path never needs task gradients. Non-finite losses skip the
    ``s`` step (the state stays finite) and propagate to the update. Losses must be
    positive for the fixed point to exist: a zero or negative loss drives ``s`` down by about
    ``learning_rate`` per step (Adam), raising its weight without bound.

    Args:
      num_tasks: K >= 2, static.
      learning_rate: step size of the internal optimizer of ``s``.
      optimizer: ``"adam"`` (default; steps of about ``learning_rate`` whatever the loss scale)
        or ``"sgd"``.
      initial_log_variance: ``s_k`` at initialisation (0: weights 1).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required). State:
      :class:`LearnedScaleState`.

    Example:
      >>> tx = optax.chain(uncertainty_weighting(2, learning_rate=1e-2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Kendall et al, Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
      and Semantics, 2018.
    """
    return learned_log_scale_weighting(
        num_tasks,
        sign=-1.0,
        learning_rate=learning_rate,
        optimizer=optimizer,
        initial_log_scale=initial_log_variance,
        name="uncertainty_weighting",
    )
