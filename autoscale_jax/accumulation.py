"""Gradient accumulation for multi-task transformations: ``optax.MultiSteps`` with a task axis.

``optax.MultiSteps(optax.chain(asj.autoscale(...), optax.adam(...)), k)`` cannot work: its
accumulator has the parameters' shape, while a multi-task transformation takes stacked task
gradients ``[K, *param.shape]`` (the combination fails with a clear error). Two compositions
are correct:

- :func:`multi_steps` accumulates the stacked task gradients and the task losses over ``k``
  micro-batches and hands their means to the multi-task transformation: for mean losses over
  equal micro-batches that is exactly one step on the large batch (the metrics, solvers and
  AutoScale's estimation all see the large-batch Gramian). Every micro-step needs the per-task
  gradients.
- ``optax.chain(asj.autoscale(...), optax.MultiSteps(optax.adam(...), k))`` accumulates the
  *combined* update instead: the multi-task part steps on every micro-batch (AutoScale's
  ``estimation_steps`` count micro-batches) and keeps its one-gradient fast path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import base, checks


class MultiStepsState(NamedTuple):
    """State of :func:`multi_steps`.

    Attributes:
      mini_step: micro-batches accumulated since the last update (int32).
      acc_task_grads: running mean of the stacked task gradients (leading axis K).
      acc_task_losses: running mean of the [K] task losses.
      inner_state: the wrapped transformation's state (updated every ``every_k`` calls).
    """

    mini_step: jax.Array
    acc_task_grads: Any
    acc_task_losses: jax.Array
    inner_state: Any


def multi_steps(
    tx: optax.GradientTransformation, every_k: int, num_tasks: int
) -> base.MultiTaskTransformation:
    """Accumulates stacked task gradients over ``every_k`` micro-batches, then updates ``tx``.

    Call ``update(task_grads, state, params, task_losses=losses, **extra)`` on every
    micro-batch. Calls ``1 .. k-1`` of a cycle return zero updates and leave ``tx``'s state
    alone; call ``k`` passes the means ``ḡ = (1/k) Σ_i g^{(i)}`` and ``L̄ = (1/k) Σ_i L^{(i)}``
    (and the other extra arguments of that call, e.g. ``key``) to ``tx.update``.

    Args:
      tx: a multi-task transformation, or an optax chain that starts with one.
      every_k: micro-batches per update (a positive int).
      num_tasks: K, the task axis of the accumulator.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` without a fast path (every
      micro-step needs per-task gradients); ``init`` needs the parameters.

    Example:
      >>> tx = asj.multi_steps(optax.chain(asj.equal_weights(2), optax.sgd(0.1)), 2, 2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)
      >>> int(state.mini_step)
      1
    """
    if not isinstance(every_k, int | jnp.integer) or isinstance(every_k, bool) or every_k < 1:
        raise ValueError(f"every_k must be a positive int, got {every_k!r}.")
    every_k = int(every_k)
    num_tasks = checks.check_num_tasks(num_tasks)
    inner = optax.with_extra_args_support(tx)

    def init_fn(params: Any) -> MultiStepsState:
        if params is None:
            raise ValueError("multi_steps(...).init needs the parameters (for the accumulator).")
        return MultiStepsState(
            mini_step=jnp.zeros((), jnp.int32),
            acc_task_grads=jax.tree.map(
                lambda p: jnp.zeros((num_tasks, *jnp.shape(p)), jnp.asarray(p).dtype), params
            ),
            acc_task_losses=jnp.zeros((num_tasks,), jnp.float32),
            inner_state=inner.init(params),
        )

    def update_fn(
        task_grads: Any,
        state: MultiStepsState,
        params: Any = None,
        *,
        task_losses: jax.Array | None = None,
        **extra_args: Any,
    ) -> tuple[Any, MultiStepsState]:
        checks.check_task_gradients(task_grads, num_tasks)
        losses = checks.check_task_losses(task_losses, num_tasks, required=False)
        count = state.mini_step + 1
        acc_grads = jax.tree.map(
            lambda acc, g: acc + (g.astype(acc.dtype) - acc) / count.astype(acc.dtype),
            state.acc_task_grads,
            task_grads,
        )
        acc_losses = state.acc_task_losses
        if losses is not None:
            acc_losses = acc_losses + (losses.astype(jnp.float32) - acc_losses) / count

        def emit(_: Any) -> tuple[Any, MultiStepsState]:
            mean_losses = None if losses is None else acc_losses
            updates, inner_state = inner.update(
                acc_grads, state.inner_state, params, task_losses=mean_losses, **extra_args
            )
            fresh = MultiStepsState(
                mini_step=jnp.zeros((), jnp.int32),
                acc_task_grads=jax.tree.map(jnp.zeros_like, acc_grads),
                acc_task_losses=jnp.zeros_like(acc_losses),
                inner_state=inner_state,
            )
            return updates, fresh

        def hold(_: Any) -> tuple[Any, MultiStepsState]:
            zeros = jax.tree.map(lambda g: jnp.zeros(g.shape[1:], g.dtype), task_grads)
            return zeros, MultiStepsState(count, acc_grads, acc_losses, state.inner_state)

        return jax.lax.cond(count >= every_k, emit, hold, None)

    return base.multitask_transformation(init_fn, update_fn)
