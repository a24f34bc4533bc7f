"""The ``autoscale-jax`` command line: benchmark suites and the weight study.

Usage::

  autoscale-jax bench [--suite smoke|quick|discriminating|full] [--smoke] [--benchmarks NAME ...]
                      [--methods LABEL ...] [--seeds N] [--steps N] [--grid N] [--out DIR]
                      [--resume] [--no-plots]
  autoscale-jax study [--benchmark multi_mnist] [--grid N] [--steps N] [--seed S] [--out DIR]
  python -m autoscale_jax.bench.cli bench          # the same without the console script

``autoscale-jax bench`` with no option runs the **quick** suite: MultiMNIST with one task
classifying the left digit and the other reconstructing the right one (CE + MSE, where equal
weights are far from the best fixed weights), 3 seeds, with single-task baselines, EW, a grid
search of fixed LS weights, AutoScale with the gms / cond / loss guides and with the
validation-guided search (``autoscale_search``), gradient-norm scaling and every registered
multi-task optimizer. It needs only the ``bench`` extra. ``--suite discriminating`` runs the
benchmarks where weighting matters (MultiMNIST with a linear and a sigmoid reconstruction head,
MultiFashion, and their three-task variants). ``--suite full``
adds MultiFashion, Yeast-14 (labelled "does-no-harm, not discriminating") and QM9 (a small
message-passing net; skipped with a message when ``qm9pack`` is absent). ``--smoke`` is the CI
budget: tens of steps, one seed, three methods.

Outputs in ``--out``: ``results.json`` (every run, every trace), ``results.md`` (one table per
benchmark: per-task test metrics, Δm% in both conventions, mean rank, cost relative to EW,
findings), PNG plots per benchmark (weights over training, MTO metrics over training, Δm vs
cost and, for two tasks, Δm vs the weight ratio w2/w1) and ``runs/<benchmark>/`` with one JSON
file per finished run. ``--resume`` loads the runs found there instead of training them again,
so an interrupted suite loses nothing. ``study`` writes ``study.json``, ``study.md`` and
``study.png``.

The pieces live in their own modules: :mod:`.suites` (what a suite runs),
:mod:`.experiment` (running one benchmark), :mod:`.report` (markdown), :mod:`.plots`,
:mod:`.run_store` (the run files) and :mod:`.serialization` (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

import jax
from tqdm.auto import tqdm

from autoscale_jax.bench import plots
from autoscale_jax.bench.benchmark import load_benchmark
from autoscale_jax.bench.experiment import BenchmarkReport, run_benchmark
from autoscale_jax.bench.grid import ls_weight_grid
from autoscale_jax.bench.method_config import MethodConfig, default_methods
from autoscale_jax.bench.report import results_markdown, study_markdown
from autoscale_jax.bench.run_store import RunStore
from autoscale_jax.bench.seeds import ProgressFn
from autoscale_jax.bench.serialization import write_json
from autoscale_jax.bench.study import weight_study
from autoscale_jax.bench.suites import ALWAYS_RUN, SUITES, BenchmarkSpec, Suite

__all__ = ["build_parser", "main"]


@contextlib.contextmanager
def _progress_bar(total: int, description: str) -> Iterator[ProgressFn]:
    """A tqdm bar on stderr, ticked by the :data:`ProgressFn` it yields."""
    with tqdm(total=total, desc=description, unit="run", file=sys.stderr) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update()

        yield progress


def _select_methods(
    configs: list[MethodConfig], wanted: Sequence[str] | None
) -> tuple[list[MethodConfig], bool]:
    """Keeps the wanted labels (EW always); returns ``(configs, run the LS grid?)``."""
    known = [c.label for c in configs] + ["ls_grid"]
    if wanted is None:
        return configs, True
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {known}")
    keep = set(wanted) | set(ALWAYS_RUN)
    return [c for c in configs if c.label in keep], "ls_grid" in keep


def _plot_report(report: BenchmarkReport, out: str) -> list[str]:
    """Writes a benchmark's PNG plots into ``out``; returns their paths."""
    stem = os.path.join(out, report.benchmark)
    paths = [
        plots.plot_weights(report, f"{stem}_weights.png"),
        plots.plot_metrics(report, f"{stem}_metrics.png"),
        plots.plot_delta_m_vs_cost(report, f"{stem}_delta_m_vs_cost.png"),
    ]
    if len(report.tasks) == 2:  # a weight ratio w2/w1 exists only for two tasks
        paths.append(
            plots.plot_delta_m_vs_weight_ratio(report, f"{stem}_delta_m_vs_weight_ratio.png")
        )
    return paths


def _run_spec(
    spec: BenchmarkSpec, suite: Suite, args: argparse.Namespace, store: RunStore
) -> BenchmarkReport | str:
    """Runs one benchmark of the suite; returns the report or the reason it was skipped."""
    try:
        bench = load_benchmark(
            spec.name, dataset_options=spec.dataset_options, model_options=spec.model_options
        )
    except (ImportError, FileNotFoundError) as err:
        return f"{type(err).__name__}: {err}"
    steps = args.steps or spec.steps
    eval_every = min(spec.eval_every, steps)
    seeds = tuple(range(args.seeds or suite.seeds))
    grid_size = spec.grid_size or suite.grid_size
    grid_size = grid_size if args.grid is None else args.grid
    configs, with_grid = _select_methods(
        default_methods(bench.num_tasks, steps, heads=args.heads),
        args.methods or spec.methods or suite.methods,
    )
    grid = (
        ls_weight_grid(bench.num_tasks, grid_size, max_ratio=spec.grid_max_ratio)
        if with_grid and grid_size > 0
        else None
    )
    total = len(seeds) * (bench.num_tasks + (0 if grid is None else len(grid)) + len(configs))
    with _progress_bar(total, spec.name) as progress:
        report = run_benchmark(
            bench,
            configs,
            steps=steps,
            batch_size=spec.batch_size,
            seeds=seeds,
            eval_every=eval_every,
            weight_grid=grid,
            progress=progress,
            store=store,
        )
    report.budget["heads"] = args.heads
    return report


def _benchmark_specs(suite: Suite, names: Sequence[str] | None) -> list[BenchmarkSpec]:
    """The suite's benchmarks, or the named ones (from the full suite when not in this one)."""
    specs = [s for s in suite.benchmarks if not names or s.name in names]
    if names:
        others = {}
        for other in (SUITES["full"], SUITES["discriminating"]):
            others.update({s.name: s for s in other.benchmarks if s.name not in others})
        missing = [n for n in names if n not in {s.name for s in specs}]
        if any(n not in others for n in missing):
            raise SystemExit(f"unknown benchmark(s) {missing}; choose from {sorted(others)}")
        specs += [others[n] for n in missing]
    return specs


def bench_command(args: argparse.Namespace) -> int:
    """Runs a suite and writes results.json, results.md, the plots and one file per run.

    Args:
      args: the parsed ``bench`` options.

    Returns:
      The exit status (0).
    """
    suite = SUITES["smoke" if args.smoke else args.suite]
    specs = _benchmark_specs(suite, args.benchmarks)
    os.makedirs(args.out, exist_ok=True)
    store = RunStore(os.path.join(args.out, "runs"), resume=args.resume)
    start = time.perf_counter()
    reports, skipped, images = [], {}, {}
    for spec in specs:
        outcome = _run_spec(spec, suite, args, store)
        if isinstance(outcome, str):
            print(f"[autoscale-jax] skipping {spec.name}: {outcome}", file=sys.stderr)
            skipped[spec.name] = outcome
            continue
        reports.append(outcome)
        if not args.no_plots:
            images[spec.name] = _plot_report(outcome, args.out)
    wall = time.perf_counter() - start
    payload = {
        "suite": suite.name,
        "argv": sys.argv[1:],
        "wall_time_s": wall,
        "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(),
        "benchmarks": reports,
        "skipped": skipped,
    }
    write_json(os.path.join(args.out, "results.json"), payload)
    markdown = results_markdown(
        reports, images, suite=suite.name, wall_time_s=wall, skipped=skipped
    )
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    print(markdown)
    print(f"[autoscale-jax] wrote {args.out}/results.json, results.md and plots", file=sys.stderr)
    return 0


def study_command(args: argparse.Namespace) -> int:
    """Runs the weight study and writes study.json, study.md and study.png.

    Args:
      args: the parsed ``study`` options.

    Returns:
      The exit status (0).
    """
    spec = next((s for s in SUITES["full"].benchmarks if s.name == args.benchmark), None)
    if spec is None:
        raise SystemExit(f"unknown benchmark {args.benchmark!r}")
    bench = load_benchmark(
        spec.name, dataset_options=spec.dataset_options, model_options=spec.model_options
    )
    steps = args.steps or spec.steps
    os.makedirs(args.out, exist_ok=True)
    with _progress_bar(args.grid + bench.num_tasks, "study") as progress:
        study = weight_study(
            bench,
            grid_size=args.grid,
            steps=steps,
            batch_size=spec.batch_size,
            seed=args.seed,
            eval_every=min(spec.eval_every, steps),
            max_ratio=spec.grid_max_ratio,
            progress=progress,
        )
    write_json(os.path.join(args.out, "study.json"), study)
    markdown = study_markdown(study)
    with open(os.path.join(args.out, "study.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n![study.png](study.png)\n")
    plots.plot_study(study, os.path.join(args.out, "study.png"))
    print(markdown)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``autoscale-jax`` (subcommands ``bench`` and ``study``)."""
    parser = argparse.ArgumentParser(
        prog="autoscale-jax", description="Offline multi-task optimization benchmarks."
    )
    commands = parser.add_subparsers(dest="command")
    bench = commands.add_parser("bench", help="run a benchmark suite (default: quick)")
    bench.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="quick",
        help="smoke: CI budget (< 1 min); quick: MultiMNIST (< 10 min on 2 cores); "
        "discriminating: five benchmarks where weighting matters (about an hour); full: + "
        "MultiFashion, Yeast-14, QM9 with its seven rows (about 45 min)",
    )
    bench.add_argument("--smoke", action="store_true", help="CI budget (same as --suite smoke)")
    bench.add_argument("--benchmarks", nargs="+", metavar="NAME", help="subset of benchmarks")
    bench.add_argument(
        "--methods",
        nargs="+",
        metavar="LABEL",
        help="subset of table rows, e.g. ls_grid autoscale_gms pcgrad (ew and the "
        "single-task baselines always run)",
    )
    bench.add_argument("--seeds", type=int, help="seeds per method (default: the suite's)")
    bench.add_argument("--steps", type=int, help="training steps per run (default: the suite's)")
    bench.add_argument("--grid", type=int, help="LS grid size (0: no grid search)")
    bench.add_argument("--out", default="autoscale_bench_results", help="output folder")
    bench.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    bench.add_argument(
        "--heads",
        choices=("weighted", "plain"),
        default="weighted",
        help="Gramian methods: weight every leaf (default) or only the shared ones, each task "
        "head getting its own gradient (TorchJD's mtl_backward)",
    )
    bench.add_argument(
        "--resume",
        action="store_true",
        help="load the finished runs saved in OUT/runs/ instead of training them again",
    )
    bench.set_defaults(handler=bench_command)
    study = commands.add_parser("study", help="early MTO metrics vs final Δm%% over fixed weights")
    study.add_argument("--benchmark", default="multi_mnist")
    study.add_argument("--grid", type=int, default=9, help="number of fixed weightings")
    study.add_argument("--steps", type=int, help="training steps per run")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--out", default="autoscale_study_results", help="output folder")
    study.set_defaults(handler=study_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoscale-jax`` console script.

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
      The process exit status.

    Raises:
      SystemExit: with a one-line message for an invalid option (``--steps 0``, ``--seeds 0``,
        a negative ``--grid``, an ``--out`` folder that cannot be written), before any
        training starts.

    Example:
      >>> main(["bench", "--steps", "0"])
      Traceback (most recent call last):
      ...
      SystemExit: autoscale-jax bench: --steps must be a positive integer, got 0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    error = _invalid_arguments(args)
    if error:
        raise SystemExit(f"autoscale-jax {args.command}: {error}")
    return args.handler(args)


def _invalid_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the parsed options (checked before any training), or None."""
    for name in ("steps", "seeds"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            return f"--{name} must be a positive integer, got {value}"
    grid = getattr(args, "grid", None)
    if grid is not None and grid < 0:
        return f"--grid must be 0 (no grid) or positive, got {grid}"
    try:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as err:
        return f"cannot write to --out {args.out!r}: {err.strerror or err}"
    return None


if __name__ == "__main__":
    sys.exit(main())
