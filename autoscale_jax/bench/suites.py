"""The benchmark suites of ``autoscale-jax bench``: which benchmarks, budgets and methods.

- **smoke**: the CI budget (tens of steps, one seed, three methods).
- **quick** (the default): MultiMNIST classify-left + reconstruct-right, 3 seeds, the LS grid
  and every method.
- **discriminating**: benchmarks where weighting matters (equal weights clearly worse than the
  best fixed weights): MultiMNIST classify + reconstruct with a linear and with a sigmoid
  reconstruction head, MultiFashion classify + reconstruct, and the K = 3 variants (classify,
  reconstruct, classify) of MultiMNIST and MultiFashion; 13-point grids for two tasks (ratios
  10^-3 .. 10^3), 24 log-uniform random weightings for three.
- **full**: + MultiFashion, Yeast-14 and QM9.
- **real**: real, non-MNIST data from package registries (docs/datasets.md): ChemML RI on raw
  targets (loss scale) and its standardised control, MoleculeACE (30 partial-label
  regressions) and QM9 at the published data scale. Sized for an accelerator: QM9 at full
  scale costs seconds a step on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["ALWAYS_RUN", "SUITES", "BenchmarkSpec", "Suite"]


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark of a suite, with its training budget.

    Attributes:
      name: a :func:`benchmark.load_benchmark` name.
      dataset_options, model_options: overrides of the loader's and the model's defaults.
      steps, batch_size, eval_every: the budget of every run.
      grid_max_ratio: largest weight ratio of the LS grid (see ``grid.ls_weight_grid``).
      grid_size: points of this benchmark's LS grid (None: the suite's).
      methods: row labels to run on this benchmark (None: the suite's).
    """

    name: str
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    steps: int = 800
    batch_size: int = 128
    eval_every: int = 100
    grid_max_ratio: float = 1000.0
    grid_size: int | None = None
    methods: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named set of benchmarks and methods.

    Attributes:
      name: suite name.
      benchmarks: what to run.
      seeds: seeds per method (mean ± sd over them).
      grid_size: points of the LS grid search (0: none).
      methods: row labels to run (None: every method of ``method_config.default_methods``).
    """

    name: str
    benchmarks: tuple[BenchmarkSpec, ...]
    seeds: int
    grid_size: int
    methods: tuple[str, ...] | None = None


# The quick suite's MultiMNIST: 20x20 inputs and a 256-128 trunk keep a run near a second on a
# 2-core CPU while equal weights stay far from the best fixed weights (measured: Δm ≈ -85 % vs
# ≈ -10 % for the best grid point, seed sd ≈ 2).
_QUICK_MNIST = BenchmarkSpec("multi_mnist", {"image_size": 20}, {}, steps=800)
# Weighting matters on each of these (see the README's results). Two tasks: 13 ratios
# w2/w1 = 10^-3, 10^-2.5, ..., 10^3; three tasks: equal weights + 23 log-uniform draws with
# ratios up to 1000 between any two tasks.
_DISCRIMINATING = (
    BenchmarkSpec("multi_mnist", {"image_size": 20}, {}, steps=800),
    BenchmarkSpec("multi_mnist_sigmoid", {"image_size": 20}, {}, steps=800),
    BenchmarkSpec("multi_fashion", {"image_size": 20}, {}, steps=800),
    BenchmarkSpec("multi_mnist3", {"image_size": 20}, {}, steps=800, grid_size=24),
    BenchmarkSpec("multi_fashion3", {"image_size": 20}, {}, steps=800, grid_size=24),
)
QM9_METHODS = (
    "ls_grid",
    "autoscale_gms",
    "autoscale_loss",
    "autoscale_search",
    "nash_mtl",
    "freeze(nash_mtl)",
    "famo",
)
# Real data (issue 16). ChemML RI on raw targets needs ratios up to ~10^6 between its three
# MSEs (their variances), so its random weightings span that range; 30 tasks (MoleculeACE) and
# the full-scale QM9 net run the rows that compare fixed weights with adaptive methods.
_REAL = (
    BenchmarkSpec("chemml_ri", {}, {}, steps=3000, eval_every=250, grid_max_ratio=1e6),
    BenchmarkSpec("chemml_ri_standardised", {}, {}, steps=1600, eval_every=200),
    BenchmarkSpec(
        "molecule_ace", {}, {}, steps=3000, eval_every=250, grid_size=20, methods=QM9_METHODS
    ),
    BenchmarkSpec(
        "qm9_full",
        {},
        {},
        steps=20_000,
        batch_size=128,
        eval_every=1000,
        grid_size=20,
        methods=QM9_METHODS,
    ),
)
SUITES: dict[str, Suite] = {
    "smoke": Suite(
        "smoke",
        (
            BenchmarkSpec(
                "multi_mnist",
                {"image_size": 14, "num_train": 512, "num_validation": 200, "num_test": 200},
                {"trunk_sizes": (64,)},
                steps=40,
                batch_size=64,
                eval_every=20,
            ),
        ),
        seeds=1,
        grid_size=3,
        methods=("ew", "ls_grid", "autoscale_gms"),
    ),
    "quick": Suite("quick", (_QUICK_MNIST,), seeds=3, grid_size=9),
    "discriminating": Suite("discriminating", _DISCRIMINATING, seeds=3, grid_size=13),
    "full": Suite(
        "full",
        (
            _QUICK_MNIST,
            BenchmarkSpec("multi_fashion", {"image_size": 20}, {}, steps=1200),
            BenchmarkSpec("yeast", {}, {}, steps=1200, batch_size=64),
            # A width-16 message-passing net: 11 per-task VJPs over all atom pairs cost ~80 ms
            # a step on 2 cores, so every gradient-space method would add about 7 min (3 seeds)
            # and all of them ~3 h. QM9 asks one question (fixed weights vs an adaptive SMTO),
            # so it runs the rows that answer it, with a 20-point grid (11 tasks).
            BenchmarkSpec(
                "qm9",
                {},
                {},
                steps=600,
                batch_size=32,
                eval_every=100,
                grid_size=20,
                methods=QM9_METHODS,
            ),
        ),
        seeds=3,
        grid_size=9,
    ),
    "real": Suite("real", _REAL, seeds=3, grid_size=24),
}
ALWAYS_RUN = ("ew",)  # every cost is relative to EW
