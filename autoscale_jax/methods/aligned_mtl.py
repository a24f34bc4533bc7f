"""Aligned-MTL: align the task gradients into an orthogonal, equal-norm (condition number 1) set.

Reference:
  Senushkin et al, Independent Component Alignment for Multi-Task Learning, 2023.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods._registry import MethodInfo

SCALES = ("min", "median", "rmse")


class Alignment(NamedTuple):
    """Aligned-MTL's alignment of the task gradients (see :func:`alignment`).

    Attributes:
      matrix: [K, K] symmetric ``B``: the aligned gradients are ``ĝ_i = Σ_j B_ij g_j``.
      rank: number of eigenvalues kept.
      scale: the common singular value ``σ`` of the aligned gradients.
    """

    matrix: jax.Array
    rank: jax.Array
    scale: jax.Array


def _kept_scale(eigen: projections.PsdEigen, scale: str) -> jax.Array:
    """The common singular value from the kept eigenvalues (ascending, kept ones at the end)."""
    values = eigen.eigenvalues
    rank = jnp.sum(eigen.kept)
    num_tasks = values.shape[0]
    if scale == "min":
        chosen = jnp.min(jnp.where(eigen.kept, values, jnp.inf))
    elif scale == "median":
        # Lower median of the kept eigenvalues: kept ones occupy the last `rank` slots.
        chosen = values[jnp.clip(num_tasks - rank + (rank - 1) // 2, 0, num_tasks - 1)]
    else:  # "rmse": root of the mean kept eigenvalue
        chosen = jnp.sum(jnp.where(eigen.kept, values, 0.0)) / jnp.maximum(rank, 1)
    return jnp.where(rank > 0, jnp.sqrt(chosen), 0.0)


def alignment(G: jax.Array, scale: str = "min", rtol: float | None = None) -> Alignment:
    """The alignment matrix ``B = σ V Λ^{-1/2} Vᵀ`` on the non-degenerate eigen-subspace.

    With ``G = J Jᵀ = V Λ Vᵀ`` (``jnp.linalg.eigh``) and ``J = V Λ^{1/2} Wᵀ`` the thin SVD of
    the Jacobian, the aligned Jacobian ``B J = σ V Wᵀ`` has orthogonal rows with equal
    singular values ``σ``: its Gramian ``B G Bᵀ = σ² V Vᵀ`` has condition number 1 on the kept
    subspace (it is the orthogonal-Procrustes fit of ``J``, rescaled).

    Eigenvalues with ``λ <= rtol · λ_max`` are numerically zero (dependent gradients, a zero
    task gradient, K > parameters); they are dropped: ``V`` and ``Λ`` are restricted to the kept
    eigenpairs, and ``σ`` is taken over the kept ones only. A zero task gradient is then
    orthogonal to the kept subspace and gets no aligned component; an all-zero Gramian keeps
    nothing and gives ``B = 0``.

    Precision: ``eigh`` returns eigenvalues with an absolute error of about ``K · eps · λ_max``,
    so an eigenvalue ``λ`` carries a relative error of about ``K · eps · λ_max / λ`` and ``B``
    along its direction half of that. In float32 and with task-gradient norms that differ by
    ~10³ (``λ_min / λ_max ~ 1e-6``) the weights are only accurate to ~10%; compute the
    gradients in float64 (``jax_enable_x64``) when such ill-conditioning matters.

    Args:
      G: [K, K] Gramian.
      scale: ``σ`` from the kept eigenvalues: ``"min"`` (``sqrt(λ_min)``, the paper's
        choice: no direction is amplified), ``"median"`` (square root of the lower median)
        or ``"rmse"`` (square root of their mean).
      rtol: relative eigenvalue cut-off; ``None`` uses ``K · eps`` of the Gramian's dtype
        (:func:`projections.default_rtol`, the usual matrix-rank tolerance).

    Returns:
      An :class:`Alignment`.
    """
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose one of {SCALES}.")
    G = metrics.at_least_float32(G)
    rtol = projections.default_rtol(G.shape[0], G.dtype) if rtol is None else rtol
    eigen = projections.psd_eigen(G, rtol)
    sigma = _kept_scale(eigen, scale)
    matrix = sigma * projections.kept_inverse_power(eigen, 0.5)
    return Alignment(matrix, jnp.sum(eigen.kept).astype(jnp.int32), sigma)


def aligned_mtl(
    num_tasks: int,
    *,
    scale: str = "min",
    preferences: Sequence[float] | jax.Array | None = None,
    rtol: float | None = None,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """Aligned-MTL: combine the aligned task gradients with the task preferences.

    The task gradients are replaced by the closest set of orthogonal gradients with one common
    norm ``σ`` (an orthogonal-Procrustes problem, solved from the eigendecomposition of the
    Gramian ``G = V Λ Vᵀ``, never by a removed routine):

    .. math:: B = σ\\, V Λ^{-1/2} V^T, \\quad ĝ_i = \\sum_j B_{ij} g_j, \\quad
       \\text{update} = \\sum_i w_i ĝ_i = \\sum_k α_k g_k, \\ α = B w

    with ``σ = sqrt(λ_min)`` by default, so the aligned system has condition number 1 and no
    direction is amplified, and task preferences ``w`` (default: ones). Numerically zero
    eigenvalues (``λ <= rtol · λ_max``) are dropped, see :func:`alignment`: a zero task
    gradient gets weight 0 and all-zero gradients give a zero update (the state then keeps its
    previous weights and sets ``gramian_zero``: an all-zero Gramian is not solved). The weights are
    invariant to a common positive rescaling of all task gradients. The eigendecomposition is
    done in the Gramian's dtype (float32 for float32 gradients): see :func:`alignment` for its
    precision on ill-conditioned Jacobians. Non-finite gradients pass through to the update;
    the state then keeps the previous weights.

    Args:
      num_tasks: K >= 2, static.
      scale: ``"min"`` (paper), ``"median"`` or ``"rmse"``: which kept eigenvalue sets ``σ``.
      preferences: [K] task preferences ``w`` (default ones).
      rtol: relative eigenvalue cut-off (``None``: ``K · eps`` of the Gramian's dtype, 3.6e-7
        for K = 3 in float32).
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared parameters:
        pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None)`` ignores ``task_losses`` and ``key``. It always needs the per-task
      gradients. The state's ``memory`` holds the number of eigenvalues kept (the rank).

    Example:
      >>> tx = optax.chain(asj.methods.aligned_mtl(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params)
      >>> asj.task_weights(state).shape
      (2,)

    Reference:
      Senushkin et al, Independent Component Alignment for Multi-Task Learning, 2023.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if scale not in SCALES:
        raise ValueError(f"Unknown scale {scale!r}; choose one of {SCALES}.")
    if preferences is None:
        preferences = jnp.ones((num_tasks,), jnp.float32)
    preferences = jnp.asarray(preferences, jnp.float32)
    if preferences.shape != (num_tasks,):
        raise ValueError(f"preferences must have shape ({num_tasks},), got {preferences.shape}.")

    def rule(G: jax.Array, losses: Any, key: Any, rank: jax.Array) -> _bases.Proposal:
        del losses, key, rank
        aligned = alignment(G, scale, rtol)
        weights = aligned.matrix @ preferences.astype(aligned.matrix.dtype)
        return _bases.Proposal(weights, aligned.rank.astype(jnp.int32))

    return _bases.gramian_method(
        num_tasks,
        "aligned_mtl",
        rule,
        metric_mask=metric_mask,
        heads=heads,
        init_memory=jnp.zeros((), jnp.int32),
    )


INFO = MethodInfo(
    name="aligned_mtl",
    factory=aligned_mtl,
    family="gramian",
    reference=(
        "Senushkin et al, Independent Component Alignment for Multi-Task Learning, 2023 "
        "(arXiv 2305.19000)"
    ),
)
