"""Geometric loss strategy (GLS): minimise the geometric mean of the task losses.

Reference:
  Chennupati et al, MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss Strategy
  for Multi-Task Learning, 2019 (arXiv 1904.08492).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._loss_weighting import LOG_LOSS_EPS, stateless_weighting
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive


def geometric_mean_weights(losses: jax.Array, eps: float = LOG_LOSS_EPS) -> jax.Array:
    """``w_k = (Π_j L_j)^{1/K} / (K L_k)``, computed in log space.

    With ``ℓ_k = log(max(L_k, 0) + ε)`` the weights are ``exp(mean_j ℓ_j - ℓ_k) / K``: no
    product of the losses is ever formed, so K losses of any magnitude neither overflow nor
    underflow. Non-positive losses are clamped to 0 before ``+ ε`` (as
    :func:`~autoscale_jax.methods.scale_invariant.log_loss_weights` does); non-finite losses
    give non-finite weights for the caller to handle.

    Args:
      losses: [K] task losses.
      eps: added to the (clamped) losses before taking logs.

    Returns:
      [K] weights (at least float32) such that ``Σ_k w_k ∇L_k = ∇ (Π_k (L_k + ε))^{1/K}``.
    """
    losses = metrics.at_least_float32(losses)
    log_losses = jnp.log(jnp.maximum(losses, 0.0) + eps)
    return jnp.exp(jnp.mean(log_losses) - log_losses) / losses.shape[0]


class GeometricMeanState(NamedTuple):
    """The weights of the latest step."""

    task_weights: jax.Array


def geometric_mean(num_tasks: int, *, eps: float = LOG_LOSS_EPS) -> base.MultiTaskTransformation:
    """GLS: the gradient of the geometric mean of the losses, as a loss weighting.

    .. math:: ∇_θ \\Big(\\prod_k L_k\\Big)^{1/K}
              = \\sum_k \\frac{(\\prod_j L_j)^{1/K}}{K\\, L_k}\\, ∇_θ L_k,
              \\qquad w_k = \\frac{(\\prod_j L_j)^{1/K}}{K\\, L_k}

    recomputed from the current losses every step (one backward pass on the fast path). The
    weights are the scale-invariant weights ``1/L_k`` times the common factor
    ``(Π_j L_j)^{1/K} / K``: the direction is the one of ``Σ_k log L_k``, the step length
    follows the geometric mean. Multiplying one task's loss (and gradient) by ``c > 0``
    multiplies the update by ``c^{1/K}`` and leaves its direction unchanged; the weight ratios
    ``w_i / w_j = L_j / L_i`` do not depend on the other tasks.

    The weights are unnormalised and computed in log space (see
    :func:`geometric_mean_weights`). The losses must be positive: a loss ``L_k <= 0`` is
    treated as 0, i.e. the method differentiates ``(Π_k (max(L_k, 0) + ε))^{1/K}``, so the
    result is always defined (a zero loss then gets the large weight ``G / (K ε)``). When a
    loss is not finite the weights of the previous step are applied and kept in the state
    (the non-finite gradient still reaches the update).

    Args:
      num_tasks: K >= 2, static.
      eps: ``ε > 0`` added to the (clamped) losses.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required).

    Example:
      >>> tx = optax.chain(geometric_mean(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Chennupati et al, MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss
      Strategy for Multi-Task Learning, 2019 (arXiv 1904.08492).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_positive("eps", eps)

    weights = functools.partial(geometric_mean_weights, eps=eps)
    return stateless_weighting(num_tasks, "geometric_mean", GeometricMeanState, weights)


INFO = MethodInfo(
    name="geometric_mean",
    factory=geometric_mean,
    family="loss",
    reference=(
        "Chennupati et al, MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss "
        "Strategy for Multi-Task Learning, 2019 (arXiv 1904.08492)"
    ),
)
