"""Input validation shared by every multi-task transformation: clear errors for bad counts,
gradients without the task axis, and losses of the wrong shape, raised at trace time."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "check_not_parameter_shaped",
    "check_num_tasks",
    "check_positive_int",
    "check_task_gradients",
    "check_task_losses",
    "check_task_mask",
]


def check_not_parameter_shaped(task_grads: Any, params: Any) -> None:
    """Raises when ``params`` is given and every gradient leaf has exactly its parameter's shape.

    Stacked task gradients have shape ``[K, *param.shape]``. Gradients without the task axis
    whose first dimension happens to equal K would otherwise pass the leading-axis check and
    be combined along a parameter axis.
    """
    if params is None or task_grads is None:
        return
    grad_leaves = jax.tree.leaves(task_grads)
    param_leaves = jax.tree.leaves(params)
    if not grad_leaves or len(grad_leaves) != len(param_leaves):
        return
    shapes = [(jnp.shape(g), jnp.shape(p)) for g, p in zip(grad_leaves, param_leaves, strict=True)]
    if all(g == p for g, p in shapes):
        raise ValueError(
            "The gradients have exactly the parameters' shapes (e.g. "
            f"{shapes[0][0]}): a multi-task transformation expects stacked task gradients "
            "[K, *param.shape] (use autoscale_jax.task_value_and_grad). Inside "
            "optax.MultiSteps, whose accumulator has the parameters' shape, use "
            "autoscale_jax.multi_steps instead."
        )


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


def check_positive_int(name: str, value: Any) -> int:
    """A static count (a Python or NumPy integer >= 1, not a bool) as a Python int."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | np.integer)
        or isinstance(value, jax.core.Tracer)
        or value < 1
    ):
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


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


def check_task_mask(task_mask: Any, num_tasks: int) -> Any:
    """Validates the ``task_mask`` keyword: ``None`` or [K] bools, the tasks present in the
    batch (partial labels); returns it as a bool array or ``None``.

    Raises:
      ValueError: for a shape other than ``(num_tasks,)``.
      TypeError: for a non-boolean dtype (counts or 0/1 floats: pass ``counts > 0``).
    """
    if task_mask is None:
        return None
    mask = jnp.asarray(task_mask)
    if mask.shape != (num_tasks,):
        raise ValueError(f"task_mask must have shape ({num_tasks},), got {mask.shape}.")
    if mask.dtype != jnp.bool_:
        raise TypeError(
            f"task_mask must be booleans (the tasks present in the batch), got dtype "
            f"{mask.dtype}: pass counts > 0, not the counts themselves."
        )
    return mask
