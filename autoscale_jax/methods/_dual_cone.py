"""What UPGrad and DualProj share: a projection onto the dual cone of the task gradients is a
box QP on the trace-normalised, ridged Gramian (Quinton & Rey 2024, Prop. 1), and the two
factories differ only in which combinations they project.

Reference:
  Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024 (arXiv 2406.16232).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _solvers as solvers


def normalized_gramian(G: jax.Array, norm_eps: float, reg_eps: float) -> jax.Array:
    """``Ĝ = G / tr(G) + reg_eps·I`` (at least float32), as in TorchJD; a Gramian whose trace
    is below ``norm_eps`` counts as zero (then ``Ĝ = reg_eps·I``)."""
    G = metrics.at_least_float32(G)
    trace = jnp.trace(G)
    usable = trace >= jnp.maximum(norm_eps, jnp.finfo(G.dtype).tiny)
    normalized = jnp.where(usable, G / jnp.where(usable, trace, 1.0), 0.0)
    return normalized + reg_eps * jnp.eye(G.shape[0], dtype=G.dtype)


class SolveOptions(NamedTuple):
    """The options UPGrad's and DualProj's weights take besides the Gramian."""

    norm_eps: float
    reg_eps: float
    max_iterations: int
    tolerance: float


def dual_cone_method(
    num_tasks: int,
    name: str,
    weights: Callable[..., solvers.SolverResult],
    options: SolveOptions,
    *,
    metric_mask: metrics.MetricMask,
    heads: str,
) -> base.MultiTaskTransformation:
    """The Gramian method whose weights are ``weights(G, **options)`` (UPGrad's or DualProj's),
    after checking ``norm_eps`` and ``reg_eps``."""
    solvers.check_hyperparameter("norm_eps", options.norm_eps, 0.0, strict=False)
    solvers.check_hyperparameter("reg_eps", options.reg_eps, 0.0, strict=False)

    solve = functools.partial(weights, **options._asdict())
    return _bases.solver_method(num_tasks, name, solve, metric_mask=metric_mask, heads=heads)
