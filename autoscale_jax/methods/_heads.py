"""``heads=``: whether the task heads of a Gramian method get the weighted gradient or each its
own plain gradient (TorchJD's ``mtl_backward``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import metrics
from autoscale_jax.methods._partial_labels import drop_absent

HEADS = ("weighted", "plain")


def check_heads(heads: str) -> None:
    if heads not in HEADS:
        raise ValueError(f"Unknown heads {heads!r}; choose one of {HEADS}.")


def aggregation_mask(metric_mask: metrics.MetricMask, heads: str) -> metrics.MetricMask:
    """The leaves a method measures and weights: with ``heads="plain"`` the shared ones."""
    if heads == "plain" and metric_mask is None:
        return "shared"
    return metric_mask


def combine_heads(
    task_grads: Any, weights: jax.Array, shared: Any, present: jax.Array | None = None
) -> Any:
    """``Σ_k w_k g_k`` on shared leaves and ``Σ_k g_k`` (over the present tasks) elsewhere.

    A head leaf has a nonzero gradient for its own task only, so ``Σ_k g_k`` is that task's
    plain gradient: the head trains on its own loss, as TorchJD's ``mtl_backward`` does.
    """

    def leaf(g: jax.Array, keep: Any) -> jax.Array:
        if present is not None:
            g = drop_absent(g, present)
        weighted = jnp.tensordot(weights.astype(g.dtype), g, axes=1)
        if keep is True:
            return weighted
        plain = jnp.sum(g, axis=0)
        return plain if keep is False else jnp.where(keep, weighted, plain)

    return jax.tree.map(leaf, task_grads, shared)
