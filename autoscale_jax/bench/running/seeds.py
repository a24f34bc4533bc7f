"""One method on several seeds: train each (or load it from a :class:`RunStore`), report progress.

Example:
  >>> runs = run_seeds(bench, MethodConfig("ew", "equal_weights"), (0, 1), steps=20)
  >>> len(runs)
  2
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from autoscale_jax.bench.running import search_run, single_run
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore, run_key

__all__ = ["BENCH_METHODS", "ProgressFn", "no_progress", "run_seeds"]

# The methods the bench defines beyond the registry (``asj.methods``), each with the function
# that trains one seed of it; a registry method trains with ``single_run.run``. A new
# bench-only method is one entry here (its runner takes ``single_run.run``'s arguments).
BENCH_METHODS: Mapping[str, Callable[..., RunResult]] = MappingProxyType(
    {search_run.SEARCH_METHOD: search_run.run}
)

# Called with a method's row label after each of its runs (e.g. to tick a progress bar).
ProgressFn = Callable[[str], None]


def no_progress(_: str) -> None:
    """A :data:`ProgressFn` that reports nothing."""


def run_seeds(
    benchmark: Benchmark,
    config: MethodConfig,
    seeds: Sequence[int],
    progress: ProgressFn = no_progress,
    *,
    steps: int,
    batch_size: int = 128,
    eval_every: int = 50,
    baselines: Baselines | None = None,
    selection_tasks: Sequence[int] | None = None,
    store: RunStore | None = None,
) -> tuple[RunResult, ...]:
    """:func:`single_run.run` (or the runner of a :data:`BENCH_METHODS` entry) once per seed
    with the same options.

    Args:
      benchmark: the benchmark.
      config: the method.
      seeds: one run per seed.
      progress: called with ``config.label`` after each run (trained or loaded).
      steps, batch_size, eval_every, baselines, selection_tasks: as in :func:`single_run.run`.
      store: where finished runs are saved, and loaded from when it resumes (None: neither).

    Returns:
      The runs, in the order of ``seeds``.
    """
    budget = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    results = []
    for seed in seeds:
        key = run_key(benchmark, config, seed=seed, baselines=baselines, **budget)
        result = store.load(key) if store is not None else None
        if result is None:
            runner = BENCH_METHODS.get(config.name, single_run.run)
            result = runner(
                benchmark,
                config,
                seed=seed,
                baselines=baselines,
                selection_tasks=selection_tasks,
                **budget,
            )
            if store is not None:
                store.save(key, result)
        results.append(result)
        progress(config.label)
    return tuple(results)
