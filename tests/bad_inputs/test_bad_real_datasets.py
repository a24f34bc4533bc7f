"""The real-data loaders' inputs (ChemML RI, MoleculeACE, fingerprints): each bad one raises
before any file is read or any molecule featurised, naming the argument or the install step.

One table: a call, the packages it needs to get as far as the check (empty: runs everywhere),
the error type and a message fragment.
"""

import functools
import importlib.util

import pytest

from autoscale_jax.bench import datasets
from autoscale_jax.bench.datasets import _common

P = functools.partial


def absent(package, call):
    """Runs ``call`` as if ``package`` were not installed (find_spec answers None)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == package else real(name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_common.importlib.util, "find_spec", find_spec)
        call()


CASES = [
    pytest.param(
        P(datasets.chemml_ri, target_scaling="log"),
        (),
        ValueError,
        r"target_scaling must be one of \('raw', 'centred', 'standardised'\)",
        id="chemml-unknown-scaling",
    ),
    pytest.param(
        P(datasets.chemml_ri, num_molecules=0),
        (),
        ValueError,
        "num_molecules must be a positive integer",
        id="chemml-zero-molecules",
    ),
    pytest.param(
        P(datasets.chemml_ri, num_molecules=100_001),
        ("chemml", "pandas"),
        ValueError,
        "num_molecules=100001 exceeds the 100000 ChemML RI molecules",
        id="chemml-subset-too-large",
    ),
    pytest.param(
        P(absent, "chemml", datasets.chemml_ri),
        (),
        ImportError,
        r"chemml_ri needs the chemml package: bash \.ci/install-data",
        id="chemml-not-installed",
    ),
    pytest.param(
        P(datasets.mol_code_one_hot, ["F1-F4"]),
        (),
        ValueError,
        r"Mol_Code 'F1-F4' is not 1-4 of",
        id="mol-code-unknown-block",
    ),
    pytest.param(
        P(datasets.mol_code_one_hot, ["F1-F2-F3-F5-F6"]),
        (),
        ValueError,
        r"Mol_Code 'F1-F2-F3-F5-F6' is not 1-4 of",
        id="mol-code-five-blocks",
    ),
    pytest.param(
        P(datasets.molecule_ace, split_rule="scaffold"),
        (),
        ValueError,
        r"split_rule must be one of \('labels', 'molecules'\)",
        id="ace-unknown-split-rule",
    ),
    pytest.param(
        P(datasets.molecule_ace, num_bits=0),
        (),
        ValueError,
        "num_bits must be a positive integer",
        id="ace-zero-bits",
    ),
    pytest.param(
        P(datasets.molecule_ace, validation_fraction=1.0),
        (),
        ValueError,
        r"validation_fraction must lie in \(0, 1\)",
        id="ace-validation-fraction-one",
    ),
    pytest.param(
        P(datasets.molecule_ace, targets=("CHEMBL1_Ki",)),
        ("MoleculeACE", "rdkit", "pandas"),
        ValueError,
        r"unknown MoleculeACE targets \['CHEMBL1_Ki'\]",
        id="ace-unknown-target",
    ),
    pytest.param(
        P(datasets.molecule_ace, targets=("CHEMBL2047_EC50",), validation_fraction=1e-4),
        ("MoleculeACE", "rdkit", "pandas"),
        ValueError,
        "leaves no validation or no training molecule",
        id="ace-validation-rounds-to-nothing",
    ),
    pytest.param(
        P(absent, "MoleculeACE", datasets.molecule_ace),
        (),
        ImportError,
        r"molecule_ace needs the MoleculeACE package: bash \.ci/install-data",
        id="ace-not-installed",
    ),
    pytest.param(
        P(datasets.morgan_fingerprints, ["CCO", "not a smiles"], radius=2, num_bits=64),
        ("rdkit",),
        ValueError,
        r"RDKit cannot parse SMILES 'not a smiles' \(row 1\)",
        id="fingerprint-bad-smiles",
    ),
]


@pytest.mark.parametrize("call, needs, error, message", CASES)
def test_bad_real_datasets(call, needs, error, message):
    missing = [p for p in needs if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: bash .ci/install-data")
    with pytest.raises(error, match=message):
        call()


def test_absent_helper_only_hides_the_named_package():
    # The table's "not installed" cases rely on it: other packages stay visible.
    seen = []
    absent("chemml", lambda: seen.append(_common.importlib.util.find_spec("numpy") is not None))
    assert seen == [True]
