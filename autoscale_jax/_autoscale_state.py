"""AutoScale's state: the step, the weights and the packed phase-1 records, with the
configuration check that keeps a checkpoint from continuing in another configuration, and
:func:`advance`, which feeds the estimator's phase-1 state machine one sample a step."""

from __future__ import annotations

import functools
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import _packing, checks, estimator, metrics, phase_one
from autoscale_jax.metrics import TaskMetrics


class AutoScaleState(NamedTuple):
    """State of :func:`~autoscale_jax.autoscale`.

    Attributes:
      step: int32 steps taken; phase 1 while ``step < estimation_steps``.
      task_weights: [K] weights for the next step (fixed once phase 1 ends).
      phase_one_records: the estimator's window statistics, the latest metrics snapshot and
        the configuration check, packed into one float32 and one int32 array (read them as the
        properties below): O(K²) numbers whatever ``estimation_steps`` is. Two arrays cost a
        jitted step less dispatch time than seventeen.

    Properties:
      window_statistics: the :class:`~autoscale_jax.estimator.WindowStatistics`: window sums,
        the running aggregate of the window weights, and the unusable samples by reason
        (``skipped``, ``empty``, ``degenerate``).
      metrics: the :class:`~autoscale_jax.metrics.TaskMetrics` of the latest phase-1 step, at
        the weights it trained with (NaN before the first usable sample); frozen in phase 2,
        which computes no Gramian.
      never_observed: [K] bools, the tasks without a usable sample so far (partial labels: never
        labelled in phase 1). Such a task's weight is the neutral one, the mean of the others'.
      config_fingerprint: the int32 fingerprint of the configuration that made the state.
      config_mismatch: whether an update found the state made by another configuration
        (under ``jit``, where it cannot raise; its weights are then NaN).
    """

    step: jax.Array
    task_weights: jax.Array
    phase_one_records: tuple[jax.Array, ...]

    @property
    def window_statistics(self) -> estimator.WindowStatistics:
        return unpack_records(self)[0]

    @property
    def metrics(self) -> TaskMetrics:
        return unpack_records(self)[1]

    @property
    def never_observed(self) -> jax.Array:
        return self.window_statistics.observed == 0

    @property
    def config_fingerprint(self) -> jax.Array:
        return unpack_records(self)[2].fingerprint

    @property
    def config_mismatch(self) -> jax.Array:
        return unpack_records(self)[2].mismatch > 0


class ConfigCheck(NamedTuple):
    """The last two int32 entries of the packed records (their position is relied on)."""

    fingerprint: jax.Array  # int32: the configuration that made the state
    mismatch: jax.Array  # int32: 1 once an update found another configuration's state


def new_records(num_tasks: int, fingerprint: int = 0) -> tuple:
    check = ConfigCheck(jnp.asarray(fingerprint, jnp.int32), jnp.zeros((), jnp.int32))
    return estimator.init_window_statistics(num_tasks), metrics.empty_task_metrics(), check


@functools.cache
def records_like(num_tasks: int) -> Any:
    return jax.eval_shape(functools.partial(new_records, num_tasks))


def unpack_records(state: AutoScaleState) -> tuple:
    """The window statistics, metrics snapshot and configuration check packed in ``state``."""
    num_tasks = jnp.shape(state.task_weights)[0]
    return _packing.unpack(state.phase_one_records, records_like(num_tasks))


def fingerprint(config: dict) -> int:
    """A deterministic int32 of the configuration (the same in every process)."""

    def token(value: Any) -> Any:
        if value is None or isinstance(value, str | int | float | bool):
            return value
        if callable(value):
            return "predicate"
        return repr(jax.tree.map(lambda leaf: np.asarray(leaf).tolist(), value))

    text = repr(sorted((name, token(value)) for name, value in config.items()))
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def check_config(
    state: AutoScaleState, num_tasks: int, fingerprint: int, config: dict
) -> tuple[Any, AutoScaleState]:
    """``(ok, state)``: raises for a concrete state of another configuration; a traced one
    is marked (``config_mismatch``) and gets NaN weights (``ok`` is then a bool array)."""
    if jnp.shape(state.task_weights) != (num_tasks,):
        raise ValueError(
            f"This AutoScale state has {jnp.shape(state.task_weights)} weights but the "
            f"transformation has num_tasks={num_tasks}: restore a state into the "
            "configuration that made it, or start from tx.init(params)."
        )
    _packing.check_sizes(state.phase_one_records, records_like(num_tasks), "AutoScale state")
    ints = state.phase_one_records[-1]
    ok = ints[-2] == fingerprint
    if not isinstance(ok, jax.core.Tracer):
        if not bool(ok):
            raise ValueError(
                f"This AutoScale state was made by an AutoScale of another configuration "
                f"(fingerprint {int(ints[-2])}; this one is {fingerprint}: {config}). "
                "Restore a state into the configuration that made it, or start from "
                "tx.init(params); to keep estimated weights, train on with "
                "asj.fixed_weights(asj.task_weights(state))."
            )
        return True, state
    ints = ints.at[-1].max((~ok).astype(jnp.int32))
    return ok, state._replace(
        task_weights=jnp.where(ok, state.task_weights, jnp.nan),
        phase_one_records=(*state.phase_one_records[:-1], ints),
    )


def poison(ok: Any, state: AutoScaleState) -> AutoScaleState:
    """A state marked by :func:`check_config` keeps NaN weights."""
    if ok is True:
        return state
    return state._replace(task_weights=jnp.where(ok, state.task_weights, jnp.nan))


def advance(
    phase: phase_one.PhaseOne,
    state: AutoScaleState,
    G: jax.Array,
    losses: Any,
    task_mask: Any = None,
    loss_mask: Any = None,
) -> tuple[jax.Array, AutoScaleState]:
    """One update from the Gramian ``G``: ``(weights to train with, next state)``.

    Phase 1 (``step < T1``) runs :func:`autoscale_jax.phase_one.phase_one_step`; phase 2 keeps
    the fixed weights. ``G`` is computed before the phase's ``lax.cond``, not inside it: a
    branch that closes over the K stacked gradients made XLA:CPU's phase-1 step ~1.4x dearer
    than MGDA's.
    """
    # The estimator works in float32 whatever the gradients' dtype (float64 under x64,
    # bfloat16): its state and weights are float32.
    G = jnp.asarray(G, jnp.float32)
    num_tasks = jnp.shape(state.task_weights)[0]
    losses = checks.check_task_losses(losses, num_tasks).astype(jnp.float32)
    seen = task_mask if loss_mask is None else loss_mask
    phase_one.check_losses(phase, state.step, losses, seen)

    def step_phase_one(state: AutoScaleState) -> tuple[jax.Array, AutoScaleState]:
        stats, snapshot, check = unpack_records(state)
        weights, next_weights, stats, snapshot = phase_one.phase_one_step(
            phase, state.step, state.task_weights, stats, snapshot, G, losses, task_mask, loss_mask
        )
        records = _packing.pack((stats, snapshot, check))
        return weights, state._replace(task_weights=next_weights, phase_one_records=records)

    weights, state = jax.lax.cond(
        state.step < phase.estimation_steps, step_phase_one, lambda s: (s.task_weights, s), state
    )
    return weights, state._replace(step=state.step + 1)
