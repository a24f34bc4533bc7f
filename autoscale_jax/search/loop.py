"""The search as one call in your own training loop: phase 1, restart, stages, survivor.

:func:`find_weights` takes what a training loop has (a loss ``loss_fn(params, batch) -> [K]``,
an optax optimizer, a traced validation score, batches one per step, a budget of ``T`` steps)
and runs the design of the bench's ``autoscale_search``:

1. **Phase 1** (steps ``0 .. T1-1``, default ``T1 = max(window, 0.05 T)``):
   :func:`autoscale_jax.autoscale` with a guide (default ``"gms"``, warm start, windows of 10,
   ``metric_mask="shared"``) trains ``θ`` and picks ``w_1``; the step that ends phase 1
   restarts the optimizer's moments (:mod:`autoscale_jax.restart`; schedules keep running;
   ``restart=False`` carries them on; ``record=`` records each phase-1 step).
2. **Stages** (:func:`~autoscale_jax.search.default_stages`): candidates around the pick so far
   (``w(α) ∝ w_1^α``, then for ``K ≥ 3`` per-task ×4 moves around the first survivor), each
   trained from the pick's parameters and optimizer state with fixed weights,
   ``θ_c ← θ_c - opt(∇ Σ_k w_{c,k} L_k(θ_c))``, and pruned by successive halving on the score
   (higher is better): the ``n_{r+1} = ceil(keep · n_r)`` best survive each rung.
3. **The survivor**: its weights ``w*``, parameters and plain optax state come back with a
   :class:`SearchReport`; train on with ``Σ_k w*_k L_k``, e.g. ``optax.chain(asj.fixed_weights(w*),
   optimizer)`` with :meth:`WeightSearchResult.train_state`, for the rest of the budget.

Streaming. Batches (an iterator, or a function ``step -> batch`` for exact resumes) are stacked
``chunk_size`` at a time; each chunk is one compiled program (a ``lax.scan`` over the chunk,
``jax.vmap`` over the live candidates), so memory does not grow with the rung length; the last
chunk of a segment is padded with skipped steps (one program per live count). Between chunks
the state (:class:`~autoscale_jax.search._loop_state.SearchState`) is a pytree of arrays:
:class:`WeightSearch` exposes ``init`` / ``run(max_chunks=, callback=)`` / ``result`` and
``abstract_state`` (an orbax restore target) for checkpoints.

Devices. ``devices=jax.devices()`` shards the candidate axis over a 1-D mesh; a live count that
is not a multiple of the device count is padded with copies of the first candidate whose
results are discarded. ``sequential=True`` trains the candidates one after another
(``lax.map``: the memory of one candidate). Both give the one-device result.

Cost: ``K T1`` gradient evaluations in phase 1, ``Σ_s search_cost(C_s, rungs_s, keep_s)`` in the
stages (``report.gradient_evaluations``); with the survivor trained to ``T``,
``report.relative_cost`` is the run's price in equal-weight runs (bench: 1.75x K=2, 1.93x K=3).

Example:
  >>> score_fn = lambda p: -jnp.sum(loss_fn(p, batches[-1]))        # higher is better
  >>> stages = (asj.search.alpha_stage((1.0, 2.0, 3.0), rungs=(2, 4)),)
  >>> found = asj.search.find_weights(loss_fn, optax.adam(1e-2), score_fn, params,
  ...                                 iter(batches * 2), budget=20, estimation_steps=2,
  ...                                 window=1, stages=stages, chunk_size=2, progress=False)
  >>> found.weights.shape, found.report.steps, found.report.gradient_evaluations
  ((2,), 6, 14)

References:
  Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization
  Metrics, 2025 (arXiv 2508.13979).
  Jamieson & Talwalkar, Non-stochastic Best Arm Identification and Hyperparameter
  Optimization, 2016 (arXiv 1502.07943).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import autoscale_jax as _asj
from autoscale_jax.search import _checks, _loop_io
from autoscale_jax.search import _loop_report as _report
from autoscale_jax.search import _loop_state as _state
from autoscale_jax.search._loop_report import (
    SearchReport,
    StageReport,
    WeightSearchResult,
)
from autoscale_jax.search._result import SearchResult, raise_if_failed
from autoscale_jax.search.halving import halving_counts
from autoscale_jax.search.stages import (
    Stage,
    check_stages,
    default_estimation_steps,
    default_stages,
)

__all__ = ["SearchReport", "StageReport", "WeightSearch", "WeightSearchResult", "find_weights"]


class WeightSearch:
    """The streamed search as an object: ``init(params)``, ``run(state, batches)``, ``result``.

    Args (all checked here, before the first step):
      loss_fn: ``loss_fn(params, batch) -> [K]`` losses, or ``(losses, counts)`` with
        ``task_counts=True`` (an absent task, count 0, gets weight 0 in that step; its
        placeholder loss must have a finite gradient, e.g. divide by ``max(count, 1)``:
        the one backward pass multiplies that gradient by 0, and 0 x inf is NaN).
      optimizer: the optax optimizer (no multi-task part), e.g. ``optax.adam(1e-3)``.
      score_fn: ``score_fn(params) -> scalar``, higher is better, traced and vmapped.
      num_tasks: K >= 2.
      budget: the training budget in steps (defaults derive from it; phase 1 and the stages
        must fit in it).
      estimation_steps, guide, window, metric_mask: AutoScale's phase 1
        (:func:`autoscale_jax.autoscale`); ``estimation_steps`` defaults to 5% of ``budget``.
      stages: a sequence of :class:`~autoscale_jax.search.stages.Stage` (default: the bench's,
        :func:`~autoscale_jax.search.default_stages`; ``()``: AutoScale's phase 1 alone).
      chunk_size: steps per compiled chunk.
      devices: ``None``, a sequence of devices or a 1-D mesh for the candidate axis.
      sequential: train the candidates one after another (not with devices).
      task_counts: ``loss_fn`` returns ``(losses, counts)``.
      restart: restart the optimizer's moments at the end of phase 1 (default; ``False``
        carries phase 1's moments into the stages, the bench's ``fresh_optimizer=False``).
      record: ``record(train_state, losses) -> pytree``, traced after every phase-1 step
        (e.g. ``lambda s, l: (asj.task_weights(s.weighting), s.weighting.metrics)``); ``run``
        hands each chunk's values to ``on_record``.
      progress: ``None`` (tqdm when installed and interactive), ``True``, ``False`` or
        ``progress(step, total, text)``.
    """

    def __init__(
        self,
        loss_fn: Callable[[Any, Any], Any],
        optimizer: optax.GradientTransformation,
        score_fn: Callable[[Any], jax.Array],
        *,
        num_tasks: int,
        budget: int,
        estimation_steps: int | None = None,
        guide: str = "gms",
        window: int = 10,
        metric_mask: Any = "shared",
        stages: Sequence[Stage] | None = None,
        chunk_size: int = 16,
        devices: Any = None,
        sequential: bool = False,
        task_counts: bool = False,
        restart: bool = True,
        record: Callable[[Any, jax.Array], Any] | None = None,
        progress: Any = None,
    ) -> None:
        _checks.check_functions(loss_fn, optimizer, score_fn)
        self.num_tasks = _loop_io.check_count("num_tasks", num_tasks)
        if self.num_tasks < 2:
            raise ValueError(
                "num_tasks must be >= 2 (loss_fn returns one loss): the search weighs tasks "
                "against each other; train a single task without it."
            )
        self.budget = _loop_io.check_count("budget", budget)
        self.chunk_size = _loop_io.check_count("chunk_size", chunk_size)
        window = _loop_io.check_count("window", window)
        if estimation_steps is None:
            estimation_steps = default_estimation_steps(self.budget, window)
        self.estimation_steps = _loop_io.check_count("estimation_steps", estimation_steps)
        flags = (("sequential", sequential), ("task_counts", task_counts), ("restart", restart))
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}.")
        self.stages = check_stages(
            default_stages(self.num_tasks, self.budget) if stages is None else stages,
            self.num_tasks,
        )
        weighting = _asj.autoscale(
            self.num_tasks,
            self.estimation_steps,
            guide=guide,
            window=window,
            metric_mask=metric_mask,
        )
        self._mesh = _loop_io.mesh_of(devices, sequential)
        self._progress = progress
        _loop_io.Progress(progress, 0, show=False)  # checks the option now
        self._loss_fn, self._score_fn, self._task_counts = loss_fn, score_fn, task_counts
        if record is not None and not callable(record):
            raise TypeError(f"record must be callable: record(state, losses), got {record!r}.")
        self._record = record
        self._train = _asj.multitask_train_step(
            loss_fn, weighting, optimizer, task_counts=task_counts, restart_moments=restart
        )
        self._phase_one = jax.jit(
            _state.phase_one_chunk(self._train.step, _asj.task_weights, record)
        )
        self._candidates = jax.jit(
            _state.candidate_chunk(loss_fn, optimizer, task_counts, sequential)
        )
        self.segments = _state.schedule(
            self.stages,
            self.num_tasks,
            self.estimation_steps,
            lambda n: _loop_io.rows_for(n, self._mesh),
        )
        self.total_steps = self.segments[-1].end
        if self.total_steps > self.budget:
            raise ValueError(
                f"phase 1 ({self.estimation_steps} steps) and the stages' last rungs "
                f"({[s.rungs[-1] for s in self.stages]}) take {self.total_steps} steps, more "
                f"than budget = {self.budget}: lower estimation_steps or the rungs."
            )
        self._ends: dict[int, Callable] = {}
        self._start = jax.jit(_state.start_stage, static_argnums=(1, 3))  # no eager ops

    def _segment(self, step: int) -> _state.Segment:
        return next(seg for seg in self.segments if seg.start <= step < seg.end)

    def _rows_at(self, step: int) -> int:
        return (
            1
            if step < self.estimation_steps or step >= self.total_steps
            else (self._segment(step).rows)
        )

    def init(self, params: Any) -> _state.SearchState:
        """The state at step 0 (checks ``params`` and ``score_fn`` on them)."""
        _checks.check_params(params)
        _checks.check_score(self._score_fn, params)
        train_state = self._train.init(params)
        weights = _asj.task_weights(train_state.weighting)
        state = _state.initial_state(train_state, params, weights, self.stages, self.num_tasks)
        return _loop_io.place(state, self._mesh, False)

    def abstract_state(self, params: Any, step: int) -> Any:
        """Shapes and dtypes of the state after ``step`` steps (a chunk boundary): the target
        for restoring a checkpoint (e.g. orbax's ``StandardCheckpointer().restore``)."""
        template = jax.eval_shape(self.init, params)
        rows = self._rows_at(step)
        resized = {
            name: jax.tree.map(
                lambda x: jax.ShapeDtypeStruct((rows, *x.shape[1:]), x.dtype),
                getattr(template, name),
            )
            for name in _state.CANDIDATE_FIELDS
        }
        return template._replace(**resized)

    def run(
        self,
        state: _state.SearchState,
        batches: Iterable[Any] | Callable[[int], Any],
        *,
        max_chunks: int | None = None,
        callback: Callable[[_state.SearchState], Any] | None = None,
        on_record: Callable[[int, Any], Any] | None = None,
    ) -> _state.SearchState:
        """Runs chunks from ``state.step`` to the end (or ``max_chunks`` of them).

        ``batches``: a function ``step -> batch`` (global steps), or an iterator whose first
        item is the batch of step ``state.step``. ``callback(state)`` runs after every chunk
        (save a checkpoint there). ``on_record(step, records)`` (with ``record=``) runs after
        every phase-1 chunk: the first step of the chunk and ``record``'s values stacked over
        its real steps (host arrays, leading axis the chunk's step count).
        """
        step = int(state.step)
        if max_chunks is not None:
            _loop_io.check_count("max_chunks", max_chunks)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable: callback(state), got {callback!r}.")
        _loop_io.check_on_record(on_record, self._record)
        source = _loop_io.Batches(batches, step)
        state = self._placed(state, int(state.ids.shape[0]))  # e.g. restored on one device
        if step < self.total_steps:
            _loop_io.check_loss(
                self._loss_fn,
                _state.take(state.params, 0),
                source.peek(),
                self.num_tasks,
                self._task_counts,
            )
        bar, chunks = _loop_io.Progress(self._progress, self.total_steps, step), 0
        try:
            while step < self.total_steps and (max_chunks is None or chunks < max_chunks):
                seg = self._segment(step)
                count = min(self.chunk_size, seg.end - step)
                stacked, valid = source.take(step, count, self.chunk_size)
                stacked = _loop_io.place(stacked, self._mesh, False)
                if seg.stage >= 0:
                    state = self._candidates(state, stacked, valid)
                elif self._record is None:
                    state = self._phase_one(state, stacked, valid)
                else:
                    state, records = self._phase_one(state, stacked, valid)
                    if on_record is not None:
                        on_record(step, _loop_io.first_rows(jax.device_get(records), count))
                step += count
                state = state._replace(step=jnp.asarray(step, jnp.int32))
                if step == seg.end:
                    state = self._end_segment(state, seg)
                chunks += 1
                bar.update(step, _state.describe(seg, self.stages))
                if callback is not None:
                    callback(state)
        finally:
            bar.close()
        return state

    def _end_segment(self, state: _state.SearchState, seg: _state.Segment) -> _state.SearchState:
        if seg.stage < 0:
            state = state._replace(phase_one_weights=state.weights[0])
            return self._start_stage(state, 0) if self.stages else state
        stage = self.stages[seg.stage]
        if seg.start not in self._ends:
            counts = halving_counts(
                stage.num_candidates(self.num_tasks), len(stage.rungs), stage.keep
            )
            keep = 1 if seg.last else counts[seg.rung + 1]
            rows = 1 if seg.last else _loop_io.rows_for(keep, self._mesh)
            end = _state.end_rung(self._score_fn, seg, seg.end - seg.start, keep, rows)
            self._ends[seg.start] = jax.jit(end)
        state = self._ends[seg.start](state)
        state = self._placed(state, 1 if seg.last else int(state.ids.shape[0]))
        if seg.last:
            s = seg.stage
            if np.any(np.asarray(state.nonfinite[s])):  # the result only for the error
                self._fail(state, s, stage.rungs)
            if s + 1 < len(self.stages):
                state = self._start_stage(state, s + 1)
        return state

    def _fail(self, state: _state.SearchState, s: int, rungs: tuple[int, ...]) -> None:
        raise_if_failed(
            SearchResult(
                state.weights[0],
                state.survivors[s],
                _state.take(state.params, 0),
                _state.take(state.opt_state, 0),
                state.rung_scores[s],
                state.rung_losses[s],
                state.nonfinite[s],
                ~jnp.any(state.nonfinite[s]),
            ),
            rungs,
        )

    def _placed(self, state: _state.SearchState, rows: int) -> _state.SearchState:
        fields = {n: getattr(state, n) for n in _state.CANDIDATE_FIELDS}
        placed = _loop_io.place(fields, self._mesh, rows > 1)
        return _loop_io.place(state, self._mesh, False)._replace(**placed)

    def _start_stage(self, state: _state.SearchState, s: int) -> _state.SearchState:
        weights = state.weights[0]
        if not np.all(np.isfinite(np.asarray(weights))):
            raise ValueError(
                f"stage {s} starts from non-finite weights {np.asarray(weights).tolist()}: "
                "AutoScale's phase 1 found no usable sample (see AutoScaleState."
                "window_statistics); check loss_fn and metric_mask."
            )
        candidates = self.stages[s].candidates(weights)
        rows = _loop_io.rows_for(candidates.shape[0], self._mesh)
        state = self._start(state, s, candidates, rows)
        return self._placed(state, rows)

    def result(self, state: _state.SearchState) -> WeightSearchResult:
        """The survivor and the report of a finished search."""
        if int(state.step) != self.total_steps:
            raise ValueError(
                f"the search is at step {int(state.step)} of {self.total_steps}: run it to the "
                "end (WeightSearch.run) before reading the result."
            )
        return _report.result_of(
            state, self.stages, self.num_tasks, self.estimation_steps, self.total_steps, self.budget
        )

    def lower_chunk(self, state: _state.SearchState, batch: Any) -> Any:
        """The compiled chunk program of ``state``'s segment, lowered (``.compile()
        .memory_analysis()`` gives its memory), for batches like ``batch``."""
        stacked = jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * self.chunk_size), batch)
        program = self._phase_one if int(state.step) < self.estimation_steps else self._candidates
        return program.lower(state, stacked, jnp.ones(self.chunk_size, bool))


def find_weights(
    loss_fn: Callable[[Any, Any], Any],
    optimizer: optax.GradientTransformation,
    score_fn: Callable[[Any], jax.Array],
    params: Any,
    batches: Iterable[Any] | Callable[[int], Any],
    *,
    budget: int,
    **options: Any,
) -> WeightSearchResult:
    """The whole search in one call: phase 1, the restart, the stages, the survivor.

    K and whether ``loss_fn`` returns ``(losses, counts)`` are read from its output on the
    first batch; ``options`` are :class:`WeightSearch`'s (``estimation_steps``, ``guide``,
    ``window``, ``metric_mask``, ``stages``, ``chunk_size``, ``devices``, ``sequential``,
    ``restart``, ``progress``). See the module docstring for the design and an example.

    Returns:
      A :class:`WeightSearchResult` (the survivor after ``report.steps`` steps).

    Raises:
      ValueError, TypeError: before the first step, for any argument outside the above.
      SearchError: when a stage's pick was not by score (every live candidate non-finite).
    """
    _checks.check_functions(loss_fn, optimizer, score_fn)
    batches, first = _loop_io.first_batch(batches)
    num_tasks, counts = _loop_io.loss_layout(loss_fn, params, first)
    search = WeightSearch(
        loss_fn,
        optimizer,
        score_fn,
        num_tasks=num_tasks,
        budget=budget,
        task_counts=counts,
        **options,
    )
    return search.result(search.run(search.init(params), batches))
