"""What the stochastic MGDA methods (MoCo, SDMGrad, MoDo) share: the Euclidean projection onto
the simplex, MoCo's projected step on the weights, and the cross Gramian of two independent
batches (SDMGrad's and MoDo's unbiased estimate of the full-batch Gramian).

The public names stay where the methods' users find them: ``methods.moco.project_to_simplex``,
``methods.moco.moco_weight_step``, ``methods.sdmgrad.cross_gramian`` and
``methods.sdmgrad.two_batch_gramian``.
"""

from __future__ import annotations

from typing import Any, cast

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases


def project_to_simplex(v: jax.Array) -> jax.Array:
    """Euclidean projection onto the probability simplex, along the last axis.

    ``Π_Δ(v) = max(v - θ, 0)`` with the threshold ``θ`` that makes the result sum to 1, found
    by sorting (Held, Wolfe & Crowder 1974; Duchi et al 2008): with ``u`` sorted descending
    and ``ρ = max{j : u_j - (Σ_{i≤j} u_i - 1)/j > 0}``, ``θ = (Σ_{i≤ρ} u_i - 1)/ρ``. Works on
    any batch shape ``[..., K]`` (no loop, no ``vmap`` needed) and is differentiable almost
    everywhere. Non-finite input gives non-finite output.

    Args:
      v: [..., K] points.

    Returns:
      [..., K] non-negative points whose last axis sums to 1.
    """
    v = jnp.asarray(v)
    num = v.shape[-1]
    descending = -jnp.sort(-v, axis=-1)
    excess = jnp.cumsum(descending, axis=-1) - 1.0
    counts = jnp.arange(1, num + 1, dtype=v.dtype)
    # The condition holds exactly for a prefix j = 1..ρ (and always for j = 1).
    support = jnp.sum(descending - excess / counts > 0, axis=-1, keepdims=True)
    support = jnp.maximum(support, 1)
    theta = jnp.take_along_axis(excess, support - 1, axis=-1) / support.astype(v.dtype)
    return jnp.maximum(v - theta, 0.0)


def moco_weight_step(G: jax.Array, weights: jax.Array, step_size: Any, rho: Any = 0.0) -> jax.Array:
    """One projected gradient step on ``½ λᵀ(G + ρI)λ`` over the simplex.

    .. math:: λ ← Π_Δ\\big(λ - γ (G + ρ I) λ\\big)

    Args:
      G: [K, K] Gramian of the tracked gradients (``G_ij = <y_i, y_j>``).
      weights: [K] current ``λ`` on the simplex.
      step_size: ``γ > 0``.
      rho: the regulariser ``ρ >= 0``.

    Returns:
      The next [K] ``λ``.
    """
    G = metrics.at_least_float32(G)
    weights = weights.astype(G.dtype)
    return project_to_simplex(weights - step_size * (G @ weights + rho * weights))


def cross_gramian(first: Any, second: Any, mask: metrics.MetricMask = None) -> jax.Array:
    """Cross Gramian ``G_ij = <a_i, b_j>`` of two stacked-gradient pytrees, leaf by leaf.

    ``G = Σ_leaves A_leaf B_leafᵀ`` (no concatenated Jacobian); ``cross_gramian(a, a)`` is
    :func:`autoscale_jax.metrics.gramian`. It is not symmetric in general.

    Args:
      first: pytree whose leaves have a leading task axis K.
      second: a pytree of the same structure and shapes.
      mask: which leaves count, resolved on ``first`` (see
        :func:`autoscale_jax.metrics.resolve_mask`).

    Returns:
      A float32 (or wider) [K, K] matrix.
    """
    leaves, treedef = jax.tree.flatten(first)
    treedef = cast(Any, treedef)  # jaxlib's PyTreeDef has no usable stub
    others = treedef.flatten_up_to(second)
    masks = treedef.flatten_up_to(metrics.resolve_mask(first, mask))
    num_tasks = leaves[0].shape[0]
    total = jnp.zeros((num_tasks, num_tasks), jnp.promote_types(leaves[0].dtype, jnp.float32))
    for a, b, keep in zip(leaves, others, masks, strict=True):
        if keep is False:
            continue
        block = metrics.at_least_float32(a).reshape(num_tasks, -1) @ (
            metrics.at_least_float32(b).reshape(num_tasks, -1).T
        )
        total = total + (block if keep is True else jnp.where(keep, block, 0.0))
    return total


def _check_batch(name: str, grads: Any, reference: Any, num_tasks: int, method: str) -> None:
    checks.check_task_gradients(grads, num_tasks)
    shapes = jax.tree.map(jnp.shape, grads)
    structure: Any = jax.tree.structure(grads)
    if structure != jax.tree.structure(reference) or shapes != jax.tree.map(jnp.shape, reference):
        raise ValueError(f"{method}: {name} must have the structure and shapes of task_grads.")


def two_batch_gramian(num_tasks: int, mask: metrics.MetricMask, method: str) -> Any:
    """A ``gramian_fn`` for :func:`~autoscale_jax.methods._bases.gramian_method` that measures
    the cross Gramian of two independent batches.

    ``update(task_grads, ..., second_task_grads=J₂)`` gives ``J₁ J₂ᵀ`` (J₁ = ``task_grads``);
    with ``third_task_grads=J₃`` as well it gives ``J₂ J₃ᵀ``, so the weights are independent of
    the batch the update is built from (the papers' three-sample form).
    """

    def gramian_fn(task_grads: Any, extra_args: dict) -> jax.Array:
        second = extra_args.get("second_task_grads")
        if second is None:
            raise ValueError(
                f"{method} needs the task gradients of a second, independent batch: call "
                "update(task_grads, state, params, second_task_grads=g2) with "
                "_, g2 = asj.task_value_and_grad(loss_fn)(params, batch2)."
            )
        _check_batch("second_task_grads", second, task_grads, num_tasks, method)
        third = extra_args.get("third_task_grads")
        if third is None:
            return cross_gramian(task_grads, second, mask)
        _check_batch("third_task_grads", third, task_grads, num_tasks, method)
        return cross_gramian(second, third, mask)

    return gramian_fn


def two_batch_method(
    num_tasks: int,
    name: str,
    rule: _bases.GramianRule,
    *,
    metric_mask: metrics.MetricMask,
    heads: str,
) -> base.MultiTaskTransformation:
    """The Gramian method (MoDo's, SDMGrad's) whose ``rule`` sees the cross Gramian of two
    batches (:func:`two_batch_gramian`), with weights and memory ``λ`` starting at ``1/K``."""
    uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
    measured = _bases.aggregation_mask(metric_mask, heads)
    return _bases.gramian_method(
        num_tasks,
        name,
        rule,
        metric_mask=metric_mask,
        heads=heads,
        init_memory=uniform,
        init_weights=uniform,
        gramian_fn=two_batch_gramian(num_tasks, measured, name),
    )
