"""Multi-task optimization (MTO) metrics: pure functions of the task Gramian and losses.

Every gradient metric here is a function of the K×K Gramian ``G = J Jᵀ`` of the per-task
gradients ``g_k`` (rows of the Jacobian ``J``), so a metric never needs the gradients twice and
a weighted variant (``ĝ_k = w_k g_k``) is the same metric of ``diag(w) G diag(w)``
(:func:`weighted_gramian`). Inputs are promoted to at least float32 (bf16 gradients are
accumulated in float32) and zero norms are guarded with ``eps``.

This module imports nothing else from autoscale_jax.

Example:
  >>> import jax.numpy as jnp
  >>> from autoscale_jax import metrics
  >>> task_grads = {"w": jnp.array([[3.0, 0.0], [0.0, 1.0]])}   # K = 2 tasks, leading axis
  >>> G = metrics.gramian(task_grads)
  >>> float(metrics.condition_number(G))                       # orthogonal: ratio of norms
  3.0
  >>> round(float(metrics.gradient_magnitude_similarity(G)), 3)   # 2·3·1 / (9 + 1)
  0.6
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

EPS = 1e-12

# On GPU (TF32) and TPU (bf16 passes) a float32 matmul at default precision keeps ~10 bits; the
# Gramian's inner products over millions of parameters would lose digits, so ask for full
# float32 (a no-op on CPU, where float32 matmuls are exact float32 anyway).
FULL_PRECISION = jax.lax.Precision.HIGHEST

# A metric mask: None (every leaf), a pytree of bools matching the params, a predicate on
# (key path, leaf), or "shared" (leaves where at least two tasks have a nonzero gradient).
MetricMask = Any


def at_least_float32(x: jax.Array) -> jax.Array:
    """Promotes to at least float32: bf16/fp16 inputs are accumulated in float32."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _leaf_is_shared(leaf: jax.Array) -> jax.Array:
    """True when two or more tasks have a nonzero gradient in this leaf (traceable)."""
    nonzero_per_task = jnp.any(leaf.reshape(leaf.shape[0], -1) != 0, axis=1)
    return jnp.sum(nonzero_per_task) >= 2


MASK_NAMES = ("shared",)


def check_metric_mask(mask: MetricMask) -> MetricMask:
    """Validates a metric mask where it is given (at construction); returns it unchanged.

    Raises:
      ValueError: for an unknown mask name (a typo such as ``"shard"``), an empty pytree, a
        pytree with a non-boolean leaf, or a pytree of bools that are all False (the
        metrics would see no parameter at all).
    """
    if mask is None or callable(mask):
        return mask
    if isinstance(mask, str):
        if mask not in MASK_NAMES:
            raise ValueError(
                f"Unknown metric_mask {mask!r}; use None, 'shared', a pytree of bools or a "
                "predicate (key_path, leaf) -> bool."
            )
        return mask
    leaves = jax.tree.leaves(mask)
    if not leaves:
        raise ValueError("metric_mask is an empty pytree: it must have one bool per leaf.")
    for leaf in leaves:
        if not isinstance(leaf, bool | np.bool_) and getattr(leaf, "dtype", None) != np.bool_:
            raise ValueError(
                f"metric_mask leaves must be bools, got {type(leaf).__name__} {leaf!r}."
            )
    if not any(bool(np.any(np.asarray(leaf))) for leaf in leaves):
        raise ValueError("metric_mask is False on every leaf: the metrics would see nothing.")
    return mask


def _static_false(keep: Any) -> bool:
    return isinstance(keep, bool | np.bool_) and not keep


def resolve_mask(task_grads: Any, mask: MetricMask) -> Any:
    """Turns any accepted mask form into a pytree of (possibly traced) booleans per leaf.

    Args:
      task_grads: params-shaped pytree whose leaves carry a leading task axis.
      mask: ``None`` (all leaves count), ``"shared"`` (a leaf counts when at least two tasks
        have a nonzero gradient in it: task heads drop out automatically, evaluated on the
        gradients themselves so it works under ``jit``), a pytree of bools with the structure
        of the params, or a callable ``predicate(key_path, leaf) -> bool``.

    Returns:
      A pytree with the structure of ``task_grads`` whose leaves are bools.
    """
    if mask is None:
        return jax.tree.map(lambda _: True, task_grads)
    if isinstance(mask, str):
        if mask != "shared":
            raise ValueError(f"Unknown mask {mask!r}; use None, 'shared', a pytree or a callable.")
        return jax.tree.map(_leaf_is_shared, task_grads)
    if callable(mask):
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: bool(mask(path, leaf)), task_grads
        )
    try:
        return jax.tree.map(lambda _, m: m, task_grads, mask)
    except ValueError as err:
        raise ValueError(
            f"The metric mask must have the structure of the parameters (one bool per leaf): {err}"
        ) from err


def gramian(task_grads: Any, mask: MetricMask = None) -> jax.Array:
    """Gramian ``G_ij = <g_i, g_j>`` of stacked per-task gradients, leaf by leaf.

    The Jacobian is never concatenated: ``G = Σ_leaves J_leaf J_leafᵀ``. Every block is a
    float32 (or wider) matmul at ``precision=HIGHEST``: TF32 or bf16 passes on accelerators
    would lose digits the condition number and cosines need.

    Args:
      task_grads: pytree whose leaves have a leading task axis of size K (the output of
        :func:`autoscale_jax.task_value_and_grad`), or a [K, P] array.
      mask: which leaves count, see :func:`resolve_mask`.

    Returns:
      A float32 (or wider) [K, K] symmetric positive semi-definite matrix.
    """
    leaves = jax.tree.leaves(task_grads)
    if not leaves:
        raise ValueError("gramian needs at least one gradient leaf.")
    num_tasks = leaves[0].shape[0] if leaves[0].ndim else 0
    chex.assert_tree_shape_prefix(task_grads, (num_tasks,))
    masks = jax.tree.leaves(resolve_mask(task_grads, mask))
    if all(_static_false(keep) for keep in masks):
        raise ValueError(
            "The metric mask selects no parameter leaf: the Gramian would be zero and every "
            "metric meaningless. Check metric_mask (a predicate that never matches?)."
        )
    total = jnp.zeros((num_tasks, num_tasks), jnp.promote_types(leaves[0].dtype, jnp.float32))
    for leaf, keep in zip(leaves, masks, strict=True):
        if _static_false(keep):
            continue
        rows = at_least_float32(leaf).reshape(num_tasks, -1)
        block = jnp.matmul(rows, rows.T, precision=FULL_PRECISION)
        total = total + (block if keep is True else jnp.where(keep, block, 0.0))
    return total


def weighted_gramian(G: jax.Array, weights: jax.Array) -> jax.Array:
    """Gramian of the weighted gradients ``ĝ_k = w_k g_k``: ``diag(w) G diag(w)``."""
    w = at_least_float32(weights)
    return at_least_float32(G) * w[:, None] * w[None, :]


def task_gradient_norms(G: jax.Array) -> jax.Array:
    """Per-task gradient norms ``n_k = sqrt(G_kk)`` (negative round-off clipped to 0)."""
    return jnp.sqrt(jnp.clip(jnp.diagonal(at_least_float32(G)), 0.0))


def cosine_similarity(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Pairwise cosine similarity ``G_ij / (n_i n_j)``; 0 where a norm is (near) zero."""
    G = at_least_float32(G)
    norms = task_gradient_norms(G)
    outer = norms[:, None] * norms[None, :]
    return jnp.where(outer > eps, G / jnp.maximum(outer, eps), 0.0)


def _off_diagonal_mean(matrix: jax.Array) -> jax.Array:
    """Mean over unordered pairs i < j (NaN for K = 1, where no pair exists)."""
    k = matrix.shape[0]
    rows, cols = jnp.triu_indices(k, 1)
    pairs = matrix[rows, cols]
    return jnp.mean(pairs) if k > 1 else jnp.array(jnp.nan, matrix.dtype)


def mean_cosine_similarity(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Mean pairwise cosine similarity over the K(K-1)/2 task pairs."""
    return _off_diagonal_mean(cosine_similarity(G, eps))


def conflict_ratio(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Share of task pairs whose gradients conflict (cosine < 0)."""
    return _off_diagonal_mean((cosine_similarity(G, eps) < 0).astype(at_least_float32(G).dtype))


def pairwise_gradient_magnitude_similarity(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Gradient magnitude similarity ``2 n_i n_j / (n_i² + n_j²)`` for every pair, in [0, 1].

    Reference: Yu et al, Gradient Surgery for Multi-Task Learning, 2020.
    """
    sq = jnp.clip(jnp.diagonal(at_least_float32(G)), 0.0)
    norms = jnp.sqrt(sq)
    denom = sq[:, None] + sq[None, :]
    return jnp.where(
        denom > eps, 2 * norms[:, None] * norms[None, :] / jnp.maximum(denom, eps), 1.0
    )


def gradient_magnitude_similarity(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Mean gradient magnitude similarity over task pairs (1 = all norms equal).

    Reference: Yu et al, Gradient Surgery for Multi-Task Learning, 2020.
    """
    return _off_diagonal_mean(pairwise_gradient_magnitude_similarity(G, eps))


def condition_number(G: jax.Array) -> jax.Array:
    """Condition number of the task Jacobian, ``sqrt(λ_max(G) / λ_min(G)) = σ_max / σ_min``.

    ``inf`` when the Gramian is singular (e.g. a zero task gradient, or K > parameters).

    Reference: Senushkin et al, Independent Component Alignment for Multi-Task Learning, 2023.
    """
    eigenvalues = jnp.linalg.eigvalsh(at_least_float32(G))
    lam_min = jnp.clip(eigenvalues[0], 0.0)
    lam_max = eigenvalues[-1]
    return jnp.where(lam_min > 0, jnp.sqrt(lam_max / jnp.where(lam_min > 0, lam_min, 1.0)), jnp.inf)


def _weighted_losses(losses: jax.Array, weights: jax.Array | None) -> jax.Array:
    losses = at_least_float32(losses)
    return losses if weights is None else losses * at_least_float32(weights)


def loss_scale_ratio(losses: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Largest over smallest weighted loss ``max_k w_k L_k / min_k w_k L_k`` (1 = balanced)."""
    scaled = jnp.abs(_weighted_losses(losses, weights))
    return jnp.max(scaled) / jnp.maximum(jnp.min(scaled), EPS)


def loss_scale_entropy(losses: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """Normalised entropy of the weighted loss shares ``p_k = w_k L_k / Σ w L`` (1 = balanced).

    ``H(p) / log K``; defined as 1 for K = 1.
    """
    scaled = jnp.abs(_weighted_losses(losses, weights))
    k = scaled.shape[0]
    shares = scaled / jnp.maximum(jnp.sum(scaled), EPS)
    entropy = -jnp.sum(jnp.where(shares > 0, shares * jnp.log(jnp.maximum(shares, EPS)), 0.0))
    return entropy / jnp.log(k) if k > 1 else jnp.ones((), scaled.dtype)


def interference(G: jax.Array, eps: float = EPS) -> jax.Array:
    """Mean cosine between each task gradient and their sum, ``mean_k cos(g_k, Σ_j g_j)``.

    ``<g_k, Σ_j g_j> = (G 1)_k`` and ``||Σ_j g_j|| = sqrt(1ᵀ G 1)``. Values near 1 mean the
    tasks pull together; low values predict that uniform weighting is not enough.

    Reference: Gama & Grassi, Uniform loss vs specialized optimization, 2025 (arXiv 2505.10347).
    """
    G = at_least_float32(G)
    norms = task_gradient_norms(G)
    total_norm = jnp.sqrt(jnp.clip(jnp.sum(G), 0.0))
    denom = norms * total_norm
    cosines = jnp.where(denom > eps, jnp.sum(G, axis=1) / jnp.maximum(denom, eps), 0.0)
    return jnp.mean(cosines)


def training_rates(losses: jax.Array, initial_losses: jax.Array) -> jax.Array:
    """Relative inverse training rates ``r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))``.

    Reference: Chen et al, GradNorm: Gradient Normalization for Adaptive Loss Balancing, 2018.
    """
    ratios = at_least_float32(losses) / jnp.maximum(jnp.abs(at_least_float32(initial_losses)), EPS)
    return ratios / jnp.maximum(jnp.mean(ratios), EPS)


def training_rate_imbalance(losses: jax.Array, initial_losses: jax.Array) -> jax.Array:
    """Fastest over slowest training rate, ``max_k r_k / min_k r_k`` (1 = all tasks in step)."""
    rates = training_rates(losses, initial_losses)
    return jnp.max(rates) / jnp.maximum(jnp.min(rates), EPS)


class TaskMetrics(NamedTuple):
    """A snapshot of the MTO metrics at given weights, for logging (all float32 scalars)."""

    gradient_magnitude_similarity: jax.Array
    condition_number: jax.Array
    mean_cosine_similarity: jax.Array
    conflict_ratio: jax.Array
    interference: jax.Array
    loss_scale_ratio: jax.Array
    loss_scale_entropy: jax.Array


def task_metrics(G: jax.Array, losses: jax.Array, weights: jax.Array | None = None) -> TaskMetrics:
    """All scalar metrics of the (weighted) task gradients and losses in one NamedTuple.

    Args:
      G: [K, K] Gramian of the unweighted task gradients.
      losses: [K] task losses.
      weights: optional [K] task weights; metrics then describe ``ĝ_k = w_k g_k`` and
        ``w_k L_k``.

    Returns:
      A :class:`TaskMetrics` of scalars.
    """
    chex.assert_rank(G, 2)
    chex.assert_shape(losses, (G.shape[0],))
    Gw = G if weights is None else weighted_gramian(G, weights)
    return TaskMetrics(
        gradient_magnitude_similarity=gradient_magnitude_similarity(Gw),
        condition_number=condition_number(Gw),
        mean_cosine_similarity=mean_cosine_similarity(Gw),
        conflict_ratio=conflict_ratio(Gw),
        interference=interference(Gw),
        loss_scale_ratio=loss_scale_ratio(losses, weights),
        loss_scale_entropy=loss_scale_entropy(losses, weights),
    )


def empty_task_metrics() -> TaskMetrics:
    """A :class:`TaskMetrics` of NaNs: the value before any metric was measured."""
    nan = jnp.array(jnp.nan, jnp.float32)
    return TaskMetrics(*([nan] * len(TaskMetrics._fields)))
