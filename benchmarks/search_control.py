"""Control for the validation-guided search: how much of its gain is the pick, how much the restart.

``autoscale_search`` trains AutoScale's gms phase 1 (5% of the steps), then its candidates from
the phase-1 parameters with a *fresh* Adam state. Comparing it with the grid alone mixes two
things: the weights it picks and that training schedule. This script trains, on the reported
seeds and the bench's batches, each benchmark's grid-chosen fixed weights three ways:

  (a) fixed weights from step 0, one Adam state (the grid's own run);
  (b) the same, with the Adam state reset once at the end of phase 1 (the restart alone);
  (c) the gms phase 1, then the fixed weights with a fresh Adam state (the search's schedule
      with the grid's pick: the like-for-like comparison for the search's pick);

each selected on validation Δm every ``eval_every`` steps and scored on test (Δm% per metric
against single-task baselines, positive = better; mean ± sd over seeds). Print-only; runs on
CPU or GPU. Usage:

  python benchmarks/search_control.py [--benchmarks multi_mnist ...] [--seeds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from autoscale_jax import search
from autoscale_jax.bench.experiments.baselines import single_task_baselines
from autoscale_jax.bench.running import chunk, evaluation, search_run, single_run
from autoscale_jax.bench.running.benchmark import Benchmark, load_benchmark
from autoscale_jax.bench.running.method_config import SEARCH_METHOD, MethodConfig, search_options
from autoscale_jax.bench.running.run_result import Baselines
from autoscale_jax.bench.running.selection import relative_score

# The 5-seed grid's choice on each benchmark (README, "Grid, guides and search").
GRID_WEIGHTS = {
    "multi_mnist": (0.0063, 1.99),
    "multi_mnist_sigmoid": (0.0063, 1.99),
    "multi_fashion": (0.0198, 1.98),
    "multi_mnist3": (0.036, 2.95, 0.010),
    "multi_fashion3": (0.036, 2.95, 0.010),
}
STEPS, BATCH, EVAL_EVERY = 800, 128, 100


def fixed_weights_run(
    benchmark: Benchmark,
    weights: Sequence[float],
    seed: int,
    reset_at: int | None,
    baselines: Baselines,
) -> float:
    """Fixed-weight training, Adam reset at step ``reset_at`` (None: never); returns the test
    Δm% (per metric) of the best validation checkpoint."""
    loss = chunk.index_loss_fn(benchmark)
    adam = optax.adam(benchmark.learning_rate)
    w = jnp.asarray(weights, jnp.float32)[None]
    train = jax.jit(lambda p, o, batches: search.train_candidates(loss, adam, w, p, o, batches))
    indices = single_run.batch_indices(len(benchmark.dataset.train.inputs), BATCH, STEPS, seed)
    params = chunk.initial_params(benchmark, seed)
    stacked = jax.tree.map(lambda x: x[None], params)
    state = jax.tree.map(lambda x: x[None], adam.init(params))
    bounds = sorted(
        {
            0,
            STEPS,
            *range(EVAL_EVERY, STEPS, EVAL_EVERY),
            *(() if reset_at is None else (reset_at,)),
        }
    )
    best: tuple[float, Any] = (-float("inf"), params)
    for start, end in itertools.pairwise(bounds):
        if start == reset_at:
            state = jax.tree.map(lambda x: x[None], adam.init(params))  # zero moments, step 0
        stacked, state, _ = train(stacked, state, jnp.asarray(indices[start:end]))
        if end % EVAL_EVERY == 0 or end == STEPS:
            current = jax.tree.map(lambda x: x[0], stacked)
            validation = single_run.evaluate(benchmark, current, benchmark.dataset.validation)
            score = relative_score(benchmark.dataset.tasks, validation, baselines.validation)
            if score > best[0]:
                best = (score, current)
    test = single_run.evaluate(benchmark, best[1], benchmark.dataset.test)
    return evaluation.delta_m_both(benchmark.dataset.tasks, test, baselines.test)["per_metric"]


def phase_one_then_fixed(
    benchmark: Benchmark, weights: Sequence[float], seed: int, baselines: Baselines
) -> float:
    """(c): the search's schedule with one candidate, the given weights."""
    options = search_options(benchmark.num_tasks, STEPS)
    options.update(candidates=[list(weights)], rungs=(1, 2))
    options.pop("refine_rungs", None)
    config = MethodConfig("control", SEARCH_METHOD, options)
    result = search_run.run(
        benchmark, config, steps=STEPS, seed=seed, eval_every=EVAL_EVERY, baselines=baselines
    )
    assert result.delta_m is not None
    return result.delta_m["per_metric"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", nargs="+", default=list(GRID_WEIGHTS))
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    seeds = range(args.seeds)
    print(f"device={jax.devices()[0].platform}; {STEPS} steps, batch {BATCH}, seeds {list(seeds)}")
    print(
        "| benchmark | grid weights | (a) fixed from step 0 | (b) + Adam reset at end of "
        "phase 1 | (c) gms phase 1, then fixed, fresh Adam |"
    )
    print("|---|---|---:|---:|---:|")
    for name in args.benchmarks:
        benchmark = load_benchmark(name, dataset_options={"image_size": 20})
        baselines, _ = single_task_baselines(
            benchmark, steps=STEPS, batch_size=BATCH, seeds=tuple(seeds), eval_every=EVAL_EVERY
        )
        weights = GRID_WEIGHTS[name]
        reset = search_options(benchmark.num_tasks, STEPS)["estimation_steps"]
        cells = [
            [fixed_weights_run(benchmark, weights, s, reset_at, baselines) for s in seeds]
            for reset_at in (None, reset)
        ]
        cells.append([phase_one_then_fixed(benchmark, weights, s, baselines) for s in seeds])
        text = [f"{statistics.mean(v):+.2f} ± {statistics.stdev(v):.2f}" for v in cells]
        print(f"| {name} | {weights} | " + " | ".join(text) + " |", flush=True)


if __name__ == "__main__":
    main()
