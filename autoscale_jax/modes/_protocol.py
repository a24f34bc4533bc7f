"""The protocol every gradient mode follows, and the forward pass the plain modes share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import jacobian

# metric_mask -> the Gramian the mode measured (on the leaves the method's mask selects)
TaskGramian = Callable[[Any], jacobian.ObservedGramian]


class ModeCall(NamedTuple):
    """What a mode's forward pass receives (one train step's call).

    Attributes:
      loss_fn: ``loss_fn(params, *args) -> losses`` (``(losses, counts)`` with
        ``task_counts``); a :class:`~autoscale_jax.jacobian.SplitLoss` where the mode needs one.
      params: the parameters.
      args: the batch arguments of ``loss_fn``.
      key: the step's PRNG key or ``None``.
      chunk_size: per-task VJPs (or Gramian columns) this many at a time, or ``None``.
      num_sampled_tasks: ``m`` of ``"sampled"`` (a Python int) or ``None``.
      task_counts: whether ``loss_fn`` also returns per-task label counts.
    """

    loss_fn: Any
    params: Any
    args: tuple
    key: jax.Array | None
    chunk_size: int | None
    num_sampled_tasks: int | None
    task_counts: bool


class Forward(NamedTuple):
    """A mode's forward pass: the losses, their VJP and how the mode measures the Gramian.

    Attributes:
      losses: [K] task losses.
      loss_vjp: ``u -> (Jᵀ u,)``, the losses' VJP at the parameters (the training update is
        one VJP of the weighted losses in every mode).
      counts: the per-task label counts ``loss_fn`` returned (``task_counts``), else ``None``.
      task_gramian: ``metric_mask -> ObservedGramian``, or ``None`` for a mode that lets the
        transformation stack the K per-task gradients itself (``"stacked"``).
    """

    losses: jax.Array
    loss_vjp: Callable
    counts: Any = None
    task_gramian: TaskGramian | None = None


class GradientMode(NamedTuple):
    """One gradient mode: a module of :mod:`autoscale_jax.modes` defines one as ``MODE``.

    Attributes:
      name: the ``gradient_mode=`` string.
      exact: whether its Gramian is the exact ``J Jᵀ`` (up to float round-off).
      forward: ``ModeCall -> Forward``, one forward pass of a train step.
      check: ``(loss_fn, num_sampled_tasks) -> None``, raises (when the step is built) for
        inputs the mode cannot use; the default accepts any.
      options: the keyword options of ``multitask_train_step`` the mode reads (any other one
        given with this mode is refused).
      order: its place in :data:`autoscale_jax.modes.GRADIENT_MODES` (then by name).
    """

    name: str
    exact: bool
    forward: Callable[[ModeCall], Forward]
    check: Callable[[Any, Any], None] = lambda loss_fn, num_sampled_tasks: None
    options: tuple[str, ...] = ()
    order: int = 100


class Linearization(NamedTuple):
    """One forward pass, ready for the backward passes of a train step.

    Attributes:
      losses: [K] task losses.
      loss_vjp: ``u -> (Jᵀ u,)``, the losses' VJP at the parameters.
      update_inputs: extra keywords for the weighting's update (``task_gramian`` in the
        Gramian modes, ``task_mask`` with task counts).
    """

    losses: jax.Array
    loss_vjp: Callable
    update_inputs: dict


def plain_forward(call: ModeCall) -> Forward:
    """The losses and their VJP from ``jax.vjp`` (the stacked and sampled modes)."""
    fn = lambda p: call.loss_fn(p, *call.args)  # noqa: E731
    if call.task_counts:
        losses, loss_vjp, counts = jax.vjp(fn, call.params, has_aux=True)
        return Forward(losses, loss_vjp, counts)
    losses, loss_vjp = jax.vjp(fn, call.params)
    return Forward(losses, loss_vjp)


def checked_counts(counts: Any, losses: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(losses, task_mask)`` from the per-task label counts of ``task_counts=True``.

    A negative or non-finite count raises where concrete; under ``jit`` that task counts as
    present with a NaN loss, so the fault shows in the step's losses and in the weighting's
    handling of non-finite losses instead of passing as an absent task.
    """
    counts = jnp.asarray(counts)
    if counts.shape != losses.shape:
        raise ValueError(
            f"task counts must have the losses' shape {losses.shape}, got {counts.shape}."
        )
    if jnp.issubdtype(counts.dtype, jnp.bool_):
        counts = counts.astype(jnp.int32)
    valid = jnp.isfinite(counts) & (counts >= 0)
    if not isinstance(valid, jax.core.Tracer):
        if not bool(jnp.all(valid)):
            raise ValueError(
                "task_counts=True: loss_fn returned per-task label counts "
                f"{np.asarray(counts).tolist()}; counts must be finite and >= 0 (the examples "
                "labelled for each task in the batch, 0 for a task with no label)."
            )
        return losses, counts > 0
    losses = jnp.where(valid, losses, jnp.nan).astype(losses.dtype)
    return losses, (counts > 0) | ~valid
