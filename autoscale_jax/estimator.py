"""Windowed statistics of the task Gramian and losses: a pure, jittable NamedTuple state.

Phase 1 of AutoScale splits the first iterations into disjoint windows of ``τ`` steps. Within a
window the estimator sums the Gramian ``G_t`` and the losses ``L_t`` of every finite sample
(non-finite samples are skipped and counted); at the end of the window the guide turns the
window means into weights, which :func:`close_window` folds into a running aggregate before the
sums restart.

The state is O(K²) whatever the phase length: no row per window is kept. Every aggregation is a
running quantity over the closed windows' weights ``w^{(0)} .. w^{(W-1)}``:

- ``"mean"``: ``Σ_e w^{(e)}`` from the first window;
- ``"last_half"``: ``Σ_{e ≥ e₀} w^{(e)}`` with ``e₀ = W - ceil(W/2)``, a sum restarted at the
  window where the second half begins (``W``, the number of windows, is static);
- ``"last"``: the latest ``w^{(e)}``;
- ``"ema"``: ``a ← β a + (1-β) w^{(e)}`` started at ``a = w^{(0)}``;
- ``"linear"`` (AutoScale's ``predictor="linear"``): ``Σ_e c_e log w^{(e)}`` with static
  coefficients, a least-squares line through the log weights read at a later step
  (:func:`linear_prediction`).

The first four are *exact*: once the ``W``-th window closes (as at the end of AutoScale's
phase 1) they equal :func:`autoscale_jax.weighting.aggregate_window_weights` of the ``W`` rows,
up to float32 summation order; ``"linear"`` is exact then too. Read before then,
``"last_half"`` is the mean of the windows closed since ``e₀`` (none yet: the neutral equal
weights).

Partial observations. :func:`accumulate` takes an optional task mask: with task sampling or
partial labels only the Gramian entries ``(i, j)`` of tasks seen together and the losses of the
present tasks are summed, each entry with its own count, so every window mean is the mean over
the samples that observed it (unbiased when the tasks seen are drawn independently of the
gradients). An entry never observed in a window has mean 0: a task with no sample gets the
neutral weight (the mean of the others') from the guides. ``observed`` counts each task's
usable samples since init, so a task never observed is reported, not guessed.

Unusable samples. A sample adds nothing to the window, and is counted by reason, when it is
not finite (``skipped``), when no task is present (``empty``: partial labels with nothing
labelled) or when the guide cannot use it (``degenerate``): with a Gramian guide
(``uses="gramian"``) an all-zero Gramian of the observed tasks (a metric mask that selects no
shared leaf, heads that share no parameter); with the loss guide (``uses="losses"``) a
negative observed loss or observed losses that are all zero. ``estimates`` counts the windows
that closed with at least one usable sample: none means the phase produced no estimate.

AutoScale's phase 1 is the state machine :func:`autoscale_jax.phase_one.phase_one_step` over
these statistics (the warm start, the window closes, the aggregate at the last step, the
metrics snapshot); the method :func:`autoscale_jax.autoscale` keeps its state and feeds it one
sample a step.

Example:
  >>> stats = init_window_statistics(num_tasks=2)
  >>> stats = accumulate(stats, jnp.eye(2), jnp.array([1.0, 2.0]))
  >>> window_means(stats)[1]
  Array([1., 2.], dtype=float32)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax.weighting import (
    AGGREGATIONS,
    last_half_start,
    linear_prediction_coefficients,
    window_count,
)

GUIDE_INPUTS = ("gramian", "losses")


class Aggregation(NamedTuple):
    """How closed windows' weights are aggregated (static): ``how`` (one of
    :data:`AGGREGATIONS`, or ``"linear"``: see :func:`linear_prediction`), the first window a
    sum counts (``first_window``; ``"last_half"``: ``W - ceil(W/2)``), ``decay``, the ``β`` of
    ``"ema"``, and ``coefficients``, the per-window ``c_e`` of ``"linear"``."""

    how: str
    first_window: int = 0
    decay: float = 0.9
    coefficients: tuple[float, ...] = ()


def aggregation(how: str, num_windows: int, decay: float = 0.9) -> Aggregation:
    """The static :class:`Aggregation` for ``num_windows`` windows in total.

    Args:
      how: one of :data:`AGGREGATIONS`.
      num_windows: ``W``, the number of windows of the phase (``ceil(T1 / τ)``).
      decay: ``β`` for ``"ema"``.

    Returns:
      An :class:`Aggregation`; ``"last_half"`` starts its sum at window ``W - ceil(W/2)``.

    Example:
      >>> aggregation("last_half", 5).first_window      # windows 2, 3, 4
      2
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}; choose one of {AGGREGATIONS}.")
    num_windows = max(int(num_windows), 1)
    first = last_half_start(num_windows) if how == "last_half" else 0
    return Aggregation(how, first, float(decay))


def linear_prediction(
    estimation_steps: int, window: int, fit: str, target_step: int
) -> Aggregation:
    """The :class:`Aggregation` that predicts ``w*`` by a straight line through the windows'
    log weights, extrapolated to ``target_step`` (e.g. the last training step).

    The line is fitted by least squares to the windows ``fit`` selects (``"last_half"`` or
    ``"mean"``: all of them), each at its centre step; its value is a fixed linear combination
    ``Σ_e c_e log w^{(e)}`` (:func:`autoscale_jax.weighting.linear_prediction_coefficients`),
    kept as a running sum like the other aggregates, and ``w* ∝ exp`` of it, normalised to
    ``Σ w = K``. Exact once the last window closes; read before then, it is a partial sum.
    """
    if fit not in ("last_half", "mean"):
        raise ValueError(
            f"predictor='linear' fits a line to the windows aggregate selects: 'last_half' or "
            f"'mean', got aggregate={fit!r}."
        )
    first = aggregation(fit, window_count(estimation_steps, window)).first_window
    coefficients = linear_prediction_coefficients(estimation_steps, window, first, target_step)
    return Aggregation("linear", first, coefficients=coefficients)


class WindowStatistics(NamedTuple):
    """Running sums of the current window and the running aggregate of closed windows."""

    gramian_sum: jax.Array  # [K, K] sum of the observed finite Gramian entries in the window
    gramian_count: jax.Array  # [K, K] int32: samples per Gramian entry in the window
    loss_sum: jax.Array  # [K] sum of the observed finite losses in the window
    loss_count: jax.Array  # [K] int32: samples per loss in the window
    count: jax.Array  # type: ignore[assignment]  # int32: usable samples in the current window
    skipped: jax.Array  # int32: non-finite samples skipped since init
    empty: jax.Array  # int32: samples with no task present (nothing labelled) since init
    degenerate: jax.Array  # int32: finite samples the guide cannot use (see the module doc)
    observed: jax.Array  # [K] int32: usable samples per task since init (0: never observed)
    windows_closed: jax.Array  # int32: windows whose weights were aggregated
    estimates: jax.Array  # int32: closed windows that had at least one usable sample
    aggregate: jax.Array  # [K] running aggregate of the closed windows' (log, "linear") weights
    aggregated: jax.Array  # int32: windows folded into ``aggregate``


def init_window_statistics(num_tasks: int) -> WindowStatistics:
    """Empty statistics for ``num_tasks`` tasks; the size does not depend on the phase length."""
    zeros_kk = jnp.zeros((num_tasks, num_tasks), jnp.float32)
    zero = jnp.zeros((), jnp.int32)
    return WindowStatistics(
        gramian_sum=zeros_kk,
        gramian_count=jnp.zeros((num_tasks, num_tasks), jnp.int32),
        loss_sum=jnp.zeros((num_tasks,), jnp.float32),
        loss_count=jnp.zeros((num_tasks,), jnp.int32),
        count=zero,
        skipped=zero,
        empty=zero,
        degenerate=zero,
        observed=jnp.zeros((num_tasks,), jnp.int32),
        windows_closed=zero,
        estimates=zero,
        aggregate=jnp.zeros((num_tasks,), jnp.float32),
        aggregated=zero,
    )


def is_finite_sample(
    G: jax.Array, losses: jax.Array, task_mask: jax.Array | None = None
) -> jax.Array:
    """True when the observed Gramian entries and losses are all finite.

    Args:
      G: [K, K] Gramian.
      losses: [K] losses.
      task_mask: optional [K] bools; entries of unobserved tasks are ignored.
    """
    if task_mask is None:
        return jnp.all(jnp.isfinite(G)) & jnp.all(jnp.isfinite(losses))
    pairs = task_mask[:, None] & task_mask[None, :]
    return jnp.all(jnp.isfinite(G) | ~pairs) & jnp.all(jnp.isfinite(losses) | ~task_mask)


class SampleStatus(NamedTuple):
    """Why a sample is or is not added to the window (bool scalars, see the module doc)."""

    finite: jax.Array
    empty: jax.Array
    degenerate: jax.Array

    @property
    def usable(self) -> jax.Array:
        return self.finite & ~self.empty & ~self.degenerate


def _masks(num_tasks: int, task_mask: jax.Array | None, loss_mask: jax.Array | None) -> tuple:
    task_mask = jnp.ones((num_tasks,), bool) if task_mask is None else jnp.asarray(task_mask, bool)
    loss_mask = task_mask if loss_mask is None else jnp.asarray(loss_mask, bool)
    return task_mask, loss_mask


def sample_status(
    G: jax.Array,
    losses: jax.Array,
    task_mask: jax.Array | None = None,
    loss_mask: jax.Array | None = None,
    uses: str = "gramian",
) -> SampleStatus:
    """Classifies one sample: finite, empty (no task present) or degenerate for the guide.

    Args:
      G: [K, K] Gramian (entries of unobserved tasks are ignored).
      losses: [K] task losses.
      task_mask: optional [K] bools, the tasks whose gradients were observed.
      loss_mask: optional [K] bools, the tasks whose losses were observed (default
        ``task_mask``).
      uses: what the guide reads: ``"gramian"`` (``"gms"``, ``"cond"``) or ``"losses"``
        (``"loss"``).

    Returns:
      A :class:`SampleStatus`; ``status.usable`` says whether the sample is added.

    Example:
      >>> sample_status(jnp.zeros((2, 2)), jnp.ones(2)).degenerate    # nothing measured
      Array(True, dtype=bool)
    """
    if uses not in GUIDE_INPUTS:
        raise ValueError(f"uses must be one of {GUIDE_INPUTS}, got {uses!r}.")
    task_mask, loss_mask = _masks(losses.shape[0], task_mask, loss_mask)
    finite = is_finite_sample(G, losses, task_mask) & jnp.all(jnp.isfinite(losses) | ~loss_mask)
    if uses == "gramian":
        empty = ~jnp.any(task_mask)
        degenerate = ~jnp.any((jnp.diagonal(G) > 0) & task_mask)
    else:
        empty = ~jnp.any(loss_mask)
        negative = jnp.any((losses < 0) & loss_mask)
        degenerate = negative | ~jnp.any((losses > 0) & loss_mask)
    return SampleStatus(finite, empty & finite, degenerate & finite & ~empty)


def accumulate(
    stats: WindowStatistics,
    G: jax.Array,
    losses: jax.Array,
    task_mask: jax.Array | None = None,
    loss_mask: jax.Array | None = None,
    *,
    uses: str = "gramian",
) -> WindowStatistics:
    """Adds one sample to the current window; an unusable sample is counted by reason only.

    Args:
      stats: the statistics.
      G: [K, K] Gramian of this step (entries of unobserved tasks are ignored).
      losses: [K] task losses.
      task_mask: optional [K] bools, the tasks whose gradients were observed (sampling,
        partial labels); entry ``(i, j)`` counts when both are.
      loss_mask: optional [K] bools, the tasks whose losses were observed (default
        ``task_mask``).
      uses: what the guide reads, ``"gramian"`` or ``"losses"`` (see :func:`sample_status`).

    Returns:
      The updated statistics.
    """
    status = sample_status(G, losses, task_mask, loss_mask, uses)
    task_mask, loss_mask = _masks(losses.shape[0], task_mask, loss_mask)
    usable = status.usable
    pairs = task_mask[:, None] & task_mask[None, :] & usable
    seen_losses = loss_mask & usable
    seen_tasks = (task_mask if uses == "gramian" else loss_mask) & usable
    return stats._replace(
        gramian_sum=stats.gramian_sum + jnp.where(pairs, G, 0.0).astype(jnp.float32),
        gramian_count=stats.gramian_count + pairs.astype(jnp.int32),
        loss_sum=stats.loss_sum + jnp.where(seen_losses, losses, 0.0).astype(jnp.float32),
        loss_count=stats.loss_count + seen_losses.astype(jnp.int32),
        count=stats.count + usable.astype(jnp.int32),
        skipped=stats.skipped + (~status.finite).astype(jnp.int32),
        empty=stats.empty + status.empty.astype(jnp.int32),
        degenerate=stats.degenerate + status.degenerate.astype(jnp.int32),
        observed=stats.observed + seen_tasks.astype(jnp.int32),
    )


def window_means(stats: WindowStatistics) -> tuple[jax.Array, jax.Array]:
    """Mean Gramian and mean losses of the current window, entry by entry over the samples
    that observed each entry (0 where none did)."""
    G = stats.gramian_sum / jnp.maximum(stats.gramian_count, 1).astype(jnp.float32)
    losses = stats.loss_sum / jnp.maximum(stats.loss_count, 1).astype(jnp.float32)
    return G, losses


def close_window(
    stats: WindowStatistics, weights: jax.Array, agg: Aggregation | None = None
) -> WindowStatistics:
    """Folds ``weights`` (the current window's choice) into the aggregate; empties the window.

    Args:
      stats: the statistics.
      weights: [K] weights chosen for the window that closes.
      agg: the static :class:`Aggregation` (default: ``"mean"``).

    Returns:
      The statistics with an empty window and the updated running aggregate.
    """
    agg = Aggregation("mean") if agg is None else agg
    weights = weights.astype(jnp.float32)
    index = stats.windows_closed
    if agg.how == "last":
        aggregate, aggregated = weights, jnp.ones((), jnp.int32)
    elif agg.how == "ema":
        blended = agg.decay * stats.aggregate + (1 - agg.decay) * weights
        aggregate = jnp.where(index == 0, weights, blended)
        aggregated = stats.aggregated + 1
    elif agg.how == "linear":  # Σ_e c_e log w^(e); windows past the static count add nothing
        coefficient = jnp.asarray((*agg.coefficients, 0.0), jnp.float32)[
            jnp.minimum(index, len(agg.coefficients))
        ]
        counted = index >= agg.first_window
        aggregate = stats.aggregate + jnp.where(counted, coefficient * jnp.log(weights), 0.0)
        aggregated = stats.aggregated + counted.astype(jnp.int32)
    else:  # a sum restarted at the static first window
        counted = index >= agg.first_window
        aggregate = stats.aggregate + jnp.where(counted, weights, 0.0)
        aggregated = stats.aggregated + counted.astype(jnp.int32)
    return stats._replace(
        gramian_sum=jnp.zeros_like(stats.gramian_sum),
        gramian_count=jnp.zeros_like(stats.gramian_count),
        loss_sum=jnp.zeros_like(stats.loss_sum),
        loss_count=jnp.zeros_like(stats.loss_count),
        count=jnp.zeros_like(stats.count),
        windows_closed=index + 1,
        estimates=stats.estimates + (stats.count > 0).astype(jnp.int32),
        aggregate=aggregate,
        aggregated=aggregated,
    )


def aggregated_weights(stats: WindowStatistics, agg: Aggregation | None = None) -> jax.Array:
    """The aggregate of the closed windows' weights, normalised to ``Σ w = K``.

    Equal weights while no window is aggregated. For the sums (``"mean"``, ``"last_half"``)
    the mean and the sum normalise to the same weights; ``"linear"`` holds log weights.
    """
    num_tasks = stats.aggregate.shape[0]
    if agg is not None and agg.how == "linear":
        predicted = jnp.exp(stats.aggregate - jnp.max(stats.aggregate))
        return jnp.where(stats.aggregated > 0, predicted * (num_tasks / jnp.sum(predicted)), 1.0)
    total = jnp.sum(stats.aggregate)
    ok = (stats.aggregated > 0) & (total > 0)
    return jnp.where(ok, stats.aggregate * (num_tasks / jnp.where(ok, total, 1.0)), 1.0)
