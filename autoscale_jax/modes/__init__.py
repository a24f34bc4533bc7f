"""Gradient modes: how a train step measures the task Gramian, from exact to cheap.

Every Gramian-based weighting (AutoScale's phase 1, MGDA, UPGrad, CAGrad, ...) needs only the
K×K Gramian ``G = J Jᵀ`` and the losses to choose its weights; the update is then one VJP
``∇ Σ_k w_k L_k``. :func:`autoscale_jax.multitask_train_step` takes ``gradient_mode=``, one
of :data:`GRADIENT_MODES`:

- ``stacked`` (default): the K stacked per-task gradients; exact, every method;
- ``gramian``: G column by column as a JVP of a VJP; exact, O(P + K²) memory;
- ``representation`` / ``last_layer``: K VJPs through the heads of a
  :class:`~autoscale_jax.jacobian.SplitLoss`; approximate;
- ``sampled``: the entries of ``num_sampled_tasks`` random tasks; unbiased.

Each mode is one module of this package that defines ``MODE``, a :class:`GradientMode` (its
name, whether it is exact, its forward pass, its checks); the package collects them into
:data:`MODES` when it is imported, so adding a mode is adding one module (see
CONTRIBUTING.md). Each module's docstring gives the mode's cost and exactness; the table of
measured costs is in docs/gradient_modes.md. In every mode but ``stacked`` the training update
is one VJP of ``Σ_k w_k L_k``, so a phase-1 step costs the Gramian plus one plain backward
pass.

Partial labels: with ``task_counts=True``, ``loss_fn`` returns ``(losses, counts)`` with
``counts`` [K] the examples labelled for each task in the batch; ``task_mask = counts > 0``
reaches the weighting's update: every method gives an absent task weight 0 and trains the
present ones (see :mod:`autoscale_jax.methods._bases`), and AutoScale's estimator records no
Gramian or loss sample of an absent task. Write each task loss as a masked mean that is 0 with
no label, e.g. ``sum(mask_k * l_k) / max(count_k, 1)``, so an absent task also has a zero
gradient. Counts must be finite and >= 0: a negative or non-finite count raises a
``ValueError`` where the counts are concrete; under ``jit`` that task counts as present with
a NaN loss (the step returns it, AutoScale counts the sample as skipped, loss-space methods
keep their previous weights).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import jacobian, metrics
from autoscale_jax.modes._protocol import (
    Forward,
    GradientMode,
    Linearization,
    ModeCall,
    checked_counts,
)


def _collect() -> dict[str, GradientMode]:
    """Every public module of this package that defines ``MODE``, by name, in ``order``."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            mode = importlib.import_module(f"{__name__}.{info.name}").MODE
            if mode.name != info.name:
                raise ImportError(
                    f"autoscale_jax.modes.{info.name} defines MODE.name={mode.name!r}: name "
                    "the module after its mode."
                )
            found.append(mode)
    return {mode.name: mode for mode in sorted(found, key=lambda m: (m.order, m.name))}


MODES: dict[str, GradientMode] = _collect()
GRADIENT_MODES = tuple(MODES)
EXACT_MODES = tuple(name for name, mode in MODES.items() if mode.exact)
# The options of multitask_train_step a mode may read (GradientMode.options).
_OPTIONS = ("num_sampled_tasks",)


def _lookup(mode: str) -> GradientMode:
    if mode not in MODES:
        raise ValueError(f"Unknown gradient_mode {mode!r}; choose one of {GRADIENT_MODES}.")
    return MODES[mode]


def check_mode(
    mode: str, loss_fn: Callable, num_sampled_tasks: int | None, chunk_size: int | None
) -> None:
    """Raises for an unknown mode or a mode whose inputs are missing (at build time)."""
    found = _lookup(mode)
    found.check(loss_fn, num_sampled_tasks)
    given = {"num_sampled_tasks": num_sampled_tasks}
    for option in _OPTIONS:
        if given[option] is not None and option not in found.options:
            owners = " or ".join(repr(m.name) for m in MODES.values() if option in m.options)
            raise ValueError(f"{option} is only used with gradient_mode={owners}.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")


def linearize(
    loss_fn: Callable,
    params: Any,
    args: tuple,
    *,
    mode: str = "stacked",
    key: jax.Array | None = None,
    chunk_size: int | None = None,
    num_sampled_tasks: int | None = None,
    task_counts: bool = False,
) -> Linearization:
    """The forward pass of a train step in gradient mode ``mode`` (see the module docstring).

    Args:
      loss_fn: ``loss_fn(params, *args) -> losses`` (``(losses, counts)`` with
        ``task_counts``); a :class:`~autoscale_jax.jacobian.SplitLoss` for the representation
        modes.
      params: the parameters.
      args: the batch arguments of ``loss_fn``.
      mode: one of :data:`GRADIENT_MODES`.
      key: the step's PRNG key (required by ``"sampled"``).
      chunk_size: per-task VJPs (or Gramian columns) this many at a time.
      num_sampled_tasks: ``m`` for ``"sampled"``.
      task_counts: whether ``loss_fn`` also returns per-task label counts.

    Returns:
      A :class:`Linearization`.
    """
    if num_sampled_tasks is not None:
        num_sampled_tasks = int(num_sampled_tasks)  # a NumPy integer works as a Python one
    call = ModeCall(loss_fn, params, args, key, chunk_size, num_sampled_tasks, task_counts)
    forward = _lookup(mode).forward(call)
    losses, inputs = forward.losses, dict[str, Any]()
    if forward.task_gramian is not None:
        inputs["task_gramian"] = forward.task_gramian
    jacobian.check_losses(losses)
    if forward.counts is not None:
        losses, inputs["task_mask"] = checked_counts(forward.counts, losses)
    return Linearization(losses, forward.loss_vjp, inputs)


def task_gramian(
    loss_fn: Callable,
    *,
    mode: str = "gramian",
    metric_mask: Any = None,
    chunk_size: int | None = None,
    num_sampled_tasks: int | None = None,
) -> Callable[..., tuple[jax.Array, jacobian.ObservedGramian]]:
    """A function returning the task losses and the Gramian measured in gradient mode ``mode``.

    Args:
      loss_fn: ``loss_fn(params, *args) -> losses [K]`` (a
        :class:`~autoscale_jax.jacobian.SplitLoss` for the representation modes).
      mode: ``"gramian"`` (default, exact without K×P memory) or any other of
        :data:`GRADIENT_MODES`.
      metric_mask: the leaves the Gramian sees (see :func:`autoscale_jax.metrics.gramian`).
      chunk_size: per-task VJPs (or Gramian columns) this many at a time.
      num_sampled_tasks: ``m`` for ``"sampled"``.

    Returns:
      ``(params, *args, key=None) -> (losses, ObservedGramian)``.

    Example:
      >>> losses, observed = asj.task_gramian(loss_fn)(params, batch)
      >>> observed.gramian.shape
      (2, 2)
    """
    check_mode(mode, loss_fn, num_sampled_tasks, chunk_size)

    def measure(params: Any, *args: Any, key: jax.Array | None = None) -> tuple:
        lin = linearize(
            loss_fn,
            params,
            args,
            mode=mode,
            key=key,
            chunk_size=chunk_size,
            num_sampled_tasks=num_sampled_tasks,
        )
        measured = lin.update_inputs.get("task_gramian")
        if measured is None:  # a mode that lets the transformation stack the gradients
            eye = jnp.eye(lin.losses.shape[0], dtype=lin.losses.dtype)
            grads = jacobian.stacked_vjp(lin.loss_vjp, eye, chunk_size)
            return lin.losses, jacobian.ObservedGramian(metrics.gramian(grads, metric_mask))
        return lin.losses, measured(metric_mask)

    return measure


__all__ = [
    "EXACT_MODES",
    "GRADIENT_MODES",
    "MODES",
    "Forward",
    "GradientMode",
    "Linearization",
    "ModeCall",
    "check_mode",
    "linearize",
    "task_gramian",
]
