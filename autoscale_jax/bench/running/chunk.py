"""The compiled training chunk: ``n`` optimiser steps in one jitted ``lax.scan``.

A chunk trains with :func:`autoscale_jax.multitask_train_step` (the one-backward-pass fast path
whenever the method allows it) and the benchmark's recipe (Adam and its schedule:
:class:`~autoscale_jax.bench.running.recipe.Recipe`), and records per step the losses, the task
weights, the gradient evaluations and AutoScale's metric snapshots. It is compiled ahead of time
once per method and argument shapes (:class:`~autoscale_jax.bench.running.benchmark.TrainerKey`)
and cached on the benchmark, so compilation is never on the clock. Fixed weightings (EW, grid
points, single-task runs) share one compile: their weights are a traced argument. Whole runs
of chunks: :mod:`.single_run`; the helpers they share (evaluation, batches) are here too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import autoscale_jax as asj
from autoscale_jax.bench.datasets import Split
from autoscale_jax.bench.running import evaluation, models
from autoscale_jax.bench.running.benchmark import (
    Benchmark,
    BenchmarkFunctions,
    MethodKey,
    TrainerKey,
)
from autoscale_jax.bench.running.method_config import LAST_SHARED_LAYER, RESTART, MethodConfig
from autoscale_jax.bench.running.run_result import TaskMetricDicts

__all__ = [
    "MethodBuild",
    "StepRecord",
    "batch_indices",
    "benchmark_functions",
    "compiled_chunk",
    "evaluate",
    "has_task_weights",
    "index_loss_fn",
    "initial_params",
    "method_build",
    "multitask_step",
    "resolve_options",
]

PROBE_EXAMPLES = 512


class MethodBuild(NamedTuple):
    """How to build a weighting inside ``jit``: ``build(args)`` with its traced ``args``, the
    key under which its compiled trainer is cached, and whether the step restarts the
    optimizer's moments at AutoScale's phase switch (option :data:`RESTART`)."""

    key: MethodKey
    build: Callable[[Any], asj.MultiTaskTransformation]
    args: Any
    extra_inputs: tuple[str, ...] = ()
    restart: bool = True


def method_build(config: MethodConfig, num_tasks: int, params: Any) -> MethodBuild:
    """How to build ``config``'s method for a model with these ``params``.

    Args:
      config: the method.
      num_tasks: K.
      params: the model parameters (for options that are parameter masks).

    Returns:
      A :class:`MethodBuild`.

    Raises:
      ValueError: for a :data:`RESTART` option that is not a bool or on a method without an
        estimation phase (``info.estimation_phase``: AutoScale, ``freeze``).
    """
    info = asj.methods.info(config.name)
    restart = config.options.get(RESTART, True)
    if RESTART in config.options and (not info.estimation_phase or not isinstance(restart, bool)):
        raise ValueError(
            f"{config.label}: the option {RESTART!r} (restart the optimizer's moments when "
            f"the estimation phase ends) takes True or False on a method with an estimation "
            f"phase ('autoscale', 'freeze'); got {restart!r} on {config.name!r}."
        )
    if info.kind == "fixed":
        # Why traced weights: EW, every grid point and every single-task run share a compile.
        weights = config.options.get("weights", np.ones(num_tasks))

        def build_fixed(traced_weights: Any) -> asj.MultiTaskTransformation:
            return asj.fixed_weights(traced_weights)

        return MethodBuild(
            MethodKey("fixed_weights", ""), build_fixed, jnp.asarray(weights, jnp.float32)
        )
    key = MethodKey(config.name, repr(sorted(config.options.items())))

    def build(_: Any) -> asj.MultiTaskTransformation:
        options = resolve_options(config.options, params, num_tasks)
        options.pop(RESTART, None)  # the step's option, not the method's
        return asj.methods.build_for(config.name, num_tasks, **options)

    return MethodBuild(key, build, None, info.extra_inputs, restart)


def resolve_options(options: Mapping[str, Any], params: Any, num_tasks: int) -> dict[str, Any]:
    """Method options as a factory takes them.

    :data:`LAST_SHARED_LAYER` becomes the model's mask and a wrapper's ``method`` (a registry
    name) the wrapped method, built for ``num_tasks``.

    Args:
      options: a :class:`MethodConfig`'s options.
      params: the model parameters the mask is built for.
      num_tasks: K.

    Returns:
      A new dict of options.
    """

    def resolve(key: str, value: Any) -> Any:
        if key == "method" and isinstance(value, str):
            return asj.methods.build_for(value, num_tasks)
        return models.last_shared_layer_mask(params) if value == LAST_SHARED_LAYER else value

    return {key: resolve(key, value) for key, value in options.items()}


class StepRecord(NamedTuple):
    """What a chunk records after every step (stacked over the chunk's steps)."""

    losses: jax.Array
    weights: jax.Array
    gradient_evaluations: jax.Array
    estimator_metrics: asj.metrics.TaskMetrics


def has_task_weights(state: Any) -> bool:
    """Whether ``asj.task_weights`` finds weights in a method's state."""
    try:
        asj.task_weights(state)
    except ValueError:
        return False
    return True


def _gradient_evaluations(weighting: asj.MultiTaskTransformation, state: Any, k: int) -> Any:
    """K backward passes while per-task gradients are needed, 1 on the fast path."""
    fast_path = getattr(weighting, "fast_path", None)
    if fast_path is None:
        return jnp.int32(k)
    return jnp.where(fast_path.needs_task_gradients(state), k, 1).astype(jnp.int32)


def _update_inputs(
    extra_inputs: tuple[str, ...], loss_fn: Callable, params: Any, second_batch: tuple
) -> tuple[dict, Any]:
    """The extra ``update`` inputs a method asks for, from a second, independent batch.

    ``second_task_grads`` (SDMGrad, MoDo): the per-task gradients on it (K more backward
    passes); ``validation_grads`` (Auto-Lambda): the gradient of its summed losses (one more),
    the bench having no separate meta-validation stream.

    Returns:
      ``(inputs, extra gradient evaluations)``.
    """
    inputs: dict[str, Any] = {}
    evaluations = 0
    if "second_task_grads" in extra_inputs:
        _, inputs["second_task_grads"] = asj.task_value_and_grad(loss_fn)(params, second_batch)
        evaluations += len(jax.tree.leaves(inputs["second_task_grads"])[0])
    if "validation_grads" in extra_inputs:
        inputs["validation_grads"] = jax.grad(lambda p: jnp.sum(loss_fn(p, second_batch)))(params)
        evaluations += 1
    return inputs, evaluations


def _make_chunk_fn(
    benchmark: Benchmark,
    build: Callable,
    loss_fn: Callable,
    extra_inputs: tuple[str, ...],
    optimizer: optax.GradientTransformation,
    restart: bool = True,
) -> Callable:
    """``chunk(args, params, state, data, indices[n, B], keys[n])``: n steps in one scan.

    A method with extra inputs gets them from the next step's batch of the chunk (wrapping
    around: a different sample whenever the chunk has more than one step).
    """
    k = benchmark.num_tasks

    def chunk(
        method_args: Any, params: Any, state: Any, data: tuple, indices: Any, keys: Any
    ) -> tuple:
        weighting = build(method_args)
        train = multitask_step(benchmark, weighting, optimizer, restart_moments=restart)
        inputs, targets = data
        with_weights = has_task_weights(state.weighting)
        with_estimator = isinstance(
            getattr(state.weighting, "metrics", None), asj.metrics.TaskMetrics
        )

        def body(carry: tuple, step_inputs: tuple) -> tuple:
            params, state = carry
            index, second_index, key = step_inputs
            batch = (inputs[index], tuple(t[index] for t in targets))
            second_batch = (inputs[second_index], tuple(t[second_index] for t in targets))
            update_inputs, extra_evaluations = _update_inputs(
                extra_inputs, loss_fn, params, second_batch
            )
            evaluations = _gradient_evaluations(weighting, state.weighting, k) + extra_evaluations
            params, state, losses = train.step(params, state, batch, key=key, **update_inputs)
            nan = jnp.full((k,), jnp.nan, jnp.float32)
            record = StepRecord(
                losses=losses,
                weights=asj.task_weights(state.weighting) if with_weights else nan,
                gradient_evaluations=evaluations,
                estimator_metrics=(
                    state.weighting.metrics if with_estimator else asj.metrics.empty_task_metrics()
                ),
            )
            return (params, state), record

        second_indices = jnp.roll(indices, -1, axis=0)
        records: Any
        (params, state), records = jax.lax.scan(
            body, (params, state), (indices, second_indices, keys)
        )
        return params, state, records

    return chunk


def benchmark_functions(benchmark: Benchmark) -> BenchmarkFunctions:
    """Device data, the functional model's loss, predict and probe functions (built once).

    Args:
      benchmark: the benchmark; the functions are cached on it.

    Returns:
      Its :class:`~autoscale_jax.bench.running.benchmark.BenchmarkFunctions`.
    """
    if benchmark.cache.functions is not None:
        return benchmark.cache.functions
    data = benchmark.dataset
    template = models.functional_model(models.build_model(data, seed=0, **benchmark.model_options))
    counted_loss_fn: Callable | None = None
    loss_fn: Callable = models.multitask_loss_fn(template.apply, data.tasks)
    if benchmark.partial_labels:
        counted = models.multitask_loss_fn(template.apply, data.tasks, task_counts=True)
        counted_loss_fn = counted

        def loss_fn(params: Any, batch: tuple) -> jax.Array:  # the masked means alone
            return counted(params, batch)[0]

    mask = models.trunk_mask(template.params)
    task_grad_fn = asj.task_value_and_grad(loss_fn)

    def probe(params: Any, weights: jax.Array, batch: tuple) -> asj.metrics.TaskMetrics:
        losses, task_grads = task_grad_fn(params, batch)
        gram = asj.metrics.gramian(task_grads, mask)
        return asj.metrics.task_metrics(gram, losses, weights)

    train = data.train
    probe_count = min(PROBE_EXAMPLES, len(train.inputs))
    benchmark.cache.functions = BenchmarkFunctions(
        loss_fn=loss_fn,
        predict=jax.jit(template.apply),
        probe=jax.jit(probe),
        data=(jnp.asarray(train.inputs), tuple(jnp.asarray(t) for t in train.targets)),
        probe_batch=(
            jnp.asarray(train.inputs[:probe_count]),
            tuple(jnp.asarray(t[:probe_count]) for t in train.targets),
        ),
        counted_loss_fn=counted_loss_fn,
    )
    return benchmark.cache.functions


def multitask_step(
    benchmark: Benchmark,
    weighting: optax.GradientTransformation,
    optimizer: optax.GradientTransformation,
    *,
    restart_moments: bool = True,
) -> asj.TrainStep:
    """``multitask_train_step`` on the benchmark's loss; with partial labels the loss also
    returns the label counts (``task_counts=True``), so an absent task reaches the weighting
    as ``task_mask``. ``restart_moments``: restart Adam at AutoScale's phase switch."""
    functions = benchmark_functions(benchmark)
    if functions.counted_loss_fn is None:
        return asj.multitask_train_step(
            functions.loss_fn, weighting, optimizer, restart_moments=restart_moments
        )
    return asj.multitask_train_step(
        functions.counted_loss_fn,
        weighting,
        optimizer,
        task_counts=True,
        restart_moments=restart_moments,
    )


def initial_params(benchmark: Benchmark, seed: int) -> Any:
    """The model's parameters initialised with ``seed``."""
    model = models.build_model(benchmark.dataset, seed=seed, **benchmark.model_options)
    return models.functional_model(model).params


def compiled_chunk(
    benchmark: Benchmark, method: MethodBuild, arguments: tuple, *, total_steps: int | None = None
) -> tuple[Callable, float]:
    """The ahead-of-time compiled chunk for these arguments, and its compile time.

    The chunk steps with ``benchmark.recipe.optimizer(total_steps)``; ``state.optimizer`` in
    ``arguments`` must be that optimizer's state.

    Args:
      benchmark: the benchmark; compiled chunks are cached on it.
      method: how to build the method.
      arguments: ``(method args, params, state, data, indices [n, B], keys [n])``.
      total_steps: the run's steps, where the recipe's schedule ends (required unless the
        recipe's schedule is constant).

    Returns:
      ``(compiled chunk, seconds spent compiling)``; 0 seconds when it was cached.
    """
    length, batch = arguments[4].shape
    recipe = benchmark.recipe
    key = TrainerKey(method.key, length, batch, recipe.optimizer_key(total_steps))
    trainers = benchmark.cache.trainers
    if key in trainers:
        return trainers[key], 0.0
    loss_fn = benchmark_functions(benchmark).loss_fn
    chunk = _make_chunk_fn(
        benchmark,
        method.build,
        loss_fn,
        method.extra_inputs,
        recipe.optimizer(total_steps),
        method.restart,
    )
    start = time.perf_counter()
    trainers[key] = jax.jit(chunk).lower(*arguments).compile()
    return trainers[key], time.perf_counter() - start


def evaluate(benchmark: Benchmark, params: Any, split: Split) -> TaskMetricDicts:
    """Per-task metric dicts of ``params`` on a split (see :func:`evaluation.task_metrics`).

    Args:
      benchmark: the benchmark (its jitted predict function is reused).
      params: model parameters.
      split: the examples to score.

    Returns:
      One ``{metric: value}`` dict per task.
    """
    predict = benchmark_functions(benchmark).predict
    outputs = models.predict_in_batches(predict, params, split.inputs)
    return evaluation.split_metrics(benchmark.dataset.tasks, outputs, split)


def batch_indices(num_examples: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``[steps, batch_size]`` example indices: shuffled epochs, the last partial batch dropped.

    The order depends only on ``seed``, so every method sees the same batches for a seed.

    Args:
      num_examples: training examples.
      batch_size: examples per step (at most ``num_examples``).
      steps: training steps.
      seed: seeds the shuffles.

    Returns:
      int32 ``[steps, batch_size]``.
    """
    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} exceeds the {num_examples} training examples")
    rng = np.random.default_rng(seed)
    per_epoch = num_examples // batch_size
    epochs = -(-steps // per_epoch)
    orders = [rng.permutation(num_examples)[: per_epoch * batch_size] for _ in range(epochs)]
    return np.concatenate(orders).reshape(-1, batch_size)[:steps].astype(np.int32)


def index_loss_fn(benchmark: Benchmark) -> Any:
    """``loss(params, indices [B]) -> [K]``: the benchmark's loss on training examples
    gathered from the device-resident training split (batches are then just indices)."""
    functions = benchmark_functions(benchmark)
    inputs, targets = functions.data

    def loss(params: Any, index: jax.Array) -> jax.Array:
        return functions.loss_fn(params, (inputs[index], tuple(t[index] for t in targets)))

    return loss
