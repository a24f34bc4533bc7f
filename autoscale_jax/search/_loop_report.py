"""The streamed search's report and result (see :mod:`autoscale_jax.search.loop`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

import autoscale_jax as _asj
from autoscale_jax.search import _loop_state as _state
from autoscale_jax.search.halving import search_cost


class StageReport(NamedTuple):
    """One stage: its ``kind``, first step, ``rungs`` (from its start), ``candidates`` [C, K],
    ``rung_scores`` [R, C] (NaN: pruned or non-finite), ``rung_losses`` [C, R, K] (mean
    training losses), ``nonfinite`` [R], the ``survivor``'s index and its ``weights`` [K]."""

    kind: str
    start_step: int
    rungs: tuple[int, ...]
    candidates: np.ndarray
    rung_scores: np.ndarray
    rung_losses: np.ndarray
    nonfinite: np.ndarray
    survivor: int
    weights: np.ndarray


class SearchReport(NamedTuple):
    """AutoScale's ``phase_one_weights`` after ``estimation_steps``, the ``stages``, the
    ``steps`` consumed out of ``budget``, the ``gradient_evaluations`` (backward passes) and
    ``relative_cost`` = (evaluations + the survivor's remaining ``budget - steps``) / budget."""

    phase_one_weights: np.ndarray
    estimation_steps: int
    stages: tuple[StageReport, ...]
    steps: int
    budget: int
    gradient_evaluations: int
    relative_cost: float


class WeightSearchResult(NamedTuple):
    """The survivor: ``weights`` [K], ``params``, ``opt_state`` (the optimizer's plain state)."""

    weights: jax.Array
    params: Any
    opt_state: Any
    report: SearchReport

    def train_state(self) -> Any:
        """The state of ``asj.multitask_train_step(loss_fn, asj.fixed_weights(self.weights),
        optimizer)`` (or of ``optax.chain(asj.fixed_weights(w), optimizer)``: ``tuple(...)``)."""
        return _asj.TrainState(_asj.FixedWeightsState(self.weights), self.opt_state)


def result_of(
    state: _state.SearchState,
    stages_: Sequence[Any],
    num_tasks: int,
    estimation_steps: int,
    total_steps: int,
    budget: int,
) -> WeightSearchResult:
    """The survivor and the report of a finished search (host copies of the tables)."""
    host = jax.device_get(state)
    stages, start = [], estimation_steps
    for s, stage in enumerate(stages_):
        survivor = int(host.survivors[s])
        stages.append(
            StageReport(
                stage.kind,
                start,
                stage.rungs,
                host.candidates[s],
                host.rung_scores[s],
                host.rung_losses[s],
                host.nonfinite[s],
                survivor,
                host.candidates[s][survivor],
            )
        )
        start += stage.rungs[-1]
    evaluations = num_tasks * estimation_steps + sum(
        search_cost(st.num_candidates(num_tasks), st.rungs, st.keep) for st in stages_
    )
    report = SearchReport(
        host.phase_one_weights,
        estimation_steps,
        tuple(stages),
        total_steps,
        budget,
        evaluations,
        (evaluations + budget - total_steps) / budget,
    )
    return WeightSearchResult(
        state.weights[0], _state.take(state.params, 0), _state.take(state.opt_state, 0), report
    )
