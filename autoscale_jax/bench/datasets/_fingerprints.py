"""Morgan (ECFP) bit fingerprints from SMILES with RDKit, computed once and cached on disk.

Reference: Rogers & Hahn, Extended-Connectivity Fingerprints, 2010.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence

import numpy as np

from autoscale_jax.bench.datasets._common import (
    REAL_DATA_HINT,
    cache_dir,
    package_version,
    require_module,
)


def morgan_fingerprints(smiles: Sequence[str], *, radius: int, num_bits: int) -> np.ndarray:
    """Morgan bit fingerprints (ECFP of diameter ``2 radius``) of SMILES strings.

    Uses RDKit's ``rdFingerprintGenerator.GetMorganGenerator(radius, fpSize=num_bits)``, whose
    bits equal the older ``GetMorganFingerprintAsBitVect(mol, radius, nBits)`` (MoleculeACE's
    featuriser).

    Args:
      smiles: molecules as SMILES.
      radius: Morgan radius (2 gives ECFP4).
      num_bits: fingerprint length.

    Returns:
      uint8 ``[N, num_bits]`` in {0, 1}.

    Raises:
      ImportError: without RDKit.
      ValueError: naming the first SMILES that RDKit cannot parse.

    Example:
      >>> bits = morgan_fingerprints(["CCO", "c1ccccc1"], radius=2, num_bits=256)
      >>> bits.shape, bits.dtype, [int(n) for n in bits.sum(axis=1)]
      ((2, 256), dtype('uint8'), [6, 3])
    """
    chem = require_module("rdkit.Chem", "molecule_ace", REAL_DATA_HINT)
    generators = require_module("rdkit.Chem.rdFingerprintGenerator", "molecule_ace", REAL_DATA_HINT)
    generator = generators.GetMorganGenerator(radius=int(radius), fpSize=int(num_bits))
    bits = np.zeros((len(smiles), int(num_bits)), np.uint8)
    for row, text in enumerate(smiles):
        molecule = chem.MolFromSmiles(text)
        if molecule is None:
            raise ValueError(f"RDKit cannot parse SMILES {text!r} (row {row})")
        bits[row] = generator.GetFingerprintAsNumPy(molecule)
    return bits


def fingerprint_cache_path(
    smiles: Sequence[str], *, radius: int, num_bits: int, source: str, directory: str | None = None
) -> str:
    """The cache file of these fingerprints, keyed by everything that determines them.

    The key hashes the source (e.g. ``"MoleculeACE==3.0.0"``), the RDKit version, the radius,
    the length and the SMILES themselves, so a new package version or featuriser setting never
    reads a stale file.

    Args:
      smiles: the molecules, in row order.
      radius: Morgan radius.
      num_bits: fingerprint length.
      source: the data's package and version.
      directory: the cache folder (default :func:`_common.cache_dir` / ``fingerprints``).

    Returns:
      A ``.npz`` path (which need not exist yet).
    """
    digest = hashlib.sha256()
    header = f"{source};rdkit={package_version('rdkit')};morgan;r={radius};bits={num_bits}\n"
    digest.update(header.encode())
    digest.update("\n".join(smiles).encode())
    folder = directory or os.path.join(cache_dir(), "fingerprints")
    return os.path.join(folder, f"morgan_r{radius}_b{num_bits}_{digest.hexdigest()[:20]}.npz")


def cached_morgan_fingerprints(
    smiles: Sequence[str], *, radius: int, num_bits: int, source: str, directory: str | None = None
) -> tuple[np.ndarray, str, bool]:
    """:func:`morgan_fingerprints`, read from the disk cache when present, else computed and
    written there (bit-packed, atomically).

    A cache folder that cannot be written is not an error: the fingerprints are returned and a
    ``RuntimeWarning`` says they will be recomputed next time.

    Args:
      smiles, radius, num_bits: as in :func:`morgan_fingerprints`.
      source: the data's package and version (part of the cache key).
      directory: the cache folder (default under :func:`_common.cache_dir`).

    Returns:
      ``(uint8 [N, num_bits] fingerprints, cache path, whether they came from the cache)``.
    """
    path = fingerprint_cache_path(
        smiles, radius=radius, num_bits=num_bits, source=source, directory=directory
    )
    if os.path.isfile(path):
        with np.load(path) as stored:
            bits = np.unpackbits(stored["packed"], axis=1, count=num_bits)
        if bits.shape == (len(smiles), num_bits):
            return bits, path, True
    bits = morgan_fingerprints(smiles, radius=radius, num_bits=num_bits)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        folder = os.path.dirname(path)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npz", delete=False) as f:
            np.savez_compressed(f, packed=np.packbits(bits, axis=1))
        os.chmod(f.name, 0o644)  # temporary files are private; a cache is readable
        os.replace(f.name, path)
    except OSError as err:
        warnings.warn(
            f"could not cache fingerprints at {path} ({err}); set AUTOSCALE_JAX_CACHE to a "
            "writable folder to avoid recomputing them",
            RuntimeWarning,
            stacklevel=2,
        )
    return bits, path, False
