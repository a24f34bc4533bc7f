"""The ``autoscale-jax`` command line: benchmark suites and the weight study.

Usage::

  autoscale-jax bench [--suite smoke|quick|discriminating|fair|full|real|accelerator] [--smoke]
                      [--benchmarks NAME ...]
                      [--methods LABEL ...] [--seeds N] [--first-seed S] [--steps N]
                      [--grid N] [--out DIR] [--resume] [--no-plots]
  autoscale-jax study [--benchmark multi_mnist] [--grid N] [--steps N] [--seed S] [--out DIR]
  python -m autoscale_jax.bench bench              # the same without the console script

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
budget: tens of steps, one seed, three methods. ``--suite fair`` runs the discriminating
benchmarks with every row on an equal footing (5 seeds: the grid and its two control rows, each
AutoScale guide with and without an optimizer restart, the search, Nash-MTL, FAMO, STCH and
UPGrad); ``--suite real`` the same rows on the real-data benchmarks (the ``data`` extra,
``bash .ci/install-data``; a benchmark whose data are absent is skipped with a message);
``--suite accelerator`` runs QM9's graph net on all 130,831 molecules (``qm9_full``). Every
run of a benchmark trains with its recipe (:class:`~autoscale_jax.bench.running.recipe.Recipe`),
printed in ``results.md`` and ``results.json``.

Outputs in ``--out`` (default ``bench-out/<suite>/``: one folder per suite, so ``bench --suite
smoke`` never replaces the quick suite's files): ``results.json`` (every run, every trace),
``results.md`` (one table per benchmark: per-task test metrics, Δm% in both conventions, mean
rank, cost relative to EW, findings), PNG plots per benchmark (weights over training, MTO
metrics over training, Δm vs cost and, for two tasks, Δm vs the weight ratio w2/w1) and
``runs/<benchmark>/`` with one JSON file per finished run. ``--resume`` loads the runs found
there instead of training them again (a stale run file, or one that fails its schema or digest
check, is trained again; see :mod:`.running.run_store`) and says how many it loaded and trained.
``study`` writes ``study.json``, ``study.md`` and ``study.png`` (default ``bench-out/study/``).

Nothing fails silently: an invalid option, or a file that cannot be written (a full disk, a
folder where a run file goes), ends the invocation with one line on stderr and exit status 1;
Ctrl-C writes ``results.json`` / ``results.md`` for the benchmarks already finished, prints how
many runs are saved and the exact command that resumes, and exits with status 130.

The pieces live in their own modules: :mod:`.cli_args` (options and their checks),
:mod:`.experiments.suites` (what a suite runs), :mod:`.experiments.experiment` (running one
benchmark), :mod:`.reporting.report` (markdown), :mod:`.reporting.plots`,
:mod:`.running.run_store` (the run files) and :mod:`.running.serialization` (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence

import jax
from tqdm.auto import tqdm

from autoscale_jax.bench.cli_args import build_parser, invalid_arguments, resume_command
from autoscale_jax.bench.experiments.experiment import BenchmarkReport, run_benchmark
from autoscale_jax.bench.experiments.grid import ls_weight_grid
from autoscale_jax.bench.experiments.study import weight_study
from autoscale_jax.bench.experiments.suites import (
    ALWAYS_RUN,
    SUITES,
    BenchmarkSpec,
    Suite,
    find_spec,
)
from autoscale_jax.bench.reporting import plots
from autoscale_jax.bench.reporting.report import results_markdown, study_markdown
from autoscale_jax.bench.running.benchmark import load_benchmark
from autoscale_jax.bench.running.method_config import (
    GRID_CONTROLS,
    OPT_IN_ROWS,
    MethodConfig,
    default_methods,
)
from autoscale_jax.bench.running.run_store import RunStore, RunStoreError
from autoscale_jax.bench.running.seeds import ProgressFn
from autoscale_jax.bench.running.serialization import write_json

__all__ = ["bench_command", "build_parser", "main", "study_command"]


@contextlib.contextmanager
def _progress_bar(total: int, description: str) -> Iterator[ProgressFn]:
    """A tqdm bar on stderr, ticked by the :data:`ProgressFn` it yields."""
    with tqdm(total=total, desc=description, unit="run", file=sys.stderr) as bar:

        def progress(label: str) -> None:
            bar.set_postfix_str(label)
            bar.update()

        yield progress


def _stderr_line(line: str) -> None:
    """One line on stderr that does not break a progress bar."""
    tqdm.write(line, file=sys.stderr)


def _select_methods(
    configs: list[MethodConfig], wanted: Sequence[str] | None, benchmark: str
) -> tuple[list[MethodConfig], bool, tuple[str, ...]]:
    """Keeps the wanted labels (EW always); returns ``(configs, run the LS grid?, the grid's
    control rows)``; every row but the opt-in ones (:data:`OPT_IN_ROWS`) when ``wanted`` is
    None.

    A wanted label that is not defined for this benchmark's number of tasks (the robust
    aggregators on two tasks) is left out with one line on stderr.
    """
    if wanted is None:
        return [c for c in configs if c.label not in OPT_IN_ROWS], True, GRID_CONTROLS
    absent = sorted(set(wanted) - {c.label for c in configs} - {"ls_grid", *GRID_CONTROLS})
    if absent:
        _stderr_line(f"[autoscale-jax] {benchmark}: {absent} not defined for its tasks; left out")
    keep = set(wanted) | set(ALWAYS_RUN)
    controls = tuple(c for c in GRID_CONTROLS if c in keep)
    return [c for c in configs if c.label in keep], "ls_grid" in keep or bool(controls), controls


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
            spec.name,
            dataset_options=spec.dataset_options,
            model_options=spec.model_options,
            recipe=spec.recipe,
        )
    except (ImportError, FileNotFoundError) as err:
        return f"{type(err).__name__}: {err}"
    steps = args.steps or spec.steps
    eval_every = min(spec.eval_every, steps)
    seeds = tuple(range(args.first_seed, args.first_seed + (args.seeds or suite.seeds)))
    grid_size = spec.grid_size or suite.grid_size
    grid_size = grid_size if args.grid is None else args.grid
    configs, with_grid, controls = _select_methods(
        default_methods(bench.num_tasks, steps, heads=args.heads),
        args.methods or spec.methods or suite.methods,
        spec.name,
    )
    grid = (
        ls_weight_grid(bench.num_tasks, grid_size, max_ratio=spec.grid_max_ratio)
        if with_grid and grid_size > 0
        else None
    )
    controls = controls if grid is not None else ()
    total = len(seeds) * (
        bench.num_tasks + (0 if grid is None else len(grid)) + len(controls) + len(configs)
    )
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
            grid_controls=controls,
        )
    report.budget["heads"] = args.heads
    return report


def _benchmark_specs(suite: Suite, names: Sequence[str] | None) -> list[BenchmarkSpec]:
    """The suite's benchmarks, or the named ones (from the full suite when not in this one)."""
    specs = [s for s in suite.benchmarks if not names or s.name in names]
    if names:
        missing = [n for n in names if n not in {s.name for s in specs}]
        specs += [find_spec(n) for n in missing]  # names are checked by invalid_arguments
    return specs


def bench_command(args: argparse.Namespace) -> int:
    """Runs a suite and writes results.json, results.md, the plots and one file per run.

    On Ctrl-C (``KeyboardInterrupt``) the benchmarks already finished are still written, the
    interrupted one is listed as skipped, and two lines on stderr say how many runs are saved
    and the command that resumes.

    Args:
      args: the parsed ``bench`` options.

    Returns:
      The exit status: 0, or 130 when interrupted.
    """
    suite = SUITES["smoke" if args.smoke else args.suite]
    specs = _benchmark_specs(suite, args.benchmarks)
    store = RunStore(os.path.join(args.out, "runs"), resume=args.resume, report=_stderr_line)
    start = time.perf_counter()
    reports, skipped, images = [], {}, {}
    interrupted, current = None, ""
    try:
        for spec in specs:
            current = spec.name
            outcome = _run_spec(spec, suite, args, store)
            if isinstance(outcome, str):
                _stderr_line(f"[autoscale-jax] skipping {spec.name}: {outcome}")
                skipped[spec.name] = outcome
                continue
            reports.append(outcome)
            if not args.no_plots:
                images[spec.name] = _plot_report(outcome, args.out)
    except KeyboardInterrupt:
        interrupted = current
        skipped[current] = (
            f"interrupted; its finished runs are saved in {store.folder}, "
            f"resume with: {resume_command(args.argv)}"
        )
    wall = time.perf_counter() - start
    payload = {
        "suite": suite.name,
        "argv": args.argv,
        "wall_time_s": wall,
        "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(),
        "benchmarks": reports,
        "skipped": skipped,
        "interrupted": interrupted,
        "run_files": dict(store.tally),
    }
    write_json(os.path.join(args.out, "results.json"), payload)
    markdown = results_markdown(
        reports, images, suite=suite.name, wall_time_s=wall, skipped=skipped
    )
    with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    if interrupted is not None:
        saved = store.tally["loaded"] + store.tally["saved"]
        _stderr_line(
            f"[autoscale-jax] interrupted during {interrupted}: {_runs(saved)} saved in "
            f"{store.folder} ({store.tally['saved']} trained now); results.md holds the "
            f"{len(reports)} finished benchmark(s)."
        )
        _stderr_line(f"[autoscale-jax] resume with: {resume_command(args.argv)}")
        return 130
    print(markdown)
    _stderr_line(_store_summary(store))
    _stderr_line(f"[autoscale-jax] wrote {args.out}/results.json, results.md and plots")
    return 0


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def _store_summary(store: RunStore) -> str:
    """One line: how many runs were loaded, trained, and why those with a file were not used."""
    tally = store.tally
    if not store.resume:
        return f"[autoscale-jax] trained {_runs(tally['saved'])}, saved in {store.folder}"
    return (
        f"[autoscale-jax] --resume: loaded {_runs(tally['loaded'])} from {store.folder}, trained "
        f"{tally['saved']} ({tally['missing']} missing, {tally['stale']} stale: another bench "
        f"version, setup or budget; {tally['invalid']} invalid, reported above)"
    )


def study_command(args: argparse.Namespace) -> int:
    """Runs the weight study and writes study.json, study.md and study.png.

    Args:
      args: the parsed ``study`` options.

    Returns:
      The exit status: 0, or 130 when interrupted (the study saves no runs).
    """
    spec = find_spec(args.benchmark)
    bench = load_benchmark(
        spec.name,
        dataset_options=spec.dataset_options,
        model_options=spec.model_options,
        recipe=spec.recipe,
    )
    steps = args.steps or spec.steps
    try:
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
    except KeyboardInterrupt:
        _stderr_line("[autoscale-jax] study interrupted: it saves no runs, nothing was written")
        return 130
    write_json(os.path.join(args.out, "study.json"), study)
    markdown = study_markdown(study)
    with open(os.path.join(args.out, "study.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n![study.png](study.png)\n")
    plots.plot_study(study, os.path.join(args.out, "study.png"))
    print(markdown)
    return 0


_HANDLERS = {"bench": bench_command, "study": study_command}


def _os_error_text(err: OSError) -> str:
    """An OSError in a few words: its reason and file (``No space left on device: out/x``)."""
    if isinstance(err, RunStoreError) or not err.strerror:
        return str(err)
    return f"{err.strerror}: {err.filename}" if err.filename else err.strerror


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``autoscale-jax`` console script.

    Args:
      argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
      The process exit status: 0, 2 without a command, 130 when interrupted (Ctrl-C).

    Raises:
      SystemExit: with a one-line message (exit status 1) for an invalid option (``--steps
        0``, ``--seeds 0``, a negative ``--grid``, ``study --grid 0``, an unknown benchmark or
        method, an ``--out`` folder that cannot be written), before any training starts; and
        for a file that cannot be written later (a full disk, a folder where a run file goes).

    Example:
      >>> main(["bench", "--steps", "0"])
      Traceback (most recent call last):
      ...
      SystemExit: autoscale-jax bench: --steps must be a positive integer, got 0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = argv
    error = invalid_arguments(args)
    if error:
        raise SystemExit(f"autoscale-jax {args.command}: {error}")
    try:
        return _HANDLERS[args.command](args)
    except OSError as err:
        raise SystemExit(f"autoscale-jax {args.command}: {_os_error_text(err)}") from None


if __name__ == "__main__":
    sys.exit(main())
