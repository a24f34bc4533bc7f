"""The contract every multi-task transformation follows, and the helpers it shares.

A multi-task transformation is an ``optax.GradientTransformationExtraArgs`` whose ``update``
takes *stacked* task gradients (every leaf has a leading task axis of size K) and the keyword
``task_losses`` (shape [K]), and returns one combined update with the task axis gone. It must
therefore come first in an ``optax.chain``. Its state is a NamedTuple with a ``task_weights``
field wherever the method has weights, which :func:`task_weights` finds inside any chain state.

For the one-backward-pass step of :mod:`autoscale_jax.train`, a transformation may also carry a
:class:`FastPath`: a predicate saying whether the next step needs per-task gradients, and the
weights to use when it does not. The step then computes ``∇ Σ_k w_k L_k`` with one VJP and
calls ``update(..., presummed=True)`` with that single gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import _composition, checks, jacobian


class FastPath(NamedTuple):
    """How a transformation can skip per-task gradients.

    Attributes:
      needs_task_gradients: ``state -> bool`` (a Python bool when it is known statically).
      weights: ``(state, task_losses, key) -> [K] weights`` used when no task gradient is
        computed; ``update(Σ_k w_k g_k, ..., presummed=True)`` must follow with these weights.
        With partial labels (``task_mask``) the weights of absent tasks are set to 0.
      takes_task_mask: ``weights`` takes an optional fourth argument, the ``task_mask`` ([K]
        bools or ``None``), because the weights of the present tasks depend on it (loss-space
        methods).
    """

    needs_task_gradients: Callable[[Any], Any]
    weights: Callable[..., jax.Array]
    takes_task_mask: bool = False


def fast_path_weights(
    fast_path: FastPath, state: Any, task_losses: Any, key: Any, task_mask: Any = None
) -> jax.Array:
    """The fast path's weights; with a ``task_mask``, 0 for the absent tasks.

    Args:
      fast_path: the :class:`FastPath`.
      state: the transformation's state.
      task_losses: [K] losses.
      key: the step's PRNG key or ``None``.
      task_mask: [K] bools, the tasks present in the batch (partial labels), or ``None``.
    """
    if fast_path.takes_task_mask:
        weights = fast_path.weights(state, task_losses, key, task_mask)
    else:
        weights = fast_path.weights(state, task_losses, key)
    if task_mask is None:
        return weights
    return jnp.where(checks.check_task_mask(task_mask, jnp.shape(weights)[0]), weights, 0)


class GramianPath(NamedTuple):
    """How a Gramian-based transformation updates from the task Gramian alone.

    With it, the Gramian modes of :func:`autoscale_jax.multitask_train_step` (Gramian-only,
    representation, last layer, sampled) never stack the K per-task gradients: the step
    measures ``G`` its own way, ``weights`` does the transformation's whole state transition
    and the update is one VJP ``∇ Σ_k w_k L_k``.

    Attributes:
      weights: ``(state, observed, task_losses, key, task_mask) -> (weights, next_state)``
        with ``observed`` a :class:`autoscale_jax.jacobian.ObservedGramian` and ``task_mask``
        the tasks present in the batch (partial labels) or ``None``.
      metric_mask: the leaves the transformation's Gramian sees (its ``metric_mask``).
      prior_weights: optional ``state -> (known, w)``: when ``known`` (a bool array), the
        step trains with ``w``, the weights ``weights`` would return, whatever this step's
        Gramian is (AutoScale after its warm-start step). The update's VJP then does not wait
        for the Gramian, and the two can run side by side.
    """

    weights: Callable[..., tuple[jax.Array, Any]]
    metric_mask: Any = None
    prior_weights: Callable[[Any], tuple[jax.Array, jax.Array]] | None = None


class MultiTaskTransformation(optax.GradientTransformationExtraArgs):
    """An ``optax.GradientTransformationExtraArgs`` that may carry a :class:`FastPath`.

    It is a plain optax transformation, first in ``optax.chain`` / ``named_chain`` and inside
    ``inject_hyperparams`` (not inside ``optax.apply_if_finite`` or ``optax.MultiSteps``, which
    decide from the gradients they receive: see :mod:`autoscale_jax.accumulation`). Its
    ``update`` also accepts the keyword ``loss_vjp`` (see :func:`multitask_transformation`),
    which is how the one-backward-pass fast path survives any wrapper that forwards extra
    arguments.
    """

    fast_path: FastPath | None = None
    gramian_path: GramianPath | None = None


TASK_GRADIENT_POLICIES = ("auto", "never")
# Every multi-task update reports where it sits to the scope a train step or wrapper opened
# (autoscale_jax._composition): not first, no optimizer after it, ... fail at trace time.


def multitask_transformation(
    init: Callable,
    update: Callable,
    fast_path: FastPath | None = None,
    gramian_path: GramianPath | None = None,
) -> MultiTaskTransformation:
    """Builds a :class:`MultiTaskTransformation` from its ``init``/``update`` and fast path.

    The returned ``update`` understands three extra keywords that the train steps of
    :mod:`autoscale_jax.train` pass through any optax wrapper:

    - ``loss_vjp``: the VJP function of the task losses (``jax.vjp(loss_fn, params)[1]``).
      The incoming ``updates`` are then ignored (a placeholder); the transformation computes
      what it needs itself: the K per-task gradients ``vjp(e_k)`` while its fast path needs
      them, else its weights ``w`` and the single gradient ``vjp(w) = ∇ Σ_k w_k L_k``;
    - ``task_gradients``: ``"auto"`` (ask the fast path; a ``lax.cond`` when the answer depends
      on the state) or ``"never"`` (the one-gradient branch alone, no conditional);
    - ``vjp_chunk_size``: per-task VJPs this many at a time (bounds memory);
    - ``task_gramian``: ``metric_mask -> ObservedGramian``, the Gramian measured by a gradient
      mode of the train step; when the per-task gradients are needed, the transformation's
      :class:`GramianPath` turns it into weights and the update is ``loss_vjp(w)`` (raises for
      a transformation without one).
    """

    def update_fn(
        updates: Any,
        state: Any,
        params: Any = None,
        *,
        loss_vjp: Callable | None = None,
        task_gradients: str = "auto",
        vjp_chunk_size: int | None = None,
        task_gramian: Callable | None = None,
        **extra_args: Any,
    ) -> tuple[Any, Any]:
        if loss_vjp is _QUERY:
            raise _TaskGradientAnswer(fast_path, state)
        if loss_vjp is None:
            if not extra_args.get("presummed", False):
                checks.check_not_parameter_shaped(updates, params)
            _composition.started(updates, state, consumer=False)
            return _composition.finished(update(updates, state, params, **extra_args))
        if task_gradients not in TASK_GRADIENT_POLICIES:
            raise ValueError(
                f"task_gradients must be one of {TASK_GRADIENT_POLICIES}, got {task_gradients!r}."
            )
        losses = extra_args.get("task_losses")
        if losses is None:
            raise ValueError("update(..., loss_vjp=...) needs task_losses= as well.")
        _composition.started(updates, state, consumer=True)
        num_tasks = jnp.shape(losses)[0]

        def with_task_gradients(state: Any) -> tuple[Any, Any]:
            if task_gramian is not None:
                return _gramian_update(
                    gramian_path, task_gramian, loss_vjp, state, params, extra_args
                )
            eye = jnp.eye(num_tasks, dtype=jnp.asarray(losses).dtype)
            task_grads = jacobian.stacked_vjp(loss_vjp, eye, vjp_chunk_size)
            return update(_like_params(task_grads, params), state, params, **extra_args)

        def with_one_gradient(state: Any) -> tuple[Any, Any]:
            assert fast_path is not None  # only reached with a fast path
            weights = fast_path_weights(
                fast_path, state, losses, extra_args.get("key"), extra_args.get("task_mask")
            )
            (combined,) = loss_vjp(weights.astype(jnp.asarray(losses).dtype))
            combined = _like_params(combined, params)
            return update(combined, state, params, presummed=True, **extra_args)

        if fast_path is None:
            if task_gradients == "never":
                raise ValueError(
                    "This transformation has no fast path: every step needs the per-task "
                    "gradients (use task_gradients='auto', i.e. TrainStep.step)."
                )
            return _composition.finished(with_task_gradients(state))
        needs = False if task_gradients == "never" else fast_path.needs_task_gradients(state)
        if isinstance(needs, bool):
            branch = with_task_gradients if needs else with_one_gradient
            return _composition.finished(branch(state))
        return _composition.finished(
            jax.lax.cond(needs, with_task_gradients, with_one_gradient, state)
        )

    def init_fn(params: Any) -> Any:
        return _distinct_buffers(init(params))

    transformation = MultiTaskTransformation(init_fn, update_fn)
    transformation.fast_path = fast_path
    transformation.gramian_path = gramian_path
    return transformation


def _distinct_buffers(state: Any) -> Any:
    """``state`` with a copy of every array leaf whose buffer an earlier leaf already holds.

    Why: ``jax.jit(step, donate_argnums=...)`` refuses a state in which two leaves share a
    buffer (e.g. one zeros array used for several counters), so the first donated step would
    fail.
    """
    seen: set[int] = set()

    def distinct(leaf: Any) -> Any:
        if not isinstance(leaf, jax.Array) or isinstance(leaf, jax.core.Tracer) or not leaf.size:
            return leaf
        pointer = leaf.addressable_shards[0].data.unsafe_buffer_pointer()  # sharded or not
        if pointer in seen:
            return jnp.copy(leaf)
        seen.add(pointer)
        return leaf

    return jax.tree.map(distinct, state)


def _gramian_update(
    gramian_path: GramianPath | None,
    task_gramian: Callable,
    loss_vjp: Callable,
    state: Any,
    params: Any,
    extra_args: dict,
) -> tuple[Any, Any]:
    """A Gramian-mode update: the weights from the measured Gramian, then one VJP."""
    if gramian_path is None:
        raise ValueError(
            "This transformation cannot update from the task Gramian alone (it is not a "
            "Gramian-based method, uses heads='plain', or measures a second batch): train it "
            "with gradient_mode='stacked'."
        )
    losses = jnp.asarray(extra_args["task_losses"])

    def measured_update(prior: jax.Array | None) -> tuple[Any, Any]:
        # The Gramian is measured inside each branch: as an operand of the cond below, every
        # branch would wait for it.
        observed = task_gramian(gramian_path.metric_mask)
        weights, next_state = gramian_path.weights(
            state, observed, losses, extra_args.get("key"), extra_args.get("task_mask")
        )
        (combined,) = loss_vjp((weights if prior is None else prior).astype(losses.dtype))
        return _like_params(combined, params), next_state

    if gramian_path.prior_weights is None:
        return measured_update(None)
    known, prior = gramian_path.prior_weights(state)
    present = checks.check_task_mask(extra_args.get("task_mask"), losses.shape[0])
    if present is not None:  # partial labels: an absent task gets weight 0
        prior = jnp.where(present, prior, 0)
    return jax.lax.cond(known, lambda: measured_update(prior), lambda: measured_update(None))


class _TaskGradientAnswer(Exception):  # a control-flow signal, not an error
    """Carries the fast path's answer out of an optax chain (see needs_task_gradients)."""

    def __init__(self, fast_path: FastPath | None, state: Any) -> None:
        super().__init__("needs_task_gradients")
        self.fast_path, self.state = fast_path, state


def _query_vjp(cotangent: Any) -> Any:  # pragma: no cover - never called, only compared
    raise AssertionError("the needs_task_gradients probe is not a VJP")


_QUERY: Callable = _query_vjp


def needs_task_gradients(tx: optax.GradientTransformation, state: Any) -> Any:
    """Whether the next update of ``tx`` needs the stacked per-task gradients.

    ``tx`` is a multi-task transformation of this library or any optax wrapper whose first
    gradient transformation is one (``optax.chain``, ``inject_hyperparams``,
    :func:`autoscale_jax.multi_steps`, :func:`autoscale_jax.accumulation.apply_if_finite`),
    found the same way :func:`autoscale_jax.multitask_train_step` finds it. ``False`` means
    one gradient of ``Σ_k w_k L_k`` is enough (AutoScale after its estimation phase, fixed
    weights, loss-space methods): switch to ``TrainStep.one_gradient_step``.

    Args:
      tx: the transformation (or chain) whose ``init`` built ``state``.
      state: its state.

    Returns:
      A Python bool when the answer is static (``True`` for gradient-space methods, ``False``
      for loss-space ones), else a boolean array (a tracer under ``jit``).

    Raises:
      TypeError: when no multi-task transformation of this library is found in ``tx``.

    Example:
      >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=1), optax.sgd(0.1))
      >>> state = tx.init(params)
      >>> bool(asj.needs_task_gradients(tx, state))
      True
      >>> _, state = tx.update(task_grads, state, params, task_losses=losses)
      >>> bool(asj.needs_task_gradients(tx, state))
      False
    """
    tx = optax.with_extra_args_support(tx)
    try:
        tx.update(None, state, None, loss_vjp=_QUERY)
    except _TaskGradientAnswer as answer:
        # Evaluated here, not where the probe stopped: a wrapper may call the multi-task part
        # inside a lax.cond (apply_if_finite), whose values must not leak out of its trace.
        if answer.fast_path is None:
            return True
        return answer.fast_path.needs_task_gradients(answer.state)
    except Exception as err:  # a wrapper that could not run on the probe
        raise TypeError(
            "needs_task_gradients found no multi-task transformation of autoscale_jax at the "
            f"front of this transformation ({type(err).__name__}: {err})."
        ) from err
    raise TypeError(
        "needs_task_gradients found no multi-task transformation of autoscale_jax at the front "
        "of this transformation (or a wrapper that does not forward extra arguments)."
    )


def _like_params(grads: Any, params: Any) -> Any:
    """``grads`` leaf by leaf in the container structure of ``params`` (when they differ).

    A loss VJP taken through another container type (e.g. a Flax NNX ``State`` of variables
    where the optimizer passes plain arrays) keeps its leaves in the same order.
    """
    if params is None:
        return grads
    leaves, treedef = jax.tree.flatten(grads)
    params_def: Any = jax.tree.structure(params)
    if treedef == params_def or len(leaves) != params_def.num_leaves:
        return grads
    return jax.tree.unflatten(params_def, leaves)


def weighted_sum(task_grads: Any, weights: jax.Array, present: jax.Array | None = None) -> Any:
    """Combines stacked task gradients ``Σ_k w_k g_k`` leaf by leaf (keeps each leaf's dtype).

    With ``present`` ([K] bools, partial labels) only the present tasks' rows enter the sum, so
    a placeholder gradient of an absent task (even NaN) never reaches the update.
    """
    if present is not None:
        task_grads = jax.tree.map(
            lambda g: jnp.where(present.reshape((-1,) + (1,) * (g.ndim - 1)), g, 0), task_grads
        )
    return jax.tree.map(lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), task_grads)


def loss_space_fast_path(weights: Any) -> FastPath:
    """The fast path of a method whose weights come from losses: never needs task gradients.

    Args:
      weights: ``(state, task_losses, key) -> [K]``, the weights the next update applies.
    """
    return FastPath(needs_task_gradients=lambda state: False, weights=weights)


def _find_task_weights(node: Any) -> jax.Array | None:
    if hasattr(node, "_fields") and "task_weights" in node._fields:
        found = node.task_weights
        # A Flax NNX optimizer wraps every state array in a variable.
        if isinstance(found, jax.Array):
            return found
        getter = getattr(found, "get_value", None)  # Flax >= 0.12 deprecates ``.value``
        return getter() if getter is not None else getattr(found, "value", found)
    if not isinstance(node, tuple | list | dict) and hasattr(node, "opt_state"):
        return _find_task_weights(node.opt_state)  # nnx.Optimizer, linen TrainState
    children = node.values() if isinstance(node, dict) else node
    if isinstance(children, tuple | list) or isinstance(node, dict):
        for child in children:
            found = _find_task_weights(child)
            if found is not None:
                return found
    return None


def task_weights(state: Any) -> jax.Array:
    """The task weights held by a multi-task state, found anywhere inside a chain state.

    Args:
      state: the state of a multi-task transformation, or of an ``optax.chain`` /
        ``inject_hyperparams`` wrapping one, or an object with an ``opt_state`` (a Flax
        ``nnx.Optimizer`` or linen ``TrainState``).

    Returns:
      The [K] weights the transformation uses (for AutoScale: the current weights during
      estimation, the fixed weights after it).

    Raises:
      ValueError: when no state in the tree has a ``task_weights`` field.
    """
    found = _find_task_weights(state)
    if found is None:
        raise ValueError("No multi-task state with task_weights found in this optimizer state.")
    return found
