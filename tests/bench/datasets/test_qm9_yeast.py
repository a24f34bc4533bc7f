"""QM9 and Yeast beyond the shared dataset contract (test_datasets.py): targets read back from
the raw files, standardisation, the graph representation, the Coulomb eigenvalues, other seeds
and the argument and missing-package errors.

The data tests skip cleanly when qm9pack or river are absent; the missing-package errors are
tested everywhere by simulating absence.
"""

import importlib.util
import os
import sys

import numpy as np
import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import _qm9

SMALL = {"num_train": 300, "num_validation": 100, "num_test": 100}
SPLITS = ("train", "validation", "test")


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


def test_qm9_another_seed_draws_other_molecules(qm9_data):
    other = datasets.qm9(num_molecules=2000, seed=1)
    assert not np.array_equal(
        other.extras["molecule_index"][0], qm9_data.extras["molecule_index"][0]
    )


def test_qm9_features_do_not_depend_on_the_chunk_size(monkeypatch):
    if not _qm9_available():
        pytest.skip("pip install qm9pack")
    pytest.importorskip("pandas")
    # 300 molecules: one chunk by default, 43 chunks of 7 (the last one short) here.
    _qm9._qm9_cached.cache_clear()
    whole = datasets.qm9(num_molecules=300, seed=3)
    _qm9._qm9_cached.cache_clear()
    monkeypatch.setattr(_qm9, "_CHUNK", 7)
    chunked = datasets.qm9(num_molecules=300, seed=3)
    _qm9._qm9_cached.cache_clear()
    for name in SPLITS:
        np.testing.assert_allclose(
            getattr(chunked, name).inputs, getattr(whole, name).inputs, rtol=1e-6, atol=1e-6
        )


def test_qm9_large_and_qm9_full_take_every_molecule(qm9_data):
    total = len(_qm9._qm9_table(_qm9._qm9pack_data_dir()).targets)
    for name in ("qm9_large", "qm9_full"):
        assert datasets.BENCHMARKS[name].dataset_options["num_molecules"] == total == 130_831


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


def test_yeast_another_seed_draws_another_split(yeast_data):
    assert not np.array_equal(datasets.yeast(seed=1).train.inputs, yeast_data.train.inputs)


def test_yeast_missing_river(monkeypatch):
    monkeypatch.setitem(sys.modules, "river", None)
    monkeypatch.setitem(sys.modules, "river.datasets", None)
    with pytest.raises(ImportError, match=r"yeast needs river: pip install"):
        datasets.yeast(seed=0)
