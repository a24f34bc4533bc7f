"""The contract every multi-task transformation follows, and the helpers it shares.

A multi-task transformation is an ``optax.GradientTransformationExtraArgs`` whose ``update``
takes *stacked* task gradients (every leaf has a leading task axis of size K) and the keyword
``task_losses`` (shape [K]), and returns one combined update with the task axis gone. It must
therefore come first in an ``optax.chain``. Its state is a NamedTuple with a ``task_weights``
field wherever the method has weights, which :func:`task_weights` finds inside any chain state.

For the one-backward-pass step of :mod:`autoscale_jax.train`, a transformation may also carry a
:class:`FastPath`: a predicate saying whether the next step needs per-task gradients, and the
weights to use when it does not. The step then computes ``∇ Σ_k w_k L_k`` with one VJP and
calls ``update(..., presummed=True)`` with that single gradient. Which path an update takes,
and the typed form of its extra inputs, is :mod:`autoscale_jax.dispatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import checks


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
    ``update`` also accepts the keyword ``loss_vjp`` (see
    :func:`autoscale_jax.dispatch.multitask_transformation`),
    which is how the one-backward-pass fast path survives any wrapper that forwards extra
    arguments.
    """

    fast_path: FastPath | None = None
    gramian_path: GramianPath | None = None


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
