"""A benchmark: a named dataset, the model trained on it, its training recipe (Adam, schedule,
steps, batch: :class:`~autoscale_jax.bench.running.recipe.Recipe`), and the cache its runs share
(device data, jitted functions, compiled trainers).

Example:
  >>> bench = load_benchmark("multi_mnist", dataset_options={"num_train": 512})
  >>> bench.num_tasks
  2
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import MultiTaskDataset
from autoscale_jax.bench.running.recipe import Recipe

__all__ = [
    "Benchmark",
    "BenchmarkCache",
    "BenchmarkFunctions",
    "MethodKey",
    "TrainerKey",
    "load_benchmark",
]


class MethodKey(NamedTuple):
    """Which compiled trainer a method uses.

    Attributes:
      name: registry name (``"fixed_weights"`` for every fixed weighting, EW included: their
        weights are a traced argument, so they share one compile).
      options: ``repr`` of the sorted method options (empty for fixed weights).
    """

    name: str
    options: str


class TrainerKey(NamedTuple):
    """A compiled training chunk is specific to a method, its argument shapes and the
    optimizer it closes over (:meth:`Recipe.optimizer_key`: benchmarks that differ only in
    their recipe share their data and jitted functions, never a compiled trainer)."""

    method: MethodKey
    chunk_length: int
    batch_size: int
    optimizer: str


class BenchmarkFunctions(NamedTuple):
    """What every run on a benchmark uses, built once.

    Attributes:
      loss_fn: ``loss_fn(params, batch) -> losses [K]``.
      predict: jitted ``predict(params, inputs) -> per-task outputs``.
      probe: jitted ``probe(params, weights, batch) -> TaskMetrics`` of the shared trunk.
      data: the training split on the device, ``(inputs, targets)``.
      probe_batch: the fixed training batch the probe measures on.
      counted_loss_fn: with partial labels (:attr:`Benchmark.partial_labels`) the train
        step's loss, ``(params, batch) -> (losses [K], label counts [K])``; ``None`` otherwise
        (the step takes ``loss_fn``). ``loss_fn`` is then its losses alone (masked means).
    """

    loss_fn: Callable
    predict: Callable
    probe: Callable
    data: tuple
    probe_batch: tuple
    counted_loss_fn: Callable | None = None


@dataclasses.dataclass
class BenchmarkCache:
    """The cache of one benchmark: its functions (built on first use) and compiled trainers."""

    functions: BenchmarkFunctions | None = None
    trainers: dict[TrainerKey, Callable] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A dataset, the model trained on it and the recipe every run on it trains with.

    Attributes:
      name: benchmark name (a :func:`datasets.load` name).
      dataset: the data.
      model_options: keyword options of :func:`models.build_model`.
      recipe: Adam's learning rate, β1 / β2, schedule, steps and batch size
        (:class:`~autoscale_jax.bench.running.recipe.Recipe`); every row of a report uses its
        optimizer.
      note: what the benchmark shows (e.g. "does-no-harm, not discriminating").
      dataset_options: the loader's keyword arguments the dataset was built with.
      cache: what every run on it shares (not part of equality).
    """

    name: str
    dataset: MultiTaskDataset
    model_options: Mapping[str, Any]
    recipe: Recipe
    note: str
    dataset_options: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    cache: BenchmarkCache = dataclasses.field(
        default_factory=BenchmarkCache, compare=False, repr=False
    )

    @property
    def learning_rate(self) -> float:
        """Adam's (peak) learning rate, ``recipe.learning_rate``."""
        return self.recipe.learning_rate

    @property
    def num_tasks(self) -> int:
        """K, the number of tasks."""
        return len(self.dataset.tasks)

    @property
    def partial_labels(self) -> bool:
        """Whether some examples lack some tasks' labels (``Split.masks`` is set): the loss
        must then be ``models.multitask_loss_fn(..., task_counts=True)`` and the train step
        ``multitask_train_step(..., task_counts=True)``."""
        return self.dataset.train.masks is not None


_BENCHMARK_DEFAULTS: dict[str, tuple[dict, dict, float, str]] = {
    "multi_mnist": (
        {"variant": "classify_reconstruct"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "discriminating: classify the left digit (CE) + reconstruct the right one (MSE); equal "
        "weights are far from the best fixed weights",
    ),
    "multi_mnist_sigmoid": (
        {"variant": "classify_reconstruct"},
        {"trunk_sizes": (256, 128), "reconstruction_head": "sigmoid"},
        1e-3,
        "the multi_mnist pair with a sigmoid reconstruction head: same task trade-off, another "
        "gradient scale of the MSE head",
    ),
    "multi_mnist3": (
        {"variant": "classify_reconstruct_classify"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "K = 3: classify the left digit, reconstruct the right one and classify it (CE + MSE + CE)",
    ),
    "multi_fashion3": (
        {"variant": "classify_reconstruct_classify"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "K = 3 on Fashion-MNIST items: classify the left item, reconstruct the right one and "
        "classify it (CE + MSE + CE)",
    ),
    "multi_fashion": (
        {"variant": "classify_reconstruct"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "mixed CE + MSE pair on Fashion-MNIST items (same construction as multi_mnist)",
    ),
    "yeast": (
        {},
        {"trunk_sizes": (128,)},
        1e-3,
        "does-no-harm, not discriminating: 14 binary tasks where equal weights were as good as "
        "any weighting",
    ),
    "qm9": (
        {"representation": "graph", "num_molecules": 6000},
        {"width": 16, "num_interactions": 2},
        1e-3,
        "not discriminating for fixed weights: 11 regression targets, small message-passing net "
        "on a 6k-molecule subset (far from the published budget: hundreds of epochs on 110k "
        "molecules); a 20-point LS grid picked equal weights, while Nash-MTL beat EW by 13 Δm "
        "points (600 steps, 3 seeds)",
    ),
    "qm9_full": (
        {"representation": "graph", "num_molecules": 130_831},
        {"width": 64, "num_interactions": 3},
        1e-3,
        "QM9-11 at the published data scale: all 130,831 molecules (104,665 train), a width-64 "
        "three-block message-passing net; an accelerator job (an EW step took 5.9 s at batch 128 "
        "on a shared 2-core CPU)",
    ),
    "chemml_ri": (
        {"target_scaling": "raw"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "loss scale: polarizability, density and refractive index of 100k molecules on raw "
        "targets (MSEs ~10^6 apart); with equal weights the density dominates and the refractive "
        "index ends worse than its mean (1 seed, 1600 steps: test MAE 3.6 std)",
    ),
    "chemml_ri_standardised": (
        {"target_scaling": "standardised"},
        {"trunk_sizes": (256, 128)},
        1e-3,
        "control for chemml_ri: the same tasks on standardised targets, where weighting is "
        "expected to matter little",
    ),
    "molecule_ace": (
        {},
        {"trunk_sizes": (512, 256)},
        1e-3,
        "30 partial-label bioactivity regressions (48,714 labels on 35,633 molecules, ECFP4 "
        "1024 bits); its loss is the masked mean per task with label counts (task_counts)",
    ),
}


# Benchmarks that are variants of another dataset (same loader, other options or model).
_DATASET_OF = {
    "multi_mnist_sigmoid": "multi_mnist",
    "multi_mnist3": "multi_mnist",
    "multi_fashion3": "multi_fashion",
    "qm9_full": "qm9",
    "chemml_ri_standardised": "chemml_ri",
}


def load_benchmark(
    name: str,
    *,
    dataset_options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    recipe: Recipe | None = None,
) -> Benchmark:
    """Loads a named benchmark with its default model and recipe.

    Args:
      name: ``"multi_mnist"`` (classify-reconstruct variant), ``"multi_mnist_sigmoid"`` (the
        same with a sigmoid reconstruction head), ``"multi_mnist3"`` (classify, reconstruct,
        classify: K = 3), ``"multi_fashion"``, ``"multi_fashion3"``, ``"yeast"``, ``"qm9"``
        (graph representation, small message-passing net), ``"qm9_full"`` (all 130,831
        molecules, a width-64 net), ``"chemml_ri"`` (three regressions on raw targets: a
        loss-scale test), ``"chemml_ri_standardised"`` (its control) or ``"molecule_ace"`` (30
        partial-label regressions, see :attr:`Benchmark.partial_labels`).
      dataset_options: overrides of the loader's keyword arguments (e.g. ``num_train``).
      model_options: overrides of the model's keyword arguments (e.g. ``trunk_sizes``).
      recipe: the training recipe (default: ``Recipe(learning_rate=<the benchmark's>)``,
        i.e. constant Adam, β2 0.999; a suite's :class:`~suites.BenchmarkSpec` passes its own).

    Returns:
      A :class:`Benchmark`.

    Raises:
      ValueError: for an unknown name; ImportError / FileNotFoundError when data are absent.
    """
    if name not in _BENCHMARK_DEFAULTS:
        raise ValueError(f"Unknown benchmark {name!r}; available: {tuple(_BENCHMARK_DEFAULTS)}.")
    data_defaults, model_defaults, rate, note = _BENCHMARK_DEFAULTS[name]
    data_options = {**data_defaults, **(dataset_options or {})}
    return Benchmark(
        name=name,
        dataset=datasets.load(_DATASET_OF.get(name, name), **data_options),
        model_options=MappingProxyType({**model_defaults, **(model_options or {})}),
        recipe=Recipe(learning_rate=rate) if recipe is None else recipe,
        note=note,
        dataset_options=MappingProxyType(data_options),
    )
