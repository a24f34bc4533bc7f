"""The options of ``autoscale-jax``: the parser, the checks made before any training, the
default output folders and the command that resumes an interrupted invocation.

Example:
  >>> args = build_parser().parse_args(["bench", "--smoke"])
  >>> invalid_arguments(args) is None, args.out
  (True, 'bench-out/smoke')
  >>> invalid_arguments(build_parser().parse_args(["study", "--grid", "0"]))
  '--grid must be a positive integer (fixed weightings to train), got 0'
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Sequence

from autoscale_jax.bench.experiments.suites import SUITES
from autoscale_jax.bench.running.method_config import GRID_CONTROLS, default_methods

__all__ = ["OUT_ROOT", "build_parser", "invalid_arguments", "known_benchmarks", "resume_command"]

# Every default output folder lives under this one (ignored by git): bench-out/<suite>/ for a
# suite, bench-out/study/ for the study, so no invocation overwrites another one's results.
OUT_ROOT = "bench-out"


def known_benchmarks() -> list[str]:
    """Every benchmark name a suite runs (``--benchmarks`` may name any of them)."""
    return sorted({s.name for suite in SUITES.values() for s in suite.benchmarks})


def _known_methods() -> list[str]:
    """Every table row label (for many tasks, where every registered method is defined)."""
    return [c.label for c in default_methods(64, 100)] + ["ls_grid", *GRID_CONTROLS]


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
        help="smoke: CI budget (< 1 min); quick: MultiMNIST (~10 min on 2 cores); "
        "discriminating: five benchmarks where weighting matters (about an hour); fair: the "
        "same five, 5 seeds, every row on an equal footing; full: + MultiFashion, Yeast-14, "
        "QM9 with its seven rows (about 45 min); real: ChemML RI, MoleculeACE and all of QM9 "
        "(Coulomb features) with the fair rows (needs the data extra); accelerator: QM9 with a "
        "graph net at full scale",
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
    bench.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seeds run from this one on (default 0, the reported seeds 0-4; tune defaults on "
        "100 and up)",
    )
    bench.add_argument("--steps", type=int, help="training steps per run (default: the suite's)")
    bench.add_argument("--grid", type=int, help="LS grid size (0: no grid search)")
    bench.add_argument(
        "--out",
        help=f"output folder (default: {OUT_ROOT}/SUITE, one folder per suite, so that no "
        "suite overwrites another's results.md, results.json, plots and runs/)",
    )
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
        help="load the finished runs saved in OUT/runs/ instead of training them again (a "
        "run file that is stale or fails its schema or digest check is trained again); says "
        "how many runs it loaded and trained",
    )
    bench.set_defaults(handler_name="bench")
    study = commands.add_parser("study", help="early MTO metrics vs final Δm%% over fixed weights")
    study.add_argument("--benchmark", default="multi_mnist")
    study.add_argument("--grid", type=int, default=9, help="number of fixed weightings (>= 1)")
    study.add_argument("--steps", type=int, help="training steps per run")
    study.add_argument("--seed", type=int, default=0)
    study.add_argument("--out", help=f"output folder (default: {OUT_ROOT}/study)")
    study.set_defaults(handler_name="study")
    return parser


def _suite_name(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else args.suite


def invalid_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with the parsed options (checked before any training), or None.

    Fills in the default ``--out`` (``bench-out/<suite>`` or ``bench-out/study``) and checks
    that it can be written and that no folder stands where a results file goes.
    """
    for name in ("steps", "seeds"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            return f"--{name} must be a positive integer, got {value}"
    if args.command == "study":
        if args.grid < 1:
            return f"--grid must be a positive integer (fixed weightings to train), got {args.grid}"
        if args.seed < 0:
            return f"--seed must be 0 or positive, got {args.seed}"
        if args.benchmark not in known_benchmarks():
            return f"unknown --benchmark {args.benchmark!r}; choose from {known_benchmarks()}"
        args.out = args.out or os.path.join(OUT_ROOT, "study")
    else:
        if args.first_seed < 0:
            return f"--first-seed must be 0 or positive, got {args.first_seed}"
        if args.grid is not None and args.grid < 0:
            return f"--grid must be 0 (no grid) or positive, got {args.grid}"
        unknown = sorted(set(args.benchmarks or ()) - set(known_benchmarks()))
        if unknown:
            return f"unknown benchmark(s) {unknown}; choose from {known_benchmarks()}"
        labels = _known_methods()
        unknown = sorted(set(args.methods or ()) - set(labels))
        if unknown:
            return f"unknown method(s) {unknown}; choose from {labels}"
        args.out = args.out or os.path.join(OUT_ROOT, _suite_name(args))
    try:
        os.makedirs(args.out, exist_ok=True)
        with tempfile.TemporaryFile(dir=args.out):
            pass
    except OSError as err:
        return f"cannot write to --out {args.out!r}: {err.strerror or err}"
    outputs = ("study.json", "study.md") if args.command == "study" else _RESULTS
    for name in outputs:
        if os.path.isdir(os.path.join(args.out, name)):
            return f"{os.path.join(args.out, name)} is a folder: remove it or choose another --out"
    return None


_RESULTS = ("results.json", "results.md")


def resume_command(argv: Sequence[str], program: str | None = None) -> str:
    """The shell command that runs ``argv`` again with ``--resume``.

    Args:
      argv: the arguments of the invocation (without the program).
      program: how it was started (default: ``autoscale-jax`` for the console script, else
        ``python -m autoscale_jax.bench.cli``).

    Example:
      >>> resume_command(["bench", "--out", "my results"], program="autoscale-jax")
      "autoscale-jax bench --out 'my results' --resume"
    """
    if program is None:
        script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
        program = (
            "autoscale-jax" if script == "autoscale-jax" else "python -m autoscale_jax.bench.cli"
        )
    extra = [] if "--resume" in argv else ["--resume"]
    return " ".join([program, shlex.join([*argv, *extra])])
