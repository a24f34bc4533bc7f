"""Dynamic weight average (DWA): weights from the recent rate of change of each loss.

Reference:
  Liu et al, End-to-End Multi-Task Learning with Attention, 2019.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks
from autoscale_jax.methods._loss_weighting import loss_weighting
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive

# Floor of the older loss in the ratio L(t-1) / L(t-2), so a zero loss gives a finite ratio.
_RATIO_EPS = 1e-12


class DynamicWeightAverageState(NamedTuple):
    """State of :func:`dynamic_weight_average`.

    Attributes:
      task_weights: [K] weights applied at the latest step.
      step: int32 calls so far.
      epochs_completed: int32 epochs whose mean loss was recorded.
      loss_sum: [K] sum of the finite losses of the current epoch.
      loss_count: int32 finite loss vectors in the current epoch.
      previous_losses: [K] mean loss of the last recorded epoch, ``L(t-1)``.
      older_losses: [K] mean loss of the epoch before it, ``L(t-2)``.
    """

    task_weights: jax.Array
    step: jax.Array
    epochs_completed: jax.Array
    loss_sum: jax.Array
    loss_count: jax.Array
    previous_losses: jax.Array
    older_losses: jax.Array


def dwa_weights(previous_losses: jax.Array, older_losses: jax.Array, temperature: Any) -> jax.Array:
    """``w_k = K softmax(r / T)_k`` with ``r_k = L_k(t-1) / L_k(t-2)``."""
    ratios = previous_losses / jnp.maximum(older_losses, _RATIO_EPS)
    return previous_losses.shape[0] * jax.nn.softmax(ratios / temperature)


def dynamic_weight_average(
    num_tasks: int, *, temperature: float = 2.0, epoch_length: int = 1
) -> base.MultiTaskTransformation:
    """DWA: weights from the ratio of each task's last two (epoch-mean) losses.

    .. math:: w_k(t) = K \\frac{\\exp(r_k(t-1)/T)}{Σ_i \\exp(r_i(t-1)/T)}, \\quad
              r_k(t-1) = \\frac{L_k(t-1)}{L_k(t-2)}

    A task whose loss falls slowly (``r`` near or above 1) gets more weight; ``T`` softens the
    weights (``T → ∞``: equal weights) and ``Σ_k w_k = K``. In the paper ``t`` is the epoch and
    ``L_k(t)`` the mean loss over epoch ``t``. Here an "epoch" is ``epoch_length`` consecutive
    calls: the losses of each are averaged, and the weights of epoch ``e`` come from the means
    of epochs ``e-1`` and ``e-2``; the first two epochs use equal weights (``w = 1``). With the
    default ``epoch_length=1`` every step is an epoch, so step ``t`` uses the raw losses of
    steps ``t-1`` and ``t-2``, and steps 0 and 1 use equal weights.

    Non-finite losses are left out of the epoch mean; an epoch without a finite loss is not
    recorded (the weights stay as they were). The losses should be positive: the older loss is
    floored at 1e-12 in the ratio, so a zero loss gives a large but finite ratio. Should the
    weights still be non-finite, the previous weights are applied and kept.

    Loss-space method: its fast path never needs task gradients (the weights depend on the
    state only).

    Args:
      num_tasks: K >= 2, static.
      temperature: ``T > 0`` (the paper uses 2).
      epoch_length: calls per epoch (a positive int, static); e.g. the number of batches per
        epoch to follow the paper.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required).

    Example:
      >>> tx = optax.chain(dynamic_weight_average(2, epoch_length=100), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Liu et al, End-to-End Multi-Task Learning with Attention, 2019.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_positive("temperature", temperature)
    if not isinstance(epoch_length, int) or epoch_length < 1:
        raise ValueError(f"epoch_length must be a positive int, got {epoch_length!r}.")

    def init_state() -> DynamicWeightAverageState:
        ones = jnp.ones((num_tasks,), jnp.float32)
        zero = jnp.zeros((), jnp.int32)
        return DynamicWeightAverageState(
            task_weights=ones,
            step=zero,
            epochs_completed=zero,
            loss_sum=jnp.zeros((num_tasks,), jnp.float32),
            loss_count=zero,
            previous_losses=ones,
            older_losses=ones,
        )

    def record(state: DynamicWeightAverageState, losses: jax.Array) -> DynamicWeightAverageState:
        """Adds this step's losses to the epoch; at the epoch's end shifts its mean in."""
        finite = jnp.all(jnp.isfinite(losses))
        loss_sum = state.loss_sum + jnp.where(finite, losses, 0.0).astype(jnp.float32)
        loss_count = state.loss_count + finite.astype(jnp.int32)
        epoch_ends = (state.step + 1) % epoch_length == 0
        shift = epoch_ends & (loss_count > 0)
        mean = loss_sum / jnp.maximum(loss_count, 1)
        return state._replace(
            step=state.step + 1,
            epochs_completed=state.epochs_completed + shift.astype(jnp.int32),
            loss_sum=jnp.where(epoch_ends, 0.0, loss_sum),
            loss_count=jnp.where(epoch_ends, 0, loss_count),
            previous_losses=jnp.where(shift, mean, state.previous_losses),
            older_losses=jnp.where(shift, state.previous_losses, state.older_losses),
        )

    def step(state: DynamicWeightAverageState, losses: jax.Array, key: Any) -> tuple:
        del key
        ratio_weights = dwa_weights(state.previous_losses, state.older_losses, temperature)
        weights = jnp.where(state.epochs_completed >= 2, ratio_weights, 1.0)
        return weights, record(state, losses)

    return loss_weighting(num_tasks, "dwa", init_state, step)


INFO = MethodInfo(
    name="dwa",
    factory=dynamic_weight_average,
    family="loss",
    weight_convention="sum_to_k",
    reference="Liu et al, End-to-End Multi-Task Learning with Attention, 2019 (arXiv 1803.10704)",
)
