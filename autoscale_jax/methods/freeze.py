"""Fixed weights taken from an adaptive method: run it for a while, then train with its weights.

Reference:
  Gama & Grassi, Uniform loss vs. specialized optimization: a comparative analysis in
  multi-task learning, 2025 (arXiv 2505.10347).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, dispatch, weighting
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._update_paths import checked_stacked, present_weighted_sum


class FreezeState(NamedTuple):
    """State of :func:`freeze`.

    Attributes:
      step: int32 steps taken; the inner method runs while ``step < estimation_steps``.
      task_weights: the inner method's latest weights during phase 1, the frozen weights after.
      inner: the inner method's state (frozen after phase 1).
      epoch_weight_sum: [K] sum of the inner weights in the current epoch.
      epoch_count: int32 finite weight samples in the current epoch.
      epoch_weights: [E, K] per-epoch mean weights, normalised to sum K.
      epochs_closed: int32 epochs recorded.
    """

    step: jax.Array
    task_weights: jax.Array
    inner: Any
    epoch_weight_sum: jax.Array
    epoch_count: jax.Array
    epoch_weights: jax.Array
    epochs_closed: jax.Array


def freeze(
    method: base.MultiTaskTransformation,
    estimation_steps: int,
    *,
    epoch_length: int | None = None,
    aggregate: str = "ema",
    decay: float = 0.9,
) -> base.MultiTaskTransformation:
    """Runs ``method`` for ``estimation_steps`` steps, then trains with its weights fixed.

    During phase 1 the update is the inner method's own. Its weights ``w_t`` are averaged per
    epoch (``epoch_length`` steps), each epoch mean is normalised to ``Σ w = K``, and when phase
    1 ends the epoch means are aggregated, by default with an exponential moving average

    .. math:: e_1 = \\bar w_1, \\quad e_i = β e_{i-1} + (1 - β) \\bar w_i, \\quad β = 0.9,

    as in arXiv 2505.10347 (which normalises to ``Σ w = 1``; here ``Σ w = K`` keeps the step
    size of equal weighting, the ratios are the same). Phase 2 is linear scalarization with the
    frozen weights, with the same one-backward-pass fast path as AutoScale.

    Args:
      method: a multi-task transformation whose state has ``task_weights`` (not GradDrop).
      estimation_steps: phase-1 length ``T >= 1``.
      epoch_length: steps per epoch for the per-epoch means (default: one epoch = phase 1).
      aggregate: ``"ema"``, ``"mean"``, ``"last_half"`` or ``"last"`` over the epoch means.
      decay: ``β`` for ``"ema"``.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`.

    Example:
      >>> tx = optax.chain(asj.methods.freeze(asj.methods.get("nash_mtl", num_tasks=3), 1000),
      ...                  optax.adam(1e-3))
    """
    if not isinstance(method, base.MultiTaskTransformation):
        raise TypeError("freeze needs a multi-task transformation of autoscale_jax.")
    if not isinstance(estimation_steps, int) or estimation_steps < 1:
        raise ValueError(f"estimation_steps must be a positive int, got {estimation_steps!r}.")
    epoch_length = estimation_steps if epoch_length is None else epoch_length
    if not isinstance(epoch_length, int) or epoch_length < 1:
        raise ValueError(f"epoch_length must be a positive int, got {epoch_length!r}.")
    if aggregate not in weighting.AGGREGATIONS:
        raise ValueError(
            f"Unknown aggregation {aggregate!r}; choose one of {weighting.AGGREGATIONS}."
        )
    num_epochs = -(-estimation_steps // epoch_length)
    inner_fast = method.fast_path

    def init_fn(params: Any) -> FreezeState:
        inner = method.init(params)
        try:
            weights = base.task_weights(inner)
        except ValueError as err:
            raise TypeError("freeze needs a method whose state has task_weights.") from err
        num_tasks = weights.shape[0]
        return FreezeState(
            step=jnp.zeros((), jnp.int32),
            task_weights=jnp.asarray(weights, jnp.float32),
            inner=inner,
            epoch_weight_sum=jnp.zeros((num_tasks,), jnp.float32),
            epoch_count=jnp.zeros((), jnp.int32),
            epoch_weights=jnp.zeros((num_epochs, num_tasks), jnp.float32),
            epochs_closed=jnp.zeros((), jnp.int32),
        )

    def record(state: FreezeState, inner: Any) -> FreezeState:
        """Adds the inner method's new weights to the epoch; closes epochs and phase 1."""
        weights = jnp.asarray(base.task_weights(inner), jnp.float32)
        finite = jnp.all(jnp.isfinite(weights)) & (jnp.sum(weights) > 0)
        weight_sum = state.epoch_weight_sum + jnp.where(finite, weights, 0.0)
        count = state.epoch_count + finite.astype(jnp.int32)
        last_step = state.step == estimation_steps - 1
        epoch_ends = weighting.window_ends(state.step, epoch_length, last_step)
        close = epoch_ends & (count > 0)
        epoch_mean = weighting.normalise(weight_sum / jnp.maximum(count, 1))
        slot = jnp.minimum(state.epochs_closed, num_epochs - 1)
        epoch_weights = jnp.where(
            close, state.epoch_weights.at[slot].set(epoch_mean), state.epoch_weights
        )
        epochs_closed = state.epochs_closed + close.astype(jnp.int32)
        frozen = weighting.aggregate_window_weights(epoch_weights, epochs_closed, aggregate, decay)
        current = jnp.where(finite, weights, state.task_weights)
        return state._replace(
            task_weights=jnp.where(last_step & (epochs_closed > 0), frozen, current),
            inner=inner,
            epoch_weight_sum=jnp.where(epoch_ends, 0.0, weight_sum),
            epoch_count=jnp.where(epoch_ends, 0, count),
            epoch_weights=epoch_weights,
            epochs_closed=epochs_closed,
        )

    def update_fn(
        task_grads: Any, state: FreezeState, params: Any, inputs: dispatch.UpdateInputs
    ) -> tuple[Any, FreezeState]:
        estimating = state.step < estimation_steps

        def run_inner(state: FreezeState) -> tuple:
            if inputs.presummed and inner_fast is None:
                # Unreachable: without an inner fast path, phase 1 always takes task gradients.
                return task_grads, state
            updates, inner = method.update(task_grads, state.inner, params, inputs=inputs)
            return updates, record(state, inner)

        def fixed(state: FreezeState) -> tuple:
            if inputs.presummed:
                return task_grads, state
            present = checked_stacked(task_grads, state.task_weights.shape[0], inputs.task_mask)
            return present_weighted_sum(task_grads, state.task_weights, present), state

        updates, state = jax.lax.cond(estimating, run_inner, fixed, state)
        return updates, state._replace(step=state.step + 1)

    def needs_task_gradients(state: FreezeState) -> jax.Array:
        inner_needs = inner_fast is None or inner_fast.needs_task_gradients(state.inner)
        return (state.step < estimation_steps) & jnp.asarray(inner_needs)

    def fast_path_weights(
        state: FreezeState, task_losses: Any, key: Any, mask: Any = None
    ) -> jax.Array:
        inner = (
            jnp.full_like(state.task_weights, jnp.nan)
            if inner_fast is None
            else base.fast_path_weights(inner_fast, state.inner, task_losses, key, mask)
        )
        return jnp.where(state.step < estimation_steps, inner, state.task_weights)

    fast_path = base.FastPath(needs_task_gradients, fast_path_weights, takes_task_mask=True)
    return dispatch.multitask_transformation(init_fn, update_fn, fast_path)


INFO = MethodInfo(
    name="freeze",
    factory=freeze,
    family="wrapper",
    needs_losses=True,
    reference=(
        "Gama & Grassi, Uniform loss vs. specialized optimization: a comparative analysis in "
        "multi-task learning, 2025 (arXiv 2505.10347)"
    ),
)
