"""MoleculeACE (partial labels)

30 bioactivity regressions (ChEMBL Ki / EC50) on the union of their molecules, natively
partial-label, read from the CSVs inside the `MoleculeACE` wheel (located, not imported: its
package imports PyTorch).

- **source**: PyPI `MoleculeACE` 3.0.0 (1.1 MB wheel), files
  `MoleculeACE/Data/benchmark_data/CHEMBL*_{Ki,EC50}.csv` (30 files: 23 Ki, 7 EC50)
- **licence**: MIT (the package); the activities come from ChEMBL
- **paper**: van Tilborg, Alenicheva & Grisoni, *Exposing the Limitations of Molecular Machine
  Learning with Activity Cliffs*, 2022
- **size**: 48,714 (molecule, target) labels on 35,633 distinct molecules; 615–3,657 labels per
  target
- **labels per molecule**: 1: 26,126; 2: 6,722; 3: 2,199; 4: 481; 5: 61; 6: 16; 7: 10; 8: 10; 9:
  8 (9,507 molecules with more than one)
- **tasks**: 30 regressions (one per target), `y = −log10(exp_mean / nM)`: mean −1.80, sd 1.34,
  range −6.39 to 2.00; per-target sd 0.93–1.96; MAE over the labelled molecules
- **inputs**: RDKit Morgan bits, radius 2, 1024 bits (ECFP4, MoleculeACE's own featuriser),
  float32 in {0, 1}
- **install**: `bash .ci/install-data` (or `pip install --no-deps MoleculeACE==3.0.0` beside
  `rdkit` and `pandas`)

Partial labels: a molecule is labelled for the targets whose file lists it. `Split.masks` holds
one bool `[N]` array per task and the unlabelled targets are NaN, so a loss or metric that
ignores the masks gives NaN rather than a silent number. The benchmark's loss is
`models.multitask_loss_fn(..., task_counts=True)`: each task's loss is the mean over its
labelled examples in the batch (0, with a zero gradient, when it has none) and the loss also
returns the per-task label counts, which `multitask_train_step(..., task_counts=True)` turns
into the `task_mask` the weighting sees.

Split: the files' own train / test split (about 80 / 20 % per target; 38,912 train and 9,802
test labels), and a seeded 10 % of the train molecules for validation. 3,545 molecules are train
for one target and test for another; `split_rule` says what to do with them:

- `"labels"` (default): every label keeps its file's split; such molecules appear in both
  splits with the respective labels, and each task's test labels are exactly MoleculeACE's test
  set. Rows train / val / test 27,043 / 3,005 / 9,130; labels 35,067 / 3,845 / 9,802.
- `"molecules"`: a molecule with any test label goes to test with all its labels; no test
  molecule is ever a training input. Rows 23,853 / 2,650 / 9,130; labels 30,429 / 3,390 /
  14,895.

`targets=` keeps a subset of the 30 targets (rows without a label for any of them are dropped);
`extras["cliff"]` marks, per split and task, the labelled activity-cliff molecules (38.7 % of
all labels) for MoleculeACE's cliff RMSE.

Featurisation runs once, about 15 s for the 35,633 molecules, and is cached bit-packed (1.1 MB)
under `$AUTOSCALE_JAX_CACHE`, else `$XDG_CACHE_HOME/autoscale-jax`, else
`~/.cache/autoscale-jax`, in `fingerprints/`; the file name hashes the MoleculeACE and RDKit
versions, the radius, the length and the SMILES, so another version or setting never reads a
stale file. A cache folder that cannot be written gives a `RuntimeWarning` and the fingerprints
are recomputed next time.

Smoke training (one seed, MLP 1024-512-256 with 30 linear heads, Adam 1e-3, batch 128, equal
weights, `multitask_train_step(..., task_counts=True)`, 600 steps): the mean training loss over
the tasks fell from 1.28 (first quarter) to 0.40 (last quarter); 3.3 % of the (task, step) pairs
had no label in the batch. Test, averaged over the 30 targets: MAE 0.603 and RMSE 0.778, against
1.009 and 1.212 for predicting each target's train mean; the model beats the mean on all 30.
"""

from __future__ import annotations

import functools
import glob
import os
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from autoscale_jax.bench.datasets._common import (
    REAL_DATA_HINT,
    BenchmarkDefinition,
    MultiTaskDataset,
    check_positive,
    freeze_split,
    locate_package,
    package_version,
    read_only,
    regression_tasks,
    require_module,
)
from autoscale_jax.bench.datasets._fingerprints import cached_morgan_fingerprints
from autoscale_jax.bench.datasets._registry import DatasetInfo

MOLECULE_ACE_DIR = os.path.join("Data", "benchmark_data")
MOLECULE_ACE_NUM_TARGETS = 30
SPLIT_RULES = ("labels", "molecules")
_TRAIN, _TEST, _ABSENT = 0, 1, -1


class _AceTable(NamedTuple):
    names: tuple[str, ...]  # the 30 targets, e.g. "CHEMBL2047_EC50", in file-name order
    smiles: np.ndarray  # str [M]: the union of the files' molecules, sorted
    values: np.ndarray  # float64 [M, K]: y (-log10 of exp_mean in nM), NaN where unlabelled
    file_split: np.ndarray  # int8 [M, K]: 0 train, 1 test, -1 unlabelled (the files' split)
    cliff: np.ndarray  # bool [M, K]: the files' cliff_mol flag


def _molecule_ace_dir() -> str:
    return os.path.join(
        locate_package("MoleculeACE", "molecule_ace", REAL_DATA_HINT), MOLECULE_ACE_DIR
    )


@functools.lru_cache(maxsize=1)
def _ace_table(data_dir: str) -> _AceTable:
    """The 30 files joined on SMILES (about 0.3 s with pandas)."""
    pandas = require_module("pandas", "molecule_ace", REAL_DATA_HINT)
    paths = sorted(glob.glob(os.path.join(data_dir, "CHEMBL*.csv")))
    if len(paths) != MOLECULE_ACE_NUM_TARGETS:
        raise FileNotFoundError(
            f"{data_dir} holds {len(paths)} CHEMBL*.csv files, expected "
            f"{MOLECULE_ACE_NUM_TARGETS}: reinstall MoleculeACE 3.0.0 ({REAL_DATA_HINT})"
        )
    frames = []
    for k, path in enumerate(paths):
        frame = pandas.read_csv(path, usecols=["smiles", "y", "cliff_mol", "split"])
        # A molecule listed twice in one file (none in 3.0.0) gets the mean of its values.
        frame = frame.groupby("smiles", as_index=False, sort=False).agg(
            y=("y", "mean"), cliff_mol=("cliff_mol", "max"), split=("split", "first")
        )
        frames.append(frame.assign(task=k))
    table = pandas.concat(frames, ignore_index=True)
    smiles, rows = np.unique(table["smiles"].to_numpy(str), return_inverse=True)
    columns = table["task"].to_numpy()
    shape = (len(smiles), len(paths))
    values = np.full(shape, np.nan)
    values[rows, columns] = table["y"].to_numpy(np.float64)
    file_split = np.full(shape, _ABSENT, np.int8)
    file_split[rows, columns] = np.where(table["split"].to_numpy(str) == "test", _TEST, _TRAIN)
    cliff = np.zeros(shape, bool)
    cliff[rows, columns] = table["cliff_mol"].to_numpy() > 0
    names = tuple(os.path.basename(p)[: -len(".csv")] for p in paths)
    return _AceTable(names, smiles, values, file_split, cliff)


def _split_labels(
    file_split: np.ndarray, rule: str, seed: int, validation_fraction: float
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """``(rows, label mask [rows, K])`` of train, validation and test.

    ``"labels"``: every label keeps its file's split; a molecule labelled train for one target
    and test for another appears in both splits, each with its own labels. ``"molecules"``: a
    molecule with any test label is a test molecule with all its labels. Validation: a seeded
    ``validation_fraction`` of the train molecules, with their train labels.
    """
    labelled = file_split != _ABSENT
    if rule == "labels":
        train_labels, test_labels = file_split == _TRAIN, file_split == _TEST
    else:
        test_molecule = np.any(file_split == _TEST, axis=1, keepdims=True)
        train_labels, test_labels = labelled & ~test_molecule, labelled & test_molecule
    train_rows = np.flatnonzero(train_labels.any(axis=1))
    test_rows = np.flatnonzero(test_labels.any(axis=1))
    num_validation = round(len(train_rows) * validation_fraction)
    if not 0 < num_validation < len(train_rows):
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves no validation or no training "
            f"molecule out of {len(train_rows)}"
        )
    chosen = np.zeros(len(train_rows), bool)
    chosen[np.random.default_rng(seed).choice(len(train_rows), num_validation, replace=False)] = 1
    return (
        (train_rows[~chosen], train_labels[train_rows[~chosen]]),
        (train_rows[chosen], train_labels[train_rows[chosen]]),
        (test_rows, test_labels[test_rows]),
    )


@functools.lru_cache(maxsize=2)
def _molecule_ace_cached(
    targets: tuple[str, ...] | None,
    radius: int,
    num_bits: int,
    split_rule: str,
    seed: int,
    validation_fraction: float,
    data_dir: str,
) -> MultiTaskDataset:
    table = _ace_table(data_dir)
    source = f"MoleculeACE=={package_version('MoleculeACE')}"
    fingerprints, cache_path, _ = cached_morgan_fingerprints(
        list(table.smiles), radius=radius, num_bits=num_bits, source=source
    )
    if targets is None:
        columns = np.arange(len(table.names))
    else:
        unknown = sorted(set(targets) - set(table.names))
        if unknown:
            raise ValueError(f"unknown MoleculeACE targets {unknown}; known: {table.names}")
        columns = np.array([table.names.index(t) for t in targets])
    names = tuple(table.names[c] for c in columns)
    file_split = table.file_split[:, columns]
    parts = _split_labels(file_split, split_rule, seed, validation_fraction)
    splits = []
    for rows, mask in parts:
        values = np.where(mask, table.values[rows][:, columns], np.nan).astype(np.float32)
        splits.append(
            freeze_split(
                fingerprints[rows].astype(np.float32),
                tuple(np.ascontiguousarray(values[:, [k]]) for k in range(len(names))),
                tuple(np.ascontiguousarray(mask[:, k]) for k in range(len(names))),
            )
        )
    train, validation, test = splits
    tasks = regression_tasks(names)
    label_counts = tuple(int(sum(m.sum() for m in s.masks or ())) for s in splits)
    description = (
        f"MoleculeACE ({source}, {MOLECULE_ACE_DIR}): {len(names)} ChEMBL bioactivity targets "
        f"(Ki / EC50) on the union of their molecules; split rule {split_rule!r}; rows "
        f"{len(train.inputs)}/{len(validation.inputs)}/{len(test.inputs)}, labels "
        f"{label_counts[0]}/{label_counts[1]}/{label_counts[2]}. Inputs float32 [N, {num_bits}]: "
        f"Morgan bits (radius {radius}) from RDKit. Targets: one float32 [N, 1] per target, "
        "y = -log10(exp_mean / nM), NaN where the molecule has no label for that target; "
        "Split.masks marks the labels. Metric: MAE over the labelled molecules."
    )
    extras: dict[str, Any] = {
        "target_names": names,
        "split_rule": split_rule,
        "radius": radius,
        "num_bits": num_bits,
        "fingerprint_cache": cache_path,
        "label_counts": label_counts,
        "source_rows": tuple(read_only(rows) for rows, _ in parts),
        "cliff": tuple(
            tuple(read_only(table.cliff[rows, c] & mask[:, k]) for k, c in enumerate(columns))
            for rows, mask in parts
        ),
    }
    return MultiTaskDataset(
        "molecule_ace", tasks, train, validation, test, description, MappingProxyType(extras)
    )


def molecule_ace(
    *,
    targets: tuple[str, ...] | None = None,
    radius: int = 2,
    num_bits: int = 1024,
    split_rule: str = "labels",
    seed: int = 0,
    validation_fraction: float = 0.1,
) -> MultiTaskDataset:
    """MoleculeACE: 30 bioactivity regressions over 35,633 molecules, partially labelled.

    Reads the 30 ``CHEMBL*_{Ki,EC50}.csv`` files in ``MoleculeACE/Data/benchmark_data`` of the
    installed ``MoleculeACE`` 3.0.0 wheel (located, never imported): 48,714 (molecule, target)
    pairs with ``y = -log10(exp_mean / nM)``, the files' own train/test split (about 80/20 per
    target) and activity-cliff flags. Each target is a task; a molecule is labelled for the
    targets whose file lists it (9,507 molecules have 2 to 9 labels). Inputs are RDKit Morgan
    bits (ECFP4 at radius 2, 1024 bits: MoleculeACE's own featuriser), computed once and cached
    on disk (:func:`cached_morgan_fingerprints`, under ``$AUTOSCALE_JAX_CACHE`` or
    ``~/.cache/autoscale-jax``; about 15 s the first time).

    Partial labels: ``Split.masks`` holds one bool ``[N]`` per task and the unlabelled targets
    are NaN, so a per-task loss must be a masked mean (``models.multitask_loss_fn(...,
    task_counts=True)``) and metrics must use the masks.

    Split rules:
      * ``"labels"`` (default): every label keeps its file's split, so each task's test labels
        are exactly MoleculeACE's test set (comparable with its published single-task RMSEs);
        3,545 molecules are train for one target and test for another, and appear in both
        splits with the respective labels.
      * ``"molecules"``: a molecule with any test label goes to test with all its labels (no
        test molecule is ever an input in training; each task's test set grows).

    Validation is a seeded ``validation_fraction`` of the train molecules (with their train
    labels).

    Shapes: inputs float32 ``[N, num_bits]`` in {0, 1}; targets ``K`` arrays float32 ``[N, 1]``
    (NaN where unlabelled); masks ``K`` bool arrays ``[N]``.

    Args:
      targets: a subset of target names (e.g. ``("CHEMBL2047_EC50", "CHEMBL4616_EC50")``) in
        the order wanted; ``None``: all 30 in file-name order. Rows without a label for any
        chosen target are dropped.
      radius: Morgan radius.
      num_bits: fingerprint length.
      split_rule: ``"labels"`` or ``"molecules"`` (see above).
      seed: seeds the validation draw.
      validation_fraction: share of the train molecules used for validation.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`; ``extras`` has the target names, the
      label counts per split, the fingerprint cache path, the union rows of each split
      (``source_rows``) and, per split and task, the labelled activity-cliff molecules
      (``cliff``, for MoleculeACE's cliff RMSE).

    Raises:
      ImportError: without MoleculeACE, RDKit or pandas (the message gives the install step).
      ValueError: for an unknown split rule or target name.

    Example:
      >>> data = molecule_ace(targets=("CHEMBL2047_EC50", "CHEMBL4616_EC50"))
      >>> len(data.tasks), data.train.inputs.shape[1]
      (2, 1024)

    Reference: van Tilborg, Alenicheva & Grisoni, Exposing the Limitations of Molecular Machine
    Learning with Activity Cliffs, 2022.
    """
    if split_rule not in SPLIT_RULES:
        raise ValueError(f"split_rule must be one of {SPLIT_RULES}, got {split_rule!r}")
    check_positive(radius=radius, num_bits=num_bits)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
    data_dir = _molecule_ace_dir()
    require_module("pandas", "molecule_ace", REAL_DATA_HINT)
    require_module("rdkit", "molecule_ace", REAL_DATA_HINT)
    return _molecule_ace_cached(
        None if targets is None else tuple(targets),
        int(radius),
        int(num_bits),
        split_rule,
        int(seed),
        float(validation_fraction),
        data_dir,
    )


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "molecule_ace",
    molecule_ace,
    benchmarks=(
        BenchmarkDefinition(
            "molecule_ace",
            "molecule_ace",
            {},
            {"trunk_sizes": (512, 256)},
            1e-3,
            "30 partial-label bioactivity regressions (48,714 labels on 35,633 molecules, ECFP4 "
            "1024 bits); its loss is the masked mean per task with label counts (task_counts)",
        ),
    ),
    packages=("MoleculeACE", "rdkit", "pandas"),
    install=REAL_DATA_HINT,
    test_options={"targets": ("CHEMBL2047_EC50", "CHEMBL4616_EC50")},
)
