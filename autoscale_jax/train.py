"""Training steps whose cost drops to plain linear scalarization when task gradients are not needed.

:func:`multitask_train_step` builds ``init``/``step`` for a multi-task transformation followed
by an ordinary optax optimizer (or one chain holding both). Each step runs one forward pass
and passes the losses' VJP (in one :class:`~autoscale_jax.dispatch.UpdateInputs`) to the
transformation, whose :class:`~autoscale_jax.base.FastPath` decides whether it needs per-task
gradients:

- yes (AutoScale's phase 1, gradient-space methods): one forward pass, K vmapped VJPs, the
  transformation combines them;
- no (AutoScale's phase 2, fixed weights, loss-only methods): one forward pass, the weights
  from the state and the losses, and a *single* VJP with the weights as cotangent, i.e.
  ``∇_θ Σ_k w_k L_k``: the cost of a plain optax step.

When the answer depends on the state (AutoScale) the two branches sit in one ``jax.lax.cond``,
so the jitted ``step`` compiles once and the phase switch costs no recompilation. On XLA:CPU a
conditional costs a few percent up to ~20% of a step (its branches lose some fusion and
threading), so for the last bit of speed switch to ``one_gradient_step`` (the branch alone, the
exact cost of a plain optax step) once phase 1 is over, and donate the parameters and state
(``donate_argnums=(0, 1)``: without it, every step copies AutoScale's window statistics and
metrics, ~3% of a small model's step on CPU):

  >>> train = asj.multitask_train_step(loss_fn, asj.autoscale(2, estimation_steps), optax.sgd(0.1))
  >>> state = train.init(params)
  >>> step = jax.jit(train.step, donate_argnums=(0, 1))
  >>> fast = jax.jit(train.one_gradient_step, donate_argnums=(0, 1))
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

from autoscale_jax import _composition, dispatch, modes, restart


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
        AutoScale: from step ``estimation_steps`` on). A premature call is refused: called
        eagerly it raises ``ValueError``; under ``jit`` (where it cannot raise) AutoScale's
        weights are NaN, so the parameters and ``asj.task_weights(state)`` turn NaN instead
        of training on unfinished weights. Raises for a weighting without a fast path.
      needs_task_gradients: ``state -> bool`` (a bool array when it depends on the state):
        whether the next step still needs per-task gradients, i.e. whether
        ``one_gradient_step`` would be premature (see
        :func:`autoscale_jax.needs_task_gradients`).
    """

    init: Callable[[Any], TrainState]
    step: Callable[..., tuple[Any, TrainState, jax.Array]]
    one_gradient_step: Callable[..., tuple[Any, TrainState, jax.Array]]
    needs_task_gradients: Callable[[Any], Any] = lambda state: False


def multitask_train_step(
    loss_fn: Callable[..., jax.Array],
    weighting: optax.GradientTransformation,
    optimizer: optax.GradientTransformation | None = None,
    *,
    chunk_size: int | None = None,
    gradient_mode: str = "stacked",
    num_sampled_tasks: int | None = None,
    task_counts: bool = False,
    restart_moments: bool = True,
) -> TrainStep:
    """A train step for ``weighting`` (then ``optimizer``) with the one-backward-pass fast path.

    Every step runs one forward pass, reads its inputs once into an
    :class:`~autoscale_jax.dispatch.UpdateInputs` (the losses, their VJP, ``key``, the
    gradient mode's Gramian, ``update_inputs``) and hands it to the transformation
    (``update(..., inputs=inputs)``, see
    :func:`autoscale_jax.dispatch.multitask_transformation`), which computes the K per-task
    gradients or the single gradient ``∇ Σ_k w_k L_k`` as its fast path says. The inputs
    travel as an extra argument, so the multi-task part may sit inside
    ``optax.chain``, ``optax.named_chain`` or ``optax.inject_hyperparams``, or inside the
    wrappers :func:`autoscale_jax.multi_steps` and
    :func:`autoscale_jax.accumulation.apply_if_finite` (which hold the optimizer). It must be
    the first gradient transformation (its input has the task axis), and exactly one optimizer
    must follow it (its output is the combined gradient). The step checks the composition when
    it is traced and refuses, with a ``ValueError`` naming the fix:

    - a transformation before the multi-task part (``optax.chain(optax.adam(...),
      asj.autoscale(...))`` would train by gradient ascent; ``optax.clip_by_global_norm`` first
      would clip the stacked gradients); put clipping after it;
    - two multi-task parts in ``weighting``;
    - ``optax.apply_if_finite`` or ``optax.MultiSteps`` around the multi-task part (they decide
      from the placeholder gradients the step passes, so they would protect or accumulate
      nothing);
    - no optimizer (``weighting`` ends with the multi-task part and ``optimizer`` is ``None``:
      ``apply_updates`` would climb the combined gradient), or two (``weighting`` has
      transformations after the multi-task part *and* ``optimizer`` is given; put them in one
      place).

    At the end of the step that ends AutoScale's estimation phase, the optimizer's moments
    restart (``restart_moments``): the optimizer state (and whatever follows the multi-task
    part in ``weighting``) becomes ``init(params)`` but for the positions of its schedules and
    the multi-task part's state (the rule: :mod:`autoscale_jax.restart`). A ``select`` inside
    the compiled ``step``: no recompilation at the switch. ``one_gradient_step`` never restarts
    (it runs after the switch).

    Args:
      loss_fn: ``loss_fn(params, *args) -> losses`` of shape [K].
      weighting: a multi-task transformation of this library, or an optax transformation
        whose first gradient transformation is one (e.g. ``optax.chain(asj.autoscale(...),
        optax.adam(1e-3))``, possibly wrapped in ``inject_hyperparams``).
      optimizer: an optax transformation applied after ``weighting`` (``None`` when
        ``weighting`` already includes it).
      chunk_size: per-task VJPs (or Gramian columns) computed this many at a time (bounds
        memory).
      gradient_mode: how steps that need the task gradients measure them (see
        :mod:`autoscale_jax.modes`): ``"stacked"`` (the K per-task gradients, exact, every
        method), or, for AutoScale and every Gramian-based method, ``"gramian"`` (G column by
        column as a JVP of a VJP: exact, O(P + K²) memory), ``"representation"`` /
        ``"last_layer"`` (K VJPs through the heads of a :class:`~autoscale_jax.SplitLoss`:
        approximate) or ``"sampled"`` (``num_sampled_tasks`` random tasks per step: unbiased;
        needs ``key=``). In the Gramian modes the update is one VJP of ``Σ_k w_k L_k``.
      num_sampled_tasks: ``m`` for ``gradient_mode="sampled"``.
      task_counts: ``loss_fn`` returns ``(losses, counts)``, the per-task label counts of the
        batch (partial labels); ``task_mask = counts > 0`` goes to the weighting's update.
      restart_moments: restart the optimizer's moments when AutoScale's phase 1 ends (Adam's
        second moments would remember phase 1's gradient scale for ~1,000 steps; measured on
        the benchmarks, the restart gains 4.5-9.3 Δm points). ``False`` carries them over.

    Returns:
      A :class:`TrainStep`.

    Raises:
      TypeError: at the first step, when no multi-task transformation received the VJP (a
        chain without one, or a wrapper that does not forward extra arguments).
      ValueError: at the first step, for the compositions listed above, and (with
        ``restart_moments``) for an optimizer state the restart's rule does not know.
    """
    if not isinstance(restart_moments, bool):
        raise ValueError(f"restart_moments must be True or False, got {restart_moments!r}.")
    modes.check_mode(gradient_mode, loss_fn, num_sampled_tasks, chunk_size)
    weighting = optax.with_extra_args_support(weighting)
    optimizer = None if optimizer is None else optax.with_extra_args_support(optimizer)
    # The restart sees the weighting and the optimizer as one chain (its state as one tuple).
    whole = weighting if optimizer is None else optax.chain(weighting, optimizer)

    def parts(weighting_state: Any, optimizer_state: Any) -> Any:
        return weighting_state if optimizer is None else (weighting_state, optimizer_state)

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
            if task_gradients == "never":
                refuse_premature_one_gradient_step(weighting, state.weighting, "one_gradient_step")
            # One forward pass; the multi-task part decides which backward pass to run.
            lin = modes.linearize(
                loss_fn,
                params,
                args,
                mode=gradient_mode,
                key=key,
                chunk_size=chunk_size,
                num_sampled_tasks=num_sampled_tasks,
                task_counts=task_counts,
            )
            losses = lin.losses
            # The step's inputs, read once: the multi-task part receives this one object.
            inputs = dispatch.UpdateInputs.from_keywords(
                dict(
                    task_losses=losses,
                    key=key,
                    loss_vjp=lin.loss_vjp,
                    task_gradients=task_gradients,
                    vjp_chunk_size=chunk_size,
                    **lin.update_inputs,
                    **update_inputs,
                )
            )
            with _composition.scope("`weighting`", params, state.weighting) as seen:
                # The incoming gradients are a placeholder: the multi-task part uses loss_vjp.
                combined, weighting_state = weighting.update(
                    params, state.weighting, params, inputs=inputs
                )
            seen.check_train_step(combined, optimizer is not None)
            optimizer_state = state.optimizer
            updates = combined
            if optimizer is not None:
                updates, optimizer_state = optimizer.update(combined, state.optimizer, params)
            params = optax.apply_updates(params, updates)
            if restart_moments and task_gradients == "auto":
                restarted = restart.at_phase_switch(
                    whole,
                    parts(state.weighting, state.optimizer),
                    parts(weighting_state, optimizer_state),
                    params,
                )
                if optimizer is None:
                    weighting_state = restarted
                else:
                    weighting_state, optimizer_state = restarted
            return params, TrainState(weighting_state, optimizer_state), losses

        return step_fn

    def needs_task_gradients(state: TrainState) -> Any:
        return dispatch.needs_task_gradients(weighting, state.weighting)

    return TrainStep(init_fn, build_step("auto"), build_step("never"), needs_task_gradients)


def refuse_premature_one_gradient_step(weighting: Any, state: Any, what: str) -> None:
    """Raises when, on a concrete state, the weighting still needs per-task gradients.

    Only a state-dependent answer (AutoScale's phase) is checked here; a static ``True`` (no
    fast path) is refused by the weighting itself, and under ``jit`` the answer is traced.

    Args:
      weighting: the transformation (or chain) holding the multi-task part.
      state: its state.
      what: the call being refused, for the message.
    """
    try:
        needs = dispatch.needs_task_gradients(weighting, state)
    except TypeError:
        return  # no multi-task part: the step raises its own error
    if isinstance(needs, bool | jax.core.Tracer):
        return
    if bool(needs):
        raise ValueError(
            f"{what} called while the weighting still needs per-task gradients (AutoScale's "
            "estimation phase): use the step with task gradients until "
            "needs_task_gradients(...) is False."
        )


def linear_scalarization_step(
    loss_fn: Callable[..., jax.Array], weights: jax.Array, optimizer: optax.GradientTransformation
) -> TrainStep:
    """The plain optax baseline: one gradient of ``Σ_k w_k L_k`` then ``optimizer``.

    Used as the reference cost in benchmarks; equal to :func:`multitask_train_step` with
    ``fixed_weights(weights)`` up to that function's bookkeeping.

    Raises:
      ValueError: when ``weights`` is not a vector, or (at the first step) its length is not
        the number of losses.
    """
    if jnp.ndim(weights) != 1:
        raise ValueError(f"weights must be a [K] vector, got shape {jnp.shape(weights)}.")
    weights = jnp.asarray(weights)

    def scalarized(params: Any, *args: Any) -> tuple[jax.Array, jax.Array]:
        losses = loss_fn(params, *args)
        if jnp.shape(losses) != weights.shape:
            raise ValueError(
                f"weights has shape {weights.shape} but loss_fn returns losses of shape "
                f"{jnp.shape(losses)}: give one weight per task."
            )
        return losses @ weights.astype(losses.dtype), losses

    grad_fn = jax.grad(scalarized, has_aux=True)

    def step_fn(params: Any, state: Any, *args: Any, key: jax.Array | None = None) -> tuple:
        del key
        grads, losses = grad_fn(params, *args)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, losses

    return TrainStep(optimizer.init, step_fn, step_fn)
