"""Wrappers of a whole multi-task chain that skip steps: gradient accumulation and the
non-finite guard, the task-axis versions of ``optax.MultiSteps`` and ``optax.apply_if_finite``.

Both wrap the whole chain, the multi-task part *and* the optimizer (an optimizer outside would
still step, with momentum, on the zero updates of the skipped steps; the wrappers refuse a
chain without one at its first update, and the train steps refuse an optimizer outside).

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

``optax.apply_if_finite`` around the multi-task part cannot work either: it checks the
gradients it receives, which in a train step are a placeholder, and raw its skip branch has
the stacked shape. :func:`apply_if_finite` checks what the chain *returns* instead (and the
task losses), so it keeps the fast path and protects the whole state.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import _composition, base, checks, dispatch

# optax < 0.2.4 names it safe_int32_increment (the counters here are int32).
_safe_increment = getattr(optax, "safe_increment", None) or optax.safe_int32_increment


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
      tx: an optax chain that starts with a multi-task transformation and holds the optimizer
        (e.g. ``optax.chain(asj.autoscale(...), optax.adam(...))``).
      every_k: micro-batches per update (a positive int).
      num_tasks: K, the task axis of the accumulator.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` without a fast path (every
      micro-step needs per-task gradients); ``init`` needs the parameters.

    Raises:
      ValueError: at construction for a bad ``every_k``; at the first update when ``tx`` has
        no multi-task part first or no optimizer after it. Inside a train step, when an
        optimizer follows ``multi_steps`` (give it inside ``tx``).

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
        task_grads: Any, state: MultiStepsState, params: Any, inputs: dispatch.UpdateInputs
    ) -> tuple[Any, MultiStepsState]:
        checks.check_task_gradients(task_grads, num_tasks)
        losses = checks.check_task_losses(inputs.task_losses, num_tasks, required=False)
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
            where = "multi_steps(tx, ...)'s tx"
            with _composition.scope(where, acc_grads, state.inner_state) as seen:
                # The means, with the other inputs of this (the k-th) call, e.g. its key.
                mean_inputs = inputs._replace(task_losses=mean_losses)
                updates, inner_state = inner.update(
                    acc_grads, state.inner_state, params, inputs=mean_inputs
                )
            seen.check_holds_optimizer(updates)
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

        _composition.holds_optimizer("asj.multi_steps")
        return jax.lax.cond(count >= every_k, emit, hold, None)

    return dispatch.multitask_transformation(init_fn, update_fn)


class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite` (the fields of ``optax.ApplyIfFiniteState``).

    Attributes:
      notfinite_count: consecutive non-finite steps so far (int32).
      last_finite: whether the last step was finite.
      total_notfinite: non-finite steps over the run (int32).
      inner_state: the wrapped chain's state (unchanged by a skipped step).
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


def apply_if_finite(
    tx: optax.GradientTransformation, max_consecutive_errors: int
) -> optax.GradientTransformationExtraArgs:
    """Skips the steps whose update or task losses hold a NaN or inf: the whole chain's state
    (the multi-task part's estimation, the optimizer's moments) and the parameters stay as
    they were.

    ``optax.apply_if_finite`` decides from the gradients it *receives*, which a multi-task
    chain does not have in a train step (a placeholder) and which raw have a task axis. This
    wrapper runs ``tx`` and checks what it *returns* (the final update, after the optimizer)
    and the ``task_losses``; a non-finite gradient reaches the update through any optimizer.
    A skipped step returns zero updates and the previous inner state; after more than
    ``max_consecutive_errors`` skipped steps in a row the update is applied anyway, as in
    optax. The one-gradient fast path and :func:`autoscale_jax.needs_task_gradients` see
    through it.

    Args:
      tx: an optax chain that starts with a multi-task transformation and holds the optimizer
        (e.g. ``optax.chain(asj.autoscale(...), optax.adam(...))``).
      max_consecutive_errors: non-finite steps in a row to skip (an int >= 0).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` with :class:`ApplyIfFiniteState`.

    Raises:
      ValueError: for a bad ``max_consecutive_errors``; at the first update when ``tx`` has no
        multi-task part first or no optimizer after it; inside a train step when an optimizer
        follows this wrapper.

    Example:
      >>> tx = asj.accumulation.apply_if_finite(
      ...     optax.chain(asj.autoscale(num_tasks=2, estimation_steps=2), optax.adam(1e-2)), 3
      ... )
      >>> state = tx.init(params)
      >>> nan_grads = jax.tree.map(lambda g: g * jnp.nan, task_grads)
      >>> updates, new_state = tx.update(nan_grads, state, params, task_losses=losses)
      >>> int(new_state.notfinite_count), bool(jnp.all(updates["trunk"] == 0))
      (1, True)
    """
    if (
        isinstance(max_consecutive_errors, bool)
        or not isinstance(max_consecutive_errors, int | jnp.integer)
        or max_consecutive_errors < 0
    ):
        raise ValueError(
            f"max_consecutive_errors must be an int >= 0, got {max_consecutive_errors!r}."
        )
    limit = int(max_consecutive_errors)
    inner = optax.with_extra_args_support(tx)

    def init_fn(params: Any) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros((), jnp.int32),
            last_finite=jnp.array(True),
            total_notfinite=jnp.zeros((), jnp.int32),
            inner_state=inner.init(params),
        )

    def update_fn(
        updates: Any, state: ApplyIfFiniteState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, ApplyIfFiniteState]:
        with _composition.scope("apply_if_finite(tx, ...)'s tx", updates, state) as seen:
            new_updates, new_inner = inner.update(updates, state.inner_state, params, **extra_args)
        seen.check_holds_optimizer(new_updates)
        checked = [*jax.tree.leaves(new_updates)]
        task_losses = dispatch.UpdateInputs.from_keywords(extra_args).task_losses
        if task_losses is not None:
            checked.append(jnp.asarray(task_losses))
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in checked]))
        count = jnp.where(finite, 0, _safe_increment(state.notfinite_count))
        out, inner_state = jax.lax.cond(
            finite | (count > limit),
            lambda: (new_updates, new_inner),
            lambda: (jax.tree.map(jnp.zeros_like, new_updates), state.inner_state),
        )
        # To the caller's scope this wrapper is the multi-task part (it received the input).
        _composition.started(updates, state, consumer=seen.consumed)
        _composition.holds_optimizer("asj.accumulation.apply_if_finite")
        _composition.finished((out, None))
        total = jnp.where(finite, state.total_notfinite, _safe_increment(state.total_notfinite))
        return out, ApplyIfFiniteState(count.astype(jnp.int32), finite, total, inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
