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
- **fair**: the discriminating benchmarks, 5 seeds, every row on an equal footing, each with
  its tuned recipe (1600 steps; Adam 1e-3 or 3e-3, β2 0.99 or 0.999, constant or warm-up +
  cosine: chosen per benchmark on tuning seeds)
  (:data:`FAIR_METHODS`): EW, the grid (random search for K = 3) from step 0, its restart
  control and its pick on the search's schedule (:mod:`.controls`), each guide with and
  without an optimizer restart at the phase switch, the search, Nash-MTL, FAMO, STCH and
  UPGrad.
- **real**: real, non-MNIST data from package registries (docs/datasets.md; the ``data``
  extra, ``bash .ci/install-data``): ChemML RI on raw targets (loss scale) and its
  standardised control, MoleculeACE (30 partial-label regressions; a random search of 24
  weightings, EW included, since no grid spans K = 30) and all 130,831 QM9 molecules as
  Coulomb-matrix features into an MLP (``qm9_large``), with the rows of the fair suite.
- **accelerator**: QM9 at the published data scale with a graph net (``qm9_full``), which
  costs seconds a step on a 2-core CPU.

Every benchmark has a :class:`~autoscale_jax.bench.running.recipe.Recipe` (Adam's learning rate, β1
/
β2, schedule, steps, batch size) that every row of its report trains with, printed in
``results.md`` and ``results.json``. The suites keep constant Adam (1e-3, β2 0.999) until a
tuned recipe is measured better (``benchmarks/recipe_tuning.py``, tuning seeds 100+).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from autoscale_jax.bench import datasets
from autoscale_jax.bench.running.method_config import (
    GRID_CONTROLS,
    NO_RESTART,
    PHASE_ONE_VARIANTS,
    SEARCH_VARIANTS,
)
from autoscale_jax.bench.running.recipe import DEFAULT_RECIPE, Recipe

__all__ = ["ALWAYS_RUN", "FAIR_METHODS", "SUITES", "BenchmarkSpec", "Suite", "find_spec"]


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark of a suite, with its recipe and evaluation budget.

    Raises:
      ValueError: for a name that no loader defines (``datasets.BENCHMARKS``).

    Attributes:
      name: a :func:`benchmark.load_benchmark` name.
      dataset_options, model_options: overrides of the loader's and the model's defaults.
      recipe: how every run trains (Adam, schedule, steps, batch size).
      eval_every: steps between validation scores (checkpoint selection).
      grid_max_ratio: largest weight ratio of the LS grid (see ``grid.ls_weight_grid``);
        ``None`` (the default) takes the benchmark's own
        (:attr:`~autoscale_jax.bench.datasets.BenchmarkDefinition.grid_max_ratio`).
      grid_size: points of this benchmark's LS grid (None: the suite's).
      methods: row labels to run on this benchmark (None: the suite's).
    """

    name: str
    dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    recipe: Recipe = DEFAULT_RECIPE
    eval_every: int = 100
    grid_max_ratio: float = None  # type: ignore[assignment]  # filled in: always a float
    grid_size: int | None = None
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in datasets.BENCHMARKS:
            raise ValueError(
                f"BenchmarkSpec.name: unknown benchmark {self.name!r}; available: "
                f"{tuple(datasets.BENCHMARKS)}."
            )
        if self.grid_max_ratio is None:
            ratio = datasets.BENCHMARKS[self.name].grid_max_ratio
            object.__setattr__(self, "grid_max_ratio", ratio)  # frozen: set once, here

    @property
    def steps(self) -> int:
        """Training steps of every run (``recipe.steps``)."""
        return self.recipe.steps

    @property
    def batch_size(self) -> int:
        """Examples per step (``recipe.batch_size``)."""
        return self.recipe.batch_size


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named set of benchmarks and methods.

    Attributes:
      name: suite name.
      benchmarks: what to run.
      seeds: seeds per method (mean ± sd over them).
      grid_size: points of the LS grid search (0: none).
      methods: row labels to run (None: every method of ``method_config.default_methods``
        and the grid's control rows).
    """

    name: str
    benchmarks: tuple[BenchmarkSpec, ...]
    seeds: int
    grid_size: int
    methods: tuple[str, ...] | None = None


def _recipe(steps: int, batch_size: int = 128) -> Recipe:
    """Constant Adam 1e-3, β2 0.999 (the recipe every suite was measured with so far)."""
    return Recipe(steps=steps, batch_size=batch_size)


# The quick suite's MultiMNIST: 20x20 inputs and a 256-128 trunk keep a run near a second on a
# 2-core CPU while equal weights stay far from the best fixed weights (measured: Δm ≈ -85 % vs
# ≈ -10 % for the best grid point, seed sd ≈ 2).
_QUICK_MNIST = BenchmarkSpec("multi_mnist", {"image_size": 20}, {}, _recipe(800))
# Weighting matters on each of these (docs/benchmarks.md). Two tasks: 13 ratios
# w2/w1 = 10^-3, 10^-2.5, ..., 10^3; three tasks: equal weights + 23 log-uniform draws with
# ratios up to 1000 between any two tasks.
_DISCRIMINATING = (
    BenchmarkSpec("multi_mnist", {"image_size": 20}, {}, _recipe(800)),
    BenchmarkSpec("multi_mnist_sigmoid", {"image_size": 20}, {}, _recipe(800)),
    BenchmarkSpec("multi_fashion", {"image_size": 20}, {}, _recipe(800)),
    BenchmarkSpec("multi_mnist3", {"image_size": 20}, {}, _recipe(800), grid_size=24),
    BenchmarkSpec("multi_fashion3", {"image_size": 20}, {}, _recipe(800), grid_size=24),
)
# The fair suite's recipes, chosen on the single-task baselines with tuning seeds 100-101
# (benchmarks/recipe_tuning.py over learning rate, β2 and schedule at 1600 steps;
# docs/benchmarks.md, Recipes, has the tables and the restart control of each).
_COSINE = "warmup_cosine"
_FAIR_RECIPES = {
    "multi_mnist": Recipe(b2=0.99, steps=1600),
    "multi_mnist_sigmoid": Recipe(learning_rate=3e-3, b2=0.99, steps=1600),
    "multi_fashion": Recipe(b2=0.99, steps=1600),
    "multi_mnist3": Recipe(learning_rate=3e-3, schedule=_COSINE, warmup_fraction=0.05, steps=1600),
    "multi_fashion3": Recipe(
        learning_rate=3e-3, b2=0.99, schedule=_COSINE, warmup_fraction=0.05, steps=1600
    ),
}
_FAIR = tuple(
    dataclasses.replace(spec, recipe=_FAIR_RECIPES[spec.name]) for spec in _DISCRIMINATING
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
# Every row on an equal footing (issue 16): the grid from step 0 and its two controls, each
# guide without and with an optimizer restart at the phase switch, the phase-1 variants
# (issue 17), the search and four SMTOs.
# EW and the single-task baselines always run.
_GUIDES = ("gms", "cond", "loss")
FAIR_METHODS = (
    "ls_grid",
    *GRID_CONTROLS,
    *(f"autoscale_{guide}" for guide in _GUIDES),
    *(f"autoscale_{guide}{NO_RESTART}" for guide in _GUIDES),
    *PHASE_ONE_VARIANTS,
    "autoscale_search",
    *SEARCH_VARIANTS,
    "nash_mtl",
    "famo",
    "stch",
    "upgrad",
)
# Real data (issue 16). ChemML RI on raw targets needs ratios up to ~10^6 between its three
# MSEs (its definition's grid_max_ratio), so its random weightings span that range; 30 tasks
# (MoleculeACE):
# a random search of 24 weightings, EW included (no grid spans K = 30).
_REAL = (
    # Both ChemML recipes were chosen on tuning seeds 100-101 (benchmarks/recipe_tuning.py,
    # docs/benchmarks.md has the tables).
    BenchmarkSpec("chemml_ri", {}, {}, _recipe(6000), eval_every=250),
    BenchmarkSpec(
        "chemml_ri_standardised",
        {},
        {},
        Recipe(learning_rate=3e-3, schedule=_COSINE, warmup_fraction=0.05, steps=3200),
        eval_every=200,
    ),
    # A 256-wide trunk and 1,000 steps (4 epochs of the 31k training molecules): the 512-256
    # trunk at 3,000 steps took ~40 s a run on 2 cores, and the 30 single-task baselines, the
    # 24-point random search and the fair rows are ~75 runs a seed.
    BenchmarkSpec(
        "molecule_ace",
        {},
        {"trunk_sizes": (256,)},
        _recipe(1000),
        eval_every=100,
        grid_size=24,
    ),
    # All of QM9 as Coulomb-matrix features into an MLP: about 1 s per 1,000 EW steps on 2
    # cores, where the graph net of qm9_full costs seconds a step. Recipe chosen on tuning seeds
    # 100-101 (benchmarks/recipe_tuning.py: learning rate 1e-3 / 3e-3, constant / warm-up +
    # cosine, 3,000 / 6,000 steps; docs/benchmarks.md has the table).
    BenchmarkSpec("qm9_large", {}, {}, _recipe(6000), eval_every=250, grid_size=24),
)
# QM9 at the published data scale with a graph net: sized for an accelerator.
_ACCELERATOR = (
    BenchmarkSpec(
        "qm9_full",
        {},
        {},
        _recipe(20_000),
        eval_every=1000,
        grid_size=24,
        methods=(*FAIR_METHODS, "freeze(nash_mtl)"),
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
                _recipe(40, batch_size=64),
                eval_every=20,
            ),
        ),
        seeds=1,
        grid_size=3,
        methods=("ew", "ls_grid", "autoscale_gms"),
    ),
    "quick": Suite("quick", (_QUICK_MNIST,), seeds=3, grid_size=9),
    "discriminating": Suite("discriminating", _DISCRIMINATING, seeds=3, grid_size=13),
    "fair": Suite("fair", _FAIR, seeds=5, grid_size=13, methods=FAIR_METHODS),
    "full": Suite(
        "full",
        (
            _QUICK_MNIST,
            BenchmarkSpec("multi_fashion", {"image_size": 20}, {}, _recipe(1200)),
            BenchmarkSpec("yeast", {}, {}, _recipe(1200, batch_size=64)),
            # A width-16 message-passing net: 11 per-task VJPs over all atom pairs cost ~80 ms
            # a step on 2 cores, so every gradient-space method would add about 7 min (3 seeds)
            # and all of them ~3 h. QM9 asks one question (fixed weights vs an adaptive SMTO),
            # so it runs the rows that answer it, with a 20-point grid (11 tasks).
            BenchmarkSpec(
                "qm9",
                {},
                {},
                _recipe(600, batch_size=32),
                eval_every=100,
                grid_size=20,
                methods=QM9_METHODS,
            ),
        ),
        seeds=3,
        grid_size=9,
    ),
    "real": Suite("real", _REAL, seeds=5, grid_size=24, methods=FAIR_METHODS),
    "accelerator": Suite("accelerator", _ACCELERATOR, seeds=5, grid_size=24),
}
ALWAYS_RUN = ("ew",)  # every cost is relative to EW


def find_spec(name: str) -> BenchmarkSpec:
    """The benchmark ``name`` as the full suite runs it (else the discriminating one, else the
    first suite that has it).

    Raises:
      KeyError: when no suite runs it.
    """
    for suite in (SUITES["full"], SUITES["discriminating"], *SUITES.values()):
        for spec in suite.benchmarks:
            if spec.name == name:
                return spec
    raise KeyError(name)
