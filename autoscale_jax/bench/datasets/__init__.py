"""Offline multi-task datasets: MultiMNIST, MultiFashion, QM9-11, Yeast-14, ChemML RI and
MoleculeACE.

Every loader reads files that ship inside an installed package (or a Debian data package) and
never downloads; docs/datasets.md has a data card per dataset (source, licence, tasks, split,
features, install step). Loaders are deterministic given their arguments, cached in memory (a
repeated call returns the very same object), and return a :class:`MultiTaskDataset` whose
arrays are read-only because they are shared between callers.

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

from autoscale_jax.bench.datasets import (
    _chemml,
    _molecule_ace,
    _multi_fashion,
    _multi_mnist,
    _qm9,
    _yeast,
)
from autoscale_jax.bench.datasets._chemml import CHEMML_RI_TARGETS, chemml_ri, mol_code_one_hot
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
from autoscale_jax.bench.datasets._molecule_ace import molecule_ace
from autoscale_jax.bench.datasets._multi_fashion import FASHION_MNIST_DIR, multi_fashion
from autoscale_jax.bench.datasets._multi_mnist import multi_mnist
from autoscale_jax.bench.datasets._qm9 import QM9_TARGETS, coulomb_eigenvalues, qm9
from autoscale_jax.bench.datasets._yeast import yeast

__all__ = [
    "BENCHMARKS",
    "CHEMML_RI_TARGETS",
    "FASHION_MNIST_DIR",
    "QM9_TARGETS",
    "BenchmarkDefinition",
    "MultiTaskDataset",
    "Split",
    "TaskSpec",
    "available",
    "cached_morgan_fingerprints",
    "chemml_ri",
    "coulomb_eigenvalues",
    "load",
    "mol_code_one_hot",
    "molecule_ace",
    "morgan_fingerprints",
    "multi_fashion",
    "multi_mnist",
    "qm9",
    "yeast",
]

_LOADERS: dict[str, Callable[..., MultiTaskDataset]] = {
    "multi_mnist": multi_mnist,
    "multi_fashion": multi_fashion,
    "qm9": qm9,
    "yeast": yeast,
    "chemml_ri": chemml_ri,
    "molecule_ace": molecule_ace,
}

# Every named benchmark, each defined once beside its loader (the modules' BENCHMARKS).
BENCHMARKS: Mapping[str, BenchmarkDefinition] = MappingProxyType(
    {
        definition.name: definition
        for module in (_multi_mnist, _multi_fashion, _yeast, _qm9, _chemml, _molecule_ace)
        for definition in module.BENCHMARKS
    }
)


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load` (whether or not their optional data are installed).

    Returns:
      ``("multi_mnist", "multi_fashion", "qm9", "yeast", "chemml_ri", "molecule_ace")``.

    Example:
      >>> "qm9" in available()
      True
    """
    return tuple(_LOADERS)


def load(name: str, **kwargs: Any) -> MultiTaskDataset:
    """Loads a dataset by name.

    Args:
      name: one of :func:`available`.
      **kwargs: keyword arguments of that loader (e.g. ``seed``).

    Returns:
      The loader's :class:`MultiTaskDataset`.

    Raises:
      ValueError: for an unknown name.

    Example:
      >>> load("multi_mnist", variant="classify_both", num_train=100).tasks[1].kind
      'classification'
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; available: {available()}") from None
    return loader(**kwargs)
