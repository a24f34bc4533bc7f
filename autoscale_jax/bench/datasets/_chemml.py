"""ChemML RI (loss scale)

Polarizability, density and refractive index of 100,000 organic molecules, read from the CSV
inside the `chemml` wheel (located, not imported: chemml imports TensorFlow); ChemML:
Haghighatlari et al, *ChemML: A Machine Learning and Informatics Program Package for the
Analysis, Mining, and Modeling of Chemical and Materials Data*, 2019.

- **source**: PyPI `chemml` 1.3 (53 MB wheel), file
  `chemml/published/RI/input_files/properties.csv` (13 MB)
- **licence**: BSD-3-Clause (the package)
- **paper**: Afzal et al, *A Physics-Infused Deep Learning Model for the Prediction of
  Refractive Indices and Large-Scale Screening of Organic Compound Space* (ChemRxiv); the folder
  also ships that paper's multi-task models of these targets
- **size**: 100,000 organic molecules built from 2–4 of 15 building blocks (98,913 with 4, 1,084
  with 3, 3 with 2)
- **inputs**: `Mol_Code` (e.g. `F1-F10-F5`: the blocks in slot order) as a one-hot of 4 slots ×
  15 blocks = 60 features, float32 in {0, 1}; no RDKit needed
- **tasks**: 3 regressions, MAE (lower is better), targets float32 `[N, 1]`
- **split**: a seeded permutation of the rows, 80 / 10 / 10 % (80,000 / 10,000 / 10,000);
  `num_molecules` keeps the head of the same permutation
- **install**: `bash .ci/install-data` (or `pip install --no-deps chemml==1.3` beside `pandas`)

| task | column | mean ± sd (range) over the file | unit |
|---|---|---|---|
| polarizability | `Pol_DFT` (DFT) | 232.4 ± 45.2 (89–353) | bohr³ (atomic units) |
| density | `Den_MD` (molecular dynamics) | 1264.1 ± 86.0 (843–1703) | kg/m³ |
| refractive_index | `RI_LL` (Lorentz–Lorenz) | 1.591 ± 0.063 (1.386–1.895) | 1 |

Correlations: polarizability–density −0.25, polarizability–RI +0.61, density–RI +0.18.

`target_scaling` picks the targets' scale: `"raw"` (the file's units, the `chemml_ri`
benchmark), `"centred"` (minus the train mean: the scales still differ, the offsets are gone) or
`"standardised"` (train mean and sd, the `chemml_ri_standardised` control); the train statistics
are in `extras["target_mean"]` and `extras["target_std"]`. On raw targets the three MSEs start
about 10⁶ apart, so this is a test of how a weighting handles loss scale.

What the one-hot can reach: only 10,671 of the 100,000 codes are distinct (isomers of the same
blocks share a code); the mean target of each code explains 95.7 % (polarizability), 98.2 %
(density) and 70.2 % (refractive index) of the variance, an upper bound for any model on these
inputs.

Smoke training (one seed, the benchmark's MLP 60-256-128 with three linear heads, Adam 1e-3,
batch 128, the bench's `running.single_run.run`; test MAE at the validation-selected step, and
MAE ÷ the target's sd):

| targets, weights, steps | polarizability | density | refractive index |
|---|---|---|---|
| raw, equal weights, 1600 | 40.5 (0.90 sd) | 17.5 (0.20 sd) | 0.222 (3.56 sd) |
| raw, fixed weights ∝ 1/variance, 1600 | 38.1 (0.85 sd) | 31.6 (0.37 sd) | 0.031 (0.49 sd) |
| centred, equal weights, 800 | 8.0 (0.18 sd) | 11.2 (0.13 sd) | 0.071 (1.14 sd) |
| standardised, equal weights, 400 | 0.19 sd | 0.13 sd | 0.43 sd |

With equal weights on raw targets the density's MSE dominates and the refractive index ends
worse than predicting its mean (3.6 sd); inverse-variance weights fix the refractive index but
lose the density. Both leave polarizability near its mean within 1,600 steps, because the raw
offsets (232, 1264) take Adam many steps to reach; the centred scaling removes that.
"""

from __future__ import annotations

import functools
import os
from types import MappingProxyType
from typing import Any

import numpy as np

from autoscale_jax.bench.datasets._common import (
    REAL_DATA_HINT,
    BenchmarkDefinition,
    MultiTaskDataset,
    check_positive,
    column_splits,
    locate_package,
    package_version,
    read_only,
    regression_tasks,
    require_module,
    split_sizes,
    standardise,
    target_extras,
)
from autoscale_jax.bench.datasets._registry import DatasetInfo

CHEMML_RI_FILE = os.path.join("published", "RI", "input_files", "properties.csv")
# (task name, column, unit): DFT polarizability, MD packing density, Lorentz-Lorenz refractive
# index; their raw scales differ by three to four orders of magnitude.
CHEMML_RI_TARGETS = (
    ("polarizability", "Pol_DFT", "bohr^3"),
    ("density", "Den_MD", "kg/m^3"),
    ("refractive_index", "RI_LL", "1"),
)
# The 15 building blocks of Mol_Code (F4 never occurs) and its at most 4 slots.
CHEMML_BUILDING_BLOCKS = tuple(f"F{i}" for i in range(1, 17) if i != 4)
CHEMML_SLOTS = 4
CHEMML_TARGET_SCALINGS = ("raw", "centred", "standardised")


def mol_code_one_hot(codes: Any) -> np.ndarray:
    """One-hot encoding of ChemML Mol_Codes: 4 slots x 15 building blocks -> 60 features.

    A code such as ``"F1-F10-F5"`` lists the building blocks of a molecule in slot order; slot
    ``s`` holding block ``b`` sets feature ``15 s + index(b)``; empty slots stay zero.

    Args:
      codes: an iterable of Mol_Code strings.

    Returns:
      float32 ``[N, 60]``.

    Raises:
      ValueError: for a code with more than 4 blocks or an unknown block.

    Example:
      >>> features = mol_code_one_hot(["F1-F10-F5"])
      >>> features.shape, np.flatnonzero(features[0]).tolist()
      ((1, 60), [0, 23, 33])
    """
    index = {block: i for i, block in enumerate(CHEMML_BUILDING_BLOCKS)}
    codes = list(codes)
    width = len(CHEMML_BUILDING_BLOCKS)
    features = np.zeros((len(codes), CHEMML_SLOTS * width), np.float32)
    for row, code in enumerate(codes):
        blocks = code.split("-")
        if len(blocks) > CHEMML_SLOTS or any(b not in index for b in blocks):
            raise ValueError(f"Mol_Code {code!r} is not 1-4 of {CHEMML_BUILDING_BLOCKS}")
        for slot, block in enumerate(blocks):
            features[row, slot * width + index[block]] = 1.0
    return features


@functools.lru_cache(maxsize=1)
def _chemml_table(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Mol_Code one-hot ``[100000, 60]`` and the raw targets float64 ``[100000, 3]``."""
    pandas = require_module("pandas", "chemml_ri", REAL_DATA_HINT)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: reinstall chemml 1.3 ({REAL_DATA_HINT})")
    table = pandas.read_csv(path, usecols=["Mol_Code"] + [c for _, c, _ in CHEMML_RI_TARGETS])
    features = mol_code_one_hot(table["Mol_Code"])
    targets = table[[c for _, c, _ in CHEMML_RI_TARGETS]].to_numpy(np.float64)
    return read_only(features), read_only(targets)


@functools.lru_cache(maxsize=4)
def _chemml_cached(
    num_molecules: int,
    seed: int,
    target_scaling: str,
    validation_fraction: float,
    test_fraction: float,
    path: str,
) -> MultiTaskDataset:
    features, raw = _chemml_table(path)
    total = len(raw)
    if num_molecules > total:
        raise ValueError(f"num_molecules={num_molecules} exceeds the {total} ChemML RI molecules")
    sizes = split_sizes(num_molecules, validation_fraction, test_fraction)
    rows = np.random.default_rng(seed).permutation(total)[:num_molecules]
    split_rows = np.split(rows, np.cumsum(sizes)[:-1])
    _, mean, std = standardise(*(raw[r] for r in split_rows))
    shift = np.zeros_like(mean) if target_scaling == "raw" else mean
    scale = std if target_scaling == "standardised" else np.ones_like(std)
    splits = column_splits(
        (features[r] for r in split_rows),
        (((raw[r] - shift) / scale).astype(np.float32) for r in split_rows),
    )
    tasks = regression_tasks(name for name, _, _ in CHEMML_RI_TARGETS)
    description = (
        f"ChemML RI (chemml {package_version('chemml')}, {CHEMML_RI_FILE}): a seeded subset of "
        f"{num_molecules} of the {total} molecules, split {sizes[0]}/{sizes[1]}/{sizes[2]}. "
        "Inputs float32 [N, 60]: Mol_Code one-hot (4 slots x 15 building blocks). Targets: 3 "
        "regressions, each float32 [N, 1]: DFT polarizability Pol_DFT (bohr^3), MD density "
        f"Den_MD (kg/m^3), Lorentz-Lorenz refractive index RI_LL; scaling {target_scaling!r} "
        "(raw: the file's units; centred: minus the train mean; standardised: also divided by "
        "the train std). Metric: MAE on that scale."
    )
    extras: dict[str, Any] = {
        **target_extras(CHEMML_RI_TARGETS, mean, std),
        "target_scaling": target_scaling,
        "source_rows": tuple(read_only(r) for r in split_rows),
    }
    return MultiTaskDataset("chemml_ri", tasks, *splits, description, MappingProxyType(extras))


def chemml_ri(
    *,
    num_molecules: int = 100_000,
    seed: int = 0,
    target_scaling: str = "raw",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> MultiTaskDataset:
    """ChemML RI: three correlated regressions whose raw scales differ by 10^3-10^4.

    Reads ``chemml/published/RI/input_files/properties.csv`` from the installed ``chemml`` 1.3
    wheel (located with ``importlib.util.find_spec``, never imported): 100,000 organic molecules
    built from 2-4 of 15 building blocks. Each molecule's ``Mol_Code`` becomes a 60-d one-hot
    (:func:`mol_code_one_hot`; no RDKit needed). Tasks, with their columns and raw
    mean ± std over the file: polarizability ``Pol_DFT`` (232 ± 45 bohr^3), density ``Den_MD``
    (1264 ± 86 kg/m^3), refractive index ``RI_LL`` (1.59 ± 0.06).

    On raw targets the three MSEs start ~10^6 apart, so the weighting has to handle loss scale;
    with ``target_scaling="standardised"`` it barely matters (a one-seed grid probe found every
    fixed weighting within a few Δm points). The split is a seeded permutation of the file's
    rows (default 80 / 10 / 10 %), the first ``num_molecules`` of it form the subset.

    Shapes: inputs float32 ``[N, 60]`` in {0, 1}; targets 3 arrays float32 ``[N, 1]``.

    Args:
      num_molecules: size of the seeded subset (at most 100,000).
      seed: seeds the subset and the split.
      target_scaling: ``"raw"`` (the file's units), ``"centred"`` (minus the train mean: the
        scales still differ, the offsets are gone) or ``"standardised"`` (train mean and std;
        both in ``extras['target_mean'/'target_std']``).
      validation_fraction: share of the subset used for validation.
      test_fraction: share of the subset used for testing.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`.

    Raises:
      ImportError: if ``chemml`` or ``pandas`` is missing (the message gives the install step).
      ValueError: for an unknown ``target_scaling`` or a subset larger than the file.

    Example:
      >>> data = chemml_ri(num_molecules=1000)
      >>> data.train.inputs.shape, [t.shape for t in data.train.targets]
      ((800, 60), [(800, 1), (800, 1), (800, 1)])

    Reference: Afzal et al, A Physics-Infused Deep Learning Model for the Prediction of
    Refractive Indices and Large-Scale Screening of Organic Compound Space (ChemRxiv).
    """
    if target_scaling not in CHEMML_TARGET_SCALINGS:
        raise ValueError(
            f"target_scaling must be one of {CHEMML_TARGET_SCALINGS}, got {target_scaling!r}"
        )
    check_positive(num_molecules=num_molecules)
    path = os.path.join(locate_package("chemml", "chemml_ri", REAL_DATA_HINT), CHEMML_RI_FILE)
    require_module("pandas", "chemml_ri", REAL_DATA_HINT)
    return _chemml_cached(
        int(num_molecules),
        int(seed),
        target_scaling,
        float(validation_fraction),
        float(test_fraction),
        path,
    )


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "chemml_ri",
    chemml_ri,
    benchmarks=(
        BenchmarkDefinition(
            "chemml_ri",
            "chemml_ri",
            {"target_scaling": "raw"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "discriminating, loss scale: polarizability, density and refractive index of 100k "
            "molecules on raw targets (MSEs ~10^6 apart); EW Δm -106.9 ± 22.7 vs -6.3 ± 1.6 "
            "for the best of 24 random weightings (5 seeds, 6000 steps): with equal weights the "
            "density dominates and the refractive index's MAE is 4.2x its single-task one",
            grid_max_ratio=1e6,  # the three MSEs are ~10^6 apart (their variances)
        ),
        BenchmarkDefinition(
            "chemml_ri_standardised",
            "chemml_ri",
            {"target_scaling": "standardised"},
            {"trunk_sizes": (256, 128)},
            1e-3,
            "discriminating by a quarter point (control for chemml_ri): the same tasks on "
            "standardised targets; EW Δm -0.60 ± 0.12 vs -0.35 ± 0.12 for the best of 24 random "
            "weightings (5 seeds, 3200 steps), 0.25 ± 0.12 paired: just beyond 2 sd, where the "
            "raw targets' gap is 100 points",
        ),
    ),
    packages=("chemml", "pandas"),
    install=REAL_DATA_HINT,
    test_options={"num_molecules": 1000},
)
