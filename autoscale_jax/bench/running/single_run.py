"""One run: train a method with one seed, select on validation, test the selected parameters.

:func:`run` trains a :class:`~autoscale_jax.bench.running.method_config.MethodConfig` ``eval_every``
steps at a time with the compiled chunk of :mod:`autoscale_jax.bench.running.chunk`. Around that:

- **Recipe.** The optimizer is the benchmark's recipe (``benchmark.recipe.optimizer(steps)``:
  Adam, β1 / β2 and a schedule over the run's ``steps``), the same for every method.
- **Selection.** After every chunk the validation split is scored and the best parameters are
  kept (:mod:`autoscale_jax.bench.running.selection`); they are evaluated once on the test split.
- **Cost.** ``wall_time_s`` is the time of the training steps only (evaluation and metric
  probes are off the clock); ``gradient_evaluations`` counts forward+backward passes: K per
  step while the method needs per-task gradients (K vmapped VJPs), 1 on the fast path.
- **Traces.** The task weights after every step (``asj.task_weights``) where the method has
  them; AutoScale's own metric snapshots (``state.weighting.metrics``) during phase 1; and, for
  every method, the MTO metrics of the shared trunk at the current weights, measured every
  ``eval_every`` steps on a fixed training probe batch (off the clock).

Example:
  >>> result = run(bench, MethodConfig("ew", "equal_weights"), steps=20, eval_every=10)
  >>> 0.0 <= result.test_metrics[0]["accuracy"] <= 1.0, result.gradient_evaluations
  (True, 20)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import autoscale_jax as asj
from autoscale_jax.bench.running import chunk, evaluation
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.chunk import batch_indices, evaluate
from autoscale_jax.bench.running.method_config import MethodConfig, json_options
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.selection import (
    Checkpoint,
    keep_better,
    relative_score,
    selection_reference,
)

__all__ = ["batch_indices", "evaluate", "run"]


def _tree_to_lists(metrics_tuple: asj.metrics.TaskMetrics) -> dict[str, list[float]]:
    """Stacked metric snapshots as ``{metric name: [values]}``."""
    return {name: np.asarray(v, np.float64).tolist() for name, v in metrics_tuple._asdict().items()}


def _every(count: int, limit: int = 200) -> int:
    """Stride that keeps at most ``limit`` of ``count`` per-step records."""
    return max(1, -(-count // limit))


def _step_traces(per_step: chunk.StepRecord, num_tasks: int, with_weights: bool) -> dict[str, Any]:
    """The per-step traces of a run: weights (every step, thinned to 200) and, during phase 1
    (K gradient evaluations a step), AutoScale's own metric snapshots."""
    steps = len(per_step.gradient_evaluations)
    stride = _every(steps)
    phase_one = (
        np.flatnonzero(per_step.gradient_evaluations == num_tasks)
        if num_tasks > 1
        else np.array([], np.int64)
    )
    estimator = jax.tree.map(lambda v: v[phase_one], per_step.estimator_metrics)
    has_estimator = bool(np.any(np.isfinite(per_step.estimator_metrics.condition_number)))
    return {
        "weight_steps": list(range(1, steps + 1, stride)),
        "weights": per_step.weights[::stride].tolist() if with_weights else None,
        "estimator_steps": (phase_one + 1).tolist() if has_estimator else [],
        "estimator_metrics": _tree_to_lists(estimator) if has_estimator else {},
    }


def run(
    benchmark: Benchmark,
    method_config: MethodConfig,
    *,
    steps: int,
    batch_size: int = 128,
    seed: int = 0,
    eval_every: int = 50,
    baselines: Baselines | None = None,
    selection_tasks: Sequence[int] | None = None,
) -> RunResult:
    """Trains one method with one seed; keeps the validation-best parameters; tests them.

    Args:
      benchmark: the benchmark (its compiled trainers are cached and reused across runs).
      method_config: the method.
      steps: training steps (a positive multiple of ``eval_every`` is typical; a last partial
        chunk is compiled separately).
      batch_size: examples per step.
      seed: seeds the model initialisation, the batch order and the method's random key.
      eval_every: steps between validation scores and metric probes.
      baselines: single-task baselines; selection and Δm% are relative to them when given.
      selection_tasks: score only these tasks on validation (single-task baselines).

    Returns:
      A :class:`RunResult`.
    """
    if steps < 1 or eval_every < 1:
        raise ValueError("steps and eval_every must be positive")
    functions = chunk.benchmark_functions(benchmark)
    k = benchmark.num_tasks
    tasks = benchmark.dataset.tasks
    params = chunk.initial_params(benchmark, seed)
    method = chunk.method_build(method_config, k, params)
    weighting = method.build(method.args)
    optimizer = benchmark.recipe.optimizer(steps)
    state = chunk.multitask_step(benchmark, weighting, optimizer).init(params)
    with_weights = chunk.has_task_weights(state.weighting)
    indices = batch_indices(len(benchmark.dataset.train.inputs), batch_size, steps, seed)
    keys = jax.random.split(jax.random.key(seed), steps)

    initial_validation = evaluate(benchmark, params, benchmark.dataset.validation)
    reference = selection_reference(baselines, initial_validation)

    def probe(step_params: Any, step_state: Any) -> asj.metrics.TaskMetrics:
        weights = asj.task_weights(step_state.weighting) if with_weights else jnp.ones(k)
        return functions.probe(step_params, weights, functions.probe_batch)

    probes = [probe(params, state)]
    probe_steps, validation_steps, scores, chunk_losses = [0], [], [], []
    records: list[chunk.StepRecord] = []
    best = Checkpoint(-math.inf, 0, params, initial_validation)
    chunk_times, compile_time, done = [], 0.0, 0
    while done < steps:
        length = min(eval_every, steps - done)
        arguments = (
            method.args,
            params,
            state,
            functions.data,
            jnp.asarray(indices[done : done + length]),
            keys[done : done + length],
        )
        compiled, seconds = chunk.compiled_chunk(benchmark, method, arguments, total_steps=steps)
        compile_time += seconds
        start = time.perf_counter()
        params, state, chunk_records = jax.block_until_ready(compiled(*arguments))
        chunk_times.append(time.perf_counter() - start)
        done += length
        records.append(jax.device_get(chunk_records))
        chunk_losses.append(np.mean(chunk_records.losses, axis=0).tolist())
        validation = evaluate(benchmark, params, benchmark.dataset.validation)
        score = relative_score(tasks, validation, reference, selection_tasks)
        validation_steps.append(done)
        scores.append(score)
        best = keep_better(best, Checkpoint(score, done, params, validation))
        probes.append(probe(params, state))
        probe_steps.append(done)

    test = evaluate(benchmark, best.params, benchmark.dataset.test)
    per_step = jax.tree.map(lambda *xs: np.concatenate(xs), *records)
    return RunResult(
        benchmark=benchmark.name,
        method=method_config.label,
        method_name=method_config.name,
        options=json_options(method_config.options),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        selected_step=best.step,
        selection_score=float(best.score),
        validation_metrics=best.validation,
        test_metrics=test,
        delta_m=None if baselines is None else evaluation.delta_m_both(tasks, test, baselines.test),
        wall_time_s=float(sum(chunk_times)),
        chunk_times_s=chunk_times,
        compile_time_s=compile_time,
        gradient_evaluations=int(np.sum(per_step.gradient_evaluations)),
        **_step_traces(per_step, k, with_weights),
        probe_steps=probe_steps,
        probe_metrics=_tree_to_lists(jax.tree.map(lambda *v: np.stack(v), *probes)),
        validation_steps=validation_steps,
        validation_scores=scores,
        train_losses=chunk_losses,
    )
