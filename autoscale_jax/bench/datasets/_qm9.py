"""QM9-11

Eleven quantum-chemical properties of small organic molecules, from the CSV files inside the
`qm9pack` package (located, not imported; no download). Coulomb matrix: Rupp et al, *Fast and
Accurate Modeling of Molecular Atomization Energies with Machine Learning*, 2012.

- **source**: PyPI `qm9pack` 1.0.3 (104 MB wheel), `qm9pack/data/qm9_part{1,2,3}.csv`
- **licence**: MIT (the package)
- **paper**: Ramakrishnan et al, *Quantum chemistry structures and properties of 134 kilo
  molecules*, 2014
- **size**: 130,831 molecules, up to 29 atoms (H, C, N, O, F)
- **tasks**: 11 regressions in the order of Navon et al. 2022: μ, α, HOMO, LUMO, ⟨R²⟩, ZPVE, U0,
  U, H, G, c_v; U0, U, H, G as atomization energies; standardised with train mean/sd; MAE
- **inputs**: `"features"`: 29 sorted Coulomb-matrix eigenvalues + element counts (34 floats);
  `"graph"`: per atom (Z, x, y, z in Å, mask), `[29, 5]`
- **split**: a seeded subset of `num_molecules`, 80 / 10 / 10 %
- **install**: `pip install 'autoscale-jax[data]'`

Benchmarks: `qm9` (graph, 6,000 molecules, width-16 two-block net: CPU scale, not discriminating
for fixed weights), `qm9_large` (features, all 130,831 molecules, 104,665 / 13,083 / 13,083 for
training / validation / test, a 512-256 MLP: the whole dataset at CPU cost, with the accuracy of
a fixed descriptor, far from a graph net's) and `qm9_full` (graph, all 130,831 molecules,
104,665 for training as in the published setting, width-64 three-block net). Smoke of
`qm9_full` (one seed, equal weights, batch 128, 20 steps on the 2-core CPU): mean training loss
1.79 over the first 10 steps, 0.68 over the next 10; 5.9 s a step, so it is an accelerator
benchmark.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from autoscale_jax.bench.datasets._common import (
    DATA_HINT,
    BenchmarkDefinition,
    MultiTaskDataset,
    check_positive,
    column_splits,
    read_only,
    regression_tasks,
    require_module,
    split_sizes,
    standardise,
    target_extras,
)
from autoscale_jax.bench.datasets._registry import DatasetInfo

QM9_MAX_ATOMS = 29
QM9_ELEMENTS = ("H", "C", "N", "O", "F")
_ATOMIC_NUMBERS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_ANGSTROM_TO_BOHR = 1.8897261246

# (task name, qm9pack column, unit of the raw column) in the order of the MTL benchmark
# (Navon et al. 2022; Liu et al. 2023): mu, alpha, HOMO, LUMO, <R^2>, ZPVE, U0, U, H, G, c_v.
QM9_TARGETS = (
    ("mu", "Dipole_debye", "D"),
    ("alpha", "Polarizability_bohr3", "a0^3"),
    ("homo", "HOMO_au", "Ha"),
    ("lumo", "LUMO_au", "Ha"),
    ("r2", "R2_bohr2", "a0^2"),
    ("zpve", "ZPVE_au", "Ha"),
    ("u0", "InternalEnergy_0K_au", "Ha"),
    ("u", "InternalEnergy_298K_au", "Ha"),
    ("h", "Enthalphy_298K_au", "Ha"),
    ("g", "GibbsFreeEnergy_298K_au", "Ha"),
    ("cv", "Heatcapacity_Cv_cal_mol_K", "cal/(mol K)"),
)
# Free-atom reference energies (Hartree, B3LYP/6-31G(2df,p), QM9's atomref table) for
# U0, U, H, G, per element H, C, N, O, F; subtracting them gives atomization energies, the
# targets the MTL benchmark uses (following DimeNet / PyTorch Geometric targets 12-15).
_QM9_ATOM_REFERENCE = np.array(
    [
        [-0.500273, -0.498857, -0.497912, -0.510927],
        [-37.846772, -37.845355, -37.844411, -37.861317],
        [-54.583861, -54.582445, -54.581501, -54.598897],
        [-75.064579, -75.063163, -75.062219, -75.079532],
        [-99.718730, -99.717314, -99.716370, -99.733544],
    ]
)
_QM9_ENERGY_TASKS = slice(6, 10)
_QM9_REPRESENTATIONS = ("features", "graph")
_CHUNK = 8192  # molecules per Coulomb-matrix batch


def _qm9pack_data_dir() -> str:
    # Importing qm9pack pulls in pkg_resources, which recent setuptools lacks: only locate it.
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"qm9 needs qm9pack: {DATA_HINT} (or pip install qm9pack)")
    return os.path.join(next(iter(spec.submodule_search_locations)), "data")


class _QM9Table(NamedTuple):
    xyz: np.ndarray  # object [M]: JSON-like "[[x,y,z],...]" strings in Angstrom
    elements: np.ndarray  # object [M]: "['C','H',...]" strings
    counts: np.ndarray  # int64 [M, 5]: atoms of H, C, N, O, F
    targets: np.ndarray  # float64 [M, 11]: raw properties, QM9_TARGETS order
    molecule_index: np.ndarray  # int64 [M]: QM9's own molecule number


@functools.lru_cache(maxsize=1)
def _qm9_table(data_dir: str) -> _QM9Table:
    """All 130,831 molecules of qm9pack's three CSV parts (about 1 s with pandas)."""
    pandas = require_module("pandas", "qm9", DATA_HINT)
    columns = ["Index", "Stoichiometry", "Elements", "XYZ_Ang"] + [c for _, c, _ in QM9_TARGETS]
    frames = []
    for part in (1, 2, 3):
        path = os.path.join(data_dir, f"qm9_part{part}.csv")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: reinstall qm9pack ({DATA_HINT})")
        frames.append(pandas.read_csv(path, usecols=columns))
    table = pandas.concat(frames, ignore_index=True)
    counts = np.array([[int(n) for n in s.strip("[]").split(",")] for s in table["Stoichiometry"]])
    return _QM9Table(
        xyz=table["XYZ_Ang"].to_numpy(object),
        elements=table["Elements"].to_numpy(object),
        counts=counts.astype(np.int64),
        targets=table[[c for _, c, _ in QM9_TARGETS]].to_numpy(np.float64),
        molecule_index=table["Index"].to_numpy(np.int64),
    )


def _parse_molecule(xyz: str, elements: str) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers ``[A]`` and positions ``[A, 3]`` (Angstrom) of one molecule.

    The coordinates hold numbers like ``0.`` that JSON rejects but ``float`` accepts, so the
    brackets are stripped and the flat list parsed directly (faster than ``ast.literal_eval``).
    """
    positions = np.array(xyz.replace("[", "").replace("]", "").split(","), np.float64)
    symbols = elements.replace("[", "").replace("]", "").replace("'", "").replace(" ", "")
    numbers = np.array([_ATOMIC_NUMBERS[s] for s in symbols.split(",")], np.int64)
    return numbers, positions.reshape(len(numbers), 3)


def _padded_molecules(table: _QM9Table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Padded atomic numbers ``[N, 29]`` and positions ``[N, 29, 3]`` (Angstrom) of ``rows``."""
    numbers = np.zeros((len(rows), QM9_MAX_ATOMS), np.int64)
    positions = np.zeros((len(rows), QM9_MAX_ATOMS, 3), np.float64)
    for i, row in enumerate(rows):
        z, r = _parse_molecule(table.xyz[row], table.elements[row])
        numbers[i, : len(z)] = z
        positions[i, : len(z)] = r
    return numbers, positions


def coulomb_eigenvalues(numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Sorted eigenvalues of the Coulomb matrix of padded molecules.

    ``C_ii = 0.5 Z_i^2.4`` and ``C_ij = Z_i Z_j / |R_i - R_j|`` (distances in Bohr), zero for
    padding atoms (``Z = 0``); eigenvalues sorted by decreasing absolute value, so padding zeros
    come last.

    Args:
      numbers: atomic numbers ``[N, A]``, 0 for padding.
      positions: positions ``[N, A, 3]`` in Angstrom.

    Returns:
      float64 ``[N, A]``.

    Example:
      >>> h2 = coulomb_eigenvalues(np.array([[1, 1]]), np.array([[[0, 0, 0], [0, 0, 0.74]]]))
      >>> [round(float(v), 3) for v in h2[0]]
      [1.215, -0.215]

    Reference: Rupp et al, Fast and Accurate Modeling of Molecular Atomization Energies with
    Machine Learning, 2012.
    """
    z = numbers.astype(np.float64)
    bohr = positions * _ANGSTROM_TO_BOHR
    distance = np.linalg.norm(bohr[:, :, None, :] - bohr[:, None, :, :], axis=-1)
    atoms = z.shape[1]
    off_diagonal = ~np.eye(atoms, dtype=bool)
    safe_distance = np.where(off_diagonal, distance, 1.0)
    # Padding atoms have Z = 0, so their rows and columns vanish; guard 0 / 0 between pads.
    safe_distance = np.where(safe_distance > 0, safe_distance, 1.0)
    matrix = z[:, :, None] * z[:, None, :] / safe_distance
    matrix = np.where(off_diagonal, matrix, 0.5 * z[:, :, None] ** 2.4)
    eigenvalues = np.linalg.eigvalsh(matrix)
    order = np.argsort(-np.abs(eigenvalues), axis=1, kind="stable")
    return np.take_along_axis(eigenvalues, order, axis=1)


@functools.lru_cache(maxsize=4)
def _qm9_cached(
    num_molecules: int,
    seed: int,
    representation: str,
    validation_fraction: float,
    test_fraction: float,
    atomization_energies: bool,
    data_dir: str,
) -> MultiTaskDataset:
    table = _qm9_table(data_dir)
    total = len(table.targets)
    if num_molecules > total:
        raise ValueError(f"num_molecules={num_molecules} exceeds the {total} QM9 molecules")
    sizes = split_sizes(num_molecules, validation_fraction, test_fraction)
    rng = np.random.default_rng(seed)
    rows = rng.choice(total, num_molecules, replace=False)
    bounds = np.cumsum(sizes)[:-1]
    split_rows = np.split(rows, bounds)

    raw_targets = table.targets[rows].copy()
    if atomization_energies:
        raw_targets[:, _QM9_ENERGY_TASKS] -= table.counts[rows] @ _QM9_ATOM_REFERENCE
    split_targets = np.split(raw_targets, bounds)
    scaled_targets, target_mean, target_std = standardise(*split_targets)

    numbers, positions = _padded_molecules(table, rows)
    extras: dict[str, Any] = {}
    if representation == "features":
        # In chunks: one [N, 29, 29, 3] distance array over all 130k molecules is 2.6 GB.
        eigenvalues = np.concatenate(
            [
                coulomb_eigenvalues(
                    numbers[start : start + _CHUNK], positions[start : start + _CHUNK]
                )
                for start in range(0, len(rows), _CHUNK)
            ]
        )
        features = np.concatenate([eigenvalues, table.counts[rows].astype(np.float64)], 1)
        scaled_inputs, feature_mean, feature_std = standardise(*np.split(features, bounds))
        extras.update(feature_mean=read_only(feature_mean), feature_std=read_only(feature_std))
        input_text = (
            "inputs float32 [N, 34]: the 29 Coulomb-matrix eigenvalues sorted by |value| "
            "(zero-padded) then the counts of H, C, N, O, F, standardised with train mean/std"
        )
    else:
        mask = (numbers > 0).astype(np.float64)
        graph = np.concatenate([numbers[..., None], positions, mask[..., None]], axis=-1)
        scaled_inputs = tuple(g.astype(np.float32) for g in np.split(graph, bounds))
        input_text = (
            "inputs float32 [N, 29, 5]: per atom slot (atomic number Z, x, y, z in Angstrom, "
            "mask 1 for a real atom / 0 for padding), atoms in file order, zero-padded"
        )

    splits = column_splits(scaled_inputs, scaled_targets)
    tasks = regression_tasks(name for name, _, _ in QM9_TARGETS)
    units = tuple(unit for _, _, unit in QM9_TARGETS)
    energy_text = "atomization energies" if atomization_energies else "total energies"
    description = (
        f"QM9-11 from qm9pack: a seeded subset of {num_molecules} of the {total} molecules, "
        f"split {sizes[0]}/{sizes[1]}/{sizes[2]}. {input_text}. Targets: 11 tasks "
        f"({', '.join(n for n, _, _ in QM9_TARGETS)}), each float32 [N, 1], standardised with "
        f"the train split's mean/std (extras['target_mean'/'target_std'], raw units "
        f"{', '.join(units)}); U0, U, H, G are {energy_text}. Metric: MAE on the standardised "
        "scale (multiply by target_std for raw units)."
    )
    extras.update(
        **target_extras(QM9_TARGETS, target_mean, target_std),
        atomization_energies=atomization_energies,
        representation=representation,
        source_rows=tuple(read_only(r) for r in split_rows),
        molecule_index=tuple(read_only(table.molecule_index[r]) for r in split_rows),
    )
    return MultiTaskDataset("qm9", tasks, *splits, description, MappingProxyType(extras))


def qm9(
    *,
    num_molecules: int = 20_000,
    seed: int = 0,
    representation: str = "features",
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    atomization_energies: bool = True,
) -> MultiTaskDataset:
    """QM9-11: eleven quantum-chemical properties of small organic molecules.

    Reads the 130,831 molecules in ``qm9pack``'s ``data/qm9_part{1,2,3}.csv`` (the package is
    located, not imported), draws a seeded subset of ``num_molecules`` and splits it into
    train / validation / test. Tasks, in the benchmark order of Navon et al. 2022 and its
    successors, with their qm9pack columns: mu (``Dipole_debye``), alpha
    (``Polarizability_bohr3``), HOMO (``HOMO_au``), LUMO (``LUMO_au``), <R^2> (``R2_bohr2``),
    ZPVE (``ZPVE_au``), U0 (``InternalEnergy_0K_au``), U (``InternalEnergy_298K_au``),
    H (``Enthalphy_298K_au``), G (``GibbsFreeEnergy_298K_au``), c_v
    (``Heatcapacity_Cv_cal_mol_K``). With ``atomization_energies=True`` the four energies have
    the free-atom reference energies subtracted, ``E_atom = E - sum_a E_ref(Z_a)``, as in the
    benchmark. Each target is standardised, ``y' = (y - mean_train) / std_train``; the raw
    values are ``y' * extras['target_std'] + extras['target_mean']``.

    Representations:
      * ``"features"``: float32 ``[N, 34]``, the Coulomb-matrix eigenvalues (see
        :func:`coulomb_eigenvalues`, zero-padded to 29) and the counts of H, C, N, O, F,
        standardised with train statistics (``extras['feature_mean'/'feature_std']``).
      * ``"graph"``: float32 ``[N, 29, 5]``; along the last axis the atomic number Z, the
        x, y, z position in Angstrom and a mask (1 real atom, 0 padding).

    Targets: 11 arrays float32 ``[N, 1]``; metric MAE (lower is better) on the standardised
    scale.

    Args:
      num_molecules: size of the seeded subset (at most 130,831).
      seed: seeds the subset and the split.
      representation: ``"features"`` or ``"graph"``.
      validation_fraction: share of the subset used for validation.
      test_fraction: share of the subset used for testing.
      atomization_energies: subtract the atom reference energies from U0, U, H and G.

    Returns:
      A cached, read-only :class:`MultiTaskDataset`.

    Raises:
      ImportError: if ``qm9pack`` or ``pandas`` is missing.

    Example:
      >>> data = qm9(num_molecules=1000)
      >>> data.train.inputs.shape, len(data.train.targets), data.train.targets[0].shape
      ((800, 34), 11, (800, 1))

    Reference: Ramakrishnan et al, Quantum chemistry structures and properties of 134 kilo
    molecules, 2014; Navon et al, Multi-Task Learning as a Bargaining Game, 2022.
    """
    if representation not in _QM9_REPRESENTATIONS:
        raise ValueError(f"representation must be one of {_QM9_REPRESENTATIONS}")
    check_positive(num_molecules=num_molecules)
    data_dir = _qm9pack_data_dir()
    require_module("pandas", "qm9", DATA_HINT)
    return _qm9_cached(
        int(num_molecules),
        int(seed),
        representation,
        float(validation_fraction),
        float(test_fraction),
        bool(atomization_energies),
        data_dir,
    )


# This dataset's registry entry: its loader, the benchmarks defined on this data
# (autoscale_jax.bench.running.benchmark.load_benchmark), what it needs and its test size.
DATASET = DatasetInfo(
    "qm9",
    qm9,
    benchmarks=(
        BenchmarkDefinition(
            "qm9",
            "qm9",
            {"representation": "graph", "num_molecules": 6000},
            {"width": 16, "num_interactions": 2},
            1e-3,
            "not discriminating for fixed weights: 11 regression targets, small message-passing "
            "net on a 6k-molecule subset (far from the published budget: hundreds of epochs on "
            "110k molecules); a 20-point LS grid picked equal weights, while Nash-MTL beat EW by "
            "13 Δm points (600 steps, 3 seeds)",
        ),
        BenchmarkDefinition(
            "qm9_large",
            "qm9",
            {"representation": "features", "num_molecules": 130_831},
            {"trunk_sizes": (512, 256)},
            1e-3,
            "not discriminating for fixed weights, where adaptive ones gain: QM9-11 on all "
            "130,831 molecules (104,665 train), Coulomb-matrix eigenvalues and element counts "
            "into a 512-256 MLP; EW Δm -10.38 ± 1.35 vs -9.73 ± 2.30 for the best of 24 random "
            "weightings, Nash-MTL -1.03 ± 0.70 (5 seeds, 6000 steps)",
        ),
        BenchmarkDefinition(
            "qm9_full",
            "qm9",
            {"representation": "graph", "num_molecules": 130_831},
            {"width": 64, "num_interactions": 3},
            1e-3,
            "QM9-11 at the published data scale: all 130,831 molecules (104,665 train), a "
            "width-64 three-block message-passing net; an accelerator job (an EW step took 5.9 s "
            "at batch 128 on a shared 2-core CPU)",
        ),
    ),
    packages=("qm9pack", "pandas"),
    install=DATA_HINT,
    test_options={"num_molecules": 300},
)
