"""Training steps whose cost drops to plain linear scalarization when task gradients are not needed.

:func:`multitask_train_step` builds ``init``/``step`` for a multi-task transformation followed
by an ordinary optax optimizer. Each step asks the transformation's
:class:`~autoscale_jax.base.FastPath` whether it needs per-task gradients:

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
import jax.numpy as jnp
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
        premature call is loud). ``None`` when the weighting has no fast path.
    """

    init: Callable[[Any], TrainState]
    step: Callable[..., tuple[Any, TrainState, jax.Array]]
    one_gradient_step: Callable[..., tuple[Any, TrainState, jax.Array]] | None = None


def multitask_train_step(
    loss_fn: Callable[..., jax.Array],
    weighting: base.MultiTaskTransformation,
    optimizer: optax.GradientTransformation,
    *,
    chunk_size: int | None = None,
) -> TrainStep:
    """A train step for ``weighting`` then ``optimizer`` with the one-backward-pass fast path.

    Args:
      loss_fn: ``loss_fn(params, *args) -> losses`` of shape [K].
      weighting: a multi-task transformation of this library (its ``fast_path`` is used when
        present; without one every step computes per-task gradients).
      optimizer: any optax transformation applied to the combined gradient.
      chunk_size: passed to :func:`~autoscale_jax.task_value_and_grad`.

    Returns:
      A :class:`TrainStep`.
    """
    if not isinstance(weighting, base.MultiTaskTransformation):
        raise TypeError(
            "weighting must be a multi-task transformation of autoscale_jax (e.g. "
            "asj.autoscale(...)), not an optax chain: pass the optimizer separately."
        )
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
    optimizer = optax.with_extra_args_support(optimizer)
    fast_path = weighting.fast_path

    def init_fn(params: Any) -> TrainState:
        return TrainState(weighting.init(params), optimizer.init(params))

    def build_step(one_gradient_only: bool) -> Callable[..., tuple[Any, TrainState, jax.Array]]:
        def step_fn(
            params: Any,
            state: TrainState,
            *args: Any,
            key: jax.Array | None = None,
            **update_inputs: Any,
        ) -> tuple[Any, TrainState, jax.Array]:
            # One forward pass for both branches; only the backward pass differs.
            losses, vjp_fn = jax.vjp(lambda p: loss_fn(p, *args), params)
            jacobian.check_losses(losses)

            def with_task_gradients(weighting_state: Any) -> tuple:
                eye = jnp.eye(losses.shape[0], dtype=losses.dtype)
                task_grads = jacobian.stacked_vjp(vjp_fn, eye, chunk_size)
                return weighting.update(
                    task_grads,
                    weighting_state,
                    params,
                    task_losses=losses,
                    key=key,
                    **update_inputs,
                )

            def with_one_gradient(weighting_state: Any) -> tuple:
                weights = fast_path.weights(weighting_state, losses, key).astype(losses.dtype)
                (combined,) = vjp_fn(weights)
                return weighting.update(
                    combined,
                    weighting_state,
                    params,
                    task_losses=losses,
                    key=key,
                    presummed=True,
                    **update_inputs,
                )

            if one_gradient_only:
                needs = False
            elif fast_path is None:
                needs = True
            else:
                needs = fast_path.needs_task_gradients(state.weighting)
            if isinstance(needs, bool):
                branch = with_task_gradients if needs else with_one_gradient
                combined, weighting_state = branch(state.weighting)
            else:
                combined, weighting_state = jax.lax.cond(
                    needs, with_task_gradients, with_one_gradient, state.weighting
                )
            updates, optimizer_state = optimizer.update(combined, state.optimizer, params)
            params = optax.apply_updates(params, updates)
            return params, TrainState(weighting_state, optimizer_state), losses

        return step_fn

    one_gradient_step = None if fast_path is None else build_step(one_gradient_only=True)
    return TrainStep(init_fn, build_step(one_gradient_only=False), one_gradient_step)


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
