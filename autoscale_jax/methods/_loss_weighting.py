"""The base of the loss-space family: weights from the losses and the method's own state.

UW, DWA, RLW, FAMO, STCH, PBI, COSMOS, the geometric mean and the scale-invariant loss never need
per-task gradients: the fast path of :func:`loss_weighting` is one backward pass of
``Σ_k w_k L_k``.

Partial labels (``task_mask``): an absent task's loss is replaced by the mean loss of the
present tasks before the rule sees it (its own, a placeholder such as 0, never does), and its
weight is set to 0; the present tasks keep the weights the rule gives them. With no task
present every weight is 0 and the method's state is left as it was. A method that tracks
losses over time (FAMO) receives the mask and leaves an absent task's history alone.

Also here, what several loss-space methods share: the log-loss weights ``1 / L_k`` (the
scale-invariant loss, FAMO, STCH, DB-MTL), the preference check (COSMOS, PBI) and the
learned log-scales of uncertainty weighting and IMTL-L (one method under ``s → -s``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._bases import (
    all_finite,
    keep_if_finite,
    require_key,
    stacked_gradient_method,
)
from autoscale_jax.methods._partial_labels import masked, stand_in_losses
from autoscale_jax.methods._scale_parameters import descend, scale_optimizer

# step(state, losses, key[, present]) -> (weights, next state); losses float32 [K], key checked
# or None, present the partial-label mask when the method takes it
LossStep = Callable[..., tuple[jax.Array, Any]]

# Default floor on a loss before it is inverted: the ε of ``log(L + ε)`` in LibMTL / FAMO.
LOG_LOSS_EPS = 1e-8


def log_loss_weights(losses: jax.Array, eps: float = LOG_LOSS_EPS) -> jax.Array:
    """``1 / (max(L_k, 0) + ε)``: the factor ``∇ log(L_k + ε) = ∇L_k / (L_k + ε)`` applies.

    Non-positive losses are clamped to 0 (weight ``1/ε``) so the result is always defined;
    non-finite losses give non-finite weights for the caller to handle.
    """
    losses = metrics.at_least_float32(losses)
    return 1.0 / (jnp.maximum(losses, 0.0) + eps)


def check_preference(preference: Any, num_tasks: int) -> np.ndarray:
    """A finite, non-negative, nonzero [K] preference vector as float32 (default uniform)."""
    if preference is None:
        return np.full((num_tasks,), 1.0 / num_tasks, np.float32)
    values = np.asarray(preference, np.float32)
    if values.shape != (num_tasks,):
        raise ValueError(f"preference must have shape ({num_tasks},), got {values.shape}.")
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
        raise ValueError(
            f"preference must be finite, non-negative and nonzero, got {preference!r}."
        )
    return values


def loss_weighting(
    num_tasks: int,
    name: str,
    init_state: Callable[[], Any],
    step: LossStep,
    *,
    needs_key: bool = False,
    losses_required: bool = True,
    takes_task_mask: bool = False,
) -> base.MultiTaskTransformation:
    """A method whose weights come from the losses and its own state, never from gradients.

    ``step(state, losses, key) -> (weights, next_state)`` runs once per update; the update is
    ``Σ_k w_k g_k``. Its fast path calls the same ``step`` for the weights, so
    :func:`autoscale_jax.train.multitask_train_step` computes ``∇ Σ_k w_k L_k`` with one
    backward pass and the two paths agree exactly. Non-finite weights are never stored: the
    previous weights are applied and kept (non-finite gradients still reach the update).

    Args:
      num_tasks: K >= 2.
      name: the registry name, for error messages.
      init_state: ``() -> state``, a NamedTuple with a ``task_weights`` field.
      step: the rule (see above); ``losses`` is None when they are optional and absent.
      needs_key: whether ``update`` requires ``key=``.
      losses_required: whether ``update`` requires ``task_losses=``.
      takes_task_mask: ``step(state, losses, key, present)`` also receives the partial-label
        mask ([K] bools, or ``None``), e.g. to leave an absent task's loss history alone.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a fast path that never
      needs task gradients.
    """
    num_tasks = checks.check_num_tasks(num_tasks)

    def finite_step(
        state: Any, losses: Any, key: Any, present: Any = None
    ) -> tuple[jax.Array, Any]:
        if needs_key:
            key = require_key(key, name)
        if losses_required:
            losses = checks.check_task_losses(losses, num_tasks)
        if losses is not None:
            losses = metrics.at_least_float32(jnp.asarray(losses))
        present = checks.check_task_mask(present, num_tasks)
        if present is not None and losses is not None:
            losses = stand_in_losses(losses, present)
        if takes_task_mask:
            weights, next_state = step(state, losses, key, present)
        else:
            weights, next_state = step(state, losses, key)
        weights = masked(keep_if_finite(weights, state.task_weights, all_finite(weights)), present)
        if present is not None:  # nothing observed: the state stays as it was
            next_state = keep_if_finite(next_state, state, jnp.any(present))
        return weights, next_state._replace(task_weights=weights)

    def aggregate(task_grads: Any, state: Any, losses: Any, key: Any, extra: dict) -> tuple:
        present = extra.get("task_mask")
        weights, next_state = finite_step(state, losses, key, present)
        return base.weighted_sum(task_grads, weights, present), next_state

    def presummed_update(combined: Any, state: Any, losses: Any, key: Any, present: Any) -> tuple:
        # The fast path already computed ∇ Σ_k w_k L_k with these same weights.
        return combined, finite_step(state, losses, key, present)[1]

    return stacked_gradient_method(
        num_tasks,
        name,
        lambda params: init_state(),
        aggregate,
        needs_key=needs_key,
        losses_required=losses_required,
        presummed_update=presummed_update,
        fast_path=base.FastPath(
            needs_task_gradients=lambda state: False,
            weights=lambda state, task_losses, key, present=None: finite_step(
                state, task_losses, key, present
            )[0],
            takes_task_mask=True,
        ),
        handles_task_mask=True,
    )


def stateless_weighting(
    num_tasks: int,
    name: str,
    state_type: Callable[..., Any],
    weights: Callable[[jax.Array], jax.Array],
) -> base.MultiTaskTransformation:
    """A :func:`loss_weighting` method whose weights are ``weights(losses)`` of the current
    losses alone; its state, ``state_type(task_weights=...)``, holds the latest weights (ones
    before the first step)."""

    def init_state() -> Any:
        return state_type(task_weights=jnp.ones((num_tasks,), jnp.float32))

    def step(state: Any, losses: jax.Array, key: Any) -> tuple:
        del key
        return weights(losses), state

    return loss_weighting(num_tasks, name, init_state, step)


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
