"""A real but tiny benchmark, built once per test session so that every test module reuses
its compiled trainers (they are cached on the benchmark object)."""

import functools

from autoscale_jax.bench.experiments.experiment import BenchmarkReport, run_benchmark
from autoscale_jax.bench.experiments.grid import ls_weight_grid
from autoscale_jax.bench.running.benchmark import Benchmark, load_benchmark
from autoscale_jax.bench.running.method_config import MethodConfig

STEPS, EVAL_EVERY, BATCH = 30, 10, 32
BUDGET = {"steps": STEPS, "eval_every": EVAL_EVERY, "batch_size": BATCH}


@functools.cache
def tiny_benchmark() -> Benchmark:
    """MultiMNIST at 14x14 with 256 training examples and a 32-unit trunk."""
    return load_benchmark(
        "multi_mnist",
        dataset_options={
            "image_size": 14,
            "num_train": 256,
            "num_validation": 100,
            "num_test": 100,
        },
        model_options={"trunk_sizes": (32,)},
    )


@functools.cache
def tiny_report() -> BenchmarkReport:
    """Baselines, a 2-point LS grid and EW on one seed."""
    return run_benchmark(
        tiny_benchmark(),
        [MethodConfig("ew", "equal_weights")],
        seeds=(0,),
        weight_grid=ls_weight_grid(2, 2, max_ratio=30.0),
        **BUDGET,
    )
