"""Offline multi-task datasets: MultiMNIST, MultiFashion, QM9-11 and Yeast-14.

Every loader reads files that ship inside an installed package (or a Debian data package) and
never downloads. Loaders are deterministic given their arguments, cached in memory (a repeated
call returns the very same object), and return a :class:`MultiTaskDataset` whose arrays are
read-only because they are shared between callers.

Conventions for ``Split.targets`` (one array per task, leading axis ``N``):

* ``"classification"``: int32 labels ``[N]`` in ``[0, num_outputs)``;
* ``"binary"``: float32 ``[N]`` holding 0.0 or 1.0 (models output one logit per example);
* ``"regression"`` and ``"reconstruction"``: float32 ``[N, num_outputs]``.

References:
  Sabour et al, Dynamic Routing Between Capsules, 2017 (MultiMNIST).
  Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018 (MultiMNIST for MTL).
  Ramakrishnan et al, Quantum chemistry structures and properties of 134 kilo molecules, 2014.
  Rupp et al, Fast and Accurate Modeling of Molecular Atomization Energies with Machine
  Learning, 2012 (Coulomb matrix).
  Elisseeff & Weston, A kernel method for multi-labelled classification, 2002 (Yeast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoscale_jax.bench.datasets._common import MultiTaskDataset, Split, TaskSpec
from autoscale_jax.bench.datasets._multi_fashion import FASHION_MNIST_DIR, multi_fashion
from autoscale_jax.bench.datasets._multi_mnist import multi_mnist
from autoscale_jax.bench.datasets._qm9 import QM9_TARGETS, coulomb_eigenvalues, qm9
from autoscale_jax.bench.datasets._yeast import yeast

__all__ = [
    "FASHION_MNIST_DIR",
    "QM9_TARGETS",
    "MultiTaskDataset",
    "Split",
    "TaskSpec",
    "available",
    "coulomb_eigenvalues",
    "load",
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
}


def available() -> tuple[str, ...]:
    """Names accepted by :func:`load` (whether or not their optional data are installed).

    Returns:
      ``("multi_mnist", "multi_fashion", "qm9", "yeast")``.

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
