"""Yeast-14

Gene-function multi-label data as 14 binary tasks, from the file inside the `river` wheel (no
download).

- **source**: PyPI `river` (0.26.1 here), `river.datasets.Yeast`, a file inside the wheel (other
  river datasets download: never used)
- **licence**: BSD-3-Clause (the package)
- **paper**: Elisseeff & Weston, *A kernel method for multi-labelled classification*, 2002
- **size**: 2,417 genes × 103 features
- **tasks**: 14 binary (functional classes), BCE on one logit; accuracy
- **split**: seeded permutation 70 / 15 / 15 %; features standardised with train statistics
- **install**: `pip install 'autoscale-jax[data]'`
"""

from __future__ import annotations

import functools
from types import MappingProxyType

import numpy as np

from autoscale_jax.bench.datasets._common import (
    DATA_HINT,
    BenchmarkDefinition,
    MultiTaskDataset,
    TaskSpec,
    freeze_split,
    read_only,
    require_module,
    split_sizes,
    standardise,
)
from autoscale_jax.bench.datasets._registry import DatasetInfo

YEAST_NUM_FEATURES = 103
YEAST_NUM_LABELS = 14


@functools.lru_cache(maxsize=1)
def _yeast_table() -> tuple[np.ndarray, np.ndarray]:
    """Yeast features float64 [2417, 103] and labels [2417, 14] from river's bundled file."""
    river_datasets = require_module("river.datasets", "yeast", DATA_HINT)
    # river.datasets.Yeast is a FileDataset: .path points inside the installed wheel.
    path = river_datasets.Yeast().path
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    return table[:, :YEAST_NUM_FEATURES], table[:, YEAST_NUM_FEATURES:]


@functools.lru_cache(maxsize=4)
def _yeast_cached(seed: int, validation_fraction: float, test_fraction: float) -> MultiTaskDataset:
    features, labels = _yeast_table()
    sizes = split_sizes(len(features), validation_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(len(features))
    split_rows = np.split(order, np.cumsum(sizes)[:-1])
    scaled, mean, std = standardise(*(features[rows] for rows in split_rows))
    splits = tuple(
        freeze_split(
            x,
            tuple(
                np.ascontiguousarray(labels[rows, k], np.float32) for k in range(labels.shape[1])
            ),
        )
        for x, rows in zip(scaled, split_rows, strict=True)
    )
    tasks = tuple(
        TaskSpec(f"class{k + 1}", "binary", 1, ("accuracy",), (True,))
        for k in range(YEAST_NUM_LABELS)
    )
    description = (
        f"Yeast-14 (Elisseeff & Weston 2002) from river.datasets.Yeast: {len(features)} genes, "
        f"seeded split {sizes[0]}/{sizes[1]}/{sizes[2]}. Inputs float32 [N, 103] standardised "
        "with train mean/std; 14 binary tasks (functional classes), targets float32 [N] in "
        "{0, 1}, metric accuracy of the logit thresholded at 0 (F1 is left out: rare labels give "
        "F1 = 0 baselines, for which Delta-m is undefined)."
    )
    extras = MappingProxyType(
        {
            "feature_mean": read_only(mean),
            "feature_std": read_only(std),
            "source_rows": tuple(read_only(r) for r in split_rows),
        }
    )
    train, validation, test = splits
    return MultiTaskDataset("yeast", tasks, train, validation, test, description, extras)


def yeast(
    *, seed: int = 0, validation_fraction: float = 0.15, test_fraction: float = 0.15
) -> MultiTaskDataset:
    """Yeast-14: gene-function multi-label data as 14 binary tasks.

    The 2,417 genes x 103 features of ``river.datasets.Yeast`` (a file inside the river wheel)
    are split with a seeded permutation (default 70 / 15 / 15 %) and standardised with the
    training split's mean and std. Each of the 14 functional classes is a binary task trained
    with BCE on one logit; the metric is accuracy with the logit thresholded at 0 (higher is
    better). F1 is not used because several labels are rare enough that a baseline F1 of 0
    would make the relative Delta-m undefined.

    Shapes: inputs float32 ``[N, 103]``; targets 14 arrays float32 ``[N]`` in {0, 1}.

    Args:
      seed: seeds the split.
      validation_fraction: share of the genes used for validation.
      test_fraction: share of the genes used for testing.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`.

    Raises:
      ImportError: if ``river`` is missing.

    Example:
      >>> data = yeast()
      >>> data.train.inputs.shape, len(data.tasks)
      ((1691, 103), 14)

    Reference: Elisseeff & Weston, A kernel method for multi-labelled classification, 2002.
    """
    require_module("river.datasets", "yeast", DATA_HINT)
    return _yeast_cached(int(seed), float(validation_fraction), float(test_fraction))


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "yeast",
    yeast,
    benchmarks=(
        BenchmarkDefinition(
            "yeast",
            "yeast",
            {},
            {"trunk_sizes": (128,)},
            1e-3,
            "does-no-harm, not discriminating: 14 binary tasks where equal weights were as good as "
            "any weighting",
        ),
    ),
    packages=("river",),
    install=DATA_HINT,
)
