"""What the bench's runs share (:mod:`.single_run`, :mod:`.search_run`, :mod:`.side_by_side`):
the start of a seed (initial parameters, its batches, the selection reference), training a
method in compiled chunks that end every ``eval_every`` steps with a validation score and the
best checkpoint kept, and the fields every :class:`RunResult` fills the same way.

Example:
  >>> start = run_start(bench, seed=0, batch_size=32, steps=20, baselines=None)
  >>> start.indices.shape, record_stride(1000)
  ((20, 32), 5)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax.bench.running import chunk, evaluation
from autoscale_jax.bench.running.benchmark import Benchmark, BenchmarkFunctions
from autoscale_jax.bench.running.method_config import MethodConfig, json_options
from autoscale_jax.bench.running.run_result import Baselines, TaskMetricDicts
from autoscale_jax.bench.running.selection import (
    Checkpoint,
    keep_better,
    relative_score,
    selection_reference,
)

__all__ = [
    "Chunk",
    "RunClock",
    "RunStart",
    "record_stride",
    "run_start",
    "select",
    "selected_fields",
    "setup_fields",
    "train_chunks",
]


class RunStart(NamedTuple):
    """A seed's start: the benchmark's compiled functions, the initial parameters, the batch
    indices ``[steps, batch_size]``, the untrained model's validation metrics and the reference
    the validation score is relative to (:func:`selection.selection_reference`)."""

    functions: BenchmarkFunctions
    params: Any
    indices: np.ndarray
    initial: TaskMetricDicts
    reference: TaskMetricDicts


def run_start(
    benchmark: Benchmark, *, seed: int, batch_size: int, steps: int, baselines: Baselines | None
) -> RunStart:
    """The start every run of ``seed`` shares (the same parameters and batches)."""
    functions = chunk.benchmark_functions(benchmark)
    params = chunk.initial_params(benchmark, seed)
    indices = chunk.batch_indices(len(benchmark.dataset.train.inputs), batch_size, steps, seed)
    initial = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
    return RunStart(functions, params, indices, initial, selection_reference(baselines, initial))


@dataclasses.dataclass
class RunClock:
    """A run's cost: seconds of each training chunk (compilation off the clock), seconds spent
    compiling, and gradient evaluations."""

    chunks: list[float] = dataclasses.field(default_factory=list)
    compile: float = 0.0
    evaluations: int = 0

    def fields(self) -> dict[str, Any]:
        """Its :class:`RunResult` fields (``wall_time_s`` is the chunks' sum)."""
        return {
            "wall_time_s": float(sum(self.chunks)),
            "chunk_times_s": self.chunks,
            "compile_time_s": self.compile,
            "gradient_evaluations": self.evaluations,
        }


def select(
    benchmark: Benchmark,
    best: Checkpoint,
    step: int,
    params: Any,
    reference: TaskMetricDicts,
    selection_tasks: Sequence[int] | None = None,
) -> tuple[Checkpoint, float]:
    """Scores ``params`` on validation at ``step``: ``(the better of best and them, score)``."""
    validation = chunk.evaluate(benchmark, params, benchmark.dataset.validation)
    score = relative_score(benchmark.dataset.tasks, validation, reference, selection_tasks)
    return keep_better(best, Checkpoint(score, step, params, validation)), score


class Chunk(NamedTuple):
    """One trained chunk: the step it ends at, its length, the parameters and state after it,
    its per-step records, the best checkpoint so far and its validation score."""

    step: int
    length: int
    params: Any
    state: Any
    records: chunk.StepRecord
    best: Checkpoint
    score: float


def train_chunks(
    benchmark: Benchmark,
    method: chunk.MethodBuild,
    params: Any,
    state: Any,
    *,
    indices: np.ndarray,
    keys: jax.Array,
    start: int,
    steps: int,
    eval_every: int,
    best: Checkpoint,
    reference: TaskMetricDicts,
    clock: RunClock,
    selection_tasks: Sequence[int] | None = None,
) -> Iterator[Chunk]:
    """Trains ``method`` from step ``start`` to ``steps`` in compiled chunks ending on the
    multiples of ``eval_every`` (and at ``steps``), each scored on validation (:func:`select`).

    Each chunk's training time and compile time go to ``clock`` (its gradient evaluations are
    the caller's to count).
    """
    data = chunk.benchmark_functions(benchmark).data
    done = start
    while done < steps:
        length = min(eval_every - done % eval_every, steps - done)
        arguments = (
            method.args,
            params,
            state,
            data,
            jnp.asarray(indices[done : done + length]),
            keys[done : done + length],
        )
        compiled, seconds = chunk.compiled_chunk(benchmark, method, arguments, total_steps=steps)
        clock.compile += seconds
        began = time.perf_counter()
        params, state, records = jax.block_until_ready(compiled(*arguments))
        clock.chunks.append(time.perf_counter() - began)
        done += length
        best, score = select(benchmark, best, done, params, reference, selection_tasks)
        yield Chunk(done, length, params, state, records, best, score)


def record_stride(count: int, limit: int = 200) -> int:
    """Stride that keeps at most ``limit`` of ``count`` per-step records."""
    return max(1, -(-count // limit))


def setup_fields(
    benchmark: Benchmark,
    config: MethodConfig,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    eval_every: int,
) -> dict[str, Any]:
    """The :class:`RunResult` fields that say what was run."""
    return {
        "benchmark": benchmark.name,
        "method": config.label,
        "method_name": config.name,
        "options": json_options(config.options),
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "eval_every": eval_every,
    }


def selected_fields(
    benchmark: Benchmark, best: Checkpoint, baselines: Baselines | None
) -> dict[str, Any]:
    """The :class:`RunResult` fields of the kept checkpoint: its step and score, its validation
    metrics, its test metrics (evaluated here) and their Δm% against ``baselines``."""
    tasks = benchmark.dataset.tasks
    test = chunk.evaluate(benchmark, best.params, benchmark.dataset.test)
    delta_m = None if baselines is None else evaluation.delta_m_both(tasks, test, baselines.test)
    return {
        "selected_step": best.step,
        "selection_score": float(best.score),
        "validation_metrics": best.validation,
        "test_metrics": test,
        "delta_m": delta_m,
    }
