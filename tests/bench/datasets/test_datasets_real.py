"""Tests for the real-data loaders: ChemML RI and MoleculeACE (issue 16).

Each data test skips, naming the install step, when its package is absent (``bash
.ci/install-data``). With the packages present they check facts read from the files: row counts,
target scales, label counts of the partial-label data, deterministic splits and the fingerprint
cache. MoleculeACE's fingerprints are computed once (about 15 s) and then read from the disk
cache. The partial-label loss is tested on synthetic data, everywhere.
"""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import MultiTaskDataset, Split, TaskSpec, _chemml, _molecule_ace
from autoscale_jax.bench.experiments.suites import SUITES
from autoscale_jax.bench.running import models
from autoscale_jax.bench.running.benchmark import load_benchmark

INSTALL = "bash .ci/install-data"
SPLITS = ("train", "validation", "test")


def _require(*packages):
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: {INSTALL}")


# ----------------------------------------------------------------------------- chemml_ri


def _chemml_path():
    return os.path.join(
        _chemml.locate_package("chemml", "chemml_ri", INSTALL), _chemml.CHEMML_RI_FILE
    )


@pytest.fixture(scope="module")
def chemml_raw():
    _require("chemml", "pandas")
    return datasets.chemml_ri()


@pytest.fixture(scope="module")
def chemml_csv():
    _require("chemml", "pandas")
    import pandas as pd

    return pd.read_csv(_chemml_path())


def test_chemml_sizes_inputs_and_tasks(chemml_raw, chemml_csv):
    assert len(chemml_csv) == 100_000
    assert [len(getattr(chemml_raw, s).inputs) for s in SPLITS] == [80_000, 10_000, 10_000]
    assert [t.name for t in chemml_raw.tasks] == ["polarizability", "density", "refractive_index"]
    assert all(t.kind == "regression" and t.metrics == ("mae",) for t in chemml_raw.tasks)
    inputs = np.concatenate([getattr(chemml_raw, s).inputs for s in SPLITS])
    assert inputs.shape == (100_000, 60) and inputs.dtype == np.float32
    assert set(np.unique(inputs).tolist()) == {0.0, 1.0}
    # One block per filled slot: every molecule has 2-4 blocks, at most one per slot.
    assert np.bincount(inputs.sum(axis=1).astype(int)).tolist() == [0, 0, 3, 1084, 98913]
    assert inputs.reshape(-1, 4, 15).sum(axis=2).max() == 1.0
    assert chemml_raw.train.masks is None


def test_chemml_raw_targets_have_the_files_scales(chemml_raw, chemml_csv):
    mean, std = chemml_raw.extras["target_mean"], chemml_raw.extras["target_std"]
    # Whole-file mean ± std: Pol_DFT 232 ± 45, Den_MD 1264 ± 86, RI_LL 1.59 ± 0.06.
    np.testing.assert_allclose(mean, [232.4, 1264.1, 1.591], rtol=2e-3)
    np.testing.assert_allclose(std, [45.1, 85.9, 0.0625], rtol=2e-2)
    rows = chemml_raw.extras["source_rows"][2]
    columns = ["Pol_DFT", "Den_MD", "RI_LL"]
    test_targets = np.concatenate(chemml_raw.test.targets, axis=1)
    np.testing.assert_allclose(test_targets, chemml_csv[columns].to_numpy()[rows], rtol=1e-6)
    expected = _chemml.mol_code_one_hot(chemml_csv["Mol_Code"].to_numpy()[rows])
    np.testing.assert_array_equal(chemml_raw.test.inputs, expected)


def test_chemml_scalings(chemml_raw):
    centred = datasets.chemml_ri(target_scaling="centred")
    standard = datasets.chemml_ri(target_scaling="standardised")
    raw_train = np.concatenate(chemml_raw.train.targets, axis=1).astype(np.float64)
    centred_train = np.concatenate(centred.train.targets, axis=1)
    standard_train = np.concatenate(standard.train.targets, axis=1)
    np.testing.assert_allclose(centred_train.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(centred_train.std(axis=0), raw_train.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(standard_train.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standard_train.std(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(standard.test.inputs, chemml_raw.test.inputs)


def test_chemml_deterministic_subset(chemml_raw):
    assert datasets.chemml_ri() is chemml_raw
    small = datasets.chemml_ri(num_molecules=1000, seed=0)
    assert [len(getattr(small, s).inputs) for s in SPLITS] == [800, 100, 100]
    rebuilt = _chemml._chemml_cached.__wrapped__(1000, 0, "raw", 0.1, 0.1, _chemml_path())
    for split in SPLITS:
        np.testing.assert_array_equal(getattr(rebuilt, split).inputs, getattr(small, split).inputs)
    # The subset is the head of the same seeded permutation as the full set.
    full_order = np.concatenate(chemml_raw.extras["source_rows"])
    np.testing.assert_array_equal(np.concatenate(small.extras["source_rows"]), full_order[:1000])
    other = datasets.chemml_ri(num_molecules=1000, seed=1)
    assert not np.array_equal(other.extras["source_rows"][0], small.extras["source_rows"][0])


# ----------------------------------------------------------------------------- molecule_ace


@pytest.fixture(scope="module")
def ace():
    _require("MoleculeACE", "rdkit", "pandas")
    return datasets.molecule_ace()


@pytest.fixture(scope="module")
def ace_table():
    _require("MoleculeACE", "pandas")
    return _molecule_ace._ace_table(_molecule_ace._molecule_ace_dir())


def test_molecule_ace_union_facts(ace_table):
    labelled = np.isfinite(ace_table.values)
    assert len(ace_table.names) == 30
    assert labelled.shape == (35_633, 30)
    assert int(labelled.sum()) == 48_714
    per_molecule = labelled.sum(axis=1)
    assert int((per_molecule > 1).sum()) == 9_507 and int(per_molecule.max()) == 9
    assert int((ace_table.file_split == 1).sum()) == 9_802
    # 3,545 molecules are train for one target and test for another.
    both = np.any(ace_table.file_split == 0, axis=1) & np.any(ace_table.file_split == 1, axis=1)
    assert int(both.sum()) == 3_545
    assert np.nanmin(ace_table.values) > -6.4 and np.nanmax(ace_table.values) <= 2.0
    spread = np.nanstd(ace_table.values, axis=0)
    assert np.all((spread > 0.9) & (spread < 2.0))


def test_molecule_ace_masks_and_label_counts(ace, ace_table):
    assert len(ace.tasks) == 30 and ace.extras["target_names"] == ace_table.names
    assert ace.extras["label_counts"] == (35_067, 3_845, 9_802)
    assert [len(getattr(ace, s).inputs) for s in SPLITS] == [27_043, 3_005, 9_130]
    for name in SPLITS:
        split = getattr(ace, name)
        assert len(split.masks) == 30 and split.inputs.shape[1] == 1024
        for target, mask in zip(split.targets, split.masks, strict=True):
            assert target.shape == (len(split.inputs), 1) and mask.dtype == bool
            np.testing.assert_array_equal(np.isfinite(target[:, 0]), mask)
    # Each task's test labels are exactly MoleculeACE's test set for that target.
    file_test = (ace_table.file_split == 1).sum(axis=0)
    np.testing.assert_array_equal([int(m.sum()) for m in ace.test.masks], file_test)
    train_rows, validation_rows, _ = ace.extras["source_rows"]
    assert not set(train_rows.tolist()) & set(validation_rows.tolist())


def test_molecule_ace_values_and_fingerprints_match_the_files(ace, ace_table):
    rows = ace.extras["source_rows"][2][:20]
    targets = np.concatenate(ace.test.targets, axis=1)[:20]
    test_labels = np.where(ace_table.file_split[rows] == 1, ace_table.values[rows], np.nan)
    np.testing.assert_allclose(targets, test_labels, rtol=1e-6)
    expected = datasets.morgan_fingerprints(list(ace_table.smiles[rows]), radius=2, num_bits=1024)
    np.testing.assert_array_equal(ace.test.inputs[:20], expected)


def test_molecule_ace_molecule_rule_keeps_test_molecules_out_of_training(ace):
    strict = datasets.molecule_ace(split_rule="molecules")
    train_rows, validation_rows, test_rows = strict.extras["source_rows"]
    assert not set(test_rows.tolist()) & (set(train_rows.tolist()) | set(validation_rows.tolist()))
    assert sum(strict.extras["label_counts"]) == 48_714
    assert strict.extras["label_counts"][2] > ace.extras["label_counts"][2]


def test_molecule_ace_target_subset_and_seeded_validation(ace):
    pair = ("CHEMBL2047_EC50", "CHEMBL4616_EC50")
    small = datasets.molecule_ace(targets=pair)
    assert tuple(t.name for t in small.tasks) == pair
    assert sum(small.extras["label_counts"]) == 631 + 682
    assert datasets.molecule_ace(targets=pair) is small
    reseeded = datasets.molecule_ace(targets=pair, seed=1)
    assert not np.array_equal(reseeded.extras["source_rows"][1], small.extras["source_rows"][1])
    np.testing.assert_array_equal(reseeded.extras["source_rows"][2], small.extras["source_rows"][2])


def test_fingerprint_cache_hit_returns_identical_arrays(tmp_path):
    _require("rdkit")
    smiles = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "C1CCC(C1)Cc1ccccc1"]
    options = {"radius": 2, "num_bits": 512, "source": "test==1", "directory": str(tmp_path)}
    first, path, hit = datasets.cached_morgan_fingerprints(smiles, **options)
    assert not hit and os.path.isfile(path)
    second, same_path, hit = datasets.cached_morgan_fingerprints(smiles, **options)
    assert hit and same_path == path
    np.testing.assert_array_equal(first, second)
    direct = datasets.morgan_fingerprints(smiles, radius=2, num_bits=512)
    np.testing.assert_array_equal(first, direct)
    # Another setting or source is another key.
    _, other, hit = datasets.cached_morgan_fingerprints(smiles, **{**options, "source": "test==2"})
    assert other != path and not hit


def test_fingerprint_cache_unwritable_warns_and_still_returns(tmp_path):
    _require("rdkit")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="could not cache fingerprints"):
        bits, _, hit = datasets.cached_morgan_fingerprints(
            ["CCO"], radius=2, num_bits=64, source="x", directory=str(blocker / "sub")
        )
    assert not hit and bits.shape == (1, 64) and bits.sum() > 0


# ----------------------------------------------------------------------------- partial labels


def _partial_dataset():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(8, 5)).astype(np.float32)
    labelled = np.array([[1, 1, 0, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]], bool)
    targets = tuple(
        np.where(m, rng.normal(size=8), np.nan).astype(np.float32)[:, None] for m in labelled
    )
    split = Split(inputs, targets, tuple(labelled))
    tasks = tuple(TaskSpec(f"t{k}", "regression", 1, ("mae",), (False,)) for k in range(2))
    return MultiTaskDataset("partial", tasks, split, split, split, "synthetic"), labelled


def test_masked_loss_means_over_labels_and_zeroes_absent_tasks():
    data, labelled = _partial_dataset()
    fm = models.functional_model(models.build_model(data, seed=0, trunk_sizes=(4,)))
    batch = (jnp.asarray(data.train.inputs), tuple(jnp.asarray(t) for t in data.train.targets))
    loss_fn = models.multitask_loss_fn(fm.apply, data.tasks, task_counts=True)
    losses, counts = loss_fn(fm.params, batch)
    np.testing.assert_array_equal(counts, [5.0, 0.0])
    outputs = fm.apply(fm.params, batch[0])
    mask = labelled[0]
    expected = np.mean((np.asarray(outputs[0])[mask, 0] - data.train.targets[0][mask, 0]) ** 2)
    np.testing.assert_allclose(losses, [expected, 0.0], rtol=1e-5)
    grads = jax.grad(lambda p: loss_fn(p, batch)[0].sum())(fm.params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert all(not np.any(g) for g in jax.tree.leaves(grads["heads"][1]))
    # Without task counts the NaN placeholders surface as a NaN loss, never as a silent 0.
    plain = models.multitask_loss_fn(fm.apply, data.tasks)(fm.params, batch)
    assert np.all(np.isnan(plain))


def test_unmasked_split_reports_every_example_labelled():
    split = Split(np.zeros((3, 2), np.float32), (np.zeros((3, 1), np.float32),))
    assert split.masks is None
    assert [m.tolist() for m in split.label_masks()] == [[True, True, True]]


def test_benchmarks_and_real_suite():
    names = [spec.name for spec in SUITES["real"].benchmarks]
    assert names == ["chemml_ri", "chemml_ri_standardised", "molecule_ace", "qm9_large"]
    # The graph net on all of QM9 costs seconds a step on a CPU: a suite of its own.
    assert [spec.name for spec in SUITES["accelerator"].benchmarks] == ["qm9_full"]
    _require("chemml", "pandas")
    raw = load_benchmark("chemml_ri", dataset_options={"num_molecules": 1000})
    assert not raw.partial_labels and raw.dataset.extras["target_scaling"] == "raw"
    control = load_benchmark("chemml_ri_standardised", dataset_options={"num_molecules": 1000})
    assert control.dataset.extras["target_scaling"] == "standardised"
    _require("MoleculeACE", "rdkit")
    pair = ("CHEMBL2047_EC50", "CHEMBL4616_EC50")
    assert load_benchmark("molecule_ace", dataset_options={"targets": pair}).partial_labels


def test_partial_label_benchmark_trains_through_the_bench():
    _require("MoleculeACE", "rdkit", "pandas")
    from autoscale_jax.bench.running import chunk, single_run
    from autoscale_jax.bench.running.method_config import MethodConfig

    pair = ("CHEMBL2047_EC50", "CHEMBL4616_EC50")
    bench = load_benchmark("molecule_ace", dataset_options={"targets": pair})
    functions = chunk.benchmark_functions(bench)
    batch = (functions.data[0][:64], tuple(t[:64] for t in functions.data[1]))
    params = chunk.initial_params(bench, 0)
    losses, counts = functions.counted_loss_fn(params, batch)
    np.testing.assert_array_equal(losses, functions.loss_fn(params, batch))
    masks = [m[:64] for m in bench.dataset.train.masks]
    np.testing.assert_array_equal(counts, [m.sum() for m in masks])
    result = single_run.run(
        bench, MethodConfig("famo", "famo"), steps=40, batch_size=64, eval_every=20
    )
    assert result.selected_step > 0
    assert np.all(np.isfinite(result.train_losses))
    assert all(np.isfinite(m["mae"]) for m in result.test_metrics)
