"""Fakes for tests/bad_inputs/test_bad_cli.py: a two-task toy benchmark without data, a constant
run in place of training, and cli.main run in-process or in a subprocess the way a shell sees it
(exit status and stderr lines, the temporary folder read as TMP)."""

import contextlib
import subprocess
import sys
from typing import Any, NamedTuple

from autoscale_jax.bench import cli
from autoscale_jax.bench.datasets import MultiTaskDataset, TaskSpec
from autoscale_jax.bench.running import evaluation, single_run
from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.recipe import Recipe
from autoscale_jax.bench.running.run_loop import setup_fields
from autoscale_jax.bench.running.run_result import RunResult

TASKS = (
    TaskSpec("left", "classification", 10, ("accuracy",), (True,)),
    TaskSpec("right", "reconstruction", 4, ("mse",), (False,)),
)
TOY = Benchmark(
    name="toy",
    dataset=MultiTaskDataset("toy", TASKS, None, None, None, "toy data"),
    model_options={},
    recipe=Recipe(),
    note="a toy benchmark",
)


class Context(NamedTuple):
    """What a scenario works with: its folder, pytest's fixtures, the runs trained so far."""

    tmp: Any
    monkeypatch: Any
    capsys: Any
    trained: list


def fake_run(benchmark, config, *, seed, steps, batch_size, eval_every, baselines=None, **_):
    metrics = ({"accuracy": 0.8}, {"mse": 0.1})
    half = max(1, steps // 2)
    return RunResult(
        **setup_fields(
            benchmark, config, seed=seed, steps=steps, batch_size=batch_size, eval_every=eval_every
        ),
        selected_step=steps,
        selection_score=-1.0,
        validation_metrics=metrics,
        test_metrics=metrics,
        delta_m=None
        if baselines is None
        else evaluation.delta_m_both(TASKS, metrics, baselines.test),
        wall_time_s=0.5,
        chunk_times_s=[0.25, 0.25],
        compile_time_s=0.0,
        gradient_evaluations=steps,
        weight_steps=[1, half],
        weights=[[1.0, 1.0], [1.0, 1.0]],
        estimator_steps=[],
        estimator_metrics={},
        probe_steps=[0, half, steps],
        probe_metrics={"condition_number": [1.0, 2.0, 3.0]},
        validation_steps=[half, steps],
        validation_scores=[-2.0, -1.0],
        train_losses=[[1.0, 0.1], [0.5, 0.05]],
    )


def fake_training(ctx, interrupt_after=None):
    """Replaces single_run.run: records each run, or raises KeyboardInterrupt after some."""

    def run(benchmark, config, **options):
        if interrupt_after is not None and len(ctx.trained) == interrupt_after:
            raise KeyboardInterrupt
        ctx.trained.append(f"{config.label}/{options['seed']}")
        return fake_run(benchmark, config, **options)

    ctx.monkeypatch.setattr(single_run, "run", run)


@contextlib.contextmanager
def _quiet_bar(total, description):
    """The CLI's progress bar, silenced: stderr then holds only the CLI's own lines."""
    yield lambda label: None


def invoke(ctx, argv):
    """cli.main in this process, ended as the interpreter would: ``(exit status, stderr
    lines)``, a SystemExit message being the last line; the temporary folder reads TMP."""
    ctx.monkeypatch.setattr(cli, "_progress_bar", _quiet_bar)
    ctx.monkeypatch.setattr(cli, "load_benchmark", lambda name, **options: TOY)
    ctx.capsys.readouterr()
    try:
        code, message = cli.main(argv), None
    except SystemExit as stop:
        text = isinstance(stop.code, str)
        code, message = (1, stop.code) if text else (stop.code, None)
    lines = ctx.capsys.readouterr().err.splitlines() + ([message] if message else [])
    return code, [line.replace(str(ctx.tmp), "TMP") for line in lines]


def spawn(ctx, argv):
    done = subprocess.run(
        [sys.executable, "-m", "autoscale_jax.bench.cli", *argv],
        capture_output=True,
        text=True,
        cwd=ctx.tmp,
        timeout=300,
    )
    return done.returncode, done.stderr.replace(str(ctx.tmp), "TMP").splitlines()
