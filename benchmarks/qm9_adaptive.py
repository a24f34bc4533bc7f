"""QM9-11, where fixed weights are not enough: a cheap adaptive mode against Nash-MTL.

On QM9-11 every fixed weighting (the grid, AutoScale's guides, the search) ties with equal
weights while Nash-MTL, an adaptive method, wins by about 13 Δm points at 11x EW's gradient
cost. This script measures the cheap adaptive mode the library already has: a Gramian method
solving its weights every ``T`` steps and reusing them in between on the one-backward-pass fast
path, so that a run costs ``1 + (K - 1) / T`` EW gradient evaluations (``T = 20`` for K = 11:
1.5x). Every row trains the benchmark's own recipe (the full suite's: 600 steps of Adam 1e-3,
batch 32, validation every 100 steps) on the same seeds and batches; Δm% per metric against
single-task baselines on those seeds (positive = better), paired over seeds against Nash-MTL.
Print-only; ``--out`` keeps the run files so that a rerun resumes. Usage:

  python benchmarks/qm9_adaptive.py [--seeds 5] [--every 20] [--out bench-out/qm9_adaptive]
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence

import jax

from autoscale_jax.bench.experiments.baselines import single_task_baselines
from autoscale_jax.bench.running.benchmark import load_benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_result import RunResult
from autoscale_jax.bench.running.run_store import RunStore
from autoscale_jax.bench.running.seeds import run_seeds


def solve_every_for_budget(num_tasks: int, budget: float) -> int:
    """The smallest ``T`` with ``1 + (K - 1) / T <= budget`` EW gradient evaluations.

    >>> solve_every_for_budget(11, 1.5)
    20
    """
    if budget <= 1.0:
        raise ValueError(f"budget must exceed 1 (EW's cost), got {budget}.")
    return math.ceil((num_tasks - 1) / (budget - 1.0))


def _mean_sd(values: Sequence[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.2f} ± {sd:.2f}"


def _delta_m(runs: Sequence[RunResult]) -> list[float]:
    return [r.delta_m["per_metric"] for r in runs if r.delta_m is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--budget", type=float, default=1.5, help="EW gradient evaluations")
    parser.add_argument("--num-molecules", type=int, default=6000)
    parser.add_argument("--out", default="bench-out/qm9_adaptive")
    args = parser.parse_args()
    seeds = tuple(range(args.seeds))
    budget = {"steps": args.steps, "batch_size": args.batch_size, "eval_every": args.eval_every}
    bench = load_benchmark(
        "qm9", dataset_options={"representation": "graph", "num_molecules": args.num_molecules}
    )
    every = solve_every_for_budget(bench.num_tasks, args.budget)
    store = RunStore(f"{args.out}/runs", resume=True)
    print(
        f"device={jax.devices()[0].platform}; qm9 ({args.num_molecules} molecules, "
        f"K={bench.num_tasks}); {args.steps} steps × batch {args.batch_size}, seeds {list(seeds)}"
    )
    baselines, _ = single_task_baselines(bench, seeds=seeds, store=store, **budget)
    rows = [
        MethodConfig("ew", "equal_weights"),
        MethodConfig("nash_mtl", "nash_mtl"),
        MethodConfig(f"nash_mtl(update_every={every})", "nash_mtl", {"update_every": every}),
    ]
    runs = {
        row.label: run_seeds(bench, row, seeds, baselines=baselines, store=store, **budget)
        for row in rows
    }
    ew_evals = statistics.mean(r.gradient_evaluations for r in runs["ew"])
    ew_time = statistics.mean(r.wall_time_s for r in runs["ew"])
    print("| row | Δm% per metric | grad evals ×EW | time ×EW |")
    print("|---|---:|---:|---:|")
    for label, row_runs in runs.items():
        evals = statistics.mean(r.gradient_evaluations for r in row_runs) / ew_evals
        time = statistics.mean(r.wall_time_s for r in row_runs) / ew_time
        print(f"| {label} | {_mean_sd(_delta_m(row_runs))} | {evals:.2f} | {time:.2f} |")
    cheap, nash = _delta_m(runs[rows[2].label]), _delta_m(runs["nash_mtl"])
    paired = [c - n for c, n in zip(cheap, nash, strict=True)]
    wins = sum(d > 0 for d in paired)
    print(
        f"\n{rows[2].label} minus nash_mtl, paired over {len(paired)} seeds: "
        f"{_mean_sd(paired)} ({wins} of {len(paired)} seeds better); nash_mtl's own seed sd "
        f"{statistics.stdev(nash) if len(nash) > 1 else 0.0:.2f}"
    )


if __name__ == "__main__":
    main()
