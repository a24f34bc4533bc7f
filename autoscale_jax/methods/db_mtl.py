"""DB-MTL: dual balancing of loss scales (log losses) and gradient magnitudes (max norm).

Reference:
  Lin et al, Dual-Balancing for Multi-Task Learning, 2023.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._loss_weighting import LOG_LOSS_EPS, log_loss_weights
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive


class DBMTLState(NamedTuple):
    """State of :func:`db_mtl`.

    Attributes:
      task_weights: [K] ``α_k / (L_k + ε)`` of the latest step: the factor each task's
        (averaged) gradient of ``L_k`` gets on the balanced leaves.
      gradient_scales: [K] ``α_k = max_j ||ĝ_j|| / ||ĝ_k||`` of the latest step.
      gradient_averages: params-shaped pytree with a leading task axis K (float32 or wider):
        ``ĝ_k``, the moving average of ``∇ log(L_k + ε)``.
      step: int32 steps taken.
    """

    task_weights: jax.Array
    gradient_scales: jax.Array
    gradient_averages: Any
    step: jax.Array


def max_norm_scales(average_norms: jax.Array) -> jax.Array:
    """``α_k = max_j n_j / n_k``; a task with ``n_k = 0`` gets 1 (its term is zero anyway)."""
    active = average_norms > 0
    safe_norms = jnp.where(active, average_norms, 1.0)
    return jnp.where(active, jnp.max(average_norms) / safe_norms, 1.0)


def db_mtl(
    num_tasks: int,
    *,
    beta: float = 0.9,
    beta_sigma: float = 0.0,
    metric_mask: metrics.MetricMask = "shared",
    eps: float = LOG_LOSS_EPS,
) -> base.MultiTaskTransformation:
    """DB-MTL: log-loss gradients, averaged over steps and rescaled to the largest norm.

    Loss-scale balancing trains on ``log(L_k + ε)``, whose gradient is ``∇L_k / (L_k + ε)``
    (invariant to rescaling a loss). Gradient-magnitude balancing keeps a moving average of
    those gradients on the balanced (shared) parameters,

    .. math:: ĝ_k(t) = β_t ĝ_k(t-1) + (1 - β_t) ∇ \\log(L_k(t) + ε),
              \\quad β_t = β / t^{σ}, \\quad ĝ_k(0) = 0,

    and updates the balanced parameters along ``Σ_k α_k ĝ_k(t)`` with
    ``α_k = max_j ||ĝ_j|| / ||ĝ_k||``: every task's averaged gradient is rescaled to the
    largest norm. Leaves outside ``metric_mask`` (task heads) get the plain
    ``Σ_k ∇ log(L_k + ε)``, as in the paper's task-specific update.

    Because the balanced update uses the averaged gradients ``ĝ`` (a momentum over steps), it
    is not a weighted sum of this step's gradients; ``state.task_weights`` reports
    ``α_k / (L_k + ε)``, the factor on task ``k``'s averaged gradient in units of ``∇L_k``.
    The state holds ``ĝ`` for every leaf: memory of K copies of the parameters. DB-MTL needs
    task gradients every step: it has no fast path and does not accept ``presummed=True``.

    A task whose averaged gradient is zero gets ``α_k = 1`` (its term is zero). Losses are
    clamped at 0 before ``+ ε``. A step with non-finite losses or gradients leaves ``ĝ``
    unchanged (the non-finite update still propagates; the state stays finite).

    Args:
      num_tasks: K >= 2, static.
      beta: the moving-average factor ``β`` in [0, 1) (0: no averaging).
      beta_sigma: decay ``σ >= 0`` of ``β_t = β / t^σ`` (0: constant ``β``).
      metric_mask: the leaves balanced with ``α`` and averaged: ``"shared"`` (default; leaves
        where two or more tasks have a nonzero gradient), ``None`` (all), a pytree of bools or
        a predicate (see :func:`metrics.resolve_mask`).
      eps: the ``ε`` of ``log(L + ε)``.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` without a fast path;
      ``update(task_grads, state, params=None, *, task_losses)`` (``task_losses`` required).

    Example:
      >>> tx = optax.chain(db_mtl(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Lin et al, Dual-Balancing for Multi-Task Learning, 2023.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if isinstance(beta, int | float) and not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}.")
    if isinstance(beta_sigma, int | float) and beta_sigma < 0:
        raise ValueError(f"beta_sigma must be non-negative, got {beta_sigma!r}.")
    check_positive("eps", eps)

    def init_state(params: Any) -> DBMTLState:
        def zeros(leaf: Any) -> jax.Array:
            leaf = jnp.asarray(leaf)
            return jnp.zeros((num_tasks, *leaf.shape), jnp.promote_types(leaf.dtype, jnp.float32))

        ones = jnp.ones((num_tasks,), jnp.float32)
        return DBMTLState(
            task_weights=ones,
            gradient_scales=ones,
            gradient_averages=jax.tree.map(zeros, params),
            step=jnp.zeros((), jnp.int32),
        )

    def aggregate(
        task_grads: Any, state: DBMTLState, losses: jax.Array, key: Any, extra: dict
    ) -> tuple[Any, DBMTLState]:
        del key, extra
        log_weights = log_loss_weights(losses, eps)
        step = state.step + 1
        decay = beta / step.astype(jnp.float32) ** beta_sigma

        # ĝ ← β_t ĝ + (1 - β_t) ∇log L, leaf by leaf: ∇log L_k = ∇L_k / (L_k + ε).
        def average(avg: jax.Array, g: jax.Array) -> jax.Array:
            factor = log_weights.reshape((-1,) + (1,) * (g.ndim - 1))
            return (decay * avg + (1.0 - decay) * factor * g).astype(avg.dtype)

        averages = jax.tree.map(average, state.gradient_averages, task_grads)
        # One mask for the norms and the combination, judged on this step's gradients.
        balanced_leaves = metrics.resolve_mask(task_grads, metric_mask)
        norms = metrics.task_gradient_norms(metrics.gramian(averages, balanced_leaves))
        finite = _bases.all_finite(log_weights, averages)
        scales = max_norm_scales(norms)
        combined = jax.tree.map(
            lambda keep, balanced, plain: jnp.where(keep, balanced, plain).astype(plain.dtype),
            balanced_leaves,
            base.weighted_sum(averages, scales),
            base.weighted_sum(task_grads, log_weights),
        )
        proposed = DBMTLState(scales * log_weights, scales, averages, step)
        return combined, _bases.keep_if_finite(proposed, state, finite)._replace(step=step)

    return _bases.stacked_gradient_method(
        num_tasks, "db_mtl", init_state, aggregate, losses_required=True
    )


INFO = MethodInfo(
    name="db_mtl",
    factory=db_mtl,
    family="elementwise",
    needs_losses=True,
    reference="Lin et al, Dual-Balancing for Multi-Task Learning, 2023 (arXiv 2308.12029)",
)
