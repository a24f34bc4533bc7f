"""Partial labels: the tasks absent from a batch, and what every method family does with them.

``update(..., task_mask=present)`` ([K] bools; ``multitask_train_step(..., task_counts=True)``
passes ``counts > 0``). Every family gives an absent task weight 0 and lets the present ones
train; neither its gradient nor its loss (a placeholder, even NaN) reaches the update:

- Gramian methods: the rule sees, in the absent task's place, a stand-in: the mean gradient
  (and loss) of the present tasks (:func:`stand_in_map`, ``g' = A g``, so the Gramian is
  ``A G Aᵀ``); the weights ``w`` it chooses on ``g'`` are folded back onto the present tasks
  (``Aᵀ w``), so the update ``Σ_k w_k g'_k`` is the rule's own. The stand-in lies in the convex
  hull of the present gradients, so min-norm rules (MGDA) give exactly their answer on the
  present tasks alone. A method's memory (e.g. GradVac's targets) sees the stand-in. With no
  task present the Gramian is zero: the update is 0 and ``gramian_zero`` is set.
- Loss-space methods: the absent task's loss is replaced by the present tasks' mean before
  the rule sees it, and its weight is set to 0 (the others keep theirs). With no task present
  every weight is 0 and the method's state is left as it was.
- Elementwise methods: each absent task's gradient row is replaced by the present tasks' mean
  gradient (:func:`stand_in_gradients`); their weights refer to those rows.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import metrics


def masked(weights: jax.Array, present: jax.Array | None) -> jax.Array:
    """``weights`` with 0 for the absent tasks (unchanged when ``present`` is ``None``)."""
    return weights if present is None else jnp.where(present, weights, 0)


def stand_in_map(present: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """The [K, K] map ``A`` from the task gradients to those a rule sees with partial labels.

    ``g' = A g``: a present task keeps its own gradient, an absent one is replaced by the mean
    gradient of the present tasks. The rule then sees the Gramian ``A G Aᵀ`` and the losses
    ``A L``, and weights ``w`` it chooses on ``g'`` are ``Aᵀ w`` on ``g`` (0 for absent tasks,
    same update). With no task present ``A = 0``.

    Example:
      >>> stand_in_map(jnp.array([True, False, True]))
      Array([[1. , 0. , 0. ],
             [0.5, 0. , 0.5],
             [0. , 0. , 1. ]], dtype=float32)
    """
    p = jnp.asarray(present, bool).astype(dtype)
    mean = p / jnp.maximum(jnp.sum(p), 1)
    return jnp.diag(p) + (1 - p)[:, None] * mean[None, :]


def drop_absent(x: jax.Array, present: jax.Array) -> jax.Array:
    """``x`` (leading task axis) with 0 in the absent tasks' rows, so that a NaN placeholder
    there cannot reach a product with :func:`stand_in_map`."""
    return jnp.where(present.reshape((-1,) + (1,) * (jnp.ndim(x) - 1)), x, 0)


def stand_in_losses(losses: jax.Array, present: jax.Array) -> jax.Array:
    """``A L``: each absent task's loss replaced by the present tasks' mean."""
    return stand_in_map(present, losses.dtype) @ drop_absent(losses, present)


def stand_in_gramian(G: jax.Array, present: jax.Array) -> jax.Array:
    """``A G Aᵀ``: the Gramian of the stand-in gradients, from ``G`` alone."""
    A = stand_in_map(present, G.dtype)
    G = jnp.where(present[:, None] & present[None, :], G, 0)
    return jnp.matmul(
        jnp.matmul(A, G, precision=metrics.FULL_PRECISION), A.T, precision=metrics.FULL_PRECISION
    )


def stand_in_gradients(task_grads: Any, present: jax.Array) -> Any:
    """``A g`` leaf by leaf (see :func:`stand_in_map`): absent tasks get the present mean."""

    def leaf(g: jax.Array) -> jax.Array:
        A = stand_in_map(present, jnp.promote_types(g.dtype, jnp.float32))
        return jnp.tensordot(A, drop_absent(g, present), axes=1).astype(g.dtype)

    return jax.tree.map(leaf, task_grads)
