"""The dataset registry: every dataset's loader, benchmarks, optional data and data card.

Each dataset is one private module of :mod:`autoscale_jax.bench.datasets` (``_yeast.py``, ...)
that declares ``DATASET = DatasetInfo(...)`` below its loader; its module docstring is its data
card (the first line the card's title). :func:`collect` imports every private module of the
package but the shared ones (:data:`SHARED_MODULES`) and builds the registry from those
entries, so adding a dataset edits no list: :func:`~autoscale_jax.bench.datasets.load`, the
benchmarks, the contract test (``tests/bench/datasets/test_datasets.py``) and the data cards of
docs/datasets.md read the registry.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any, NamedTuple

from autoscale_jax.bench.datasets._common import BenchmarkDefinition, MultiTaskDataset

# The private modules of the package that hold shared code, not a dataset.
SHARED_MODULES = ("_common", "_fingerprints", "_pairs", "_registry")


class DatasetInfo(NamedTuple):
    """What the registry knows about a dataset (declared as ``DATASET`` in its module).

    Attributes:
      name: the :func:`~autoscale_jax.bench.datasets.load` name, equal to the loader's name.
      loader: the function ``name(*, seed=0, ...) -> MultiTaskDataset`` (defined in the module).
      benchmarks: the benchmarks defined on this data (each ``dataset`` equal to ``name``).
      packages: the importable packages the loader needs beyond the core (e.g. ``("river",)``):
        ``load`` raises an ImportError naming them and ``install`` when one is missing, and the
        contract test skips with that message.
      install: the step that installs them (e.g. ``"pip install 'autoscale-jax[data]'"``);
        required when ``packages`` or ``data_dir`` is set.
      data_dir: a folder of data files (not a package) the default options read, e.g. a Debian
        data package's; the tests skip with ``install`` where it is absent (``load`` does not
        check it: a loader may take another folder).
      test_options: loader options that make a small, fast dataset for the tests (e.g.
        ``{"num_train": 64}``); also applied on top of each benchmark's options there.
      card: the data card (the module's docstring), filled by :func:`declared`.
    """

    name: str
    loader: Callable[..., MultiTaskDataset]
    benchmarks: tuple[BenchmarkDefinition, ...] = ()
    packages: tuple[str, ...] = ()
    install: str = ""
    data_dir: str = ""
    test_options: Mapping[str, Any] = MappingProxyType({})
    card: str = ""


def missing_packages(info: DatasetInfo) -> str | None:
    """``"<name> needs <packages>: <install>"`` when a declared package is absent, else None.

    Packages are found without being imported (``importlib.util.find_spec``): some data packages
    import heavy frameworks.
    """
    absent = [p for p in info.packages if importlib.util.find_spec(p) is None]
    if not absent:
        return None
    return f"{info.name} needs {', '.join(absent)}: {info.install}"


def missing_data(info: DatasetInfo) -> str | None:
    """:func:`missing_packages`, or a message when the default ``data_dir`` is absent or empty,
    else None."""
    if message := missing_packages(info):
        return message
    if info.data_dir and not (os.path.isdir(info.data_dir) and os.listdir(info.data_dir)):
        return f"{info.name} needs the data in {info.data_dir}: {info.install}"
    return None


def declared(module: ModuleType) -> DatasetInfo:
    """The checked entry a dataset module declares in ``DATASET``, its card filled in.

    Raises:
      ValueError: when the module declares no ``DATASET`` or no docstring (its data card), when
        the loader is defined elsewhere or named otherwise than the dataset, when a benchmark
        belongs to another dataset, or when ``packages``/``data_dir`` come without ``install``.
    """
    info = getattr(module, "DATASET", None)
    if not isinstance(info, DatasetInfo):
        raise ValueError(
            f"{module.__name__} declares no DATASET: a private module of "
            "autoscale_jax.bench.datasets is a dataset and declares DATASET = "
            "DatasetInfo(name=..., loader=..., benchmarks=..., ...) below its loader (shared "
            f"code goes in one of the shared modules {SHARED_MODULES}, listed in "
            "datasets/_registry.py)."
        )
    where = f"{module.__name__}: DATASET {info.name!r}"
    if getattr(info.loader, "__module__", None) != module.__name__:
        raise ValueError(
            f"{where}: its loader is defined in {getattr(info.loader, '__module__', None)}, "
            f"not in {module.__name__}: a dataset module declares the loader it defines."
        )
    if info.loader.__name__ != info.name:
        raise ValueError(
            f"{where}: its loader is called {info.loader.__name__!r}: name the loader after "
            "the dataset (it is exported from autoscale_jax.bench.datasets under that name)."
        )
    for benchmark in info.benchmarks:
        if not isinstance(benchmark, BenchmarkDefinition) or benchmark.dataset != info.name:
            raise ValueError(
                f"{where}: benchmark {getattr(benchmark, 'name', benchmark)!r} is not a "
                f"BenchmarkDefinition of dataset {info.name!r}."
            )
    if (info.packages or info.data_dir) and not info.install:
        raise ValueError(f"{where}: packages/data_dir need install= (the step that adds them).")
    unknown = set(info.test_options) - set(inspect.signature(info.loader).parameters)
    if unknown:
        raise ValueError(f"{where}: test_options {sorted(unknown)} are not loader arguments.")
    if not (module.__doc__ or "").strip():
        raise ValueError(
            f"{where}: the module has no docstring; it is the data card (title on the first "
            "line, then source, licence, tasks, split, inputs, install)."
        )
    return info._replace(card=inspect.cleandoc(module.__doc__ or ""))


def collect(package: str, path: Iterable[str]) -> dict[str, DatasetInfo]:
    """The registry: imports every private module of ``package`` but :data:`SHARED_MODULES`
    (found by :func:`pkgutil.iter_modules`, in name order) and reads its entry (:func:`declared`).

    Raises:
      ValueError: for a module without a valid ``DATASET``, or a dataset or benchmark name
        declared twice.
    """
    registry: dict[str, DatasetInfo] = {}
    benchmarks: dict[str, str] = {}
    for found in sorted(pkgutil.iter_modules(path), key=lambda found: found.name):
        if not found.name.startswith("_") or found.name in SHARED_MODULES:
            continue
        module = importlib.import_module(f"{package}.{found.name}")
        info = declared(module)
        if info.name in registry:
            raise ValueError(
                f"dataset {info.name!r} is declared twice: in "
                f"{registry[info.name].loader.__module__} and {module.__name__}."
            )
        for benchmark in info.benchmarks:
            if benchmark.name in benchmarks:
                raise ValueError(
                    f"benchmark {benchmark.name!r} is declared twice: by dataset "
                    f"{benchmarks[benchmark.name]!r} and {info.name!r}."
                )
            benchmarks[benchmark.name] = info.name
        registry[info.name] = info
    return registry
