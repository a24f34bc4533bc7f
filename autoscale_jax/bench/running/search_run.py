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
   :meth:`~autoscale_jax.bench.running.recipe.Recipe.restart`: the recipe's schedule goes on)
   and pruned by successive halving on the
   validation score the bench selects checkpoints with (Δm% against the single-task baselines);
   option ``candidates`` replaces the family by given [C, K] weights (with one row: phase 1,
   then those fixed weights, the like-for-like control of ``benchmarks/search_control.py``);
   optionally a second stage of per-task multipliers around the first survivor
   (:func:`autoscale_jax.search.task_multipliers`, for K ≥ 3), from the first survivor's state;
3. **the survivor continues** with its fixed weights to ``steps``, scored on validation every
   ``eval_every`` steps like any run; the best checkpoint (from the end of the search on) is
   tested.

Cost: K gradient evaluations per phase-1 step, the searches' candidate steps
(:func:`autoscale_jax.search.search_cost`), then 1 per step. The searches' wall time includes
their validation scoring (a forward pass of each live candidate per rung); compilation is off
the clock.

Example:
  >>> from autoscale_jax.bench.experiments.baselines import single_task_baselines
  >>> from autoscale_jax.bench.running.method_config import search_options
  >>> config = MethodConfig("autoscale_search", SEARCH_METHOD, search_options(2, 200))
  >>> baselines, _ = single_task_baselines(bench, steps=200, eval_every=50)
  >>> result = run(bench, config, steps=200, seed=0, eval_every=50, baselines=baselines)
  >>> survivor = result.extras["stages"][0]["survivor"]
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import autoscale_jax as asj
from autoscale_jax import search
from autoscale_jax.bench.running import chunk, evaluation
from autoscale_jax.bench.running.benchmark import Benchmark, MethodKey, TrainerKey
from autoscale_jax.bench.running.method_config import (
    RESTART,
    SEARCH_METHOD,
    MethodConfig,
    json_options,
)
from autoscale_jax.bench.running.run_result import Baselines, RunResult, TaskMetricDicts
from autoscale_jax.bench.running.selection import (
    Checkpoint,
    keep_better,
    relative_score,
    selection_reference,
)

__all__ = ["SEARCH_METHOD", "run"]

_PHASE_ONE_OPTIONS = ("estimation_steps", "guide", "window", "metric_mask")


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


def _compiled_search(
    benchmark: Benchmark,
    stage: dict[str, Any],
    reference: TaskMetricDicts,
    arguments: tuple,
    total_steps: int,
) -> tuple[Any, float]:
    """The compiled search program of one stage (the recipe's optimizer over the run's
    ``total_steps``), cached on the benchmark."""
    candidates, _, _, batches = arguments
    options = repr((stage["rungs"], stage["keep"], candidates.shape, reference))
    optimizer_key = benchmark.recipe.optimizer_key(total_steps)
    key = TrainerKey(
        MethodKey(SEARCH_METHOD, options), stage["rungs"][-1], batches.shape[1], optimizer_key
    )
    if key in benchmark.cache.trainers:
        return benchmark.cache.trainers[key], 0.0
    find = search.validation_search(
        chunk.index_loss_fn(benchmark),
        benchmark.recipe.optimizer(total_steps),
        _score_fn(benchmark, reference),
        rungs=stage["rungs"],
        keep=stage["keep"],
    )
    start = time.perf_counter()
    benchmark.cache.trainers[key] = find.lower(*arguments).compile()  # type: ignore[attr-defined]
    return benchmark.cache.trainers[key], time.perf_counter() - start


def _stages(options: Mapping[str, Any], num_tasks: int) -> list[dict[str, Any]]:
    stages = [{"rungs": tuple(options["rungs"]), "keep": float(options.get("keep", 0.5))}]
    if options.get("refine_rungs"):
        stages.append({"rungs": tuple(options["refine_rungs"]), "keep": stages[0]["keep"]})
    return stages


def _candidates(stage: int, options: Mapping[str, Any], weights: jax.Array) -> jax.Array:
    if stage == 0 and options.get("candidates") is not None:  # given weights (a control)
        return jnp.asarray(options["candidates"], jnp.float32)
    if stage == 0:
        return search.alpha_family(weights, tuple(options["alphas"]))
    return search.task_multipliers(weights, tuple(options["factors"]))


class _Clock:
    """Training time and compile time of one run, and its gradient evaluations."""

    def __init__(self) -> None:
        self.chunks: list[float] = []
        self.compile = 0.0
        self.evaluations = 0


def _phase_one(
    benchmark: Benchmark, config: MethodConfig, params: Any, indices: np.ndarray, seed: int
) -> tuple[Any, Any, chunk.StepRecord, float, float]:
    """AutoScale's phase 1 as one compiled chunk: ``(params, state, records, time, compile)``."""
    options = {k: v for k, v in config.options.items() if k in _PHASE_ONE_OPTIONS}
    # The step restarts Adam at the switch (the chunk's last step) only for a fresh search.
    options[RESTART] = bool(config.options.get("fresh_optimizer", True))
    phase_config = MethodConfig("autoscale", "autoscale", options)
    method = chunk.method_build(phase_config, benchmark.num_tasks, params)
    functions = chunk.benchmark_functions(benchmark)
    steps = len(indices)
    train = chunk.multitask_step(
        benchmark, method.build(method.args), benchmark.recipe.optimizer(steps)
    )
    state = train.init(params)
    length = options["estimation_steps"]
    keys = jax.random.split(jax.random.key(seed), steps)[:length]
    arguments = (method.args, params, state, functions.data, jnp.asarray(indices[:length]), keys)
    compiled, seconds = chunk.compiled_chunk(benchmark, method, arguments, total_steps=steps)
    start = time.perf_counter()
    params, state, records = jax.block_until_ready(compiled(*arguments))
    return params, state, jax.device_get(records), time.perf_counter() - start, seconds


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
    k, options, tasks = benchmark.num_tasks, config.options, benchmark.dataset.tasks
    functions = chunk.benchmark_functions(benchmark)
    params = chunk.initial_params(benchmark, seed)
    indices = chunk.batch_indices(len(benchmark.dataset.train.inputs), batch_size, steps, seed)
    initial = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
    reference = selection_reference(baselines, initial)
    probes, probe_steps = [functions.probe(params, jnp.ones(k), functions.probe_batch)], [0]
    clock = _Clock()
    params, state, records, seconds, compiled = _phase_one(benchmark, config, params, indices, seed)
    clock.chunks.append(seconds)
    clock.compile += compiled
    clock.evaluations += int(np.sum(records.gradient_evaluations))
    weights, opt_state = asj.task_weights(state.weighting), state.optimizer
    if options.get("fresh_optimizer", True):  # Adam's moments hold phase 1's gradient scale
        opt_state = benchmark.recipe.restart(opt_state)  # the schedule goes on
    done = options["estimation_steps"]
    weight_rows = [np.asarray(w) for w in records.weights]
    stage_info = []
    for number, stage in enumerate(_stages(options, k)):
        candidates = _candidates(number, options, weights)
        end = done + stage["rungs"][-1]
        if end > steps:
            raise ValueError(f"the search needs {end} steps, the budget is {steps}")
        arguments: tuple[Any, ...] = (candidates, params, opt_state, jnp.asarray(indices[done:end]))
        find, seconds = _compiled_search(benchmark, stage, reference, arguments, steps)
        clock.compile += seconds
        start = time.perf_counter()
        result = jax.block_until_ready(find(*arguments))
        clock.chunks.append(time.perf_counter() - start)
        if not bool(result.ok):  # the compiled search returns the flag instead of raising
            raise search.SearchError(
                f"stage {number}: every candidate's score or parameters were non-finite "
                f"(rung scores {np.asarray(result.rung_scores).tolist()}): no weights to keep",
                result,
            )
        clock.evaluations += search.search_cost(len(candidates), stage["rungs"], stage["keep"])
        params, opt_state, weights = result.params, result.opt_state, result.weights
        weight_rows += [np.asarray(weights)] * (end - done)
        stage_info.append(
            {
                "start_step": done,
                "rungs": list(stage["rungs"]),
                "candidates": np.asarray(candidates).tolist(),
                "rung_scores": np.asarray(result.rung_scores).tolist(),
                "survivor": int(result.index),
                "weights": np.asarray(weights).tolist(),
            }
        )
        done = end
    probes.append(functions.probe(params, weights, functions.probe_batch))
    probe_steps.append(done)
    validation = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
    first = Checkpoint(relative_score(tasks, validation, reference), done, params, validation)
    best, history = first, [(done, first.score)]
    method = chunk.method_build(
        MethodConfig("survivor", "fixed_weights", {"weights": weights}), k, params
    )
    state = asj.TrainState(asj.FixedWeightsState(weights), opt_state)
    keys = jax.random.split(jax.random.key(seed), steps)
    losses = [np.mean(records.losses, axis=0).tolist()]
    while done < steps:
        length = min(eval_every - done % eval_every, steps - done)
        arguments = (
            method.args,
            params,
            state,
            functions.data,
            jnp.asarray(indices[done : done + length]),
            keys[done : done + length],
        )
        compiled_chunk, seconds = chunk.compiled_chunk(
            benchmark, method, arguments, total_steps=steps
        )
        clock.compile += seconds
        start = time.perf_counter()
        params, state, step_records = jax.block_until_ready(compiled_chunk(*arguments))
        clock.chunks.append(time.perf_counter() - start)
        clock.evaluations += length
        done += length
        weight_rows += [np.asarray(weights)] * length
        losses.append(np.mean(np.asarray(step_records.losses), axis=0).tolist())
        validation = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
        score = relative_score(tasks, validation, reference)
        best = keep_better(best, Checkpoint(score, done, params, validation))
        history.append((done, score))
        probes.append(functions.probe(params, weights, functions.probe_batch))
        probe_steps.append(done)
    test = chunk.evaluate(benchmark, best.params, benchmark.dataset.test)
    stride = max(1, -(-steps // 200))
    phase_one = records.estimator_metrics
    return RunResult(
        benchmark=benchmark.name,
        method=config.label,
        method_name=config.name,
        options=json_options(options),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        selected_step=best.step,
        selection_score=float(best.score),
        validation_metrics=best.validation,
        test_metrics=test,
        delta_m=None if baselines is None else evaluation.delta_m_both(tasks, test, baselines.test),
        wall_time_s=float(sum(clock.chunks)),
        chunk_times_s=clock.chunks,
        compile_time_s=clock.compile,
        gradient_evaluations=clock.evaluations,
        weight_steps=list(range(1, steps + 1, stride)),
        weights=np.asarray(weight_rows[::stride], np.float64).tolist(),
        estimator_steps=list(range(1, len(records.losses) + 1)),
        estimator_metrics={
            name: np.asarray(v, np.float64).tolist() for name, v in phase_one._asdict().items()
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
