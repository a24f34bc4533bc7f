"""The update paths every method shares: checks, the stacked path, the presummed path of
the fast path, and the Gramian path of the gradient modes.

- :func:`stacked_gradient_method`: the general base; ``aggregate`` combines the stacked
  gradients (GradDrop, TrimmedMean, the loss-weighting family, ...).
- :func:`gramian_base`: on it, every method whose weights are a state transition on the K×K
  Gramian: :func:`~autoscale_jax.methods._bases.gramian_method` (MGDA, CAGrad, PCGrad, ...),
  AutoScale (its phase-1 estimator) and fixed weights (no Gramian at all). The three update
  paths (stacked gradients, the fast path's presummed gradient, a Gramian measured by a
  gradient mode) are written here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from autoscale_jax import base, checks, dispatch, jacobian, metrics
from autoscale_jax.methods._heads import combine_heads
from autoscale_jax.methods._partial_labels import masked, stand_in_gradients, stand_in_losses


class Sample(NamedTuple):
    """What one step measured, as a :func:`gramian_base` transition reads it.

    Attributes:
      observed: the :class:`~autoscale_jax.jacobian.ObservedGramian` (from stacked gradients:
        the whole Gramian; ``None`` for a method that reads none).
      losses: the checked [K] losses (at least float32) or ``None``.
      key: the checked PRNG key or ``None``.
      present: [K] bools, the tasks present in the batch (partial labels), or ``None``.
    """

    observed: Any
    losses: Any
    key: Any
    present: Any


# transition(state, sample) -> (weights to apply, 0 for absent tasks; next state)
Transition = Callable[[Any, Sample], tuple[jax.Array, Any]]
# gramian_fn(task_grads, extra) -> G, for methods that measure elsewhere (MGDA-UB)
GramianFn = Callable[[Any, dict], jax.Array]


def require_key(key: jax.Array | None, method: str) -> jax.Array:
    """Raises a clear error when a random method is called without a PRNG key."""
    if key is None:
        raise ValueError(
            f"{method} is random and needs a PRNG key: call "
            f"update(task_grads, state, params, key=jax.random.key(step)) with a fresh key each "
            "step (multitask_train_step passes its `key=` argument through)."
        )
    return key


def reject_presummed(method: str) -> None:
    """Methods that need per-task gradients cannot work on an already combined gradient."""
    raise ValueError(
        f"{method} needs the per-task gradients (it has no fast path here); it cannot update "
        "from a presummed gradient."
    )


def checked_inputs(
    name: str,
    num_tasks: int,
    task_losses: Any,
    key: Any,
    task_mask: Any,
    *,
    needs_key: bool,
    losses_required: bool,
) -> tuple[Any, Any, Any]:
    """``(losses, key, present)`` checked: losses [K] at least float32 (or ``None``), the key
    when ``needs_key``, the task mask [K] bools (or ``None``)."""
    losses = checks.check_task_losses(task_losses, num_tasks, required=losses_required)
    if losses is not None:
        losses = metrics.at_least_float32(losses)
    if needs_key:
        key = require_key(key, name)
    return losses, key, checks.check_task_mask(task_mask, num_tasks)


def checked_stacked(task_grads: Any, num_tasks: int, task_mask: Any) -> Any:
    """Checks stacked task gradients (leading axis K) and returns the checked task mask ([K]
    bools, or ``None``): the first lines of a wrapper's stacked update."""
    checks.check_task_gradients(task_grads, num_tasks)
    return checks.check_task_mask(task_mask, num_tasks)


def present_weighted_sum(task_grads: Any, weights: jax.Array, present: Any) -> Any:
    """``Σ_k w_k g_k`` over the present tasks (``present`` from :func:`checked_stacked`): an
    absent task gets weight 0 and its gradient (even NaN) never enters the sum."""
    return base.weighted_sum(task_grads, masked(weights, present), present)


def stacked_gradient_method(
    num_tasks: int,
    name: str,
    init_state: Callable[[Any], Any],
    aggregate: Callable[[Any, Any, Any, Any, dict], tuple[Any, Any]],
    *,
    needs_key: bool = False,
    losses_required: bool = False,
    presummed_update: Callable[..., tuple[Any, Any]] | None = None,
    fast_path: base.FastPath | None = None,
    gramian_path: base.GramianPath | None = None,
    handles_task_mask: bool = False,
    validate_state: Callable[[Any], Any] | None = None,
) -> base.MultiTaskTransformation:
    """The general base: checks the call, then ``aggregate`` combines the stacked gradients.

    Partial labels: ``update(..., task_mask=present)`` is checked ([K] bools). Unless the
    method handles it itself (``handles_task_mask``, it then reads ``extra["task_mask"]``),
    ``aggregate`` sees each absent task's gradient and loss replaced by the present tasks' mean
    (:func:`stand_in_gradients`): the absent task's own gradient never reaches the update.

    Args:
      num_tasks: K >= 2 (already checked by the caller or checked here).
      name: the method's registry name, for error messages.
      init_state: ``params -> state`` (most methods ignore the parameters).
      aggregate: ``(task_grads, state, losses, key, extra) -> (update, state)``; the
        gradients are checked (leading axis K), ``losses`` is the checked [K] float32 array or
        None, ``key`` is checked when ``needs_key``, ``extra`` is
        :meth:`~autoscale_jax.dispatch.UpdateInputs.extra` (``extra.get("task_mask")``, a
        method's own inputs such as ``extra.get("second_task_grads")``).
      needs_key: whether ``update`` requires ``key=``.
      losses_required: whether ``update`` requires ``task_losses=``.
      presummed_update: ``(combined_gradient, state, losses, key) -> (update, state)`` for the
        steps the fast path serves (with ``handles_task_mask``, a fifth argument: the mask);
        without it a presummed call is rejected.
      fast_path: the :class:`~autoscale_jax.base.FastPath`, if any.
      gramian_path: the :class:`~autoscale_jax.base.GramianPath`, if any.
      handles_task_mask: whether ``aggregate`` and ``presummed_update`` apply
        ``extra["task_mask"]`` themselves.
      validate_state: called with the state before anything else, to raise for a state this
        transformation cannot continue (AutoScale: another configuration's checkpoint).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`.
    """
    num_tasks = checks.check_num_tasks(num_tasks)

    def init_fn(params: Any) -> Any:
        return init_state(params)

    def update_fn(
        task_grads: Any, state: Any, params: Any, inputs: dispatch.UpdateInputs
    ) -> tuple[Any, Any]:
        del params
        if validate_state is not None:
            validate_state(state)
        if inputs.presummed and presummed_update is None:
            reject_presummed(name)
        losses, key, present = checked_inputs(
            name,
            num_tasks,
            inputs.task_losses,
            inputs.key,
            inputs.task_mask,
            needs_key=needs_key,
            losses_required=losses_required,
        )
        if inputs.presummed:
            assert presummed_update is not None  # rejected above otherwise
            if handles_task_mask:
                return presummed_update(task_grads, state, losses, key, present)
            return presummed_update(task_grads, state, losses, key)
        checks.check_task_gradients(task_grads, num_tasks)
        if present is not None and not handles_task_mask:
            task_grads = stand_in_gradients(task_grads, present)
            if losses is not None:
                losses = stand_in_losses(losses, present)
        return aggregate(task_grads, state, losses, key, inputs.extra())

    return dispatch.multitask_transformation(init_fn, update_fn, fast_path, gramian_path)


def gramian_base(
    num_tasks: int,
    name: str,
    init_state: Callable[[Any], Any],
    transition: Transition,
    *,
    measured: metrics.MetricMask = None,
    reads_gramian: bool = True,
    heads: str = "weighted",
    needs_key: bool = False,
    losses_required: bool = False,
    gramian_fn: GramianFn | None = None,
    fast_path: base.FastPath | None = None,
    presummed_update: Callable[..., tuple[Any, Any]] | None = None,
    prior_weights: Callable[[Any], tuple[jax.Array, jax.Array]] | None = None,
    validate_state: Callable[[Any], Any] | None = None,
) -> base.MultiTaskTransformation:
    """The update paths of a method whose weights are a state transition on the Gramian.

    ``transition(state, Sample) -> (w, state)`` is the method; the base runs it on every path
    and applies ``w`` (0 for absent tasks):

    - stacked gradients: the Gramian on the ``measured`` leaves (or ``gramian_fn``), then
      ``Σ_k w_k g_k`` (``heads="plain"``: :func:`~autoscale_jax.methods._heads.combine_heads`);
    - presummed (the fast path's ``∇ Σ_k w_k L_k``): ``presummed_update(combined, state,
      losses, key, present)``, rejected without one;
    - a Gramian measured elsewhere (the Gramian modes of
      :func:`autoscale_jax.multitask_train_step`): the same transition on the
      :class:`~autoscale_jax.jacobian.ObservedGramian`, unless ``heads="plain"``, a
      ``gramian_fn`` or ``reads_gramian=False`` (fixed weights: ``Sample.observed`` is
      ``None`` and nothing is measured).

    Args:
      num_tasks, name, needs_key, losses_required: as for :func:`stacked_gradient_method`.
      init_state: ``params -> state``.
      transition: the method's step.
      measured: the leaves the Gramian sees (a checked metric mask).
      reads_gramian: whether the transition reads the Gramian.
      heads: ``"weighted"`` or ``"plain"``.
      gramian_fn: ``(task_grads, extra) -> G`` to measure elsewhere (MGDA-UB).
      fast_path: the :class:`~autoscale_jax.base.FastPath`, if any.
      presummed_update: the steps the fast path serves, if any.
      prior_weights: the :class:`~autoscale_jax.base.GramianPath`'s ``prior_weights``.
      validate_state: as for :func:`stacked_gradient_method`, on every path.
    """

    def aggregate(task_grads: Any, state: Any, losses: Any, key: Any, extra: dict) -> tuple:
        present = extra.get("task_mask")  # checked by the base
        observed = None
        if reads_gramian:
            if gramian_fn is None:
                G = metrics.gramian(task_grads, measured)
            else:
                G = gramian_fn(task_grads, extra)
            observed = jacobian.ObservedGramian(G)
        weights, new_state = transition(state, Sample(observed, losses, key, present))
        if heads == "plain":
            shared = metrics.resolve_mask(task_grads, measured)
            return combine_heads(task_grads, weights, shared, present), new_state
        return base.weighted_sum(task_grads, weights, present), new_state

    def weights_from_gramian(
        state: Any, observed: Any, task_losses: Any, key: Any = None, task_mask: Any = None
    ) -> tuple[jax.Array, Any]:
        if validate_state is not None:
            validate_state(state)
        losses, key, present = checked_inputs(
            name,
            num_tasks,
            task_losses,
            key,
            task_mask,
            needs_key=needs_key,
            losses_required=losses_required,
        )
        return transition(state, Sample(observed, losses, key, present))

    gramian_path = None
    if reads_gramian and heads == "weighted" and gramian_fn is None:
        gramian_path = base.GramianPath(weights_from_gramian, measured, prior_weights)
    return stacked_gradient_method(
        num_tasks,
        name,
        init_state,
        aggregate,
        needs_key=needs_key,
        losses_required=losses_required,
        presummed_update=presummed_update,
        fast_path=fast_path,
        gramian_path=gramian_path,
        handles_task_mask=True,
        validate_state=validate_state,
    )
