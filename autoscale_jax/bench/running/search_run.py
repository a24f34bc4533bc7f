"""The bench method ``autoscale_search``: AutoScale's phase 1, a validation-guided search, and
the survivor trained to the end.

One run (a seed) does, on the same batches as every other method of that seed:

1. **phase 1**: ``estimation_steps`` steps of :func:`autoscale_jax.autoscale` with a guide
   (default ``"gms"``, warm start, windows), giving weights ``w_gms``;
2. **search**: candidates ``w(α) ∝ w_gms^α`` (:func:`autoscale_jax.search.alpha_family`),
   trained side by side from the phase-1 parameters with a fresh Adam state (option
   ``fresh_optimizer``, default on: Adam's second moments from phase 1 hold the gradient
   scale of the phase-1 weights and, with β2 = 0.999, distort every candidate's effective
   weights for hundreds of steps; measured on tuning seeds 100-104 of the five
   discriminating benchmarks, the fresh state improved the search's Δm by 4.5-9.3 points;
   the restart of :mod:`autoscale_jax.restart` at phase 1's last step: the schedule goes on)
   and pruned by successive halving on the
   validation score the bench selects checkpoints with (Δm% against the single-task baselines);
   option ``candidates`` replaces the family by given [C, K] weights (with one row: phase 1,
   then those fixed weights, the like-for-like control of ``benchmarks/search_control.py``);
   optionally a second stage of per-task multipliers around the first survivor
   (:func:`autoscale_jax.search.task_multipliers`, for K ≥ 3), from the first survivor's state;
3. **the survivor continues** with its fixed weights to ``steps``, scored on validation every
   ``eval_every`` steps like any run; the best checkpoint (from the end of the search on) is
   tested.

The search is the public one-call search (:class:`autoscale_jax.search.WeightSearch`, with
``restart=fresh_optimizer``); this module builds its loss (batch indices into the device-resident
training split) and score from the benchmark, records phase 1 step by step (``record=``: losses,
weights, AutoScale's estimator metrics), times it and trains the survivor on.

Cost: K gradient evaluations per phase-1 step, the searches' candidate steps
(:func:`autoscale_jax.search.search_cost`), then 1 per step. The searches' wall time includes
their validation scoring (a forward pass of each live candidate per rung); ``chunk_times_s``
holds phase 1, each rung of each stage, then the survivor's chunks. Compilation (the durations
JAX reports for tracing, lowering and compiling, :mod:`jax.monitoring`) is off the clock.

Example:
  >>> from autoscale_jax.bench.experiments.baselines import single_task_baselines
  >>> from autoscale_jax.bench.running.method_config import search_options
  >>> config = MethodConfig("autoscale_search", SEARCH_METHOD, search_options(2, 200))
  >>> baselines, _ = single_task_baselines(bench, steps=200, eval_every=50)
  >>> result = run(bench, config, steps=200, seed=0, eval_every=50, baselines=baselines)
  >>> survivor = result.extras["stages"][0]["survivor"]
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import autoscale_jax as asj
from autoscale_jax import search
from autoscale_jax.bench.running import chunk, evaluation, run_loop
from autoscale_jax.bench.running.benchmark import Benchmark, MethodKey, TrainerKey
from autoscale_jax.bench.running.method_config import SEARCH_METHOD, MethodConfig
from autoscale_jax.bench.running.run_result import Baselines, RunResult, TaskMetricDicts
from autoscale_jax.bench.running.selection import Checkpoint, relative_score

__all__ = ["SEARCH_METHOD", "run"]

_COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)
_compile_seconds = [0.0, False]  # seconds JAX spent compiling so far, listener registered


def _compile_clock() -> float:
    """Seconds JAX has spent tracing, lowering and compiling in this process so far."""
    if not _compile_seconds[1]:

        def listen(event: str, duration_secs: float, **_: str | int) -> None:
            if event in _COMPILE_EVENTS:
                _compile_seconds[0] += duration_secs

        jax.monitoring.register_event_duration_secs_listener(listen)
        _compile_seconds[1] = True
    return float(_compile_seconds[0])


def _score_fn(benchmark: Benchmark, reference: TaskMetricDicts) -> Any:
    """The bench's validation selection score as a traced function of the parameters.

    The forward pass runs in the program; the metrics and Δm% run on the host
    (``jax.pure_callback``), so the search ranks exactly as checkpoint selection does.
    """
    tasks, split = benchmark.dataset.tasks, benchmark.dataset.validation
    predict = chunk.benchmark_functions(benchmark).predict
    inputs = jnp.asarray(split.inputs)

    def host_score(*outputs: Any) -> np.float32:
        values = evaluation.split_metrics(tasks, [np.asarray(out) for out in outputs], split)
        return np.float32(relative_score(tasks, values, reference))

    def score(params: Any) -> jax.Array:
        outputs = predict(params, inputs)
        shape = jax.ShapeDtypeStruct((), jnp.float32)
        return jax.pure_callback(host_score, shape, *outputs, vmap_method="sequential")

    return score


def _index_loss(benchmark: Benchmark) -> tuple[Any, bool]:
    """``(loss(params, indices [B]), task_counts)``: the loss phase 1 trains with (with the
    label counts on a partial-label benchmark), on examples gathered from the device data."""
    functions = chunk.benchmark_functions(benchmark)
    inputs, targets = functions.data
    counted_fn = functions.counted_loss_fn
    loss_fn = functions.loss_fn if counted_fn is None else counted_fn

    def loss(params: Any, index: jax.Array) -> Any:
        return loss_fn(params, (inputs[index], tuple(t[index] for t in targets)))

    return loss, counted_fn is not None


def _stages(options: Mapping[str, Any]) -> tuple[search.Stage, ...]:
    """Stage 1 (α family, or given candidates: a control), stage 2 (per-task multipliers)."""
    rungs, keep = tuple(options["rungs"]), float(options.get("keep", 0.5))
    if options.get("candidates") is not None:
        stages = [search.weights_stage(options["candidates"], rungs, keep)]
    else:
        stages = [search.alpha_stage(tuple(options["alphas"]), rungs, keep)]
    if options.get("refine_rungs"):
        stages.append(
            search.multiplier_stage(tuple(options["factors"]), tuple(options["refine_rungs"]), keep)
        )
    return tuple(stages)


def _phase_options(options: Mapping[str, Any]) -> dict[str, Any]:
    names = ("estimation_steps", "guide", "window", "metric_mask")
    return {name: options[name] for name in names if name in options}


def _record(train_state: Any, losses: jax.Array) -> tuple:
    """What the bench records after every phase-1 step."""
    return losses, asj.task_weights(train_state.weighting), train_state.weighting.metrics


def _weight_search(
    benchmark: Benchmark,
    options: Mapping[str, Any],
    params: Any,
    reference: TaskMetricDicts,
    steps: int,
    batch_size: int,
) -> search.WeightSearch:
    """The run's :class:`~autoscale_jax.search.WeightSearch` (the recipe's optimizer over the
    run's ``steps``), cached on the benchmark so that seeds share its compiled programs."""
    # Phase 1 as before: AutoScale's own defaults for a guide, window or mask not given.
    phase = {"guide": "gms", "window": 10, "metric_mask": None, **_phase_options(options)}
    stages = _stages(options)
    key = TrainerKey(
        MethodKey(SEARCH_METHOD, repr((sorted(options.items()), reference))),
        steps,
        batch_size,
        benchmark.recipe.optimizer_key(steps),
    )
    cache: dict[Any, Any] = benchmark.cache.trainers
    if key not in cache:
        loss, counted = _index_loss(benchmark)
        gaps = [b - a for st in stages for a, b in itertools.pairwise((0, *st.rungs))]
        cache[key] = search.WeightSearch(
            loss,
            benchmark.recipe.optimizer(steps),
            _score_fn(benchmark, reference),
            num_tasks=benchmark.num_tasks,
            budget=steps,
            stages=stages,
            chunk_size=max(phase["estimation_steps"], *gaps),  # one chunk per segment
            task_counts=counted,
            restart=bool(options.get("fresh_optimizer", True)),
            record=_record,
            progress=False,
            **chunk.resolve_options(phase, params, benchmark.num_tasks),
        )
    return cache[key]


class _Clock(run_loop.RunClock):
    """:class:`~autoscale_jax.bench.running.run_loop.RunClock` of the search phase: ``lap()``
    closes a chunk (its compile time, as JAX reports it, moves off the clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.start()

    def start(self) -> None:
        self._wall, self._compiled = time.perf_counter(), _compile_clock()

    def lap(self) -> None:
        compiled = _compile_clock() - self._compiled
        self.chunks.append(max(0.0, time.perf_counter() - self._wall - compiled))
        self.compile += compiled
        self.start()


def run(
    benchmark: Benchmark,
    config: MethodConfig,
    *,
    steps: int,
    batch_size: int = 128,
    seed: int = 0,
    eval_every: int = 50,
    baselines: Baselines | None = None,
    selection_tasks: Sequence[int] | None = None,
) -> RunResult:
    """One seed of ``autoscale_search`` (see the module docstring).

    Args:
      benchmark: the benchmark.
      config: ``MethodConfig(label, SEARCH_METHOD, options)`` (see :func:`search_options`).
      steps, batch_size, seed, eval_every, baselines: as in :func:`single_run.run`.
      selection_tasks: unsupported (single-task runs are plain fixed weights).

    Returns:
      A :class:`RunResult`; ``extras["stages"]`` holds each stage's candidates, rung scores
      and survivor.
    """
    if selection_tasks is not None:
        raise ValueError("autoscale_search scores every task")
    k, options = benchmark.num_tasks, config.options
    start = run_loop.run_start(
        benchmark, seed=seed, batch_size=batch_size, steps=steps, baselines=baselines
    )
    functions, params, indices, reference = (
        start.functions,
        start.params,
        start.indices,
        start.reference,
    )
    probes, probe_steps = [functions.probe(params, jnp.ones(k), functions.probe_batch)], [0]
    finder = _weight_search(benchmark, options, params, reference, steps, batch_size)
    chunks: list = []
    first_state = finder.init(params)
    clock = _Clock()

    def lap(searched: Any) -> None:
        jax.block_until_ready(searched)
        clock.lap()

    searched = finder.run(
        first_state,
        lambda step: indices[step],
        callback=lap,
        on_record=lambda _, values: chunks.append(values),
    )
    found = finder.result(searched)
    losses_1, weights_1, metrics_1 = jax.tree.map(lambda *x: np.concatenate(x), *chunks)
    clock.evaluations = found.report.gradient_evaluations
    params, opt_state, weights = found.params, found.opt_state, found.weights
    weight_rows = [np.asarray(w) for w in weights_1]
    stage_info = []
    for stage in found.report.stages:
        weight_rows += [np.asarray(stage.weights)] * stage.rungs[-1]
        stage_info.append(
            {
                "start_step": stage.start_step,
                "rungs": list(stage.rungs),
                "candidates": np.asarray(stage.candidates).tolist(),
                "rung_scores": np.asarray(stage.rung_scores).tolist(),
                "survivor": stage.survivor,
                "weights": np.asarray(stage.weights).tolist(),
            }
        )
    done = found.report.steps
    probes.append(functions.probe(params, weights, functions.probe_batch))
    probe_steps.append(done)
    validation = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
    score = relative_score(benchmark.dataset.tasks, validation, reference)
    best = Checkpoint(score, done, params, validation)  # kept even when not finite
    history = [(done, score)]
    method = chunk.method_build(
        MethodConfig("survivor", "fixed_weights", {"weights": weights}), k, params
    )
    state = asj.TrainState(asj.FixedWeightsState(weights), opt_state)
    losses = [np.mean(losses_1, axis=0).tolist()]
    for trained in run_loop.train_chunks(
        benchmark,
        method,
        params,
        state,
        indices=indices,
        keys=jax.random.split(jax.random.key(seed), steps),
        start=done,
        steps=steps,
        eval_every=eval_every,
        best=best,
        reference=reference,
        clock=clock,
    ):
        clock.evaluations += trained.length
        weight_rows += [np.asarray(weights)] * trained.length
        losses.append(np.mean(np.asarray(trained.records.losses), axis=0).tolist())
        best = trained.best
        history.append((trained.step, trained.score))
        probes.append(functions.probe(trained.params, weights, functions.probe_batch))
        probe_steps.append(trained.step)
    stride = run_loop.record_stride(steps)
    return RunResult(
        **run_loop.setup_fields(
            benchmark, config, seed=seed, steps=steps, batch_size=batch_size, eval_every=eval_every
        ),
        **run_loop.selected_fields(benchmark, best, baselines),
        **clock.fields(),
        weight_steps=list(range(1, steps + 1, stride)),
        weights=np.asarray(weight_rows[::stride], np.float64).tolist(),
        estimator_steps=list(range(1, len(losses_1) + 1)),
        estimator_metrics={
            name: np.asarray(v, np.float64).tolist() for name, v in metrics_1._asdict().items()
        },
        probe_steps=probe_steps,
        probe_metrics={
            name: [float(getattr(p, name)) for p in probes] for name in probes[0]._fields
        },
        validation_steps=[h[0] for h in history],
        validation_scores=[h[1] for h in history],
        train_losses=losses,
        extras={"stages": stage_info, "finite": bool(math.isfinite(best.score))},
    )
