"""IMTL-G: the combination of task gradients with equal projections on every task direction.

Only the gradient part of impartial multi-task learning lives here; IMTL-L (loss scaling) is a
loss-space method with its own module.

Reference:
  Liu et al, Towards Impartial Multi-task Learning, 2021.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods._registry import MethodInfo


def imtl_g_weights(G: jax.Array, rtol: float | None = None) -> jax.Array:
    """IMTL-G's weights ``α`` from the Gramian.

    The paper's closed form, with ``D = [g_1 - g_2, ..., g_1 - g_K]ᵀ``,
    ``U = [u_1 - u_2, ..., u_1 - u_K]ᵀ`` and ``u_k = g_k / ||g_k||``,

    .. math:: α_{2:K} = g_1 U^T (D U^T)^{-1}, \\quad α_1 = 1 - \\sum_{k \\ge 2} α_k,

    is the unique ``α`` with ``Σ_k α_k = 1`` whose update ``g = Σ_k α_k g_k`` has equal
    projections ``<g, u_k>`` on all tasks. It is computed here in unit-gradient coordinates,
    which is the same solution but symmetric in the tasks: with the cosine matrix
    ``C_ij = <u_i, u_j>``, ``β = C⁺ 1`` gives ``d = Σ_k β_k u_k`` with ``<d, u_k> = 1`` for all
    k, and ``α_k = s β_k / ||g_k||`` with ``s`` making ``Σ α = 1``.

    Degenerate cases, all defined: ``C⁺`` is a pseudo-inverse through ``eigh`` that drops
    eigenvalues below ``rtol · λ_max``, so parallel or identical gradients (where the paper's
    ``D Uᵀ`` is singular) get the minimum-norm ``β``, which treats the tasks symmetrically
    (identical gradients get equal weights, parallel ones weights ∝ 1/||g_k||). A zero task
    gradient has no direction: it is left out of the system and gets weight 0. When
    ``Σ_k β_k / ||g_k||`` is not positive (beyond ``rtol``) the paper's normalisation would
    divide by (nearly) zero or flip the update against every task; the weights are then
    normalised by ``Σ_k |α_k|`` instead. All-zero gradients give zero weights from
    :func:`imtl_g_weights`; the transformation does not solve an all-zero Gramian: it keeps its
    previous weights and sets ``gramian_zero`` (the update is 0 either way).

    Args:
      G: [K, K] Gramian of the task gradients.
      rtol: relative eigenvalue cut-off of the pseudo-inverse; ``None`` uses
        ``10 · K · eps`` of the Gramian's dtype.

    Returns:
      [K] weights ``α`` (at least float32).
    """
    G = metrics.at_least_float32(G)
    num_tasks = G.shape[0]
    # The cosine matrix of (nearly) parallel gradients is singular up to round-off in its
    # entries: a 10x safety margin over the rank tolerance keeps that noise out.
    rtol = projections.default_rtol(num_tasks, G.dtype, factor=10.0) if rtol is None else rtol
    norms = metrics.task_gradient_norms(G)
    has_direction = norms > 0
    inverse_norms = jnp.where(has_direction, 1.0 / jnp.where(has_direction, norms, 1.0), 0.0)
    cosines = G * inverse_norms[:, None] * inverse_norms[None, :]
    eigen = projections.psd_eigen(cosines, rtol)
    unit_coefficients = projections.kept_inverse_power(eigen, 1.0) @ has_direction.astype(G.dtype)
    raw = unit_coefficients * inverse_norms
    total, absolute = jnp.sum(raw), jnp.sum(jnp.abs(raw))
    normaliser = jnp.where(total > rtol * absolute, total, absolute)
    return raw / jnp.where(normaliser > 0, normaliser, 1.0)


def imtl_g(
    num_tasks: int,
    *,
    rtol: float | None = None,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """IMTL-G (impartial multi-task learning, gradient balance), computed from the Gramian.

    Finds the combination ``g = Σ_k α_k g_k`` with ``Σ_k α_k = 1`` whose projection on every
    unit task gradient ``u_k = g_k / ||g_k||`` is the same, so no task dominates the update's
    direction:

    .. math:: \\langle g, u_1 \\rangle = \\dots = \\langle g, u_K \\rangle, \\quad
       α_{2:K} = g_1 U^T (D U^T)^{-1}, \\ α_1 = 1 - \\textstyle\\sum_{k \\ge 2} α_k

    (``D``, ``U`` the differences of gradients and unit gradients to task 1). Everything is
    computed in K-space from the Gramian, see :func:`imtl_g_weights` for the formula used and
    for the degenerate cases (singular systems use a pseudo-inverse; a zero task gradient gets
    weight 0). The direction of the update is invariant to positive rescaling of any task
    gradient. The weights sum to 1 as in the paper (not to K). Non-finite gradients pass
    through to the update; the state then keeps the previous weights.

    Args:
      num_tasks: K >= 2, static.
      rtol: relative eigenvalue cut-off for the pseudo-inverse (``None``: ``10 · K · eps``).
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared parameters:
        pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None)`` ignores ``task_losses`` and ``key``. It always needs the per-task
      gradients.

    Example:
      >>> tx = optax.chain(asj.methods.imtl_g(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params)
      >>> asj.task_weights(state).shape
      (2,)

    Reference:
      Liu et al, Towards Impartial Multi-task Learning, 2021.
    """

    weights = functools.partial(imtl_g_weights, rtol=rtol)
    uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
    options = {"metric_mask": metric_mask, "heads": heads, "init_weights": uniform}
    return _bases.weights_method(num_tasks, "imtl_g", weights, **options)


INFO = MethodInfo(
    name="imtl_g",
    factory=imtl_g,
    family="gramian",
    weight_convention="sum_to_1",
    reference="Liu et al, Towards Impartial Multi-task Learning, ICLR 2021",
)
