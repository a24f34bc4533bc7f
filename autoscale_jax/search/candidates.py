"""Candidate weightings for the validation-guided search (see :mod:`autoscale_jax.search`):
the one-parameter family ``w_k ∝ ||g_k||^-α`` that contains the metric guides, and per-task
multipliers around a point (the moves that family cannot make for ``K ≥ 3``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["alpha_family", "alpha_weights", "task_multipliers"]


def _normalise(weights: jax.Array) -> jax.Array:
    """Rescales the last axis to sum to K."""
    return weights * (weights.shape[-1] / jnp.sum(weights, axis=-1, keepdims=True))


def alpha_weights(G: jax.Array, alpha: float | jax.Array, eps: float = 1e-12) -> jax.Array:
    """The guide family ``w_k ∝ ||g_k||^-α`` from a Gramian, normalised to ``Σ w = K``.

    ``α = 0`` gives equal weights and ``α = 1`` the ``"gms"`` guide
    (:func:`autoscale_jax.weighting.gms_weights`). A task whose gradient norm is zero (below
    ``eps`` times the largest) carries no scale: it gets the mean weight of the others, as in
    the guides.

    Args:
      G: [K, K] Gramian of the task gradients.
      alpha: the exponent ``α`` (may be traced).
      eps: relative threshold below which a norm counts as zero.

    Returns:
      [K] positive weights summing to K.

    Example:
      >>> alpha_weights(jnp.diag(jnp.array([4.0, 1.0])), 2.0)    # norms 2 and 1
      Array([0.4, 1.6], dtype=float32)
    """
    G = jnp.asarray(G)
    G = G.astype(jnp.promote_types(G.dtype, jnp.float32))
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(G), 0.0))
    active = norms > eps * jnp.maximum(jnp.max(norms), eps)
    powered = jnp.where(active, jnp.where(active, norms, 1.0) ** -alpha, 0.0)
    count = jnp.sum(active)
    neutral = jnp.where(count > 0, jnp.sum(powered) / jnp.maximum(count, 1), 1.0)
    return _normalise(jnp.where(active, powered, neutral))


def alpha_family(gms_weights: Any, alphas: Sequence[float]) -> jax.Array:
    """Candidates ``w(α) ∝ w_gms^α`` for each ``α``: the guide family from the GMS weights.

    With ``w_gms ∝ 1/||g_k||`` (AutoScale's ``"gms"`` phase-1 weights, or
    :func:`autoscale_jax.weighting.gms_weights`) this is :func:`alpha_weights` without the
    Gramian: for two tasks the weight ratio becomes ``r_gms^α``.

    Args:
      gms_weights: [K] positive weights at ``α = 1``.
      alphas: the exponents, e.g. ``(1.0, 1.5, 2.0, 2.5)``.

    Returns:
      [A, K] weights, each row summing to K.

    Example:
      >>> np.round(np.asarray(alpha_family(jnp.array([0.5, 1.5]), (0.0, 1.0, 2.0))), 4)
      array([[1. , 1. ],
             [0.5, 1.5],
             [0.2, 1.8]], dtype=float32)
    """
    weights = jnp.asarray(gms_weights, jnp.float32)
    exponents = jnp.asarray(alphas, jnp.float32)[:, None]
    return _normalise(jnp.exp(exponents * jnp.log(weights / jnp.max(weights))[None, :]))


def task_multipliers(weights: Any, factors: Sequence[float]) -> jax.Array:
    """Per-task moves around ``weights``: the centre, then ``w_k ← f w_k`` for each task and
    factor, each row normalised to ``Σ w = K``.

    These move one task against the others, which the one-parameter family cannot do for
    ``K ≥ 3``. For ``K = 2`` a factor ``f`` on task 0 equals ``1/f`` on task 1, so give one
    side of each pair (e.g. ``(4.0,)``: ratios ``r/4`` and ``4 r``).

    Args:
      weights: [K] centre weights.
      factors: multipliers ``f`` (each ≠ 1).

    Returns:
      ``[1 + K · F, K]`` weights: row 0 the centre, then task 0's factors, task 1's, ...

    Example:
      >>> task_multipliers(jnp.ones(3), (4.0,)).shape
      (4, 3)
    """
    centre = jnp.asarray(weights, jnp.float32)
    if centre.ndim != 1:
        raise ValueError(f"weights must be a vector [K], got shape {centre.shape}")
    rows = [centre] + [centre.at[k].multiply(f) for k in range(centre.shape[0]) for f in factors]
    return _normalise(jnp.stack(rows))
