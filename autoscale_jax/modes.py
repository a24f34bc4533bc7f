"""Gradient modes: how a train step measures the task Gramian, from exact to cheap.

Every Gramian-based weighting (AutoScale's phase 1, MGDA, UPGrad, CAGrad, ...) needs only the
K×K Gramian ``G = J Jᵀ`` and the losses to choose its weights; the update is then one VJP
``∇ Σ_k w_k L_k``. :func:`autoscale_jax.multitask_train_step` takes ``gradient_mode=``:

============== ========================================= ==================== ===============
mode           G measured from                            cost per step        exactness
============== ========================================= ==================== ===============
``stacked``    the K stacked per-task gradients           K VJPs, K×P memory   exact
``gramian``    columns ``J (M Jᵀ e_k)``: a VJP then a     K VJPs + K JVPs,     exact
               JVP per task (``lax.map``)                 O(P + K²) memory
``representa-  per-task gradients w.r.t. a marked shared  K VJPs through the   approximate
tion``         representation ``z`` (MGDA-UB style)       heads only           (a bound)
``last_layer`` per-task gradients w.r.t. the parameters   K VJPs through the   approximate
               of the split's head part, on its shared    heads only
               leaves (the last shared layer)
``sampled``    the entries of ``m`` random tasks          m VJPs               unbiased
============== ========================================= ==================== ===============

In every mode but ``stacked`` the training update is one VJP of ``Σ_k w_k L_k``, so a phase-1
step costs the Gramian plus one plain backward pass. ``representation`` and ``last_layer`` need
the loss split at the representation: pass a :class:`~autoscale_jax.jacobian.SplitLoss`.
``sampled`` draws the subset with the step's ``key``; AutoScale's estimator averages each entry
over the windows' samples that saw it, and the other methods get the inverse-probability
estimate ``G_ij / π_ij`` (unbiased, but their weights are nonlinear in it: approximate).

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

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import jacobian, metrics

GRADIENT_MODES = ("stacked", "gramian", "representation", "last_layer", "sampled")
EXACT_MODES = ("stacked", "gramian")


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


def check_mode(
    mode: str, loss_fn: Callable, num_sampled_tasks: int | None, chunk_size: int | None
) -> None:
    """Raises for an unknown mode or a mode whose inputs are missing (at build time)."""
    if mode not in GRADIENT_MODES:
        raise ValueError(f"Unknown gradient_mode {mode!r}; choose one of {GRADIENT_MODES}.")
    if mode in ("representation", "last_layer") and not isinstance(loss_fn, jacobian.SplitLoss):
        raise TypeError(
            f"gradient_mode={mode!r} needs the loss split at the shared representation: pass "
            "loss_fn=asj.SplitLoss(representation=..., heads=...)."
        )
    if mode == "sampled":
        if (
            isinstance(num_sampled_tasks, bool | np.bool_)
            or not isinstance(num_sampled_tasks, int | np.integer)
            or num_sampled_tasks < 2
        ):
            raise ValueError(
                "gradient_mode='sampled' needs num_sampled_tasks, a Python or NumPy int >= 2, "
                f"got {num_sampled_tasks!r}."
            )
    elif num_sampled_tasks is not None:
        raise ValueError("num_sampled_tasks is only used with gradient_mode='sampled'.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")


class _HeadsVJP(NamedTuple):
    fn: Callable  # u -> (grads of the used parameter leaves (a list), ∂/∂z)
    used: list[bool]  # which parameter leaves the heads read


def _used_leaves(fn: Callable, leaves: list) -> list[bool]:
    """Which of ``leaves`` the traced ``fn(leaves)`` reads (from its jaxpr, at trace time)."""
    jaxpr = jax.make_jaxpr(fn)(leaves).jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
    read |= {id(v) for v in jaxpr.outvars}
    return [id(v) in read for v in jaxpr.invars]


def _split_linearization(loss_fn: Any, params: Any, args: tuple, task_counts: bool) -> tuple:
    """One forward pass through a :class:`SplitLoss`, differentiating the heads only with
    respect to the parameter leaves they read (no K×P zeros for the trunk) and ``z``."""
    z, trunk_vjp = jax.vjp(lambda p: loss_fn.representation(p, *args), params)
    leaves, treedef = jax.tree.flatten(params)

    def heads(used_leaves: list, z: Any) -> Any:
        it = iter(used_leaves)
        full = [next(it) if u else leaf for leaf, u in zip(leaves, used, strict=True)]
        return loss_fn.heads(jax.tree.unflatten(treedef, full), z, *args)

    used = [True] * len(leaves)  # while probing, ``heads`` receives every leaf
    used = _used_leaves(lambda ls: heads(ls, z), leaves)
    head_leaves = [leaf for leaf, u in zip(leaves, used, strict=True) if u]
    if task_counts:  # the counts have no cotangent: differentiate the losses only
        losses, heads_fn, counts = jax.vjp(heads, head_leaves, z, has_aux=True)
    else:
        (losses, heads_fn), counts = jax.vjp(heads, head_leaves, z), None

    def loss_vjp(u: jax.Array) -> tuple:
        head_grads, z_cotangent = heads_fn(u)
        (trunk_grads,) = trunk_vjp(z_cotangent)
        flat = jax.tree.leaves(trunk_grads)
        it = iter(head_grads)
        summed = [g + next(it) if u_ else g for g, u_ in zip(flat, used, strict=True)]
        return (jax.tree.unflatten(treedef, summed),)

    return losses, loss_vjp, _HeadsVJP(heads_fn, used), counts


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
    counts = None
    inputs: dict = {}
    if num_sampled_tasks is not None:
        num_sampled_tasks = int(num_sampled_tasks)  # a NumPy integer works as a Python one
    if mode in ("representation", "last_layer"):
        losses, loss_vjp, heads_vjp, counts = _split_linearization(
            loss_fn, params, args, task_counts
        )
        part = 1 if mode == "representation" else 0

        def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
            eye = jnp.eye(losses.shape[0], dtype=losses.dtype)
            grads = jacobian.stacked_vjp(lambda c: (heads_vjp.fn(c)[part],), eye, chunk_size)
            mask = None
            if part == 0:  # the heads' own parameter leaves; by default their shared ones
                mask = "shared" if metric_mask is None else metric_mask
                if not isinstance(mask, str):
                    full = jacobian.resolve_params_mask(params, mask)
                    mask = [
                        m for m, u in zip(jax.tree.leaves(full), heads_vjp.used, strict=True) if u
                    ]
            return jacobian.ObservedGramian(metrics.gramian(grads, mask))

        inputs["task_gramian"] = task_gramian
    elif mode == "gramian":
        fn = lambda p: loss_fn(p, *args)  # noqa: E731
        if task_counts:
            losses, jvp_fn, counts = jax.linearize(fn, params, has_aux=True)
        else:
            losses, jvp_fn = jax.linearize(fn, params)
        loss_vjp = jax.linear_transpose(jvp_fn, params)

        def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
            G = jacobian.gramian_from_linearization(
                jvp_fn,
                loss_vjp,
                params,
                losses.shape[0],
                losses.dtype,
                metric_mask=metric_mask,
                chunk_size=chunk_size or 1,
            )
            return jacobian.ObservedGramian(G)

        inputs["task_gramian"] = task_gramian
    else:
        fn = lambda p: loss_fn(p, *args)  # noqa: E731
        if task_counts:
            losses, loss_vjp, counts = jax.vjp(fn, params, has_aux=True)
        else:
            losses, loss_vjp = jax.vjp(fn, params)
        if mode == "sampled":
            if key is None:
                raise ValueError(
                    "gradient_mode='sampled' draws the tasks with the step's key: call "
                    "step(params, state, *batch, key=jax.random.key(i))."
                )
            sample_key = jax.random.fold_in(key, 0x5A11)  # independent of the method's draws

            def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
                return jacobian.sampled_gramian(
                    loss_vjp,
                    sample_key,
                    losses.shape[0],
                    num_sampled_tasks,  # type: ignore[arg-type]  # check_mode: an int here
                    losses.dtype,
                    metric_mask=metric_mask,
                    chunk_size=chunk_size,
                )

            inputs["task_gramian"] = task_gramian
    jacobian.check_losses(losses)
    if counts is not None:
        losses, inputs["task_mask"] = _checked_counts(counts, losses)
    return Linearization(losses, loss_vjp, inputs)


def _checked_counts(counts: Any, losses: jax.Array) -> tuple[jax.Array, jax.Array]:
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
      mode: ``"gramian"`` (default, exact without K×P memory), ``"stacked"``,
        ``"representation"``, ``"last_layer"`` or ``"sampled"``.
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
        if mode == "stacked":
            eye = jnp.eye(lin.losses.shape[0], dtype=lin.losses.dtype)
            grads = jacobian.stacked_vjp(lin.loss_vjp, eye, chunk_size)
            return lin.losses, jacobian.ObservedGramian(metrics.gramian(grads, metric_mask))
        return lin.losses, lin.update_inputs["task_gramian"](metric_mask)

    return measure
