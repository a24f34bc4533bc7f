"""The forward pass of the modes that read a :class:`~autoscale_jax.jacobian.SplitLoss`
(``"representation"`` and ``"last_layer"``): the heads' VJP taken once, the Gramian from it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import jacobian, metrics
from autoscale_jax.modes._protocol import Forward, GradientMode, ModeCall


class _HeadsVJP(NamedTuple):
    fn: Callable  # u -> (grads of the used parameter leaves (a list), ∂/∂z)
    used: list[bool]  # which parameter leaves the heads read


def _used_leaves(fn: Callable, leaves: list) -> list[bool]:
    """Which of ``leaves`` the traced ``fn(leaves)`` reads (from its jaxpr, at trace time)."""
    jaxpr = jax.make_jaxpr(fn)(leaves).jaxpr
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars}
    read |= {id(v) for v in jaxpr.outvars}
    return [id(v) in read for v in jaxpr.invars]


def require_split_loss(mode: str) -> Callable[[Any, Any], None]:
    """The ``check`` of a mode that needs the loss split at the shared representation."""

    def check(loss_fn: Any, num_sampled_tasks: Any) -> None:
        if not isinstance(loss_fn, jacobian.SplitLoss):
            raise TypeError(
                f"gradient_mode={mode!r} needs the loss split at the shared representation: "
                "pass loss_fn=asj.SplitLoss(representation=..., heads=...)."
            )

    return check


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


def split_forward(call: ModeCall, part: int) -> Forward:
    """The forward pass; the Gramian of the heads' gradients w.r.t. ``z`` (``part=1``) or
    w.r.t. the heads' own parameter leaves (``part=0``, by default their shared ones)."""
    losses, loss_vjp, heads_vjp, counts = _split_linearization(
        call.loss_fn, call.params, call.args, call.task_counts
    )

    def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
        eye = jnp.eye(losses.shape[0], dtype=losses.dtype)
        grads = jacobian.stacked_vjp(lambda c: (heads_vjp.fn(c)[part],), eye, call.chunk_size)
        mask = None
        if part == 0:  # the heads' own parameter leaves; by default their shared ones
            mask = "shared" if metric_mask is None else metric_mask
            if not isinstance(mask, str):
                full = jacobian.resolve_params_mask(call.params, mask)
                mask = [m for m, u in zip(jax.tree.leaves(full), heads_vjp.used, strict=True) if u]
        return jacobian.ObservedGramian(metrics.gramian(grads, mask))

    return Forward(losses, loss_vjp, counts, task_gramian)


def split_mode(name: str, part: int, order: int) -> GradientMode:
    """The :class:`GradientMode` of a mode that measures the Gramian through the heads."""
    return GradientMode(
        name=name,
        exact=False,
        forward=functools.partial(split_forward, part=part),
        check=require_split_loss(name),
        order=order,
    )
