"""The dataset contract: every dataset the registry discovers (``datasets.DATASETS``, one module
each), loaded with its small ``test_options``, against what the bench relies on.

Per dataset: the names and metrics of its tasks, the shapes and dtypes of each task kind, the
partial-label masks and NaN placeholders, read-only arrays, a cached result that a rebuild from
the files reproduces bit for bit, disjoint splits where the loader records its source rows or
pools, and benchmarks whose options the loader and the default model accept. A dataset whose
optional packages or data are absent skips with the message that names the install step; a new
dataset needs no test of its own to be checked here. The registry's own errors (a module
without ``DATASET``, a name declared twice, ...) are in tests/bad_inputs/test_bad_bench_datasets.py.
"""

import importlib.machinery
import importlib.util
import inspect
import re
import sys

import numpy as np
import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.running import evaluation, models

SPLITS = ("train", "validation", "test")
KINDS = ("classification", "binary", "regression", "reconstruction")
NAMES = datasets.available()


def load_small(name, **options):
    """``name`` with its test options (and ``options`` on top), or a skip naming what is missing."""
    info = datasets.DATASETS[name]
    if message := datasets.missing_data(info):
        pytest.skip(message)
    return datasets.load(name, **{**info.test_options, **options})


def arrays(data):
    """Every array of the three splits, with a label for messages."""
    for split in SPLITS:
        part = getattr(data, split)
        yield f"{split}.inputs", part.inputs
        for k, target in enumerate(part.targets):
            yield f"{split}.targets[{k}]", target
        for k, mask in enumerate(part.masks or ()):
            yield f"{split}.masks[{k}]", mask


@pytest.fixture(scope="module", params=NAMES)
def small(request):
    return request.param, load_small(request.param)


def test_every_dataset_is_exported_under_its_name_and_unknown_names_fail():
    assert tuple(datasets.DATASETS) == NAMES and len(NAMES) >= 6
    for name, info in datasets.DATASETS.items():
        assert getattr(datasets, name) is info.loader and name in datasets.__all__
        assert info.card.splitlines()[0].strip(), f"{name}: its module docstring is its card"
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; available: "):
        datasets.load("cifar")
    with pytest.raises(AttributeError, match=r"datasets.available\(\) lists the datasets"):
        datasets.cifar  # noqa: B018


@pytest.mark.parametrize("name", [n for n in NAMES if datasets.DATASETS[n].packages])
def test_a_missing_package_is_an_import_error_naming_the_install_step(name, monkeypatch):
    info = datasets.DATASETS[name]
    real = importlib.util.find_spec
    absent = {info.packages[-1]}

    def find_spec(module, *args, **kwargs):
        # The declared packages are present or absent as the test says, whatever this machine
        # has installed (a fresh machine has none of them).
        top = module.split(".")[0]
        if top in info.packages:
            return None if top in absent else importlib.machinery.ModuleSpec(top, None)
        return real(module, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    message = f"{name} needs {info.packages[-1]}: {info.install}"
    assert datasets.missing_data(info) == message
    with pytest.raises(ImportError, match=f"^{re.escape(message)}$"):
        datasets.load(name)
    absent = set(info.packages)  # every one missing: named in the declared order
    assert datasets.missing_data(info) == f"{name} needs {', '.join(info.packages)}: {info.install}"


def test_a_missing_data_folder_is_named_with_its_install_step(tmp_path):
    info = datasets.DATASETS["multi_fashion"]._replace(data_dir="/no/such/folder")
    message = f"multi_fashion needs the data in /no/such/folder: {info.install}"
    assert datasets.missing_data(info) == message
    assert datasets.missing_data(info._replace(data_dir="")) is None
    # An empty folder (a package's files removed, a mount point) is as missing as none.
    empty = info._replace(data_dir=str(tmp_path))
    assert (
        datasets.missing_data(empty)
        == f"multi_fashion needs the data in {tmp_path}: {info.install}"
    )
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    assert datasets.missing_data(empty) is None


def test_tasks_are_named_once_with_known_kinds_and_metrics(small):
    name, data = small
    assert data.name == name
    assert data.tasks and len({t.name for t in data.tasks}) == len(data.tasks)
    for task in data.tasks:
        assert task.kind in KINDS, (name, task)
        assert task.num_outputs >= 1 and (task.kind != "binary" or task.num_outputs == 1)
        assert task.metrics and set(task.metrics) <= set(evaluation.METRIC_NAMES), (name, task)
        assert len(task.higher_is_better) == len(task.metrics)


def test_splits_have_the_shapes_and_dtypes_of_their_task_kinds(small):
    name, data = small
    for split in SPLITS:
        part = getattr(data, split)
        size = len(part.inputs)
        where = f"{name}.{split}"
        assert size > 0 and part.inputs.dtype == np.float32 and part.inputs.ndim >= 2, where
        assert np.all(np.isfinite(part.inputs)), where
        assert len(part.targets) == len(data.tasks), where
        for task, target, mask in zip(data.tasks, part.targets, part.label_masks(), strict=True):
            labelled = target[mask]
            if task.kind == "classification":
                assert target.shape == (size,) and target.dtype == np.int32, (where, task.name)
                assert np.all((labelled >= 0) & (labelled < task.num_outputs)), (where, task.name)
            elif task.kind == "binary":
                assert target.shape == (size,) and target.dtype == np.float32, (where, task.name)
                assert set(np.unique(labelled).tolist()) <= {0.0, 1.0}, (where, task.name)
            else:
                assert target.shape == (size, task.num_outputs), (where, task.name)
                assert target.dtype == np.float32, (where, task.name)
                assert np.all(np.isfinite(labelled)), (where, task.name)


def test_partial_labels_are_masks_with_nan_placeholders(small):
    name, data = small
    for split in SPLITS:
        part = getattr(data, split)
        if part.masks is None:
            continue
        assert len(part.masks) == len(part.targets), (name, split)
        for task, target, mask in zip(data.tasks, part.targets, part.masks, strict=True):
            assert mask.shape == (len(part.inputs),) and mask.dtype == bool, (name, split)
            if target.dtype.kind == "f":
                rows = np.isfinite(target.reshape(len(target), -1)).all(axis=1)
                np.testing.assert_array_equal(rows, mask, err_msg=f"{name}.{split}.{task.name}")
        assert np.any(np.stack(part.masks), axis=0).all(), f"{name}.{split}: an unlabelled row"


def test_arrays_are_read_only(small):
    name, data = small
    for label, array in arrays(data):
        assert not array.flags.writeable, f"{name}: {label} is writeable"


def test_a_repeated_call_is_cached_and_a_rebuild_from_the_files_is_identical(small):
    name, data = small
    info = datasets.DATASETS[name]
    assert datasets.load(name, **info.test_options) is data
    # Empty the module's caches (the parsed files too), so the same options read them again.
    for value in vars(sys.modules[info.loader.__module__]).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()
    rebuilt = datasets.load(name, **info.test_options)
    assert rebuilt is not data and rebuilt.tasks == data.tasks
    for (label, got), (_, want) in zip(arrays(rebuilt), arrays(data), strict=True):
        assert got.dtype == want.dtype, (name, label)
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: {label}")


def test_splits_share_no_source_row_or_item(small):
    name, data = small
    extras = data.extras
    if "source_rows" not in extras and "source_pools" not in extras:
        pytest.skip(f"{name} records neither extras['source_rows'] nor extras['source_pools']")
    if "source_rows" in extras:
        # Per task, a labelled source row belongs to one split (partial labels: a molecule may
        # be train for one target and test for another).
        rows = extras["source_rows"]
        assert [len(r) for r in rows] == [len(getattr(data, s).inputs) for s in SPLITS]
        for k, task in enumerate(data.tasks):
            labelled = [
                set(r[getattr(data, s).label_masks()[k]].tolist())
                for r, s in zip(rows, SPLITS, strict=True)
            ]
            for a, b in ((0, 1), (0, 2), (1, 2)):
                assert not labelled[a] & labelled[b], (name, task.name, SPLITS[a], SPLITS[b])
    if "source_pools" in extras:
        pools = [set(p.tolist()) for p in extras["source_pools"]]
        assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2]), name
        for split, pool in zip(SPLITS, pools, strict=True):
            assert set(extras["source_pairs"][split].ravel().tolist()) <= pool, (name, split)


@pytest.mark.parametrize(
    "benchmark",
    [b for n in NAMES for b in datasets.DATASETS[n].benchmarks],
    ids=lambda b: b.name,
)
def test_each_benchmark_loads_its_data_and_builds_its_model(benchmark):
    assert datasets.BENCHMARKS[benchmark.name] is benchmark
    info = datasets.DATASETS[benchmark.dataset]
    inspect.signature(info.loader).bind(**benchmark.dataset_options)  # loader arguments
    data = load_small(benchmark.dataset, **{**benchmark.dataset_options, **info.test_options})
    model = models.build_model(data, 0, **benchmark.model_options)
    fm = models.functional_model(model)
    part = data.validation
    batch = (part.inputs[:8], tuple(t[:8] for t in part.targets))
    partial = part.masks is not None
    losses = models.multitask_loss_fn(fm.apply, data.tasks, task_counts=partial)(fm.params, batch)
    losses = losses[0] if partial else losses
    assert losses.shape == (len(data.tasks),) and np.all(np.isfinite(losses)), benchmark.name
