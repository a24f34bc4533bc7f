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


def load_benchmark(
    name: str,
    *,
    dataset_options: Mapping[str, Any] | None = None,
    model_options: Mapping[str, Any] | None = None,
    recipe: Recipe | None = None,
) -> Benchmark:
    """Loads a named benchmark with its default model and recipe.

    Each benchmark is defined once, beside its loader
    (:class:`~autoscale_jax.bench.datasets.BenchmarkDefinition`, all of them in
    :data:`autoscale_jax.bench.datasets.BENCHMARKS`).

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
    if name not in datasets.BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; available: {tuple(datasets.BENCHMARKS)}.")
    definition = datasets.BENCHMARKS[name]
    data_options = {**definition.dataset_options, **(dataset_options or {})}
    return Benchmark(
        name=name,
        dataset=datasets.load(definition.dataset, **data_options),
        model_options=MappingProxyType({**definition.model_options, **(model_options or {})}),
        recipe=Recipe(learning_rate=definition.learning_rate) if recipe is None else recipe,
        note=definition.note,
        dataset_options=MappingProxyType(data_options),
    )
