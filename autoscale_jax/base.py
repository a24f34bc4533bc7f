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

import chex
import jax
import jax.numpy as jnp
import optax

from autoscale_jax import jacobian


class FastPath(NamedTuple):
    """How a transformation can skip per-task gradients.

    Attributes:
      needs_task_gradients: ``state -> bool`` (a Python bool when it is known statically).
      weights: ``(state, task_losses, key) -> [K] weights`` used when no task gradient is
        computed; ``update(Σ_k w_k g_k, ..., presummed=True)`` must follow with these weights.
    """

    needs_task_gradients: Callable[[Any], Any]
    weights: Callable[[Any, jax.Array, jax.Array | None], jax.Array]


class MultiTaskTransformation(optax.GradientTransformationExtraArgs):
    """An ``optax.GradientTransformationExtraArgs`` that may carry a :class:`FastPath`.

    It is a plain optax transformation everywhere (``optax.chain``, ``inject_hyperparams``,
    ``apply_if_finite``). Its ``update`` also accepts the keyword ``loss_vjp`` (see
    :func:`multitask_transformation`), which is how the one-backward-pass fast path survives
    any wrapper that forwards extra arguments.
    """

    fast_path: FastPath | None = None


TASK_GRADIENT_POLICIES = ("auto", "never")
# Set while tracing when a multi-task update consumed ``loss_vjp``: the train step checks it,
# so a chain without a multi-task part fails loudly instead of training on a placeholder.
_LOSS_VJP_CONSUMED: list[bool] = []


def multitask_transformation(
    init: Callable, update: Callable, fast_path: FastPath | None = None
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
    - ``vjp_chunk_size``: per-task VJPs this many at a time (bounds memory).
    """

    def update_fn(
        updates: Any,
        state: Any,
        params: Any = None,
        *,
        loss_vjp: Callable | None = None,
        task_gradients: str = "auto",
        vjp_chunk_size: int | None = None,
        **extra_args: Any,
    ) -> tuple[Any, Any]:
        if loss_vjp is None:
            return update(updates, state, params, **extra_args)
        if task_gradients not in TASK_GRADIENT_POLICIES:
            raise ValueError(
                f"task_gradients must be one of {TASK_GRADIENT_POLICIES}, got {task_gradients!r}."
            )
        losses = extra_args.get("task_losses")
        if losses is None:
            raise ValueError("update(..., loss_vjp=...) needs task_losses= as well.")
        if _LOSS_VJP_CONSUMED:
            _LOSS_VJP_CONSUMED[-1] = True
        num_tasks = jnp.shape(losses)[0]

        def with_task_gradients(state: Any) -> tuple[Any, Any]:
            eye = jnp.eye(num_tasks, dtype=jnp.asarray(losses).dtype)
            task_grads = jacobian.stacked_vjp(loss_vjp, eye, vjp_chunk_size)
            return update(task_grads, state, params, **extra_args)

        def with_one_gradient(state: Any) -> tuple[Any, Any]:
            weights = fast_path.weights(state, losses, extra_args.get("key"))
            (combined,) = loss_vjp(weights.astype(jnp.asarray(losses).dtype))
            return update(combined, state, params, presummed=True, **extra_args)

        if fast_path is None:
            if task_gradients == "never":
                raise ValueError(
                    "This transformation has no fast path: every step needs the per-task "
                    "gradients (use task_gradients='auto', i.e. TrainStep.step)."
                )
            return with_task_gradients(state)
        needs = False if task_gradients == "never" else fast_path.needs_task_gradients(state)
        if isinstance(needs, bool):
            return (with_task_gradients if needs else with_one_gradient)(state)
        return jax.lax.cond(needs, with_task_gradients, with_one_gradient, state)

    transformation = MultiTaskTransformation(init, update_fn)
    transformation.fast_path = fast_path
    return transformation


def check_num_tasks(num_tasks: Any) -> int:
    """Validates the static task count (a Python int >= 2)."""
    if isinstance(num_tasks, jax.core.Tracer) or not isinstance(num_tasks, int | jnp.integer):
        raise TypeError(
            f"num_tasks must be a static Python int, got {type(num_tasks).__name__}. Under "
            "optax.inject_hyperparams pass static_args=('num_tasks', ...)."
        )
    if num_tasks < 2:
        raise ValueError(
            f"num_tasks must be at least 2 for multi-task weighting, got {num_tasks}; with one "
            "task use a plain optax optimizer on its loss."
        )
    return int(num_tasks)


def check_task_gradients(task_grads: Any, num_tasks: int) -> None:
    """Raises a clear error unless every leaf is an inexact array with leading axis K."""
    leaves = jax.tree.leaves(task_grads, is_leaf=lambda x: x is None)
    for leaf in leaves:
        if leaf is None or not jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact):
            raise TypeError(
                "Task gradients must be floating-point arrays; got a leaf of type "
                f"{type(leaf).__name__} with dtype {getattr(leaf, 'dtype', None)}. Compute "
                "gradients only for float parameters (integer or None leaves have none)."
            )
    try:
        chex.assert_tree_shape_prefix(task_grads, (num_tasks,))
    except AssertionError as err:
        raise ValueError(
            f"Expected stacked task gradients with a leading task axis of size {num_tasks} on "
            f"every leaf (use autoscale_jax.task_value_and_grad): {err}"
        ) from err


def check_task_losses(task_losses: Any, num_tasks: int, *, required: bool = True) -> Any:
    """Validates the ``task_losses`` keyword (shape [K]); returns it as an array or None."""
    if task_losses is None:
        if required:
            raise ValueError(
                "This transformation needs the task losses: call "
                "update(task_grads, state, params, task_losses=losses) with losses of shape "
                f"[{num_tasks}]."
            )
        return None
    task_losses = jnp.asarray(task_losses)
    if task_losses.shape != (num_tasks,):
        raise ValueError(f"task_losses must have shape ({num_tasks},), got {task_losses.shape}.")
    return task_losses


def weighted_sum(task_grads: Any, weights: jax.Array) -> Any:
    """Combines stacked task gradients ``Σ_k w_k g_k`` leaf by leaf (keeps each leaf's dtype)."""
    return jax.tree.map(lambda g: jnp.tensordot(weights.astype(g.dtype), g, axes=1), task_grads)


def combine(task_grads: Any, weights: jax.Array, num_tasks: int, presummed: bool) -> Any:
    """A loss-space method's update: ``Σ_k w_k g_k``, or the presummed gradient as it is.

    With ``presummed=True`` the caller (the fast path of :mod:`autoscale_jax.train`) already
    computed ``∇ Σ_k w_k L_k`` with these same weights, in one backward pass.
    """
    if presummed:
        return task_grads
    check_task_gradients(task_grads, num_tasks)
    return weighted_sum(task_grads, weights)


def loss_space_fast_path(weights: Any) -> FastPath:
    """The fast path of a method whose weights come from losses: never needs task gradients.

    Args:
      weights: ``(state, task_losses, key) -> [K]``, the weights the next update applies.
    """
    return FastPath(needs_task_gradients=lambda state: False, weights=weights)


def _find_task_weights(node: Any) -> jax.Array | None:
    if hasattr(node, "_fields") and "task_weights" in node._fields:
        return node.task_weights
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
        ``inject_hyperparams`` wrapping one.

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
