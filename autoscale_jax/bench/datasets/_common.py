"""What every loader shares: the dataset types and the splitting / freezing helpers.

Conventions for ``Split.targets`` (one array per task, leading axis ``N``):

* ``"classification"``: int32 labels ``[N]`` in ``[0, num_outputs)``;
* ``"binary"``: float32 ``[N]`` holding 0.0 or 1.0 (models output one logit per example);
* ``"regression"`` and ``"reconstruction"``: float32 ``[N, num_outputs]``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np


class TaskSpec(NamedTuple):
    """What one task predicts and how it is scored.

    Attributes:
      name: task name, unique within a dataset.
      kind: ``"classification"``, ``"binary"``, ``"regression"`` or ``"reconstruction"``.
      num_outputs: classes for classification, 1 for binary, output size otherwise.
      metrics: metric names understood by ``evaluation.task_metrics``.
      higher_is_better: one flag per metric.
    """

    name: str
    kind: str
    num_outputs: int
    metrics: tuple[str, ...]
    higher_is_better: tuple[bool, ...]


class Split(NamedTuple):
    """One split of a dataset.

    Attributes:
      inputs: float32 array ``[N, ...]``.
      targets: one array per task with leading axis ``N`` (see the module docstring).
      masks: ``None`` when every example is labelled for every task (all datasets but the
        partial-label ones), else one bool array ``[N]`` per task, True where the example has a
        label for that task. Unlabelled entries of a float target hold NaN, so a loss or metric
        that ignores the mask yields NaN instead of silently fitting a placeholder.
    """

    inputs: np.ndarray
    targets: tuple[np.ndarray, ...]
    masks: tuple[np.ndarray, ...] | None = None

    def label_masks(self) -> tuple[np.ndarray, ...]:
        """One bool ``[N]`` array per task (all True when :attr:`masks` is ``None``)."""
        if self.masks is not None:
            return self.masks
        return tuple(np.ones(len(self.inputs), bool) for _ in self.targets)


class MultiTaskDataset(NamedTuple):
    """A multi-task dataset with train, validation and test splits.

    Attributes:
      name: dataset name as accepted by :func:`load`.
      tasks: one :class:`TaskSpec` per task, in the order of ``Split.targets``.
      train: training split.
      validation: validation split (model selection).
      test: test split (report only).
      description: how the data were built, units and shapes.
      extras: loader-specific facts, e.g. QM9's target mean/std or MultiMNIST's source indices.
    """

    name: str
    tasks: tuple[TaskSpec, ...]
    train: Split
    validation: Split
    test: Split
    description: str
    extras: Mapping[str, Any] = MappingProxyType({})


# What to install when a loader's optional dependency is missing.
BENCH_HINT = "pip install 'autoscale-jax[bench]'"
DATA_HINT = "pip install 'autoscale-jax[data]'"
# chemml and MoleculeACE declare heavy dependencies (TensorFlow, PyTorch) that the loaders never
# import: the project's script installs them without those (see docs/datasets.md).
REAL_DATA_HINT = (
    "bash .ci/install-data, i.e. pip install --no-deps chemml==1.3 MoleculeACE==3.0.0 and "
    "pip install 'autoscale-jax[data]' (pandas, rdkit)"
)


def require_module(module: str, dataset: str, hint: str) -> Any:
    """Imports ``module`` or raises an ImportError that says what to install.

    Args:
      module: dotted module name, e.g. ``"mlxtend.data"``.
      dataset: the loader that needs it (named in the error).
      hint: the install command (named in the error).

    Returns:
      The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{dataset} needs {module.split('.')[0]}: {hint}") from err


def locate_package(package: str, dataset: str, hint: str) -> str:
    """The folder of an installed package, found without importing it.

    Some data packages pull heavy or broken imports (chemml imports TensorFlow, qm9pack needs
    ``pkg_resources``), so the loaders only read files inside them.

    Args:
      package: top-level package name, e.g. ``"chemml"``.
      dataset: the loader that needs it (named in the error).
      hint: the install command (named in the error).

    Returns:
      The package's directory.

    Raises:
      ImportError: naming the install command when the package is absent.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{dataset} needs the {package} package: {hint}")
    return str(next(iter(spec.submodule_search_locations)))


def package_version(distribution: str) -> str:
    """The installed version of a distribution (``"unknown"`` without metadata)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cache_dir() -> str:
    """Where loaders keep derived files (e.g. fingerprints): ``$AUTOSCALE_JAX_CACHE`` if set,
    else ``$XDG_CACHE_HOME/autoscale-jax``, else ``~/.cache/autoscale-jax``."""
    explicit = os.environ.get("AUTOSCALE_JAX_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "autoscale-jax")


def read_only(array: np.ndarray) -> np.ndarray:
    """Marks ``array`` read-only in place and returns it."""
    # Cached datasets are shared between callers: forbid in-place edits that would leak.
    array.flags.writeable = False
    return array


def freeze_split(
    inputs: np.ndarray,
    targets: tuple[np.ndarray, ...],
    masks: tuple[np.ndarray, ...] | None = None,
) -> Split:
    """A :class:`Split` whose arrays are all read-only (``masks``: see :class:`Split`)."""
    frozen_masks = None if masks is None else tuple(read_only(m) for m in masks)
    return Split(read_only(inputs), tuple(read_only(t) for t in targets), frozen_masks)


def check_positive(**sizes: int) -> None:
    """Raises ValueError naming the first of ``sizes`` that is not a positive integer."""
    for name, value in sizes.items():
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def split_sizes(total: int, validation_fraction: float, test_fraction: float) -> tuple[int, ...]:
    """Train/validation/test counts from fractions; every split gets at least one example.

    Args:
      total: examples to split.
      validation_fraction: share for validation, in (0, 1).
      test_fraction: share for testing, in (0, 1).

    Returns:
      ``(num_train, num_validation, num_test)``.
    """
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError("validation_fraction and test_fraction must lie in (0, 1)")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation_fraction + test_fraction must be below 1")
    num_validation = max(1, round(total * validation_fraction))
    num_test = max(1, round(total * test_fraction))
    num_train = total - num_validation - num_test
    if num_train < 1:
        raise ValueError(f"{total} examples are too few for three splits")
    return num_train, num_validation, num_test


def standardise(
    train: np.ndarray, *others: np.ndarray
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """(x - mean) / std with statistics of ``train`` along axis 0; constant columns keep std 1.

    Args:
      train: the array whose statistics are used.
      *others: further arrays scaled with the same statistics (validation, test).

    Returns:
      ``(scaled arrays as float32, train first; mean; std)``.
    """
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    scaled = tuple(((x - mean) / std).astype(np.float32) for x in (train, *others))
    return scaled, mean, std


def regression_tasks(names: Iterable[str]) -> tuple[TaskSpec, ...]:
    """One regression task per name with one output, scored by MAE (lower is better)."""
    return tuple(TaskSpec(name, "regression", 1, ("mae",), (False,)) for name in names)


def column_splits(
    inputs: Iterable[np.ndarray], targets: Iterable[np.ndarray]
) -> tuple[Split, Split, Split]:
    """The read-only train, validation and test splits from their ``(inputs [N, ...], targets
    [N, K])``: target column ``k`` becomes task ``k``'s ``[N, 1]`` array (contiguous, the dtype
    kept)."""
    train, validation, test = (
        freeze_split(
            np.ascontiguousarray(x),
            tuple(np.ascontiguousarray(y[:, [k]]) for k in range(y.shape[1])),
        )
        for x, y in zip(inputs, targets, strict=True)
    )
    return train, validation, test


def target_extras(
    targets: Sequence[tuple[str, str, str]], mean: np.ndarray, std: np.ndarray
) -> dict[str, Any]:
    """The ``extras`` of regression targets given as ``(task name, column, unit)``: their
    ``target_names``, ``target_units`` and the train ``target_mean`` / ``target_std``."""
    return {
        "target_names": tuple(name for name, _, _ in targets),
        "target_units": tuple(unit for _, _, unit in targets),
        "target_mean": read_only(mean),
        "target_std": read_only(std),
    }


class BenchmarkDefinition(NamedTuple):
    """A named benchmark, defined once beside its loader: which data, which model, what it shows.

    :func:`autoscale_jax.bench.running.benchmark.load_benchmark` loads it; a suite
    (:mod:`autoscale_jax.bench.experiments.suites`) adds its budget (steps, batch, grid) and may
    override the options.

    Attributes:
      name: the benchmark's name (unique across loaders).
      dataset: the :func:`~autoscale_jax.bench.datasets.load` name of its data.
      dataset_options: the loader's keyword arguments.
      model_options: keyword arguments of ``models.build_model``.
      learning_rate: Adam's learning rate in the default recipe.
      note: what the benchmark shows (printed with its results).
      grid_max_ratio: the largest weight ratio of its LS grid (``grid.ls_weight_grid``): wide
        enough for the spread of its loss scales.
    """

    name: str
    dataset: str
    dataset_options: Mapping[str, Any]
    model_options: Mapping[str, Any]
    learning_rate: float
    note: str
    grid_max_ratio: float = 1000.0
