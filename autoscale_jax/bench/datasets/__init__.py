"""Offline multi-task datasets: MultiMNIST, MultiFashion, QM9-11, Yeast-14, ChemML RI and
MoleculeACE.

Every loader reads files that ship inside an installed package (or a Debian data package) and
never downloads. Loaders are deterministic given their arguments, cached in memory (a repeated
call returns the very same object), and return a :class:`MultiTaskDataset` whose arrays are
read-only because they are shared between callers.

This package only collects: each private module (``_yeast.py``, ...) but the shared ones
(``_common``, ``_pairs``, ``_fingerprints``, ``_registry``) is one dataset and declares its own
entry, ``DATASET = DatasetInfo(name, loader, benchmarks, packages, install, ...)``, below its
loader; its module docstring is its data card (docs/datasets.md shows every card). At import
the package builds the registry from those entries
(:func:`~autoscale_jax.bench.datasets._registry.collect`) and exports each loader under its
own name (``datasets.yeast``).

Conventions for ``Split.targets`` (one array per task, leading axis ``N``):

* ``"classification"``: int32 labels ``[N]`` in ``[0, num_outputs)``;
* ``"binary"``: float32 ``[N]`` holding 0.0 or 1.0 (models output one logit per example);
* ``"regression"`` and ``"reconstruction"``: float32 ``[N, num_outputs]``.

Partial labels (MoleculeACE): ``Split.masks`` holds one bool ``[N]`` per task, True where the
example is labelled, and the unlabelled float targets are NaN; ``masks`` is ``None`` for the
fully labelled datasets (see :meth:`Split.label_masks`).

References:
  Sabour et al, Dynamic Routing Between Capsules, 2017 (MultiMNIST).
  Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018 (MultiMNIST for MTL).
  Ramakrishnan et al, Quantum chemistry structures and properties of 134 kilo molecules, 2014.
  Rupp et al, Fast and Accurate Modeling of Molecular Atomization Energies with Machine
  Learning, 2012 (Coulomb matrix).
  Elisseeff & Weston, A kernel method for multi-labelled classification, 2002 (Yeast).
  Afzal et al, A Physics-Infused Deep Learning Model for the Prediction of Refractive Indices
  and Large-Scale Screening of Organic Compound Space (ChemML RI).
  van Tilborg, Alenicheva & Grisoni, Exposing the Limitations of Molecular Machine Learning
  with Activity Cliffs, 2022 (MoleculeACE).
  Rogers & Hahn, Extended-Connectivity Fingerprints, 2010.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from autoscale_jax.bench.datasets._chemml import CHEMML_RI_TARGETS, mol_code_one_hot
from autoscale_jax.bench.datasets._common import (
    BenchmarkDefinition,
    MultiTaskDataset,
    Split,
    TaskSpec,
)
from autoscale_jax.bench.datasets._fingerprints import (
    cached_morgan_fingerprints,
    morgan_fingerprints,
)
from autoscale_jax.bench.datasets._multi_fashion import FASHION_MNIST_DIR
from autoscale_jax.bench.datasets._qm9 import QM9_TARGETS, coulomb_eigenvalues
from autoscale_jax.bench.datasets._registry import (
    DatasetInfo,
    collect,
    missing_data,
    missing_packages,
)

# The package's own names; the loaders' names join below.
__all__ = [
    "BENCHMARKS",
    "CHEMML_RI_TARGETS",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "QM9_TARGETS",
    "BenchmarkDefinition",
    "DatasetInfo",
    "MultiTaskDataset",
    "Split",
    "TaskSpec",
    "available",
    "cached_morgan_fingerprints",
    "coulomb_eigenvalues",
    "load",
    "missing_data",
    "mol_code_one_hot",
    "morgan_fingerprints",
]

# Every dataset, each declared once in its own module (its DATASET), by name.
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(collect(__name__, __path__))
globals().update({name: info.loader for name, info in DATASETS.items()})  # datasets.yeast, ...

# Every named benchmark, each defined once beside its loader (its DATASET's benchmarks).
BENCHMARKS: Mapping[str, BenchmarkDefinition] = MappingProxyType(
    {definition.name: definition for info in DATASETS.values() for definition in info.benchmarks}
)


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load` (whether or not their optional data are installed), in
    module order.

    Returns:
      ``("chemml_ri", "molecule_ace", "multi_fashion", "multi_mnist", "qm9", "yeast")``.

    Example:
      >>> "qm9" in available()
      True
    """
    return tuple(DATASETS)


def load(name: str, **kwargs: Any) -> MultiTaskDataset:
    """Loads a dataset by name.

    Args:
      name: one of :func:`available`.
      **kwargs: keyword arguments of that loader (e.g. ``seed``).

    Returns:
      The loader's :class:`MultiTaskDataset`.

    Raises:
      ValueError: for an unknown name.
      ImportError: when a package the dataset declares is missing (the message names it and
        the install step).

    Example:
      >>> load("multi_mnist", variant="classify_both", num_train=100).tasks[1].kind
      'classification'
    """
    try:
        info = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; available: {available()}") from None
    if message := missing_packages(info):
        raise ImportError(message)
    return info.loader(**kwargs)


def __getattr__(name: str) -> Callable[..., MultiTaskDataset]:
    """Called only for a name the package does not have.

    The loaders are set at import, from the registry, so a type checker cannot see them: this
    signature tells it that ``datasets.<name>`` is a loader. A mistyped name is an
    ``AttributeError`` that says where the datasets are listed.

    Raises:
      AttributeError: always.
    """
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}; datasets.available() lists the "
        "datasets (each loader is exported under its dataset's name)."
    )


__all__ += sorted(DATASETS)
