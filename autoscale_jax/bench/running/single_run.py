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
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import autoscale_jax as asj
from autoscale_jax.bench.running import chunk, run_loop
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.chunk import batch_indices, evaluate
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.selection import Checkpoint

__all__ = ["batch_indices", "evaluate", "run"]


def _tree_to_lists(metrics_tuple: asj.metrics.TaskMetrics) -> dict[str, list[float]]:
    """Stacked metric snapshots as ``{metric name: [values]}``."""
    return {name: np.asarray(v, np.float64).tolist() for name, v in metrics_tuple._asdict().items()}


def _step_traces(per_step: chunk.StepRecord, num_tasks: int, with_weights: bool) -> dict[str, Any]:
    """The per-step traces of a run: weights (every step, thinned to 200) and, during phase 1
    (K gradient evaluations a step), AutoScale's own metric snapshots."""
    steps = len(per_step.gradient_evaluations)
    stride = run_loop.record_stride(steps)
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
    start = run_loop.run_start(
        benchmark, seed=seed, batch_size=batch_size, steps=steps, baselines=baselines
    )
    functions, params, k = start.functions, start.params, benchmark.num_tasks
    method = chunk.method_build(method_config, k, params)
    weighting = method.build(method.args)
    optimizer = benchmark.recipe.optimizer(steps)
    state = chunk.multitask_step(benchmark, weighting, optimizer).init(params)
    with_weights = chunk.has_task_weights(state.weighting)

    def probe(step_params: Any, step_state: Any) -> asj.metrics.TaskMetrics:
        weights = asj.task_weights(step_state.weighting) if with_weights else jnp.ones(k)
        return functions.probe(step_params, weights, functions.probe_batch)

    probes = [probe(params, state)]
    probe_steps, validation_steps, scores, chunk_losses = [0], [], [], []
    records: list[chunk.StepRecord] = []
    best = Checkpoint(-math.inf, 0, params, start.initial)
    clock = run_loop.RunClock()
    for trained in run_loop.train_chunks(
        benchmark,
        method,
        params,
        state,
        indices=start.indices,
        keys=jax.random.split(jax.random.key(seed), steps),
        start=0,
        steps=steps,
        eval_every=eval_every,
        best=best,
        reference=start.reference,
        clock=clock,
        selection_tasks=selection_tasks,
    ):
        records.append(jax.device_get(trained.records))
        chunk_losses.append(np.mean(trained.records.losses, axis=0).tolist())
        validation_steps.append(trained.step)
        scores.append(trained.score)
        best = trained.best
        probes.append(probe(trained.params, trained.state))
        probe_steps.append(trained.step)

    per_step = jax.tree.map(lambda *xs: np.concatenate(xs), *records)
    clock.evaluations = int(np.sum(per_step.gradient_evaluations))
    return RunResult(
        **run_loop.setup_fields(
            benchmark,
            method_config,
            seed=seed,
            steps=steps,
            batch_size=batch_size,
            eval_every=eval_every,
        ),
        **run_loop.selected_fields(benchmark, best, baselines),
        **clock.fields(),
        **_step_traces(per_step, k, with_weights),
        probe_steps=probe_steps,
        probe_metrics=_tree_to_lists(jax.tree.map(lambda *v: np.stack(v), *probes)),
        validation_steps=validation_steps,
        validation_scores=scores,
        train_losses=chunk_losses,
    )
