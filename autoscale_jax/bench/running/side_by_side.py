"""Fixed weightings trained side by side: all ``G`` weightings of a seed in one compiled
program (``jax.vmap`` over the weights and the parameter / optimizer-state copies), the way the
LS grid (:mod:`autoscale_jax.bench.experiments.grid`) and the restart control
(:mod:`autoscale_jax.bench.experiments.controls`) train. Same result as one
:func:`~autoscale_jax.bench.running.single_run.run` per weighting up to float round-off, and
the same cost in gradient evaluations; each run carries ``1/G`` of the program's wall time.

Example:
  >>> runs = vmapped_grid_runs(bench, np.array([[1.0, 1.0], [1.0, 3.0]]), steps=20, eval_every=10)
  >>> [run.method for run in runs]
  ['ls[1,1]', 'ls[1,3]']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import search
from autoscale_jax.bench.running import chunk
from autoscale_jax.bench.running.benchmark import Benchmark, MethodKey, TrainerKey
from autoscale_jax.bench.running.method_config import MethodConfig, json_options
from autoscale_jax.bench.running.run_loop import record_stride, run_start, select, selected_fields
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore, run_key
from autoscale_jax.bench.running.selection import Checkpoint

__all__ = ["vmapped_grid_runs", "vmapped_seed", "weights_label"]


def weights_label(weights: np.ndarray) -> str:
    """The row label of a grid point, e.g. ``"ls[0.5,1.5]"``."""
    return "ls[" + ",".join(f"{w:.3g}" for w in weights) + "]"


def vmapped_seed(
    benchmark: Benchmark,
    configs: Sequence[MethodConfig],
    seed: int,
    budget: dict[str, Any],
    baselines: Baselines | None,
    progress: Callable[[str], None],
    store: RunStore | None,
    restart_at: int | None = None,
) -> tuple[RunResult, ...]:
    """One seed's fixed weightings (``configs``' ``weights`` options): loaded from ``store``;
    when any is not there, all are trained at once (:func:`vmapped_grid_runs`) and the
    missing ones are taken from that training (and saved)."""
    keys = [run_key(benchmark, c, seed=seed, baselines=baselines, **budget) for c in configs]
    loaded = [store.load(key) if store is not None else None for key in keys]
    if any(run is None for run in loaded):
        weights = np.stack([np.asarray(c.options["weights"]) for c in configs])
        trained = vmapped_grid_runs(
            benchmark,
            weights,
            seed=seed,
            baselines=baselines,
            labels=[c.label for c in configs],
            restart_at=restart_at,
            **budget,
        )
        for i, (key, run) in enumerate(zip(keys, trained, strict=True)):
            if loaded[i] is None:
                loaded[i] = run
                if store is not None:
                    store.save(key, run)
    for config in configs:
        progress(config.label)
    return tuple(loaded)  # type: ignore[arg-type]  # every slot is filled here


def _side_by_side_chunk(
    benchmark: Benchmark, arguments: tuple, total_steps: int
) -> tuple[Any, float]:
    """The compiled ``(weights [G, K], params [G], opt_state [G], indices [n, B])`` chunk."""
    num, (length, batch) = arguments[0].shape[0], arguments[3].shape
    method = MethodKey("vmapped_fixed_weights", str(num))
    key = TrainerKey(method, length, batch, benchmark.recipe.optimizer_key(total_steps))
    if key in benchmark.cache.trainers:
        return benchmark.cache.trainers[key], 0.0
    loss, optimizer = chunk.index_loss_fn(benchmark), benchmark.recipe.optimizer(total_steps)

    def side_by_side(weights: Any, params: Any, opt_state: Any, indices: Any) -> tuple:
        return search.train_candidates(loss, optimizer, weights, params, opt_state, indices)

    start = time.perf_counter()
    benchmark.cache.trainers[key] = jax.jit(side_by_side).lower(*arguments).compile()
    return benchmark.cache.trainers[key], time.perf_counter() - start


def vmapped_grid_runs(
    benchmark: Benchmark,
    weight_grid: np.ndarray,
    *,
    steps: int,
    batch_size: int = 128,
    seed: int = 0,
    eval_every: int = 50,
    baselines: Baselines | None = None,
    labels: Sequence[str] | None = None,
    restart_at: int | None = None,
) -> tuple[RunResult, ...]:
    """One seed of the grid, all ``G`` points trained side by side in one compiled program.

    Every point starts from the seed's initial parameters and sees the seed's batches, as in
    :func:`autoscale_jax.bench.running.single_run.run` with ``fixed_weights``; every ``eval_every``
    steps
    each point is scored on validation and keeps its best parameters, tested at the end. The
    program is :func:`autoscale_jax.search.train_candidates` (``jax.vmap`` over the weights and
    the parameter / optimizer-state copies of a ``lax.scan`` over the steps). With
    ``restart_at``, Adam's moments are reset once after that step
    (:meth:`~autoscale_jax.bench.running.recipe.Recipe.restart`, the schedule goes on): the restart
    control.

    Cost per point: ``steps`` gradient evaluations; wall time: ``1/G`` of each chunk's time
    (compilation and evaluation off the clock).

    Args:
      benchmark: the benchmark.
      weight_grid: ``[G, K]`` fixed weights.
      steps, batch_size, seed, eval_every, baselines: as in :func:`single_run.run`.
      labels: row labels of the points (default :func:`weights_label`).
      restart_at: reset the optimizer once after this step, in ``(0, steps)`` (None: never).

    Returns:
      One :class:`RunResult` per grid point.
    """
    if restart_at is not None and not 0 < restart_at < steps:
        raise ValueError(f"restart_at must be in (0, steps={steps}), got {restart_at}")
    weights = jnp.asarray(weight_grid, jnp.float32)
    num = weights.shape[0]
    labels = [weights_label(w) for w in np.asarray(weight_grid)] if labels is None else labels
    begin = run_start(benchmark, seed=seed, batch_size=batch_size, steps=steps, baselines=baselines)
    functions, params0, indices = begin.functions, begin.params, begin.indices
    optimizer = benchmark.recipe.optimizer(steps)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num, *x.shape)), params0)
    opt_state = jax.vmap(optimizer.init)(params)
    best = [Checkpoint(-math.inf, 0, params0, begin.initial)] * num
    history: list[list[Any]] = [[] for _ in range(num)]  # (step, score, probe, loss, time)
    probe0 = [functions.probe(params0, weights[g], functions.probe_batch) for g in range(num)]
    compile_time, done, elapsed = 0.0, 0, 0.0
    while done < steps:
        stop = min(done + eval_every - done % eval_every, steps)
        if restart_at is not None and done < restart_at < stop:
            stop = restart_at  # a chunk ends at the restart; the evaluation comes later
        arguments = (weights, params, opt_state, jnp.asarray(indices[done:stop]))
        compiled, seconds = _side_by_side_chunk(benchmark, arguments, steps)
        compile_time += seconds
        began = time.perf_counter()
        params, opt_state, losses = jax.block_until_ready(compiled(*arguments))
        elapsed += time.perf_counter() - began
        done = stop
        if done == restart_at:
            opt_state = benchmark.recipe.restart(opt_state)
        if done % eval_every and done < steps:
            continue
        for g in range(num):
            point = jax.tree.map(lambda x, g=g: x[g], params)
            best[g], score = select(benchmark, best[g], done, point, begin.reference)
            probe = functions.probe(point, weights[g], functions.probe_batch)
            mean_loss = np.mean(np.asarray(losses[g]), axis=0).tolist()
            history[g].append((done, score, probe, mean_loss, elapsed / num))
        elapsed = 0.0
    return tuple(
        _grid_point_result(
            benchmark,
            labels[g],
            np.asarray(weight_grid)[g],
            best[g],
            history[g],
            probe0[g],
            baselines,
            seed=seed,
            steps=steps,
            batch_size=batch_size,
            eval_every=eval_every,
            compile_time_s=compile_time / num,
            options=json_options(
                {"weights": np.asarray(weight_grid)[g]}
                | ({} if restart_at is None else {"restart_at": restart_at})
            ),
        )
        for g in range(num)
    )


def _grid_point_result(
    benchmark: Benchmark,
    label: str,
    weights: np.ndarray,
    best: Checkpoint,
    history: list[Any],
    probe0: Any,
    baselines: Baselines | None,
    **fields: Any,
) -> RunResult:
    """The :class:`RunResult` of one grid point of :func:`vmapped_grid_runs`."""
    steps = fields["steps"]
    stride = record_stride(steps)
    probes = [probe0, *(h[2] for h in history)]
    probe_metrics = {
        name: np.asarray([getattr(p, name) for p in probes], np.float64).tolist()
        for name in probe0._fields
    }
    chunk_times = [h[4] for h in history]
    return RunResult(
        benchmark=benchmark.name,
        method=label,
        method_name="fixed_weights",
        **selected_fields(benchmark, best, baselines),
        wall_time_s=float(sum(chunk_times)),
        chunk_times_s=chunk_times,
        gradient_evaluations=steps,
        weight_steps=list(range(1, steps + 1, stride)),
        weights=[np.asarray(weights, np.float64).tolist()] * len(range(1, steps + 1, stride)),
        estimator_steps=[],
        estimator_metrics={},
        probe_steps=[0, *(h[0] for h in history)],
        probe_metrics=probe_metrics,
        validation_steps=[h[0] for h in history],
        validation_scores=[h[1] for h in history],
        train_losses=[h[3] for h in history],
        **fields,
    )
