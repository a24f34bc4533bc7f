"""AutoScale: metric-guided linear-scalarization weights, then fixed-weight training.

A method on the Gramian base (:func:`~autoscale_jax.methods._update_paths.gramian_base`): its
transition is the estimator's phase-1 state machine
(:func:`autoscale_jax.phase_one.phase_one_step`) while ``step < T1``, then the fixed weights.
Like every multi-task transformation it takes stacked task gradients (leading task axis K) and
the keyword ``task_losses``, and must come first in a chain (like
``optax.contrib.differentially_private_aggregate``, its input has the extra task axis):

  >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=500), optax.adam(1e-3))
  >>> state = tx.init(params)
  >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import (
    _autoscale_state,
    _packing,
    base,
    checks,
    estimator,
    metrics,
    phase_one,
    weighting,
)
from autoscale_jax._autoscale_state import AutoScaleState
from autoscale_jax.methods._partial_labels import masked
from autoscale_jax.methods._projections import imtl_g_weights
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._update_paths import Sample, gramian_base

__all__ = ["EXPLORERS", "AutoScaleState", "autoscale"]

EXPLORERS = ("guide", "equal", "imtl_g")


def explorer_rule(explorer: str, num_tasks: int) -> Any:
    """The phase-1 training rule ``(G, L) -> w`` of a named explorer (``None``: the guide's
    own weights), each normalised to ``Σ w = K`` like AutoScale's weights."""
    if explorer == "guide":
        return None
    if explorer == "equal":
        return lambda G, losses: jnp.ones((num_tasks,), jnp.float32)
    if explorer == "imtl_g":
        return lambda G, losses: num_tasks * imtl_g_weights(G)
    raise ValueError(f"Unknown explorer {explorer!r}; choose one of {EXPLORERS}.")


def _prediction(
    predictor: str, aggregate: str, estimation_steps: int, window: int, total_steps: Any
) -> estimator.Aggregation:
    """The static aggregation of the window weights that ``predictor`` asks for."""
    if predictor == "aggregate":
        if total_steps is not None:
            raise ValueError("total_steps is read by predictor='linear' only.")
        return estimator.aggregation(aggregate, weighting.window_count(estimation_steps, window))
    if predictor != "linear":
        raise ValueError(f"Unknown predictor {predictor!r}; choose one of {weighting.PREDICTORS}.")
    total_steps = checks.check_positive_int("total_steps", total_steps)
    if total_steps <= estimation_steps:
        raise ValueError(
            f"predictor='linear' extrapolates to the last training step: total_steps must "
            f"exceed estimation_steps={estimation_steps}, got {total_steps}."
        )
    return estimator.linear_prediction(estimation_steps, window, aggregate, total_steps - 1)


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
    explorer: str = "guide",
    predictor: str = "aggregate",
    total_steps: int | None = None,
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

    The paper's phase 1, as read second-hand from a review of its text, differs in two ways,
    offered as options (docs/benchmarks.md measures them against the defaults):
    ``explorer="imtl_g"`` trains every phase-1 step with IMTL-G's weights of that step's
    Gramian (scaled to ``Σ w = K``) while the guide keeps measuring, and
    ``predictor="linear"`` fits a least-squares line to the windows' ``log w^{(e)}`` (each at
    its window's centre step; the windows ``aggregate`` selects) and takes its value at the last
    training step, ``total_steps - 1``:

    .. math:: \\log w^* = \\overline{\\log w} + b\\,(T - 1 - \\bar x)

    (normalised to ``Σ w = K``; :func:`autoscale_jax.estimator.linear_prediction`).

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
    ``cond_iterations``, and ``explorer``, ``predictor``, ``total_steps`` where they are not the
    defaults, so the default configurations keep their fingerprints). An update with a state
    made by another configuration raises a ``ValueError`` when the state is concrete; under
    ``jit`` it sets ``state.config_mismatch`` and NaN weights.

    Args:
      num_tasks: K >= 2, static.
      estimation_steps: phase-1 length ``T1 >= 1`` (about 15% of training is recommended from the
        bench's suite: docs/choosing.md).
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
      explorer: what phase 1 trains with: ``"guide"`` (the guide's window weights, the
        default), ``"equal"`` (equal weights) or ``"imtl_g"`` (IMTL-G's weights of each step's
        Gramian). A step whose sample the guide cannot use trains with the guide's weights.
        With task sampling (``gradient_mode="sampled"``) an explorer sees the sampled tasks'
        Gramian only: IMTL-G gives the tasks left out of the step weight 0 there.
      predictor: how the window weights become ``w*``: ``"aggregate"`` (``aggregate=``, the
        default) or ``"linear"`` (the line through their logs, extrapolated to the last step;
        ``aggregate`` must be ``"last_half"`` or ``"mean"``, the windows it fits).
      total_steps: the training length ``T`` (``predictor="linear"`` only), ``T > T1``.

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
    explore = explorer_rule(explorer, num_tasks)
    phase = phase_one.PhaseOne(
        rule=rule,
        uses="losses" if guide == "loss" else "gramian",
        estimation_steps=estimation_steps,
        window=window,
        warm_start=bool(warm_start),
        aggregation=_prediction(predictor, aggregate, estimation_steps, window, total_steps),
        explorer=explore,
    )
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
    options = {"explorer": explorer, "predictor": predictor, "total_steps": total_steps}
    defaults = {"explorer": "guide", "predictor": "aggregate", "total_steps": None}
    config |= {name: value for name, value in options.items() if value != defaults[name]}
    fingerprint = _autoscale_state.fingerprint(config)

    def init_state(params: Any) -> AutoScaleState:
        del params
        return AutoScaleState(
            step=jnp.zeros((), jnp.int32),
            task_weights=jnp.ones((num_tasks,), jnp.float32),
            phase_one_records=_packing.pack(_autoscale_state.new_records(num_tasks, fingerprint)),
        )

    def check_config(state: AutoScaleState) -> tuple[Any, AutoScaleState]:
        return _autoscale_state.check_config(state, num_tasks, fingerprint, config)

    def in_phase_one(state: AutoScaleState) -> jax.Array:
        return state.step < estimation_steps

    def transition(state: AutoScaleState, sample: Sample) -> tuple[jax.Array, AutoScaleState]:
        """The estimator keeps, per entry, the samples that observed it (task sampling) of
        the tasks present (partial labels)."""
        ok, state = check_config(state)
        present, observed = sample.present, sample.observed
        measured = present if observed.task_mask is None else observed.task_mask
        if observed.task_mask is not None and present is not None:
            measured = observed.task_mask & present
        loss_mask = present
        if present is None and measured is not None:
            loss_mask = jnp.ones((num_tasks,), bool)  # sampling: every loss is still measured
        weights, state = _autoscale_state.advance(
            phase, state, observed.gramian, sample.losses, measured, loss_mask
        )
        return masked(weights, present), _autoscale_state.poison(ok, state)

    def presummed_update(combined: Any, state: AutoScaleState, *_: Any) -> tuple:
        # The fast path computed Σ w*_k g_k itself. In phase 1 its weights were NaN (a
        # premature one-gradient step): the state's weights turn NaN too, so
        # task_weights(state) does not report clean weights after it.
        _, state = check_config(state)
        weights = jnp.where(in_phase_one(state), jnp.nan, state.task_weights)
        return combined, state._replace(step=state.step + 1, task_weights=weights)

    def fast_path_weights(state: AutoScaleState, task_losses: Any, key: Any) -> jax.Array:
        # Phase-1 weights are still being measured: NaN makes a misuse loud, at K-element cost.
        _, state = check_config(state)
        return jnp.where(in_phase_one(state), jnp.nan, state.task_weights)

    def prior_weights(state: AutoScaleState) -> tuple[jax.Array, jax.Array]:
        # Only the warm-start step (and with an explorer, every phase-1 step) trains with
        # weights from its own Gramian.
        known = (state.step > 0) if warm_start else jnp.ones((), bool)
        if explore is not None:
            known = known & ~in_phase_one(state)
        return known, check_config(state)[1].task_weights

    return gramian_base(
        num_tasks,
        "autoscale",
        init_state,
        transition,
        measured=metric_mask,
        fast_path=base.FastPath(needs_task_gradients=in_phase_one, weights=fast_path_weights),
        presummed_update=presummed_update,
        prior_weights=prior_weights,
        validate_state=check_config,  # a checkpoint of another configuration: raise first
    )


INFO = MethodInfo(
    name="autoscale",
    factory=autoscale,
    family="scalarization",
    needs_task_gradients=True,
    needs_losses=True,
    weight_convention="sum_to_k",
    reference=(
        "Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization "
        "Metrics, 2025 (arXiv 2508.13979)"
    ),
    kind="guided",
)
