"""Training steps whose cost drops to plain linear scalarization when task gradients are not needed.

:func:`multitask_train_step` builds ``init``/``step`` for a multi-task transformation followed
by an ordinary optax optimizer (or one chain holding both). Each step runs one forward pass
and passes the losses' VJP to the transformation, whose :class:`~autoscale_jax.base.FastPath`
decides whether it needs per-task gradients:

- yes (AutoScale's phase 1, gradient-space methods): one forward pass, K vmapped VJPs, the
  transformation combines them;
- no (AutoScale's phase 2, fixed weights, loss-only methods): one forward pass, the weights
  from the state and the losses, and a *single* VJP with the weights as cotangent, i.e.
  ``∇_θ Σ_k w_k L_k``: the cost of a plain optax step.

When the answer depends on the state (AutoScale) the two branches sit in one ``jax.lax.cond``,
so the jitted ``step`` compiles once and the phase switch costs no recompilation. On XLA:CPU a
conditional costs a few percent up to ~20% of a step (its branches lose some fusion and
threading), so for the last bit of speed switch to ``one_gradient_step`` (the branch alone, the
exact cost of a plain optax step) once phase 1 is over:

  >>> step, fast = jax.jit(train.step), jax.jit(train.one_gradient_step)
  >>> for i, batch in enumerate(batches):
  ...   params, state, losses = (step if i < estimation_steps else fast)(params, state, batch)

Example:
  >>> train = asj.multitask_train_step(loss_fn, asj.autoscale(2, 100), optax.adam(1e-3))
  >>> state = train.init(params)
  >>> step = jax.jit(train.step)
  >>> params, state, losses = step(params, state, batch)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from autoscale_jax import base, jacobian


class TrainState(NamedTuple):
    """Optimizer state of a multi-task step: the weighting's and the optimizer's."""

    weighting: Any
    optimizer: Any


class TrainStep(NamedTuple):
    """``init(params) -> TrainState``, ``step`` and ``one_gradient_step``.

    Both steps are ``(params, state, *args, key=None, **update_inputs) -> (new_params,
    new_state, losses)`` and pure, so ``jax.jit`` them. ``args`` go to ``loss_fn``;
    ``update_inputs`` to the weighting's ``update`` (the documented extra inputs of methods
    such as SDMGrad's ``second_task_grads``, see ``asj.methods.info(name).extra_inputs``).

    Attributes:
      init: builds the :class:`TrainState`.
      step: asks the weighting's fast path each step (a ``lax.cond`` when the answer depends on
        the state): one compiled function for the whole run.
      one_gradient_step: always the one-backward-pass branch, no ``lax.cond``: exactly the cost
        of a plain optax step. Valid once the fast path no longer needs task gradients (for
        AutoScale: from step ``estimation_steps`` on; before that its weights are NaN, so a
        premature call is loud). Raises for a weighting without a fast path.
    """

    init: Callable[[Any], TrainState]
    step: Callable[..., tuple[Any, TrainState, jax.Array]]
    one_gradient_step: Callable[..., tuple[Any, TrainState, jax.Array]]


def multitask_train_step(
    loss_fn: Callable[..., jax.Array],
    weighting: optax.GradientTransformation,
    optimizer: optax.GradientTransformation | None = None,
    *,
    chunk_size: int | None = None,
) -> TrainStep:
    """A train step for ``weighting`` (then ``optimizer``) with the one-backward-pass fast path.

    Every step runs one forward pass and hands the loss VJP to the transformation
    (``update(..., loss_vjp=vjp)``, see :func:`autoscale_jax.base.multitask_transformation`),
    which computes the K per-task gradients or the single gradient ``∇ Σ_k w_k L_k`` as its
    fast path says. The VJP travels as an extra argument, so the multi-task part may sit inside
    ``optax.chain``, ``optax.inject_hyperparams`` or ``optax.apply_if_finite``: it must be the
    first transformation to see the gradients (its input has the task axis).

    Args:
      loss_fn: ``loss_fn(params, *args) -> losses`` of shape [K].
      weighting: a multi-task transformation of this library, or an optax transformation
        whose first gradient transformation is one (e.g. ``optax.chain(asj.autoscale(...),
        optax.adam(1e-3))``, possibly wrapped in ``inject_hyperparams``).
      optimizer: an optax transformation applied after ``weighting`` (``None`` when
        ``weighting`` already includes it).
      chunk_size: per-task VJPs computed this many at a time (bounds memory).

    Returns:
      A :class:`TrainStep`.

    Raises:
      TypeError: at the first step, when no multi-task transformation received the VJP (a
        chain without one, or a wrapper that does not forward extra arguments).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    weighting = optax.with_extra_args_support(weighting)
    optimizer = None if optimizer is None else optax.with_extra_args_support(optimizer)

    def init_fn(params: Any) -> TrainState:
        return TrainState(
            weighting.init(params), () if optimizer is None else optimizer.init(params)
        )

    def build_step(task_gradients: str) -> Callable[..., tuple[Any, TrainState, jax.Array]]:
        def step_fn(
            params: Any,
            state: TrainState,
            *args: Any,
            key: jax.Array | None = None,
            **update_inputs: Any,
        ) -> tuple[Any, TrainState, jax.Array]:
            # One forward pass; the multi-task part decides which backward pass to run.
            losses, vjp_fn = jax.vjp(lambda p: loss_fn(p, *args), params)
            jacobian.check_losses(losses)
            base._LOSS_VJP_CONSUMED.append(False)
            try:
                # The incoming gradients are a placeholder: the multi-task part uses loss_vjp.
                combined, weighting_state = weighting.update(
                    params,
                    state.weighting,
                    params,
                    task_losses=losses,
                    key=key,
                    loss_vjp=vjp_fn,
                    task_gradients=task_gradients,
                    vjp_chunk_size=chunk_size,
                    **update_inputs,
                )
            finally:
                consumed = base._LOSS_VJP_CONSUMED.pop()
            if not consumed:
                raise TypeError(
                    "No multi-task transformation of autoscale_jax received the task losses' "
                    "VJP: `weighting` must be one (e.g. asj.autoscale(...)) or a chain/wrapper "
                    "whose first gradient transformation is one."
                )
            optimizer_state = state.optimizer
            updates = combined
            if optimizer is not None:
                updates, optimizer_state = optimizer.update(combined, state.optimizer, params)
            params = optax.apply_updates(params, updates)
            return params, TrainState(weighting_state, optimizer_state), losses

        return step_fn

    return TrainStep(init_fn, build_step("auto"), build_step("never"))


def linear_scalarization_step(
    loss_fn: Callable[..., jax.Array], weights: jax.Array, optimizer: optax.GradientTransformation
) -> TrainStep:
    """The plain optax baseline: one gradient of ``Σ_k w_k L_k`` then ``optimizer``.

    Used as the reference cost in benchmarks; equal to :func:`multitask_train_step` with
    ``fixed_weights(weights)`` up to that function's bookkeeping.
    """

    def scalarized(params: Any, *args: Any) -> tuple[jax.Array, jax.Array]:
        losses = loss_fn(params, *args)
        return losses @ weights.astype(losses.dtype), losses

    grad_fn = jax.grad(scalarized, has_aux=True)

    def step_fn(params: Any, state: Any, *args: Any, key: jax.Array | None = None) -> tuple:
        del key
        grads, losses = grad_fn(params, *args)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, losses

    return TrainStep(optimizer.init, step_fn, step_fn)
