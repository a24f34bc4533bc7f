"""Choose a benchmark's recipe on tuning seeds, and check it with the restart control.

A fair recipe (issue 16) is chosen on the **single-task baselines** with **tuning seeds** (100
and up, never the reported seeds 0-4), then checked:

1. **Grid of recipes.** For every (learning rate, schedule, β2, steps) of the grid, each task
   is trained alone (weights e_k, as the bench's baselines) on the tuning seeds, with the
   bench's batches and checkpoint selection. A recipe's score is the Δm% (per metric, positive
   = better) of its single-task *validation* metrics against those of the benchmark's current
   recipe. The table also gives how many runs selected a checkpoint before their last step. The
   chosen recipe is the best-scoring one among those where most runs did (a fair recipe trains
   long enough to select on); when none does, the best-scoring one, with a note to train longer.
   Ties go to the current recipe.
2. **Restart control.** For the chosen and the current recipe: the given fixed weights
   (default: equal weights) trained from step 0, and the same with Adam's moments reset once
   after 5% of training (:meth:`~autoscale_jax.bench.running.recipe.Recipe.restart`); test Δm%
   against
   that recipe's single-task baselines on the tuning seeds. A fair recipe moves Δm by at most
   1 point there (with constant Adam, β2 = 0.999, the reset lifted fixed-weight runs by 1.9-5.7
   points on the discriminating benchmarks: ``benchmarks/search_control.py``).

Print-only (``--json PATH`` also writes the numbers); CPU or GPU. Usage::

  python benchmarks/recipe_tuning.py --benchmark multi_mnist --seeds 100 101 \\
      --learning-rates 3e-4 1e-3 3e-3 --schedules constant warmup_cosine [--b2 0.999 0.99] \\
      [--warmup 0.05] [--steps 800 1600] [--weights ew 0.0063,1.99] [--suite discriminating]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from autoscale_jax.bench.experiments.baselines import single_task_baselines
from autoscale_jax.bench.experiments.grid import vmapped_grid_runs, weights_label
from autoscale_jax.bench.experiments.suites import SUITES, BenchmarkSpec
from autoscale_jax.bench.running.benchmark import Benchmark, load_benchmark
from autoscale_jax.bench.running.method_config import search_options
from autoscale_jax.bench.running.recipe import SCHEDULES, Recipe
from autoscale_jax.bench.running.run_result import Baselines, RunResult
from autoscale_jax.bench.running.selection import relative_score, selected_before_end

CONTROL_HEADER = (
    "| recipe | weights | from step 0 | Adam reset after step r | reset − step 0 | sel. < last |"
)


@dataclasses.dataclass
class RecipeResult:
    """One recipe's single-task baselines on the tuning seeds."""

    recipe: Recipe
    baselines: Baselines
    runs: list[RunResult]
    wall_s: float
    score: float = float("nan")


def recipe_grid(
    base: Recipe,
    learning_rates: Sequence[float],
    schedules: Sequence[str],
    b2s: Sequence[float],
    warmup: float,
    steps: Sequence[int],
) -> list[Recipe]:
    """Every (learning rate, schedule, β2, steps) with ``base``'s batch size; ``base`` first
    (the reference every score is relative to), added when the grid lacks it."""
    grid = [
        dataclasses.replace(
            base,
            learning_rate=lr,
            b2=b2,
            schedule=schedule,
            warmup_fraction=warmup if schedule == "warmup_cosine" else 0.0,
            steps=length,
        )
        for lr, schedule, b2, length in itertools.product(learning_rates, schedules, b2s, steps)
    ]
    return [base, *(r for r in grid if r != base)]


def tune(
    benchmark: Benchmark, recipes: Sequence[Recipe], seeds: Sequence[int], eval_every: int
) -> list[RecipeResult]:
    """Single-task baselines of every recipe; scores relative to the first recipe's."""
    results = []
    for recipe in recipes:
        bench = dataclasses.replace(benchmark, recipe=recipe)  # the cache (data, jit) is shared
        start = time.perf_counter()
        baselines, runs = single_task_baselines(
            bench,
            steps=recipe.steps,
            batch_size=recipe.batch_size,
            seeds=tuple(seeds),
            eval_every=eval_every,
        )
        results.append(RecipeResult(recipe, baselines, runs, time.perf_counter() - start))
        print(f"  trained {recipe.describe()} ({results[-1].wall_s:.0f} s)", flush=True)
    tasks = benchmark.dataset.tasks
    reference = results[0].baselines.validation
    for result in results:
        result.score = relative_score(tasks, result.baselines.validation, reference)
    return results


def restart_control(
    benchmark: Benchmark,
    result: RecipeResult,
    weights: np.ndarray,
    seeds: Sequence[int],
    eval_every: int,
) -> dict[str, Any]:
    """Test Δm% of ``weights`` [G, K] from step 0 and with one reset after 5% of training."""
    recipe = result.recipe
    bench = dataclasses.replace(benchmark, recipe=recipe)
    restart_at = search_options(benchmark.num_tasks, recipe.steps)["estimation_steps"]
    budget = {"steps": recipe.steps, "batch_size": recipe.batch_size, "eval_every": eval_every}
    out: dict[str, Any] = {"restart_at": restart_at, "rows": []}
    runs: dict[Any, list[RunResult]] = {}
    for at in (None, restart_at):
        for seed in seeds:
            points = vmapped_grid_runs(
                bench, weights, seed=seed, baselines=result.baselines, restart_at=at, **budget
            )
            for g, run in enumerate(points):
                runs.setdefault((g, at), []).append(run)
    for g, w in enumerate(weights):
        plain = [r.delta_m["per_metric"] for r in runs[(g, None)]]  # type: ignore[index]
        reset = [r.delta_m["per_metric"] for r in runs[(g, restart_at)]]  # type: ignore[index]
        diffs = [b - a for a, b in zip(plain, reset, strict=True)]
        both = runs[(g, None)] + runs[(g, restart_at)]
        out["rows"].append(
            {
                "weights": weights_label(w),
                "from_step_0": plain,
                "with_reset": reset,
                "difference": diffs,
                "selected_before_end": selected_before_end(both),
                "runs": len(both),
            }
        )
    return out


def _mean_sd(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:+.2f}"
    return f"{statistics.mean(values):+.2f} ± {statistics.stdev(values):.2f}"


def _parse_weights(texts: Sequence[str], num_tasks: int) -> np.ndarray:
    rows = []
    for text in texts:
        row = np.ones(num_tasks) if text == "ew" else np.array([float(v) for v in text.split(",")])
        if row.shape != (num_tasks,) or np.any(row < 0):
            raise SystemExit(f"--weights {text!r}: give {num_tasks} non-negative numbers or 'ew'")
        rows.append(row)
    return np.stack(rows)


def _print_grid(benchmark: Benchmark, results: Sequence[RecipeResult]) -> None:
    tasks = benchmark.dataset.tasks
    columns = [(k, m) for k, t in enumerate(tasks) for m in t.metrics]
    names = [f"{tasks[k].name} {m} (val)" for k, m in columns]
    print("| recipe | " + " | ".join(names) + " | score ↑ | selected < last | time |")
    print("|---|" + "---:|" * (len(names) + 3))
    for r in results:
        values = " | ".join(f"{r.baselines.validation[k][m]:.4g}" for k, m in columns)
        share = selected_before_end(r.runs)
        print(
            f"| {r.recipe.describe()} | {values} | {r.score:+.2f} | {share}/{len(r.runs)} | "
            f"{r.wall_s:.0f} s |"
        )


def _suite_spec(suite: str, name: str) -> BenchmarkSpec:
    """The benchmark ``name`` as ``suite`` trains it (a clear exit when the suite lacks it)."""
    for spec in SUITES[suite].benchmarks:
        if spec.name == name:
            return spec
    names = [spec.name for spec in SUITES[suite].benchmarks]
    raise SystemExit(f"--benchmark: the {suite} suite has no {name!r}; it has {names}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--benchmark", default="multi_mnist")
    parser.add_argument(
        "--suite",
        choices=tuple(SUITES),
        default="discriminating",
        help="whose recipe is the current one (default: the one the fair suite starts from)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--schedules", nargs="+", choices=SCHEDULES, default=list(SCHEDULES))
    parser.add_argument("--b2", type=float, nargs="+", default=[0.999])
    parser.add_argument("--warmup", type=float, default=0.05, help="warm-up share (cosine)")
    parser.add_argument(
        "--steps", type=int, nargs="+", help="steps per run (default: the benchmark's)"
    )
    parser.add_argument("--weights", nargs="+", default=["ew"], help="'ew' or w1,w2,...")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args(argv)
    if min(args.seeds) < 100:
        raise SystemExit("--seeds: tuning seeds are 100 and up (0-4 are the reported seeds)")
    start = time.perf_counter()
    spec = _suite_spec(args.suite, args.benchmark)
    base = spec.recipe
    benchmark = load_benchmark(
        spec.name,
        dataset_options=spec.dataset_options,
        model_options=spec.model_options,
        recipe=base,
    )
    weights = _parse_weights(args.weights, benchmark.num_tasks)
    steps = args.steps or [base.steps]
    eval_every = min(spec.eval_every, *steps)
    print(
        f"{spec.name}: tuning seeds {args.seeds}, validation every {eval_every} steps, device "
        f"{jax.devices()[0].platform}; scores: single-task validation Δm% vs the current recipe "
        f"({base.describe()}), positive = better"
    )
    recipes = recipe_grid(base, args.learning_rates, args.schedules, args.b2, args.warmup, steps)
    results = tune(benchmark, recipes, args.seeds, eval_every)
    long_enough = [r for r in results if 2 * selected_before_end(r.runs) > len(r.runs)]
    chosen = max(long_enough or results, key=lambda r: (r.score, r is results[0]))
    print()
    _print_grid(benchmark, results)
    print(f"\nChosen: {chosen.recipe.describe()} (score {chosen.score:+.2f})")
    if not long_enough:
        print("No recipe selected a checkpoint before the last step in most runs: train longer.")
    print()
    controls = {}
    print(CONTROL_HEADER)
    print("|---|---|---:|---:|---:|---:|")
    for result in [chosen] + ([results[0]] if chosen is not results[0] else []):
        control = restart_control(benchmark, result, weights, args.seeds, eval_every)
        controls[result.recipe.describe()] = control
        for row in control["rows"]:
            print(
                f"| {result.recipe.describe()} | {row['weights']} | {_mean_sd(row['from_step_0'])}"
                f" | {_mean_sd(row['with_reset'])} (r = {control['restart_at']}) | "
                f"{_mean_sd(row['difference'])} | {row['selected_before_end']}/{row['runs']} |",
                flush=True,
            )
    for name, control in controls.items():
        worst = max(abs(statistics.mean(row["difference"])) for row in control["rows"])
        verdict = "passes" if worst <= 1.0 else "fails"
        print(f"- {name}: the reset moves Δm by up to {worst:.2f} points: {verdict} (≤ 1)")
    wall = time.perf_counter() - start
    print(f"\nTotal wall time {wall:.0f} s ({wall / 60:.1f} min)")
    if args.json:
        payload = {
            "benchmark": spec.name,
            "seeds": args.seeds,
            "eval_every": eval_every,
            "recipes": [
                {
                    **r.recipe.as_dict(),
                    "score": r.score,
                    "validation": r.baselines.validation,
                    "selected_before_end": selected_before_end(r.runs),
                    "runs": len(r.runs),
                    "wall_s": r.wall_s,
                }
                for r in results
            ],
            "chosen": chosen.recipe.as_dict(),
            "restart_control": controls,
            "wall_s": wall,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1, default=float)


if __name__ == "__main__":
    main()
