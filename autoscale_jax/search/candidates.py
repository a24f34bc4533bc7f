"""Candidate weightings for the validation-guided search (see :mod:`autoscale_jax.search`):
the one-parameter family ``w_k ∝ ||g_k||^-α`` that contains the metric guides, and per-task
multipliers around a point (the moves that family cannot make for ``K ≥ 3``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax.search._checks import is_traced, nan_unless

__all__ = ["alpha_family", "alpha_weights", "task_multipliers"]


def _normalise(weights: jax.Array) -> jax.Array:
    """Rescales the last axis to sum to K."""
    return weights * (weights.shape[-1] / jnp.sum(weights, axis=-1, keepdims=True))


def _vector(values: Any, name: str, what: str, *, floor: float = 0.0) -> jax.Array:
    """A float32 vector [n >= 1]; concrete values must be finite and > ``floor``."""
    array = jnp.asarray(values, jnp.float32)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty vector of {what}, got shape {array.shape}.")
    if not is_traced(array):
        host = np.asarray(array)
        if not np.all(np.isfinite(host) & (host > floor)):
            raise ValueError(f"{name} must hold finite {what}, got {host.tolist()}.")
    return array


def _at_least_two_tasks(weights: jax.Array, name: str) -> None:
    if weights.shape[0] < 2:
        raise ValueError(
            f"{name} has {weights.shape[0]} task: with one task every candidate normalises to "
            "the same weight [1.0]; give the weights of K >= 2 tasks."
        )


def _distinct(values: np.ndarray, name: str) -> None:
    if len(np.unique(values)) < len(values):
        raise ValueError(
            f"{name} repeat a value, {values.tolist()}: each gives one candidate, so a repeat "
            "trains the same weights twice; drop the repeats."
        )


def alpha_weights(G: jax.Array, alpha: float | jax.Array, eps: float = 1e-12) -> jax.Array:
    """The guide family ``w_k ∝ ||g_k||^-α`` from a Gramian, normalised to ``Σ w = K``.

    ``α = 0`` gives equal weights and ``α = 1`` the ``"gms"`` guide
    (:func:`autoscale_jax.weighting.gms_weights`). A task whose gradient norm is zero (below
    ``eps`` times the largest) carries no scale: it gets the mean weight of the others, as in
    the guides.

    Args:
      G: [K, K] Gramian of the task gradients: finite, with a non-negative diagonal (checked
        when concrete; traced, a non-finite ``G`` gives NaN weights).
      alpha: the exponent ``α``, a scalar (may be traced; finite when concrete).
      eps: relative threshold below which a norm counts as zero, in [0, 1).

    Returns:
      [K] positive weights summing to K (all equal when every norm is zero).

    Raises:
      ValueError: for a ``G`` that is not a square [K, K] matrix or not finite, a negative
        diagonal, a non-scalar or non-finite ``alpha``, or ``eps`` outside [0, 1).

    Example:
      >>> alpha_weights(jnp.diag(jnp.array([4.0, 1.0])), 2.0)    # norms 2 and 1
      Array([0.4, 1.6], dtype=float32)
    """
    G = jnp.asarray(G)
    G = G.astype(jnp.promote_types(G.dtype, jnp.float32))
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] == 0:
        raise ValueError(f"G must be a square Gramian [K, K] of the task gradients, got {G.shape}.")
    if not is_traced(G):
        host = np.asarray(G)
        if not np.all(np.isfinite(host)) or np.any(np.diagonal(host) < 0):
            raise ValueError(
                "G must be a finite Gramian with a non-negative diagonal (squared gradient "
                f"norms), got {host.tolist()}: check the gradients that built it."
            )
    if jnp.ndim(alpha) != 0:
        raise ValueError(
            f"alpha must be a scalar, got shape {jnp.shape(alpha)}; for several exponents use "
            "alpha_family or jax.vmap over alpha."
        )
    if not is_traced(alpha) and not np.isfinite(float(alpha)):
        raise ValueError(f"alpha must be finite, got {alpha}.")
    if is_traced(eps) or not 0 <= float(eps) < 1:
        raise ValueError(f"eps must be a concrete number in [0, 1), got {eps!r}.")
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(G), 0.0))
    active = norms > eps * jnp.maximum(jnp.max(norms), eps)
    powered = jnp.where(active, jnp.where(active, norms, 1.0) ** -alpha, 0.0)
    count = jnp.sum(active)
    neutral = jnp.where(count > 0, jnp.sum(powered) / jnp.maximum(count, 1), 1.0)
    return nan_unless(jnp.all(jnp.isfinite(G)), _normalise(jnp.where(active, powered, neutral)))


def alpha_family(gms_weights: Any, alphas: Sequence[float]) -> jax.Array:
    """Candidates ``w(α) ∝ w_gms^α`` for each ``α``: the guide family from the GMS weights.

    With ``w_gms ∝ 1/||g_k||`` (AutoScale's ``"gms"`` phase-1 weights, or
    :func:`autoscale_jax.weighting.gms_weights`) this is :func:`alpha_weights` without the
    Gramian: for two tasks the weight ratio becomes ``r_gms^α``.

    Args:
      gms_weights: [K] weights at ``α = 1``, K >= 2: finite and > 0 (checked when concrete;
        traced, a bad vector gives NaN rows).
      alphas: the exponents, a non-empty sequence of distinct finite numbers, e.g.
        ``(1.0, 1.5, 2.0, 2.5)``.

    Returns:
      [A, K] weights, each row summing to K.

    Raises:
      ValueError: for any argument outside the above, or exponents so large that a row
        overflows float32.

    Example:
      >>> np.round(np.asarray(alpha_family(jnp.array([0.5, 1.5]), (0.0, 1.0, 2.0))), 4)
      array([[1. , 1. ],
             [0.5, 1.5],
             [0.2, 1.8]], dtype=float32)
    """
    weights = _vector(gms_weights, "gms_weights", "positive weights")
    _at_least_two_tasks(weights, "gms_weights")
    exponents = _vector(alphas, "alphas", "exponents", floor=-np.inf)
    if not is_traced(exponents):
        _distinct(np.asarray(exponents), "alphas")
    family = jnp.exp(exponents[:, None] * jnp.log(weights / jnp.max(weights))[None, :])
    family = nan_unless(jnp.all(weights > 0), _normalise(family))
    if not is_traced(family) and not np.all(np.isfinite(np.asarray(family))):
        raise ValueError(
            f"alphas {np.asarray(exponents).tolist()} overflow float32 for the weight ratios of "
            f"{np.asarray(weights).tolist()}: use exponents of smaller magnitude."
        )
    return family


def task_multipliers(weights: Any, factors: Sequence[float]) -> jax.Array:
    """Per-task moves around ``weights``: the centre, then ``w_k ← f w_k`` for each task and
    factor, each row normalised to ``Σ w = K``.

    These move one task against the others, which the one-parameter family cannot do for
    ``K ≥ 3``. For ``K = 2`` a factor ``f`` on task 0 equals ``1/f`` on task 1, so give one
    side of each pair (e.g. ``(4.0,)``: ratios ``r/4`` and ``4 r``).

    Args:
      weights: [K] centre weights, K >= 2: finite and > 0 (a zero weight would make that
        task's moves repeat the centre; checked when concrete, traced they give NaN rows).
      factors: a non-empty sequence of distinct finite multipliers ``f > 0``, each ≠ 1; for
        K = 2 not both ``f`` and ``1/f`` (they give the same rows).

    Returns:
      ``[1 + K · F, K]`` weights: row 0 the centre, then task 0's factors, task 1's, ...

    Raises:
      ValueError: for any argument outside the above.

    Example:
      >>> task_multipliers(jnp.ones(3), (4.0,)).shape
      (4, 3)
    """
    centre = _vector(weights, "weights", "positive weights")
    _at_least_two_tasks(centre, "weights")
    scale = _vector(factors, "factors", "positive multipliers")
    if not is_traced(scale):
        host = np.asarray(scale)
        if np.any(host == 1):
            raise ValueError(
                f"factors must differ from 1 (1 repeats the centre), got {host.tolist()}."
            )
        _distinct(host, "factors")
        if centre.shape[0] == 2 and np.any(np.isclose(host[:, None] * host[None, :], 1.0)):
            raise ValueError(
                f"factors {host.tolist()} hold a pair f, 1/f: for K = 2 a factor f on task 0 "
                "equals 1/f on task 1, so the pair gives the same rows; keep one side."
            )
    rows = [centre] + [centre.at[k].multiply(f) for k in range(centre.shape[0]) for f in scale]
    valid = jnp.all(centre > 0) & jnp.all(scale > 0)
    return nan_unless(valid, _normalise(jnp.stack(rows)))
