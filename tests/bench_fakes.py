"""Hand-made benchmark results (no training) for the tests of plots, summaries and reports."""

import dataclasses
import json

from autoscale_jax.bench.experiments.experiment import BenchmarkReport
from autoscale_jax.bench.experiments.summary import MethodSummary
from autoscale_jax.bench.running.run_result import Baselines, RunResult

TASKS = [("left", ("accuracy",), (True,)), ("right", ("mse",), (False,))]
METRIC_NAMES = (
    "gradient_magnitude_similarity",
    "condition_number",
    "mean_cosine_similarity",
    "conflict_ratio",
    "interference",
    "loss_scale_ratio",
    "loss_scale_entropy",
)


def fake_run(method, seed=0, weights=(1.0, 1.0), *, steps=20, wall_time_s=1.0):
    """A two-task run of ``steps`` steps in two chunks."""
    return RunResult(
        benchmark="toy",
        method=method,
        method_name="fixed_weights",
        options={},
        seed=seed,
        steps=steps,
        batch_size=8,
        eval_every=steps // 2,
        selected_step=steps,
        selection_score=-1.0,
        validation_metrics=({"accuracy": 0.8}, {"mse": 0.1}),
        test_metrics=({"accuracy": 0.8}, {"mse": 0.1}),
        delta_m={"per_metric": -1.0, "per_task": -1.0},
        wall_time_s=wall_time_s,
        chunk_times_s=[wall_time_s / 2, wall_time_s / 2],
        compile_time_s=0.0,
        gradient_evaluations=steps,
        weight_steps=list(range(1, steps + 1)),
        weights=None if weights is None else [list(weights)] * steps,
        estimator_steps=[],
        estimator_metrics={},
        probe_steps=[0, steps // 2, steps],
        probe_metrics={name: [1.0, 2.0, 3.0] for name in METRIC_NAMES},
        validation_steps=[steps // 2, steps],
        validation_scores=[-2.0, -1.0],
        train_losses=[[1.0, 0.1], [0.5, 0.05]],
    )


def fake_run_for(key, **fields):
    """:func:`fake_run` whose setup agrees with the ``RunKey`` (as a run file's must)."""
    run = fake_run(key.method, seed=key.seed, steps=key.steps)
    return dataclasses.replace(
        run,
        benchmark=key.benchmark,
        method_name=key.method_name,
        options=json.loads(key.options),
        batch_size=key.batch_size,
        eval_every=key.eval_every,
        **fields,
    )


def fake_summary(method, delta, time_vs_ew, weights=None):
    """A table row with two seeds, Δm% ``delta`` ± 1 and cost ``time_vs_ew``."""
    return MethodSummary(
        method=method,
        num_seeds=2,
        test_mean=({"accuracy": 0.8}, {"mse": 0.1}),
        test_sd=({"accuracy": 0.01}, {"mse": 0.01}),
        delta_m_mean={"per_metric": delta, "per_task": delta},
        delta_m_sd={"per_metric": 1.0, "per_task": 1.0},
        wall_time_s=time_vs_ew,
        mean_wall_time_s=time_vs_ew,
        gradient_evaluations=20 * time_vs_ew,
        time_vs_ew=time_vs_ew,
        gradient_evaluations_vs_ew=time_vs_ew,
        weights=weights,
    )


def fake_report():
    """A two-task report: baselines, a 3-point LS grid (best: w2/w1 = 3), EW, AutoScale and a
    method without weights whose Δm% is NaN."""
    runs = [
        fake_run("single_task_left", weights=(1.0, 0.0)),
        fake_run("ls[0.5,1.5]", weights=(0.5, 1.5)),
        fake_run("ew"),
        fake_run("autoscale_gms", weights=(0.01, 1.99)),
        fake_run("pcgrad", weights=None),
    ]
    summaries = [
        fake_summary("single_task", 0.0, 2.0),
        fake_summary("ls_grid", -5.0, 9.0, weights=[0.5, 1.5]),
        fake_summary("ew", -50.0, 1.0, weights=[1.0, 1.0]),
        fake_summary("autoscale_gms", -10.0, 1.1, weights=[0.01, 1.99]),
        fake_summary("pcgrad", float("nan"), 2.0),  # a NaN row must be left out, not crash
    ]
    return BenchmarkReport(
        benchmark="toy",
        note="",
        description="",
        tasks=TASKS,
        budget={"steps": 20, "batch_size": 8, "eval_every": 10, "seeds": [0], "grid_size": 3},
        baselines=Baselines(({"accuracy": 0.8},), ({"mse": 0.1},)),
        summaries=summaries,
        grid={
            "weights": [[1.5, 0.5], [1.0, 1.0], [0.5, 1.5]],
            "validation_scores": [-30.0, -20.0, -4.0],
            "best_index": 2,
            "best_label": "ls[0.5,1.5]",
            "test_delta_m": [-40.0, -50.0, -5.0],
            "test_delta_m_sd": [2.0, 1.0, 0.5],
        },
        runs=runs,
        failures={},
    )
