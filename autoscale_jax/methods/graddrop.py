"""GradDrop: keep, element by element, only the gradient components of one randomly picked sign.

Reference:
  Chen et al, Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout,
  2020.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo


class GradDropState(NamedTuple):
    """State of :func:`graddrop`: empty. GradDrop masks elements, it has no task weights, so
    ``asj.task_weights`` raises on it."""


def graddrop_uniforms(key: jax.Array, task_grads: Any) -> Any:
    """The i.i.d. ``U(0, 1)`` draws GradDrop uses: one per parameter element (no task axis).

    Args:
      key: a PRNG key.
      task_grads: stacked task gradients (leading task axis on every leaf).

    Returns:
      A params-shaped pytree of float32 uniforms, one independent key per leaf.
    """
    leaves, treedef = jax.tree.flatten(task_grads)
    keys = jax.random.split(key, len(leaves))
    draws = [
        jax.random.uniform(k, leaf.shape[1:], jnp.float32)
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, draws)


def _graddrop_leaf(task_grad: jax.Array, uniform: jax.Array, leak: jax.Array) -> jax.Array:
    """GradDrop on one stacked leaf [K, ...] with its uniforms [...]; keeps the leaf's dtype."""
    g = metrics.at_least_float32(task_grad)
    total = jnp.sum(g, axis=0)
    magnitude = jnp.sum(jnp.abs(g), axis=0)
    # Where every task's component is zero the purity is undefined; 1/2 (no preferred sign)
    # is harmless because all components there are zero anyway.
    purity = 0.5 * (1.0 + total / jnp.where(magnitude > 0, magnitude, 1.0))
    keep_positive = purity > uniform
    keep_negative = purity < uniform
    mask = (keep_positive & (g > 0)) | (keep_negative & (g < 0))
    leak = leak.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)
    kept = jnp.sum(g * (leak + (1.0 - leak) * mask.astype(g.dtype)), axis=0)
    # A dropped NaN/inf component must not vanish (0 · NaN may be folded to 0): an element with
    # a non-finite component gets the non-finite plain sum instead.
    kept = jnp.where(jnp.isfinite(total), kept, total)
    return kept.astype(task_grad.dtype)


def graddrop_combine(task_grads: Any, uniforms: Any, leak: Any = 0.0) -> Any:
    """GradDrop's combined gradient for given uniform draws (deterministic).

    Per parameter element, with the K task components ``g_k``:

    .. math::
       P = \\tfrac12 \\Big(1 + \\frac{\\sum_k g_k}{\\sum_k |g_k|}\\Big), \\quad
       M_k = [P > U][g_k > 0] + [P < U][g_k < 0], \\quad
       \\text{out} = \\sum_k (\\ell_k + (1 - \\ell_k) M_k)\\, g_k

    Args:
      task_grads: stacked task gradients (leading task axis K on every leaf).
      uniforms: params-shaped pytree of ``U(0, 1)`` draws (see :func:`graddrop_uniforms`).
      leak: scalar or [K] leak ratios ``ℓ_k`` in [0, 1] (1 passes task k through unmasked).

    Returns:
      The params-shaped combined gradient.
    """
    leaves, treedef = jax.tree.flatten(task_grads)
    num_tasks = leaves[0].shape[0]
    leak = jnp.broadcast_to(jnp.asarray(leak, jnp.float32), (num_tasks,))
    draws = cast(Any, treedef).flatten_up_to(uniforms)  # jaxlib's PyTreeDef: no stub
    combined = [_graddrop_leaf(leaf, draw, leak) for leaf, draw in zip(leaves, draws, strict=True)]
    return jax.tree.unflatten(treedef, combined)


def _check_leak(leak: Any, num_tasks: int) -> Any:
    """Validates concrete leak ratios; traced ones (``inject_hyperparams``) pass unchecked."""
    if isinstance(leak, jax.core.Tracer):
        return leak
    values = np.asarray(leak, np.float32)
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] != num_tasks):
        raise ValueError(f"leak must be a scalar or have shape ({num_tasks},), got {values.shape}.")
    if not np.all((values >= 0) & (values <= 1)):
        raise ValueError(f"leak ratios must lie in [0, 1], got {leak!r}.")
    return np.broadcast_to(values, (num_tasks,)).copy()


def graddrop(
    num_tasks: int, *, leak: float | Sequence[float] = 0.0
) -> base.MultiTaskTransformation:
    """GradDrop (gradient sign dropout) applied element-wise to the parameter gradients.

    For every parameter element, the positive sign purity of the K task components,
    ``P = ½ (1 + Σ_k g_k / Σ_k |g_k|)`` in [0, 1], is compared with a fresh draw
    ``U ~ U(0, 1)``: if ``P > U`` only the positive components are kept, if ``P < U`` only the
    negative ones; the kept components are summed. A leak ``ℓ_k`` lets a fraction of task k's
    component through regardless: ``Σ_k (ℓ_k + (1 - ℓ_k) M_k) g_k`` (the paper sets ``ℓ = 0``
    for multi-task learning and ``ℓ = 1`` for a main task in transfer learning). ``f`` in the
    paper's ``f(P) > U`` is the identity here.

    Where the sign is taken: the paper inserts GradDrop as a layer at a shared activation ``A``
    and computes ``P`` from the batch-summed ``sgn(A) ∘ ∇_A L_k``, because the gradient of the
    weights feeding ``A`` is the input times ``∇_A L_k``, so that product carries the sign
    those weights see. Here GradDrop acts directly on the parameter gradients, which are
    already batch sums of input × activation-gradient products: their own sign is the one that
    matters, and no activation sign enters.

    The masks are element-wise, so this method works on the leaves, not the Gramian, and has no
    task weights: its state is empty and ``asj.task_weights`` raises on it. Elements where every
    task component is zero stay zero. An element with a non-finite component gets the
    (non-finite) plain sum ``Σ_k g_k``, so NaN/inf always reach the update.

    Args:
      num_tasks: K >= 2, static.
      leak: scalar or K leak ratios in [0, 1] (default 0: pure GradDrop).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, key)`` needs a fresh PRNG ``key`` each step and ignores ``task_losses``.

    Example:
      >>> tx = optax.chain(asj.methods.graddrop(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, key=jax.random.key(0))

    Reference:
      Chen et al, Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout,
      2020.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    leak_ratios = _check_leak(leak, num_tasks)

    def aggregate(
        task_grads: Any, state: GradDropState, losses: Any, key: jax.Array, extra: dict
    ) -> tuple[Any, GradDropState]:
        del losses, extra
        uniforms = graddrop_uniforms(key, task_grads)
        return graddrop_combine(task_grads, uniforms, leak_ratios), state

    return _bases.stacked_gradient_method(
        num_tasks, "graddrop", lambda params: GradDropState(), aggregate, needs_key=True
    )


INFO = MethodInfo(
    name="graddrop",
    factory=graddrop,
    family="elementwise",
    needs_key=True,
    weight_convention="none",
    reference=(
        "Chen et al, Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
        "Dropout, 2020 (arXiv 2010.06808)"
    ),
)
