"""The base of the loss-space family: weights from the losses and the method's own state.

UW, DWA, RLW, FAMO, STCH, PBI, COSMOS, the geometric mean and the scale-invariant loss never need
per-task gradients: the fast path of :func:`loss_weighting` is one backward pass of
``Σ_k w_k L_k``.

Partial labels (``task_mask``): an absent task's loss is replaced by the mean loss of the
present tasks before the rule sees it (its own, a placeholder such as 0, never does), and its
weight is set to 0; the present tasks keep the weights the rule gives them. With no task
present every weight is 0 and the method's state is left as it was. A method that tracks
losses over time (FAMO) receives the mask and leaves an absent task's history alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._bases import (
    all_finite,
    keep_if_finite,
    require_key,
    stacked_gradient_method,
)
from autoscale_jax.methods._partial_labels import masked, stand_in_losses

# step(state, losses, key[, present]) -> (weights, next state); losses float32 [K], key checked
# or None, present the partial-label mask when the method takes it
LossStep = Callable[..., tuple[jax.Array, Any]]


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
