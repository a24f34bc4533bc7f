"""The dispatch of a multi-task update: which backward pass a step runs, and its typed inputs.

:func:`multitask_transformation` wraps a method's ``init``/``update`` (the contract of
:mod:`autoscale_jax.base`) into a :class:`~autoscale_jax.base.MultiTaskTransformation` whose
``update`` reads the extra keywords once into an :class:`UpdateInputs` (the one object every
later function receives) and takes one of three paths:

- stacked: the K per-task gradients ``loss_vjp(e_k)`` (or the gradients passed in), then the
  method's ``update(task_grads, state, params, inputs)``;
- presummed: the method's :class:`~autoscale_jax.base.FastPath` weights ``w``, the single
  gradient ``loss_vjp(w) = ∇ Σ_k w_k L_k``, then the method's ``update`` with
  ``inputs.presummed``;
- Gramian: a Gramian measured by the train step's gradient mode (``inputs.task_gramian``), the
  method's :class:`~autoscale_jax.base.GramianPath` weights, then one VJP.

:func:`needs_task_gradients` asks the fast path, through any optax wrapper, whether the next
update needs the per-task gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import _composition, checks, jacobian
from autoscale_jax.base import (
    FastPath,
    GramianPath,
    MultiTaskTransformation,
    fast_path_weights,
)

TASK_GRADIENT_POLICIES = ("auto", "never")
# Every multi-task update reports where it sits to the scope a train step or wrapper opened
# (autoscale_jax._composition): not first, no optimizer after it, ... fail at trace time.
# The keyword of the typed form ``update(updates, state, params, inputs=UpdateInputs(...))``.
_TYPED_KEYWORD = "inputs"


class UpdateInputs(NamedTuple):
    """The extra inputs of one multi-task update, documented in one place.

    optax hands extra arguments down a chain (and through ``inject_hyperparams``,
    :func:`autoscale_jax.multi_steps`, ...) as keywords, so the public ``update`` keeps taking
    them as keywords (``tx.update(task_grads, state, params, task_losses=..., key=...)``) and
    reads them once, at its entry, with :meth:`from_keywords`. From there the library passes
    this one object: to the method's update (the family bases of
    :mod:`autoscale_jax.methods._update_paths`), to the method a wrapper holds
    (:func:`~autoscale_jax.methods.freeze`, :func:`~autoscale_jax.methods.cr_mogm`), and into
    the chain a train step or :func:`autoscale_jax.multi_steps` calls, as the single keyword
    ``inputs=`` (``update(updates, state, params, inputs=UpdateInputs(...))`` is the typed
    form of the same call).

    Attributes:
      task_losses: [K] task losses, or ``None`` (methods that read none). Set by the caller;
        the train steps pass the forward pass's losses.
      key: the step's PRNG key (random methods, ``gradient_mode="sampled"``), or ``None``. Set
        by the caller (the train steps' ``key=``).
      task_mask: [K] bools, the tasks present in the batch (partial labels), or ``None``. Set
        by the caller, or by a train step with ``task_counts=True`` (``counts > 0``).
      presummed: ``True`` when the incoming gradient is already ``Σ_k w_k g_k`` with the fast
        path's weights. Set by the dispatch on its one-gradient path (or by a caller that did
        the same combination itself).
      loss_vjp: the VJP of the task losses (``jax.vjp(loss_fn, params)[1]``); the incoming
        ``updates`` are then a placeholder and the dispatch computes the gradients it needs.
        Set by the train steps; ``None`` for a plain ``update`` on stacked gradients.
      task_gradients: ``"auto"`` (ask the fast path; a ``lax.cond`` when the answer depends on
        the state) or ``"never"`` (the one-gradient branch alone). Set by the train steps
        (``one_gradient_step`` is ``"never"``).
      vjp_chunk_size: per-task VJPs this many at a time (bounds memory), or ``None``. The
        train steps' ``chunk_size``.
      task_gramian: ``metric_mask -> ObservedGramian``, the Gramian measured by a gradient mode
        of the train step (see :mod:`autoscale_jax.modes`), or ``None``. Set by the train step.
      method_inputs: the inputs only some methods read, by name (e.g. SDMGrad's
        ``second_task_grads``, Auto-λ's ``validation_grads``; see
        ``asj.methods.info(name).extra_inputs``): every keyword that is not a field above.
        Set by the caller.

    The method's update never sees the dispatch's own fields: it receives
    :meth:`for_method` (``loss_vjp``, ``task_gramian``, ``vjp_chunk_size`` cleared, so a
    wrapped method passed the same object updates from the gradients it is given).
    """

    task_losses: Any = None
    key: Any = None
    task_mask: Any = None
    presummed: bool = False
    loss_vjp: Callable | None = None
    task_gradients: str = "auto"
    vjp_chunk_size: int | None = None
    task_gramian: Callable | None = None
    method_inputs: dict = {}  # noqa: RUF012  # never mutated

    @classmethod
    def from_keywords(cls, keywords: dict) -> UpdateInputs:
        """Reads the keywords of an ``update`` call: the fields above by name, every other
        keyword into ``method_inputs``; ``inputs=`` alone is the typed form, returned as is.

        Raises:
          ValueError: for ``inputs=`` that is not an :class:`UpdateInputs`, or given with
            other keywords.
        """
        if _TYPED_KEYWORD in keywords:
            inputs = keywords[_TYPED_KEYWORD]
            if not isinstance(inputs, UpdateInputs) or len(keywords) > 1:
                raise ValueError(
                    "update(..., inputs=...) takes one autoscale_jax.dispatch.UpdateInputs "
                    f"and no other keyword (got inputs of type {type(inputs).__name__} and "
                    f"keywords {sorted(keywords)}): pass either inputs=UpdateInputs(...) or "
                    "the loose keywords (task_losses=..., key=..., ...)."
                )
            return inputs
        named = {k: v for k, v in keywords.items() if k in _NAMED_FIELDS}
        method = {k: v for k, v in keywords.items() if k not in _NAMED_FIELDS}
        return cls(**named, method_inputs=method)

    def for_method(self, presummed: bool) -> UpdateInputs:
        """What the method's update receives: the dispatch's own fields cleared and
        ``presummed`` as the path sets it."""
        return self._replace(
            presummed=presummed,
            loss_vjp=None,
            task_gradients="auto",
            vjp_chunk_size=None,
            task_gramian=None,
        )

    def extra(self) -> dict:
        """The ``extra`` dict a family base's ``aggregate`` reads (``extra.get(name)``): the
        method's own inputs and ``task_mask``."""
        return {**self.method_inputs, "task_mask": self.task_mask}


# The fields a keyword of that name sets (every other keyword is a method input).
_NAMED_FIELDS = UpdateInputs._fields[:-1]


def multitask_transformation(
    init: Callable,
    update: Callable,
    fast_path: FastPath | None = None,
    gramian_path: GramianPath | None = None,
) -> MultiTaskTransformation:
    """Builds a :class:`~autoscale_jax.base.MultiTaskTransformation` from a method's
    ``init``/``update`` and its fast and Gramian paths.

    The returned ``update(updates, state, params, **keywords)`` reads the keywords once into
    an :class:`UpdateInputs` and calls the method's ``update(updates, state, params, inputs)``
    with :meth:`UpdateInputs.for_method`. Without ``loss_vjp`` it passes on the stacked
    gradients it was given; with ``loss_vjp`` (the train steps of :mod:`autoscale_jax.train`,
    through any optax wrapper that forwards extra arguments) it computes what the method needs
    itself: the K per-task gradients ``vjp(e_k)`` while the fast path needs them (or, with
    ``task_gramian``, the :class:`~autoscale_jax.base.GramianPath`'s weights from the measured
    Gramian; raises for a transformation without one), else the fast path's weights ``w`` and
    the single gradient ``vjp(w) = ∇ Σ_k w_k L_k`` (``presummed=True``).

    Args:
      init: ``params -> state``.
      update: ``(updates, state, params, inputs: UpdateInputs) -> (updates, state)``, the
        method: stacked gradients (leading axis K) in, one combined update out, or the
        combined gradient when ``inputs.presummed``.
      fast_path: the :class:`~autoscale_jax.base.FastPath`, if any.
      gramian_path: the :class:`~autoscale_jax.base.GramianPath`, if any.
    """

    def update_fn(updates: Any, state: Any, params: Any = None, **keywords: Any) -> tuple:
        inputs = UpdateInputs.from_keywords(keywords)
        if inputs.loss_vjp is _QUERY:
            raise _TaskGradientAnswer(fast_path, state)
        if inputs.loss_vjp is None:
            if not inputs.presummed:
                checks.check_not_parameter_shaped(updates, params)
            _composition.started(updates, state, consumer=False)
            stacked = inputs.for_method(presummed=inputs.presummed)
            return _composition.finished(update(updates, state, params, stacked))
        if inputs.task_gradients not in TASK_GRADIENT_POLICIES:
            raise ValueError(
                f"task_gradients must be one of {TASK_GRADIENT_POLICIES}, got "
                f"{inputs.task_gradients!r}."
            )
        losses = inputs.task_losses
        if losses is None:
            raise ValueError("update(..., loss_vjp=...) needs task_losses= as well.")
        _composition.started(updates, state, consumer=True)
        loss_vjp = inputs.loss_vjp
        dtype = jnp.asarray(losses).dtype

        def with_task_gradients(state: Any) -> tuple[Any, Any]:
            if inputs.task_gramian is not None:
                return _gramian_update(gramian_path, inputs, state, params)
            eye = jnp.eye(jnp.shape(losses)[0], dtype=dtype)
            task_grads = jacobian.stacked_vjp(loss_vjp, eye, inputs.vjp_chunk_size)
            stacked = inputs.for_method(presummed=inputs.presummed)
            return update(_like_params(task_grads, params), state, params, stacked)

        def with_one_gradient(state: Any) -> tuple[Any, Any]:
            assert fast_path is not None  # only reached with a fast path
            weights = fast_path_weights(fast_path, state, losses, inputs.key, inputs.task_mask)
            (combined,) = loss_vjp(weights.astype(dtype))
            combined = _like_params(combined, params)
            return update(combined, state, params, inputs.for_method(presummed=True))

        if fast_path is None:
            if inputs.task_gradients == "never":
                raise ValueError(
                    "This transformation has no fast path: every step needs the per-task "
                    "gradients (use task_gradients='auto', i.e. TrainStep.step)."
                )
            return _composition.finished(with_task_gradients(state))
        never = inputs.task_gradients == "never"
        needs = False if never else fast_path.needs_task_gradients(state)
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
    gramian_path: GramianPath | None, inputs: UpdateInputs, state: Any, params: Any
) -> tuple[Any, Any]:
    """A Gramian-mode update: the weights from the measured Gramian, then one VJP."""
    if gramian_path is None:
        raise ValueError(
            "This transformation cannot update from the task Gramian alone (it is not a "
            "Gramian-based method, uses heads='plain', or measures a second batch): train it "
            "with gradient_mode='stacked'."
        )
    assert inputs.task_gramian is not None and inputs.loss_vjp is not None  # the caller's
    task_gramian, loss_vjp = inputs.task_gramian, inputs.loss_vjp
    losses = jnp.asarray(inputs.task_losses)

    def measured_update(prior: jax.Array | None) -> tuple[Any, Any]:
        # The Gramian is measured inside each branch: as an operand of the cond below, every
        # branch would wait for it.
        observed = task_gramian(gramian_path.metric_mask)
        weights, next_state = gramian_path.weights(
            state, observed, losses, inputs.key, inputs.task_mask
        )
        (combined,) = loss_vjp((weights if prior is None else prior).astype(losses.dtype))
        return _like_params(combined, params), next_state

    if gramian_path.prior_weights is None:
        return measured_update(None)
    known, prior = gramian_path.prior_weights(state)
    present = checks.check_task_mask(inputs.task_mask, losses.shape[0])
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
