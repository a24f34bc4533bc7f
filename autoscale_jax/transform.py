"""AutoScale and plain linear scalarization as optax transformations.

All transformations here take stacked task gradients (leading task axis K) and the keyword
``task_losses``, and output the combined gradient ``Σ_k w_k g_k``; chain them *first*:

  >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=500), optax.adam(1e-3))
  >>> state = tx.init(params)
  >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

Like ``optax.contrib.differentially_private_aggregate``, they must come first because their input
has the extra task axis.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import (
    _autoscale_state,
    _packing,
    base,
    checks,
    estimator,
    jacobian,
    metrics,
    weighting,
)
from autoscale_jax._autoscale_state import AutoScaleState

__all__ = ["AutoScaleState", "FixedWeightsState", "autoscale", "equal_weights", "fixed_weights"]


def autoscale(
    num_tasks: int,
    estimation_steps: int,
    *,
    guide: str = "gms",
    window: int = 10,
    warm_start: bool = True,
    aggregate: str = "last_half",
    metric_mask: metrics.MetricMask = None,
    cond_iterations: int = 200,
) -> base.MultiTaskTransformation:
    """AutoScale: metric-guided linear-scalarization weights, then fixed-weight training.

    Phase 1 (steps ``0 .. T1-1``, ``T1 = estimation_steps``) is split into windows of ``τ``
    steps. Each step measures the Gramian ``G = [<g_i, g_j>]`` of the task gradients (on the
    leaves selected by ``metric_mask``) and trains with the current weights. At the end of
    window ``e`` the guide maps the window's mean Gramian ``Ḡ`` and mean losses ``L̄`` to

    .. math:: w^{(e)} = \\mathrm{guide}(Ḡ, L̄), \\quad Σ_k w_k = K

    (``"gms"``: ``w_k ∝ 1/||ḡ_k||``; ``"cond"``: ``argmin κ(diag(w) Ḡ diag(w))``; ``"loss"``:
    ``w_k ∝ 1/L̄_k``), and the next window trains with it. With ``warm_start`` step 0 already
    trains with the guide's weights from its own Gramian. When phase 1 ends the window weights
    are aggregated (default: mean of the last half) into ``w*``, used from then on. Phase 2 only
    computes ``Σ_k w*_k g_k``; :func:`autoscale_jax.train.multitask_train_step` goes further and
    computes that as one gradient of ``Σ_k w*_k L_k``.

    This is a documented reconstruction: the paper's exact Algorithm 1 is not public; the knobs
    (window, warm start, aggregation) are explicit arguments.

    Phase 1 need not stack the K gradients: ``multitask_train_step(..., gradient_mode=...)``
    measures ``G`` column by column (``"gramian"``, exact), on a shared representation or the
    last shared layer (approximate) or on a random subset of tasks (``"sampled"``, unbiased),
    and trains with one VJP of ``Σ_k w_k L_k`` (see :mod:`autoscale_jax.modes`). The state is
    O(K²) whatever ``estimation_steps`` is.

    Unusable phase-1 samples never change the weights and are counted by reason in
    ``state.window_statistics``: ``skipped`` (non-finite Gramian or losses), ``empty`` (no task
    present) and ``degenerate`` (what the guide cannot use: an all-zero Gramian of the present
    tasks for ``"gms"``/``"cond"``, e.g. ``metric_mask="shared"`` on a model with no shared
    leaf; a negative loss, or all losses zero, for ``"loss"``). A window without a usable
    sample keeps the previous weights; a phase without one ends with NaN weights (no estimate:
    training stops loudly instead of falling back to equal weights). A task whose gradient is
    zero gets the mean weight of the others. The combined update passes non-finite gradients
    through unchanged: chain ``optax.apply_if_finite`` after it to drop such steps.

    Partial labels (``task_mask``): an absent task adds no Gramian or loss sample and gets
    weight 0 in the step's update. A task never observed in phase 1 is reported by
    ``state.never_observed`` and gets the neutral weight, the mean of the others' (NaN weights
    for all tasks if none was observed).

    Checkpoints: the state carries a fingerprint of the configuration (``num_tasks``,
    ``estimation_steps``, ``window``, ``guide``, ``warm_start``, ``aggregate``, ``metric_mask``,
    ``cond_iterations``). An update with a state made by another configuration raises a
    ``ValueError`` when the state is concrete; under ``jit`` it sets
    ``state.config_mismatch`` and NaN weights.

    Args:
      num_tasks: K >= 2, static.
      estimation_steps: phase-1 length ``T1 >= 1`` (a few percent of training is typical).
      guide: ``"gms"``, ``"cond"`` or ``"loss"`` (``w_k ∝ 1/L̄_k`` needs non-negative losses:
        a negative one raises a ``ValueError`` where the losses are concrete and is an unusable
        sample under ``jit``).
      window: steps per window ``τ >= 1``.
      warm_start: set the weights from step 0's own Gramian (otherwise start at equal weights).
      aggregate: how window weights become ``w*``: ``"last_half"``, ``"last"``, ``"mean"`` or
        ``"ema"``, each kept as a running quantity and exact (see
        :mod:`autoscale_jax.estimator`).
      metric_mask: which parameter leaves the metrics see: ``None`` (all), ``"shared"`` (leaves
        where two or more tasks have a nonzero gradient: excludes task heads), a pytree of bools
        or a predicate ``(key_path, leaf) -> bool``.
      cond_iterations: iteration budget of the ``"cond"`` solver.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False, task_mask=None)``. ``presummed=True``
      (used by the fast path in phase 2) means ``task_grads`` is already ``Σ_k w*_k g_k``; its
      fast-path weights are NaN during phase 1, so a phase-1 fast step cannot pass silently.
      ``task_mask`` ([K] bools, e.g. ``counts > 0`` with partial labels) marks the tasks
      present in the batch: an absent task adds no Gramian or loss sample to the window and
      gets weight 0 in the update.
      Its :class:`~autoscale_jax.base.GramianPath` is the same update from a Gramian measured
      elsewhere (the Gramian-only, representation, last-layer and sampled modes of
      :func:`autoscale_jax.train.multitask_train_step`).

    Example:
      >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=100), optax.sgd(0.1))
      >>> state = tx.init(params)
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)
      >>> weights = asj.task_weights(state)   # the guide's weights from step 0 (warm start)
      >>> weights.shape, round(float(weights.sum()), 4)
      ((2,), 2.0)

    Reference:
      Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization
      Metrics, 2025 (arXiv 2508.13979).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    estimation_steps = checks.check_positive_int("estimation_steps", estimation_steps)
    window = checks.check_positive_int("window", window)
    metric_mask = metrics.check_metric_mask(metric_mask)
    rule = weighting.guide_rule(guide, cond_iterations=cond_iterations)
    uses = "losses" if guide == "loss" else "gramian"
    num_windows = -(-estimation_steps // window)
    agg = estimator.aggregation(aggregate, num_windows)
    config = {
        "num_tasks": num_tasks,
        "estimation_steps": estimation_steps,
        "window": window,
        "guide": guide,
        "warm_start": bool(warm_start),
        "aggregate": aggregate,
        "metric_mask": metric_mask,
        "cond_iterations": cond_iterations,
    }
    fingerprint = _autoscale_state.fingerprint(config)

    def init_fn(params: Any) -> AutoScaleState:
        del params
        return AutoScaleState(
            step=jnp.zeros((), jnp.int32),
            task_weights=jnp.ones((num_tasks,), jnp.float32),
            phase_one_records=_packing.pack(_autoscale_state.new_records(num_tasks, fingerprint)),
        )

    def check_config(state: AutoScaleState) -> tuple[Any, AutoScaleState]:
        return _autoscale_state.check_config(state, num_tasks, fingerprint, config)

    def check_losses(losses: jax.Array, loss_mask: Any, state: AutoScaleState) -> None:
        """The loss guide's weights 1/L̄ need non-negative losses: raises where concrete."""
        if guide != "loss" or isinstance(losses, jax.core.Tracer):
            return
        if isinstance(state.step, jax.core.Tracer) or int(state.step) >= estimation_steps:
            return
        seen = np.ones(num_tasks, bool) if loss_mask is None else np.asarray(loss_mask)
        values = np.asarray(losses)
        if np.any((values < 0) & seen):
            raise ValueError(
                f"guide='loss' sets w_k ∝ 1/L̄_k and needs non-negative task_losses, got "
                f"{values.tolist()}: shift the losses by a lower bound (L_k - min L_k) or use "
                "guide='gms'."
            )

    def estimate(G: jax.Array, losses: jax.Array, state: AutoScaleState, mask: Any) -> tuple:
        """One phase-1 step: returns the weights to train with now and the next state."""
        task_mask, loss_mask = mask
        usable = estimator.sample_status(G, losses, task_mask, loss_mask, uses).usable
        observed_G, observed_losses = _observed(G, losses, task_mask, loss_mask)
        weights = state.task_weights
        if warm_start:
            weights = jax.lax.cond(
                (state.step == 0) & usable,
                lambda: rule(observed_G, observed_losses),
                lambda: weights,
            )
        stats, last_metrics, check = _autoscale_state.unpack_records(state)
        stats = estimator.accumulate(stats, G, losses, task_mask, loss_mask, uses=uses)
        last_step = state.step == estimation_steps - 1
        window_ends = ((state.step + 1) % window == 0) | last_step

        def close(stats: estimator.WindowStatistics) -> tuple:
            mean_G, mean_losses = estimator.window_means(stats)
            chosen = jax.lax.cond(
                stats.count > 0, lambda: rule(mean_G, mean_losses), lambda: weights
            )
            return chosen, estimator.close_window(stats, chosen, agg)

        next_weights, stats = jax.lax.cond(window_ends, close, lambda s: (weights, s), stats)
        # No usable sample in all of phase 1: there is no estimate. NaN weights say so (and
        # stop training loudly) instead of a silent fallback to the initial equal weights.
        next_weights = jax.lax.cond(
            last_step,
            lambda: jnp.where(stats.estimates == 0, jnp.nan, estimator.aggregated_weights(stats)),
            lambda: next_weights,
        )
        snapshot = jax.lax.cond(
            usable,
            lambda: metrics.task_metrics(observed_G, observed_losses, weights),
            lambda: last_metrics,
        )
        records = _packing.pack((stats, snapshot, check))
        return weights, state._replace(task_weights=next_weights, phase_one_records=records)

    def advance(
        state: AutoScaleState,
        G: jax.Array,
        losses: jax.Array | None,
        task_mask: Any = None,
        loss_mask: Any = None,
    ) -> tuple[jax.Array, AutoScaleState]:
        """One update from the Gramian ``G`` (used in phase 1 only).

        ``G`` is computed before the phase's ``lax.cond``, not inside it: a branch that closes
        over the K stacked gradients made XLA:CPU's phase-1 step ~1.4x dearer than MGDA's.
        """
        # The estimator works in float32 whatever the gradients' dtype (float64 under x64,
        # bfloat16): its state and weights are float32.
        G = jnp.asarray(G, jnp.float32)
        losses = checks.check_task_losses(losses, num_tasks).astype(jnp.float32)
        check_losses(losses, task_mask if loss_mask is None else loss_mask, state)
        mask = (task_mask, loss_mask)

        def phase_one(state: AutoScaleState) -> tuple:
            return estimate(G, losses, state, mask)

        weights, state = jax.lax.cond(
            state.step < estimation_steps, phase_one, lambda s: (s.task_weights, s), state
        )
        return weights, state._replace(step=state.step + 1)

    def update_fn(
        task_grads: Any,
        state: AutoScaleState,
        params: Any = None,
        *,
        task_losses: jax.Array | None = None,
        presummed: bool = False,
        task_mask: jax.Array | None = None,
        **extra_args: Any,
    ) -> tuple[Any, AutoScaleState]:
        del params, extra_args
        present = checks.check_task_mask(task_mask, num_tasks)
        ok, state = check_config(state)
        if presummed:
            # The fast path computed Σ w*_k g_k itself. In phase 1 its weights were NaN (a
            # premature one-gradient step): the state's weights turn NaN too, so
            # task_weights(state) does not report clean weights after it.
            premature = state.step < estimation_steps
            weights = jnp.where(premature, jnp.nan, state.task_weights)
            return task_grads, state._replace(step=state.step + 1, task_weights=weights)
        checks.check_task_gradients(task_grads, num_tasks)
        G = metrics.gramian(task_grads, metric_mask)
        weights, state = advance(state, G, task_losses, present)
        applied = _absent_zero(weights, present)
        return base.weighted_sum(task_grads, applied, present), _autoscale_state.poison(ok, state)

    def weights_from_gramian(
        state: AutoScaleState,
        observed: jacobian.ObservedGramian,
        task_losses: jax.Array,
        key: Any = None,
        task_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, AutoScaleState]:
        """The update from a Gramian measured elsewhere; the estimator keeps, per entry, the
        samples that observed it (task sampling) of the tasks present (partial labels)."""
        del key
        present = checks.check_task_mask(task_mask, num_tasks)
        ok, state = check_config(state)
        measured = _and_masks(observed.task_mask, present)
        loss_mask = present
        if present is None and measured is not None:
            loss_mask = jnp.ones((num_tasks,), bool)  # sampling: every loss is still measured
        weights, state = advance(state, observed.gramian, task_losses, measured, loss_mask)
        return _absent_zero(weights, present), _autoscale_state.poison(ok, state)

    def fast_path_weights(state: AutoScaleState, task_losses: Any, key: Any) -> jax.Array:
        # Phase-1 weights are still being measured: NaN makes a misuse loud, at K-element cost.
        _, state = check_config(state)
        return jnp.where(state.step < estimation_steps, jnp.nan, state.task_weights)

    fast_path = base.FastPath(
        needs_task_gradients=lambda state: state.step < estimation_steps,
        weights=fast_path_weights,
    )

    def prior_weights(state: AutoScaleState) -> tuple[jax.Array, jax.Array]:
        # Only the warm-start step trains with weights from its own Gramian.
        known = (state.step > 0) if warm_start else jnp.ones((), bool)
        return known, check_config(state)[1].task_weights

    gramian_path = base.GramianPath(weights_from_gramian, metric_mask, prior_weights)
    return base.multitask_transformation(init_fn, update_fn, fast_path, gramian_path)


def _absent_zero(weights: jax.Array, present: jax.Array | None) -> jax.Array:
    """The weights a step applies: 0 for the tasks absent from the batch."""
    return weights if present is None else jnp.where(present, weights, 0)


def _and_masks(a: Any, b: Any) -> Any:
    """The conjunction of two optional masks."""
    if a is None or b is None:
        return b if a is None else a
    return a & b


def _observed(G: jax.Array, losses: jax.Array, task_mask: Any, loss_mask: Any) -> tuple:
    """The Gramian and losses with unobserved entries set to 0 (so they stay finite)."""
    if task_mask is not None:
        G = jnp.where(task_mask[:, None] & task_mask[None, :], G, 0.0)
    loss_mask = task_mask if loss_mask is None else loss_mask
    if loss_mask is not None:
        losses = jnp.where(loss_mask, losses, 0.0)
    return G, losses


class FixedWeightsState(NamedTuple):
    """State of :func:`fixed_weights`: the weights, readable with ``task_weights``."""

    task_weights: jax.Array


def fixed_weights(weights: Any) -> base.MultiTaskTransformation:
    """Linear scalarization with fixed weights: the update is ``Σ_k w_k g_k``.

    Args:
      weights: [K] task weights (K >= 2), used as given (no normalisation): finite, >= 0,
        not all zero (checked when concrete; a ``ValueError`` otherwise).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``task_losses`` is optional. Its
      fast path never needs task gradients. With ``task_mask`` (partial labels) the absent
      tasks' weights are 0 in that step's update.

    Example:
      >>> tx = optax.chain(asj.fixed_weights([1.0, 0.1]), optax.adam(1e-3))
    """
    weights = jnp.asarray(weights, jnp.float32)
    if weights.ndim != 1:
        raise ValueError(f"weights must be a vector [K], got shape {weights.shape}.")
    num_tasks = checks.check_num_tasks(weights.shape[0])
    if not isinstance(weights, jax.core.Tracer):  # traced under inject_hyperparams' update
        values = np.asarray(weights)
        if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
            raise ValueError(
                "fixed_weights needs finite, non-negative weights with at least one positive, "
                f"got {values.tolist()}."
            )

    def init_fn(params: Any) -> FixedWeightsState:
        del params
        return FixedWeightsState(task_weights=weights)

    def update_fn(
        task_grads: Any,
        state: FixedWeightsState,
        params: Any = None,
        *,
        task_losses: jax.Array | None = None,
        presummed: bool = False,
        task_mask: jax.Array | None = None,
        **extra_args: Any,
    ) -> tuple[Any, FixedWeightsState]:
        del params, extra_args
        checks.check_task_losses(task_losses, num_tasks, required=False)
        present = checks.check_task_mask(task_mask, num_tasks)
        applied = _absent_zero(weights, present)
        # The closed-over weights win over the state's, so inject_hyperparams can change them.
        update = base.combine(task_grads, applied, num_tasks, presummed, present)
        return update, FixedWeightsState(weights)

    fast_path = base.loss_space_fast_path(lambda state, task_losses, key: state.task_weights)
    return base.multitask_transformation(init_fn, update_fn, fast_path)


def equal_weights(num_tasks: int) -> base.MultiTaskTransformation:
    """Equal weighting (uniform loss): :func:`fixed_weights` with ``w_k = 1``.

    Example:
      >>> tx = optax.chain(asj.equal_weights(3), optax.adam(1e-3))
    """
    return fixed_weights(jnp.ones((checks.check_num_tasks(num_tasks),), jnp.float32))
