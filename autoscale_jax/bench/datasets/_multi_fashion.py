"""MultiFashion

Two overlapping Fashion-MNIST items per image, from Debian's `dataset-fashion-mnist` IDX files
(no download); Fashion-MNIST: Xiao et al, *Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms*, 2017.

- **source**: Debian `dataset-fashion-mnist`: the 60,000 + 10,000 IDX files under
  `/usr/share/datasets/fashion-mnist/`
- **licence**: MIT (Zalando's Fashion-MNIST)
- **construction**: as MultiMNIST; pools: 50,000 train and 10,000 validation items from the
  official training file, the 10,000 official test items
- **install**: `apt-get install dataset-fashion-mnist` (root)
"""

from __future__ import annotations

import functools
import gzip
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from autoscale_jax.bench.datasets._common import BenchmarkDefinition, MultiTaskDataset
from autoscale_jax.bench.datasets._pairs import PairOptions, build_pairs_dataset, pair_options
from autoscale_jax.bench.datasets._registry import DatasetInfo

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (LeCun's MNIST format), gzip-compressed or not."""
    opener: Callable[..., Any] = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype: Any = _IDX_DTYPES[raw[2]]
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)


def _find_fashion_file(data_dir: str, stem: str) -> str:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(data_dir, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"multi_fashion needs the Fashion-MNIST file {stem}[.gz] in {data_dir}: on Debian/Ubuntu "
        "run `apt-get install dataset-fashion-mnist` (files go to /usr/share/datasets/"
        "fashion-mnist/), or pass data_dir= pointing at the IDX files"
    )


@functools.lru_cache(maxsize=2)
def _fashion_items(data_dir: str) -> tuple[np.ndarray, np.ndarray, int]:
    """All 70,000 Fashion-MNIST items as float32 [70000, 28, 28], labels, and the train count."""
    paths = {key: _find_fashion_file(data_dir, stem) for key, stem in _FASHION_FILES.items()}
    train_images = _read_idx(paths["train_images"])
    test_images = _read_idx(paths["test_images"])
    images = np.concatenate([train_images, test_images]).astype(np.float32) / 255.0
    labels = np.concatenate([_read_idx(paths["train_labels"]), _read_idx(paths["test_labels"])])
    return images, labels.astype(np.int64), len(train_images)


_FASHION_VALIDATION_POOL = 10_000


@functools.lru_cache(maxsize=8)
def _multi_fashion_cached(data_dir: str, options: PairOptions) -> MultiTaskDataset:
    images, labels, num_official_train = _fashion_items(data_dir)
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(num_official_train)
    cut = num_official_train - _FASHION_VALIDATION_POOL
    # The official test items form the test pool; validation items come from the train file.
    pools = (order[:cut], order[cut:], np.arange(num_official_train, len(images)))
    return build_pairs_dataset(
        name="multi_fashion",
        item="item",
        images=images,
        labels=labels,
        pools=pools,
        options=options,
        rng=rng,
        source=f"the Fashion-MNIST IDX files in {data_dir} (source indices refer to the 60,000 "
        "train items followed by the 10,000 test items)",
    )


def multi_fashion(
    *,
    variant: str = "classify_reconstruct",
    num_train: int = 4000,
    num_validation: int = 1000,
    num_test: int = 1000,
    image_size: int = 28,
    reconstruction_size: int = 14,
    flatten: bool = True,
    seed: int = 0,
    data_dir: str = FASHION_MNIST_DIR,
) -> MultiTaskDataset:
    """MultiFashion: two overlapping Fashion-MNIST items per image.

    Same construction and shapes as :func:`multi_mnist`, from the full Fashion-MNIST set of
    Debian's ``dataset-fashion-mnist`` package (IDX files, gzip-compressed or not). Pools: a
    seeded 10,000-item validation pool and a 50,000-item train pool from the official training
    file, and the 10,000 official test items as the test pool; pools are disjoint before pairing.

    Args:
      variant, num_train, num_validation, num_test, image_size, reconstruction_size, flatten,
        seed: as in :func:`multi_mnist` (``seed`` seeds the pools and the pairing).
      data_dir: folder holding ``train-images-idx3-ubyte[.gz]`` and the three other IDX files.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`.

    Raises:
      FileNotFoundError: if the IDX files are absent (``apt-get install dataset-fashion-mnist``).

    Example:
      >>> data = multi_fashion(variant="classify_both", num_train=100)
      >>> data.train.targets[1].dtype
      dtype('int32')

    Reference: Xiao et al, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
    Learning Algorithms, 2017; Sabour et al, Dynamic Routing Between Capsules, 2017.
    """
    options = pair_options(
        variant, num_train, num_validation, num_test, image_size, reconstruction_size, flatten, seed
    )
    data_dir = os.path.abspath(data_dir)
    for stem in _FASHION_FILES.values():
        _find_fashion_file(data_dir, stem)
    return _multi_fashion_cached(data_dir, options)


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "multi_fashion",
    multi_fashion,
    benchmarks=(
        BenchmarkDefinition(
            "multi_fashion3",
            "multi_fashion",
            {"variant": "classify_reconstruct_classify"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "K = 3 on Fashion-MNIST items: classify the left item, reconstruct the right one and "
            "classify it (CE + MSE + CE)",
        ),
        BenchmarkDefinition(
            "multi_fashion",
            "multi_fashion",
            {"variant": "classify_reconstruct"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "mixed CE + MSE pair on Fashion-MNIST items (same construction as multi_mnist)",
        ),
    ),
    install="apt-get install dataset-fashion-mnist (Debian/Ubuntu, as root)",
    data_dir=FASHION_MNIST_DIR,
    test_options={"num_train": 64, "num_validation": 16, "num_test": 16, "image_size": 14},
)
