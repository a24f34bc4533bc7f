"""Grid search of fixed linear-scalarization weights, selected on validation: the expensive
baseline every method is compared with (``G`` runs per seed).

Two ways to train the grid, with the same result up to float round-off: one run per grid point
(:func:`autoscale_jax.bench.running.seeds.run_seeds`), or all ``G`` points of a seed side by side
in one
compiled program (``vmapped=True``: :func:`vmapped_grid_runs`, ``jax.vmap`` over the weights and
the parameter / optimizer-state copies). Either way the grid costs ``G`` runs of gradient
evaluations per seed; the vmapped program saves dispatch and uses the cores better, and each
grid point's run carries ``1/G`` of the program's wall time.

Example:
  >>> grid = grid_search(bench, ls_weight_grid(2, 3), steps=20, eval_every=10, vmapped=True)
  >>> grid.weights[grid.best_index].shape
  (2,)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import search
from autoscale_jax.bench.running import chunk, evaluation, single_run
from autoscale_jax.bench.running.benchmark import Benchmark, MethodKey, TrainerKey
from autoscale_jax.bench.running.method_config import MethodConfig, json_options
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.run_store import RunStore, run_key
from autoscale_jax.bench.running.search_run import index_loss_fn
from autoscale_jax.bench.running.seeds import ProgressFn, no_progress, run_seeds
from autoscale_jax.bench.running.selection import (
    Checkpoint,
    keep_better,
    relative_score,
    selection_reference,
)

__all__ = [
    "GridSearchResult",
    "grid_info",
    "grid_search",
    "ls_weight_grid",
    "vmapped_grid_runs",
    "weights_label",
]


def ls_weight_grid(
    num_tasks: int, size: int, *, max_ratio: float = 1000.0, seed: int = 0
) -> np.ndarray:
    """Fixed linear-scalarization weights to grid-search, each row summing to K.

    - K = 2: ``w = 2 (a, 1 - a)`` with ``a = 1 / (1 + r)`` and the ratio ``r = w_2 / w_1``
      log-uniform in ``[1/max_ratio, max_ratio]`` (odd ``size`` includes equal weights), so
      the grid is as fine at ``a = 0.005`` as at ``a = 0.5`` (mixed CE + MSE pairs need
      ratios of 100 and more).
    - K > 2: equal weights then ``size - 1`` random weightings, log-uniform: each
      ``log w_k`` uniform in ``[0, log max_ratio]``, rescaled to sum to K (ratios between
      tasks up to ``max_ratio``; a flat Dirichlet almost never gives the ratios of 100 and
      more that mixed CE + MSE tasks need).

    Args:
      num_tasks: K.
      size: grid points G.
      max_ratio: the largest ratio ``w_2 / w_1`` for K = 2 (between any two tasks for K > 2).
      seed: seeds the random draws for K > 2.

    Returns:
      ``[G, K]`` weights.

    Example:
      >>> ls_weight_grid(2, 3, max_ratio=3.0)
      array([[1.5, 0.5],
             [1. , 1. ],
             [0.5, 1.5]])
    """
    if size < 1:
        raise ValueError("size must be positive")
    if num_tasks == 2:
        ratios = np.geomspace(1 / max_ratio, max_ratio, size) if size > 1 else np.ones(1)
        a = 1.0 / (1.0 + ratios)
        return 2.0 * np.stack([a, 1.0 - a], axis=1)
    logs = np.random.default_rng(seed).uniform(0.0, np.log(max_ratio), (size - 1, num_tasks))
    draws = np.exp(logs)
    draws = draws / draws.sum(axis=1, keepdims=True)
    return num_tasks * np.concatenate([np.full((1, num_tasks), 1.0 / num_tasks), draws])


class GridSearchResult(NamedTuple):
    """A grid search of fixed LS weights, selected on validation.

    Attributes:
      weights: ``[G, K]`` grid.
      validation_scores: ``[G]`` seed-mean selection scores.
      best_index: the grid point with the best mean validation score.
      runs: ``runs[g]`` holds the seeds' runs of grid point g.
    """

    weights: np.ndarray
    validation_scores: np.ndarray
    best_index: int
    runs: tuple[tuple[RunResult, ...], ...]

    @property
    def best_runs(self) -> tuple[RunResult, ...]:
        return self.runs[self.best_index]


def weights_label(weights: np.ndarray) -> str:
    """The row label of a grid point, e.g. ``"ls[0.5,1.5]"``."""
    return "ls[" + ",".join(f"{w:.3g}" for w in weights) + "]"


def _grid_configs(weight_grid: np.ndarray) -> list[MethodConfig]:
    return [
        MethodConfig(weights_label(w), "fixed_weights", {"weights": w})
        for w in np.asarray(weight_grid, np.float64)
    ]


def grid_search(
    benchmark: Benchmark,
    weight_grid: np.ndarray,
    *,
    steps: int,
    batch_size: int = 128,
    seeds: Sequence[int] = (0,),
    eval_every: int = 50,
    baselines: Baselines | None = None,
    progress: ProgressFn = no_progress,
    store: RunStore | None = None,
    vmapped: bool = False,
) -> GridSearchResult:
    """Trains every fixed weight vector of ``weight_grid`` on every seed; picks by validation.

    The pick is the grid point whose seed-mean validation score (:func:`relative_score`) is
    highest; its test metrics are what the grid search reports. Cost: ``G`` runs per seed.

    Args:
      benchmark: the benchmark.
      weight_grid: ``[G, K]`` fixed weights (see :func:`ls_weight_grid`).
      steps, batch_size, seeds, eval_every, baselines: as in :func:`seeds.run_seeds`.
      progress: called after every run.
      store: saves finished runs and loads them when resuming.
      vmapped: train a seed's ``G`` points side by side in one program
        (:func:`vmapped_grid_runs`) instead of one run after another.

    Returns:
      A :class:`GridSearchResult`.
    """
    budget: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "eval_every": eval_every}
    configs = _grid_configs(weight_grid)
    if vmapped:
        per_seed = [
            vmapped_seed(benchmark, configs, seed, budget, baselines, progress, store)
            for seed in seeds
        ]
        runs = [tuple(seed_runs[g] for seed_runs in per_seed) for g in range(len(configs))]
    else:
        runs = [
            run_seeds(benchmark, c, seeds, progress, **budget, baselines=baselines, store=store)
            for c in configs
        ]
    scores = np.array([np.mean([r.selection_score for r in point]) for point in runs])
    return GridSearchResult(np.asarray(weight_grid), scores, int(np.argmax(scores)), tuple(runs))


def vmapped_seed(
    benchmark: Benchmark,
    configs: Sequence[MethodConfig],
    seed: int,
    budget: dict[str, Any],
    baselines: Baselines | None,
    progress: ProgressFn,
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
    loss, optimizer = index_loss_fn(benchmark), benchmark.recipe.optimizer(total_steps)

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
    functions = chunk.benchmark_functions(benchmark)
    tasks, validation_split = benchmark.dataset.tasks, benchmark.dataset.validation
    params0 = chunk.initial_params(benchmark, seed)
    optimizer = benchmark.recipe.optimizer(steps)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num, *x.shape)), params0)
    opt_state = jax.vmap(optimizer.init)(params)
    indices = single_run.batch_indices(len(benchmark.dataset.train.inputs), batch_size, steps, seed)
    initial = single_run.evaluate(benchmark, params0, validation_split)
    reference = selection_reference(baselines, initial)
    best = [Checkpoint(-math.inf, 0, params0, initial)] * num
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
        start = time.perf_counter()
        params, opt_state, losses = jax.block_until_ready(compiled(*arguments))
        elapsed += time.perf_counter() - start
        done = stop
        if done == restart_at:
            opt_state = benchmark.recipe.restart(opt_state)
        if done % eval_every and done < steps:
            continue
        for g in range(num):
            point = jax.tree.map(lambda x, g=g: x[g], params)
            values = single_run.evaluate(benchmark, point, validation_split)
            score = relative_score(tasks, values, reference)
            best[g] = keep_better(best[g], Checkpoint(score, done, point, values))
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
    tasks = benchmark.dataset.tasks
    test = single_run.evaluate(benchmark, best.params, benchmark.dataset.test)
    steps = fields["steps"]
    stride = max(1, -(-steps // 200))
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
        selected_step=best.step,
        selection_score=float(best.score),
        validation_metrics=best.validation,
        test_metrics=test,
        delta_m=None if baselines is None else evaluation.delta_m_both(tasks, test, baselines.test),
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


def grid_info(grid: GridSearchResult) -> dict[str, Any]:
    """The grid search as a report records it (plain lists, JSON-friendly).

    Args:
      grid: a finished grid search (with baselines, so runs carry Δm%).

    Returns:
      ``{"kind", "weights", "validation_scores", "best_index", "best_label", "test_delta_m",
      "test_delta_m_sd"}``: ``kind`` is ``"grid"`` for two tasks, ``"random search"`` for
      more (equal weights + log-uniform draws, :func:`ls_weight_grid`); the last two are the
      per-metric test Δm% of every point, mean and population sd over seeds.
    """
    deltas = [[(r.delta_m or {})["per_metric"] for r in point] for point in grid.runs]
    return {
        "kind": "grid" if grid.weights.shape[1] == 2 else "random search",
        "weights": grid.weights.tolist(),
        "validation_scores": grid.validation_scores.tolist(),
        "best_index": grid.best_index,
        "best_label": grid.best_runs[0].method,
        "test_delta_m": [float(np.mean(d)) for d in deltas],
        "test_delta_m_sd": [float(np.std(d)) for d in deltas],
    }
