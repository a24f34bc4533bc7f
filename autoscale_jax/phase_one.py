"""AutoScale's phase 1 as a pure state machine over the window statistics.

Each phase-1 step trains with some weights while the estimator
(:mod:`autoscale_jax.estimator`) collects the step's sample: the guide's weights of the
previous window by default (with the warm start, step 0 already uses its own sample's), or an
*explorer*'s weights of the step's own sample (e.g. IMTL-G, as in the AutoScale paper). At a
window's end the guide maps the window means to that window's weights, which join the running
aggregate (or the linear predictor); the last step turns the aggregate into ``w*``.

Example:
  >>> from autoscale_jax import estimator, metrics, weighting
  >>> phase = PhaseOne(lambda G, L: weighting.gms_weights(G), "gramian", 2, 2, True,
  ...                  estimator.aggregation("last", 1))
  >>> stats, snapshot = estimator.init_window_statistics(2), metrics.empty_task_metrics()
  >>> G = jnp.diag(jnp.array([4.0, 1.0]))
  >>> used, w, stats, snapshot = phase_one_step(
  ...     phase, jnp.int32(0), jnp.ones(2), stats, snapshot, G, jnp.ones(2))
  >>> used      # the warm start: gms weights of step 0's own Gramian (norms 2 and 1)
  Array([0.6666667, 1.3333334], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import metrics
from autoscale_jax.estimator import (
    Aggregation,
    WindowStatistics,
    accumulate,
    aggregated_weights,
    close_window,
    sample_status,
    window_means,
)
from autoscale_jax.weighting import window_ends


class PhaseOne(NamedTuple):
    """AutoScale's phase 1, static: the guide ``rule(Ḡ, L̄) -> w``
    (:func:`autoscale_jax.weighting.guide_rule`), what it reads (``uses``), ``T1``, ``τ``, the
    warm start, the :class:`Aggregation` of the window weights and the ``explorer``: ``None``
    trains with the guide's weights; a rule ``(G, L) -> w`` trains each usable step with its
    weights of that step's own sample instead (the guide still measures)."""

    rule: Callable[[jax.Array, jax.Array], jax.Array]
    uses: str
    estimation_steps: int
    window: int
    warm_start: bool
    aggregation: Aggregation
    explorer: Callable[[jax.Array, jax.Array], jax.Array] | None = None


def check_losses(phase: PhaseOne, step: Any, losses: jax.Array, loss_mask: Any) -> None:
    """The loss guide's weights ``1/L̄`` need non-negative losses: raises where concrete."""
    if phase.uses != "losses" or isinstance(losses, jax.core.Tracer):
        return
    if isinstance(step, jax.core.Tracer) or int(step) >= phase.estimation_steps:
        return
    seen = np.ones(losses.shape[0], bool) if loss_mask is None else np.asarray(loss_mask)
    values = np.asarray(losses)
    if np.any((values < 0) & seen):
        raise ValueError(
            f"guide='loss' sets w_k ∝ 1/L̄_k and needs non-negative task_losses, got "
            f"{values.tolist()}: shift the losses by a lower bound (L_k - min L_k) or use "
            "guide='gms'."
        )


def phase_one_step(
    phase: PhaseOne,
    step: jax.Array,
    weights: jax.Array,
    stats: WindowStatistics,
    snapshot: metrics.TaskMetrics,
    G: jax.Array,
    losses: jax.Array,
    task_mask: jax.Array | None = None,
    loss_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, WindowStatistics, metrics.TaskMetrics]:
    """One phase-1 step: ``(weights it trains with, next weights, stats, snapshot)``.

    For ``step < T1``. With ``warm_start`` step 0 trains with the guide's weights of its own
    usable sample. The sample joins the window (``task_mask``, ``loss_mask``: see
    :func:`accumulate`); at a window's end the guide maps the window means to the next
    weights, which join the aggregate; the last step sets the aggregate (NaN when no window
    had a usable sample: no estimate, no silent fallback). ``snapshot``: the metrics of the
    latest usable sample at its weights. ``G`` and ``losses`` are float32.
    """
    usable = sample_status(G, losses, task_mask, loss_mask, phase.uses).usable
    observed_G, observed_losses = _observed(G, losses, task_mask, loss_mask)
    if phase.warm_start:
        weights = jax.lax.cond(
            (step == 0) & usable,
            lambda: phase.rule(observed_G, observed_losses),
            lambda: weights,
        )
    stats = accumulate(stats, G, losses, task_mask, loss_mask, uses=phase.uses)
    last_step = step == phase.estimation_steps - 1
    ends = window_ends(step, phase.window, last_step)

    def close(stats: WindowStatistics) -> tuple:
        mean_G, mean_losses = window_means(stats)
        chosen = jax.lax.cond(
            stats.count > 0, lambda: phase.rule(mean_G, mean_losses), lambda: weights
        )
        return chosen, close_window(stats, chosen, phase.aggregation)

    next_weights, stats = jax.lax.cond(ends, close, lambda s: (weights, s), stats)
    next_weights = jax.lax.cond(
        last_step,
        lambda: jnp.where(
            stats.estimates == 0, jnp.nan, aggregated_weights(stats, phase.aggregation)
        ),
        lambda: next_weights,
    )
    explore = phase.explorer
    if explore is not None:
        weights = jax.lax.cond(
            usable, lambda: explore(observed_G, observed_losses), lambda: weights
        )
    snapshot = jax.lax.cond(
        usable,
        lambda: metrics.task_metrics(observed_G, observed_losses, weights),
        lambda: snapshot,
    )
    return weights, next_weights, stats, snapshot


def _observed(G: jax.Array, losses: jax.Array, task_mask: Any, loss_mask: Any) -> tuple:
    """The Gramian and losses with unobserved entries set to 0 (so they stay finite)."""
    if task_mask is not None:
        G = jnp.where(task_mask[:, None] & task_mask[None, :], G, 0.0)
    loss_mask = task_mask if loss_mask is None else loss_mask
    if loss_mask is not None:
        losses = jnp.where(loss_mask, losses, 0.0)
    return G, losses
