"""A fresh optimizer state when AutoScale's estimation phase ends, schedules left running.

During phase 1 (:func:`autoscale_jax.autoscale`'s ``estimation_steps``) the optimizer sees the
gradients of the estimation weights; Adam's second moments (β2 = 0.999) remember their scale for
about a thousand steps and distort the fixed weights of phase 2. Measured on the benchmarks,
continuing with a fresh optimizer state gains 4.5-9.3 Δm points over carrying phase 1's. So the
train steps (:func:`autoscale_jax.multitask_train_step`, :func:`autoscale_jax.flax.nnx_train_step`,
:class:`autoscale_jax.flax.TrainState`) restart the optimizer's *moments* at the end of the step
that ended phase 1 (``restart_moments=False`` turns it off). The restart is a ``select`` inside
the compiled step: the jitted step compiles once, the switch costs no recompilation.

**The rule.** The restarted state is ``tx.init(params)`` (the moments and their bias-correction
counts start again), except what the restart must not touch, copied from the running state:

- the multi-task part's state (AutoScale's estimate and its phase);
- the position of a schedule, whose learning rate continues where it was:
  ``ScaleByScheduleState`` (``optax.adam(schedule)``, ``optax.scale_by_schedule``),
  ``WeightDecaySchedule``, ``WrappedScheduleState``, ``AddNoiseState``, and the ``count``,
  ``hyperparams`` (values set by hand included) and ``hyperparams_states`` of
  ``optax.inject_hyperparams``;
- the bookkeeping of wrappers, whose inner states follow the same rule: ``optax.apply_if_finite``
  and :func:`autoscale_jax.accumulation.apply_if_finite` (the non-finite counters),
  ``optax.MultiSteps`` (the accumulation cycle), ``optax.lookahead`` (the sync counter),
  ``optax.masked``, ``optax.partition`` / ``multi_transform``, ``optax.conditionally_mask`` /
  ``conditionally_transform`` (their step), ``optax.zero_nans`` (its last flag).

Moments restart: ``ScaleByAdamState`` (adam, adamw, nadam, ...: ``mu``, ``nu`` and ``count``
together), ``ScaleByAmsgradState``, ``ScaleByBeliefState``, ``ScaleByLionState``,
``ScaleByNovogradState``, ``ScaleByRmsState``, ``ScaleByRStdDevState``, ``ScaleByRssState``
(adagrad), ``ScaleBySM3State``, ``ScaleByAdaDeltaState``, ``ScaleByAdanState``,
``ScaleByRpropState``, ``FactoredState`` (adafactor), ``TraceState`` (SGD's momentum),
``EmaState``, ``ScaleByLBFGSState``, and optax.contrib's ``MuonState`` and AdEMAMix states.
States without fields (``EmptyState``, clipping, scaling) have nothing to restart.

Any other state type is refused with a ``ValueError`` when the step is traced (never kept or
reset by guess): declare it with :func:`register_state`, or pass ``restart_moments=False``.

Only AutoScale's phase switch restarts (the first step where ``needs_task_gradients`` turns
False on an :class:`~autoscale_jax.AutoScaleState`). Methods that need per-task
gradients every ``update_every``-th step have no phase and never restart. Nor does a step see
the phase inside :func:`autoscale_jax.multi_steps` (whose answer is always True): wrap its inner
chain, ``asj.multi_steps(asj.restart_at_phase_switch(chain), k, K)``.

Example:
  >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=1), optax.adam(1e-2))
  >>> state = tx.init(params)
  >>> _, state = tx.update(task_grads, state, params, task_losses=losses)
  >>> fresh = asj.restart_moments(state, params, tx)
  >>> int(fresh[1][0].count), int(fresh[0].step)          # Adam restarts, AutoScale does not
  (0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

from autoscale_jax import accumulation, dispatch
from autoscale_jax._autoscale_state import AutoScaleState

__all__ = ["register_state", "restart_at_phase_switch", "restart_moments"]


class _Rule(NamedTuple):
    keep: tuple[str, ...]  # copied from the running state
    inner: tuple[str, ...]  # inner states, restarted by the same rule; other fields restart


_RULES: dict[type, _Rule] = {}


def register_state(
    state_type: type, *, keep: tuple[str, ...] = (), inner: tuple[str, ...] = ()
) -> None:
    """Declares how :func:`restart_moments` treats a state type of your own transformation.

    Args:
      state_type: a NamedTuple state class.
      keep: fields copied from the running state (a schedule's step count, a wrapper's
        counters).
      inner: fields holding inner transformations' states, restarted by the same rule.
        Every other field restarts (is taken from ``init``).

    Raises:
      ValueError: for a class without NamedTuple fields, or names that are not its fields or
        that are in both ``keep`` and ``inner``.

    Example:
      >>> class CounterState(NamedTuple):
      ...   count: jax.Array
      ...   momentum: Any
      >>> asj.restart.register_state(CounterState, keep=("count",))
    """
    fields = getattr(state_type, "_fields", None)
    if not isinstance(state_type, type) or fields is None:
        raise ValueError(f"state_type must be a NamedTuple class, got {state_type!r}.")
    keep, inner = tuple(keep), tuple(inner)
    unknown = sorted(set(keep + inner) - set(fields))
    if unknown or set(keep) & set(inner):
        raise ValueError(
            f"keep={keep} and inner={inner} must name distinct fields of {state_type.__name__} "
            f"(its fields: {fields}); unknown: {unknown}."
        )
    _RULES[state_type] = _Rule(keep, inner)


def _present(module: Any, names: str) -> list:
    """The state types of ``names`` that this optax defines (older releases lack some)."""
    return [getattr(module, name) for name in names.split() if hasattr(module, name)]


for _moments in _present(
    optax,
    "ScaleByAdamState ScaleByAmsgradState ScaleByBeliefState ScaleByLionState "
    "ScaleByNovogradState ScaleByRmsState ScaleByRStdDevState ScaleByRssState ScaleBySM3State "
    "ScaleByAdaDeltaState ScaleByAdanState ScaleByRpropState FactoredState TraceState EmaState "
    "ScaleByLBFGSState",
) + _present(optax.contrib, "MuonState ScaleByAdemamixState ScaleBySimplifiedAdEMAMixState"):
    register_state(_moments)
for _schedule in [
    *_present(optax, "ScaleByScheduleState AddNoiseState ZeroNansState"),
    *_present(getattr(optax.transforms, "_adding", None), "WeightDecaySchedule"),
    *_present(getattr(optax.schedules, "_inject", None), "WrappedScheduleState"),
]:
    register_state(_schedule, keep=_schedule._fields)
register_state(optax.InjectHyperparamsState, keep=("count", "hyperparams"), inner=("inner_state",))
register_state(
    optax.InjectStatefulHyperparamsState,
    keep=("count", "hyperparams", "hyperparams_states"),
    inner=("inner_state",),
)
for _finite in (optax.ApplyIfFiniteState, accumulation.ApplyIfFiniteState):
    register_state(
        _finite, keep=("notfinite_count", "last_finite", "total_notfinite"), inner=("inner_state",)
    )
register_state(
    optax.MultiStepsState,
    keep=("mini_step", "gradient_step", "acc_grads", "skip_state"),
    inner=("inner_opt_state",),
)
register_state(optax.LookaheadState, keep=("steps_since_sync",), inner=("fast_state",))
register_state(optax.MaskedState, inner=("inner_state",))
for _partition in _present(optax, "PartitionState MultiTransformState"):
    register_state(_partition, inner=("inner_states",))
register_state(optax.ConditionallyMaskState, keep=("step",), inner=("inner_state",))
register_state(optax.ConditionallyTransformState, keep=("step",), inner=("inner_state",))


def _multitask_part(tx: Any, state: Any, required: bool = False) -> Any:
    """The multi-task part's ``(fast_path, state)`` inside ``tx``'s state; ``None`` when there
    is none (a plain optimizer), unless ``required``."""
    try:
        optax.with_extra_args_support(tx).update(None, state, None, loss_vjp=dispatch._QUERY)
    except dispatch._TaskGradientAnswer as answer:
        return answer
    except Exception as err:  # no multi-task part: the optimizer's own update failed
        if required:
            raise ValueError(
                "The restart at AutoScale's phase switch found no multi-task transformation "
                f"at the front of this transformation ({type(err).__name__}: {err}): put one "
                "first, or pass restart_moments=False."
            ) from err
        return None
    if required:
        raise ValueError(
            "The restart at AutoScale's phase switch found no multi-task transformation at the "
            "front of this transformation: put one first, or pass restart_moments=False."
        )
    return None


def _merge(running: Any, fresh: Any, weighting: Any, found: list) -> Any:
    """``fresh`` where the rule restarts, ``running`` where it keeps (see the module doc)."""
    if weighting is not None and running is weighting:
        found.append(True)
        return running
    if type(fresh) is not type(running):
        raise ValueError(
            f"The optimizer's init gives a {type(fresh).__name__} where the running state "
            f"holds a {type(running).__name__}: pass the transformation that made the state."
        )
    if running is None or (isinstance(running, tuple) and getattr(running, "_fields", 1) == ()):
        return fresh  # a state without fields: nothing to restart
    rule = _RULES.get(type(running))
    if rule is not None:
        return type(running)(
            **{
                name: getattr(running, name)
                if name in rule.keep
                else _merge(getattr(running, name), getattr(fresh, name), weighting, found)
                if name in rule.inner
                else getattr(fresh, name)
                for name in running._fields
            }
        )
    if type(running) in (tuple, list):
        return type(running)(
            _merge(r, f, weighting, found) for r, f in zip(running, fresh, strict=True)
        )
    if isinstance(running, Mapping) and not hasattr(running, "_fields"):
        rebuild: Any = type(running)  # dict, OrderedDict (named_chain), ...
        return rebuild((key, _merge(running[key], fresh[key], weighting, found)) for key in running)
    raise ValueError(
        f"restart_moments does not know whether a {type(running).__name__} holds moments "
        "(restarted at AutoScale's phase switch) or a schedule's position (kept): declare it "
        f"with asj.restart.register_state({type(running).__name__}, keep=..., inner=...), or "
        "pass restart_moments=False to the train step (and drop restart_at_phase_switch)."
    )


def restart_moments(state: Any, params: Any, tx: optax.GradientTransformation) -> Any:
    """``tx``'s state with the optimizer's moments restarted and schedules left running.

    The rule is the module's: ``tx.init(params)``, except the multi-task part's state, the
    positions of schedules and the bookkeeping of wrappers, copied from ``state``. Works eagerly
    and under ``jit``.

    Args:
      state: the running state of ``tx``.
      params: the current parameters (for ``tx.init``).
      tx: the transformation that made ``state``: an optimizer, or a chain holding a
        multi-task part (whose state is kept).

    Returns:
      A state with the structure, shapes and dtypes of ``state``.

    Raises:
      ValueError: for a state type the rule does not know (see :func:`register_state`), or
        when ``tx.init`` does not make a state like ``state``.
    """
    answer = _multitask_part(tx, state)
    weighting = None if answer is None else answer.state
    found: list = []
    restarted = _merge(state, tx.init(params), weighting, found)
    if weighting is not None and not found:
        raise ValueError(
            "restart_moments could not find the multi-task part's state inside the chain's "
            "state (a wrapper rebuilt it): pass restart_moments=False and restart by hand."
        )
    if _layout(restarted) != _layout(state):
        raise ValueError(
            "The optimizer's init makes a state of other shapes or dtypes than the running "
            "state: pass the transformation that made the state, and the current parameters."
        )
    return restarted


def _layout(tree: Any) -> Any:
    """The structure, shapes and dtypes of a state (what a jitted step is compiled for)."""
    leaves, structure = jax.tree.flatten(tree)
    return structure, [(jnp.shape(leaf), jnp.result_type(leaf)) for leaf in leaves]


def ended_phase_one(tx: Any, before: Any, after: Any) -> Any:
    """Whether the update from ``before`` to ``after`` ended AutoScale's estimation phase:
    ``False`` when ``tx`` has no AutoScale in front, else a bool array."""
    answer = _multitask_part(tx, before, required=True)
    if answer.fast_path is None or not isinstance(answer.state, AutoScaleState):
        return False
    needed = answer.fast_path.needs_task_gradients(answer.state)
    if isinstance(needed, bool):
        return False
    now = _multitask_part(tx, after, required=True)
    return jnp.asarray(needed) & ~jnp.asarray(now.fast_path.needs_task_gradients(now.state))


def at_phase_switch(tx: Any, before: Any, after: Any, params: Any) -> Any:
    """``after``, with :func:`restart_moments` applied when this update ended phase 1 (a
    ``select``: no recompilation at the switch).

    Args:
      tx: the transformation (the multi-task part in front).
      before: its state before the update.
      after: its state after the update.
      params: the parameters after the update.
    """
    switched = ended_phase_one(tx, before, after)
    if switched is False:
        return after
    # Built on every step, so that a state type the rule does not know fails the first one.
    restarted = restart_moments(after, params, tx)
    if not isinstance(switched, jax.core.Tracer) and not bool(switched):
        return after

    def select(new: Any, old: Any) -> Any:
        if new is old:
            return old
        old = jnp.asarray(old)
        return jax.lax.select(
            jnp.broadcast_to(switched, old.shape), jnp.asarray(new, old.dtype), old
        )

    return jax.tree.map(select, restarted, after)


def restart_at_phase_switch(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` whose optimizer moments restart at the end of AutoScale's estimation phase.

    For raw ``tx.update`` loops (the train steps do this themselves): ``tx`` is a chain with
    :func:`autoscale_jax.autoscale` first. Its ``update`` runs ``tx``'s and, on the update that
    ends phase 1, returns ``tx``'s state with the moments restarted (:func:`restart_moments`)
    for the parameters after the update. The state is ``tx``'s own: checkpoints and
    :func:`autoscale_jax.needs_task_gradients` read it as before.

    Args:
      tx: a chain whose first gradient transformation is a multi-task transformation.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> tx = asj.restart_at_phase_switch(
      ...     optax.chain(asj.autoscale(num_tasks=2, estimation_steps=1), optax.adam(1e-2))
      ... )
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)
      >>> int(state[1][0].count)                              # phase 1 ended: Adam restarted
      0
    """
    inner = optax.with_extra_args_support(tx)

    def update_fn(updates: Any, state: Any, params: Any = None, **extra_args: Any) -> tuple:
        # First: the needs_task_gradients probe (params None) stops inside this call.
        new_updates, new_state = inner.update(updates, state, params, **extra_args)
        if params is None:
            raise ValueError(
                "restart_at_phase_switch(tx).update needs params= (the restart initialises "
                "the optimizer for them)."
            )
        new_params = optax.apply_updates(params, new_updates)
        return new_updates, at_phase_switch(inner, state, new_state, new_params)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)
