"""Helpers shared by the projection and alignment methods (PCGrad, GradVac, IMTL-G,
Aligned-MTL): random task orders, coefficient-space gradient surgery, the
eigendecomposition of a positive semi-definite K×K matrix with a relative cut-off, and
IMTL-G's weights (also AutoScale's ``explorer="imtl_g"``).

Coefficient space: a modified task gradient that is a linear combination of the originals,
``g'_i = Σ_j C_ij g_j``, is tracked by its row ``c_i`` alone, because every quantity the
surgery needs follows from the Gramian ``G = J Jᵀ``: ``<g'_i, g_j> = (c_i G)_j`` and
``||g'_i||² = c_i G c_iᵀ``. The combined update ``Σ_i g'_i`` is then ``Σ_k w_k g_k`` with
``w_k = Σ_i C_ik``, at the cost of one Gramian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import metrics


def random_task_orders(key: jax.Array, num_tasks: int) -> jax.Array:
    """One independent uniform random permutation of the K tasks per task, shape [K, K] int32.

    Row ``i`` is the order in which task ``i`` visits the others; the entry equal to ``i`` is
    skipped by :func:`sequential_surgery`, so the others come in a uniform random order.
    """
    keys = jax.random.split(key, num_tasks)
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(keys)
    return orders.astype(jnp.int32)


# correction(c_i, i, j) -> (amount added to c_ij, a pytree of per-pair observations)
Correction = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, Any]]


class Surgery(NamedTuple):
    """Result of :func:`sequential_surgery`.

    Attributes:
      coefficients: [K, K] matrix C with ``g'_i = Σ_j C_ij g_j``.
      observations: the correction's per-pair observations, each of shape [K, K]; entry
        ``[i, j]`` was observed when task ``i`` visited task ``j`` (the diagonal is meaningless).
    """

    coefficients: jax.Array
    observations: Any


def sequential_surgery(G: jax.Array, orders: jax.Array, correction: Correction) -> Surgery:
    """Gradient surgery in coefficient space: each task visits the others in its own order.

    Task ``i`` starts from ``c_i = e_i`` (its own gradient) and, for every ``j ≠ i`` in
    ``orders[i]``, adds ``amount · g_j`` to its modified gradient, ``c_ij += amount``, with
    ``amount, observation = correction(c_i, i, j)`` computed from the current ``c_i`` (the
    correction closes over the Gramian). Tasks are processed in parallel (``vmap``); the visits
    of one task are sequential (``lax.scan``), so the cost is O(K³) on top of the Gramian.

    Args:
      G: [K, K] Gramian of the task gradients.
      orders: [K, K] int array, row ``i`` a permutation of ``0..K-1`` (see
        :func:`random_task_orders`).
      correction: ``(c_i, i, j) -> (amount, observation)``.

    Returns:
      A :class:`Surgery` with the coefficient matrix and the per-pair observations.
    """
    num_tasks = G.shape[0]

    def one_task(i: jax.Array, order: jax.Array) -> tuple[jax.Array, Any]:
        def visit(c: jax.Array, j: jax.Array) -> tuple[jax.Array, Any]:
            amount, observation = correction(c, i, j)
            # A task never corrects itself: its own slot in the order is a no-op.
            c = c.at[j].add(jnp.where(j == i, jnp.zeros_like(amount), amount))
            return c, observation

        start = jax.nn.one_hot(i, num_tasks, dtype=G.dtype)
        c, visited = jax.lax.scan(visit, start, order)
        # Observations come in visiting order; put them back in task order.
        by_task = jax.tree.map(lambda v: jnp.zeros_like(v).at[order].set(v), visited)
        return c, by_task

    coefficients, observations = jax.vmap(one_task)(jnp.arange(num_tasks), orders)
    return Surgery(coefficients, observations)


def default_rtol(num_tasks: int, dtype: Any, factor: float = 1.0) -> float:
    """Default relative eigenvalue cut-off ``factor · K · eps(dtype)``.

    Why: a K×K Gramian (or cosine matrix) computed in floating point carries round-off of about
    ``K · eps · λ_max`` in each eigenvalue, so eigenvalues below that are numerically zero
    (``K · eps`` is also the usual matrix-rank tolerance; 3.6e-7 for K = 3 in float32).
    """
    return factor * num_tasks * float(jnp.finfo(dtype).eps)


class PsdEigen(NamedTuple):
    """Eigendecomposition of a PSD matrix with the numerically non-zero part marked.

    Attributes:
      eigenvalues: [K] ascending, clipped at 0.
      eigenvectors: [K, K], columns.
      kept: [K] bool, ``λ > rtol · λ_max`` (and ``λ > 0``).
    """

    eigenvalues: jax.Array
    eigenvectors: jax.Array
    kept: jax.Array


def psd_eigen(M: jax.Array, rtol: float) -> PsdEigen:
    """``jnp.linalg.eigh`` of a symmetric PSD matrix, keeping eigenvalues above ``rtol · λ_max``.

    An all-zero matrix keeps nothing.
    """
    eigenvalues, eigenvectors = jnp.linalg.eigh(M)
    eigenvalues = jnp.clip(eigenvalues, 0.0)
    kept = (eigenvalues > rtol * eigenvalues[-1]) & (eigenvalues > 0)
    return PsdEigen(eigenvalues, eigenvectors, kept)


def kept_inverse_power(eigen: PsdEigen, power: float) -> jax.Array:
    """``V diag(λ^-power) Vᵀ`` restricted to the kept eigenvalues (a pseudo-inverse power)."""
    safe = jnp.where(eigen.kept, eigen.eigenvalues, 1.0)
    scale = jnp.where(eigen.kept, safe**-power, 0.0)
    return (eigen.eigenvectors * scale[None, :]) @ eigen.eigenvectors.T


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
    rtol = default_rtol(num_tasks, G.dtype, factor=10.0) if rtol is None else rtol
    norms = metrics.task_gradient_norms(G)
    has_direction = norms > 0
    inverse_norms = jnp.where(has_direction, 1.0 / jnp.where(has_direction, norms, 1.0), 0.0)
    cosines = G * inverse_norms[:, None] * inverse_norms[None, :]
    eigen = psd_eigen(cosines, rtol)
    unit_coefficients = kept_inverse_power(eigen, 1.0) @ has_direction.astype(G.dtype)
    raw = unit_coefficients * inverse_norms
    total, absolute = jnp.sum(raw), jnp.sum(jnp.abs(raw))
    normaliser = jnp.where(total > rtol * absolute, total, absolute)
    return raw / jnp.where(normaliser > 0, normaliser, 1.0)
