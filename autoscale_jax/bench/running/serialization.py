"""Benchmark results as JSON: dataclasses, NamedTuples and numpy values as plain values.

``results.json`` and ``study.json`` are strict JSON (non-finite floats become ``null``); the
per-run files of :mod:`autoscale_jax.bench.running.run_store` keep ``NaN`` / ``Infinity`` so a run
reloads exactly (a diverged run's ``-inf`` selection score must stay ``-inf``).
:func:`json_digest` fingerprints a JSON value (the run files carry one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
from typing import Any

import numpy as np

__all__ = ["json_digest", "read_json", "to_jsonable", "write_json"]


def to_jsonable(value: Any, *, strict: bool = True) -> Any:
    """Dataclasses, NamedTuples, numpy values and containers as plain JSON values.

    Args:
      value: what to convert (a dataclass field named ``cache`` is left out).
      strict: non-finite floats become ``None`` (strict JSON); False keeps them.

    Returns:
      Dicts, lists, strings, numbers, booleans and ``None``.

    Example:
      >>> to_jsonable({"a": (1.0, math.nan)})
      {'a': [1.0, None]}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), strict=strict)
            for f in dataclasses.fields(value)
            if f.name != "cache"
        }
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: to_jsonable(item, strict=strict) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item, strict=strict) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item, strict=strict) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist(), strict=strict)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), strict=strict)
    if strict and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str, payload: Any, *, strict: bool = True) -> str:
    """Writes ``to_jsonable(payload)`` to ``path`` atomically (a reader never sees half a file).

    The text goes to a temporary file of its own in the same folder (a unique name per writer,
    so two processes writing the same path never share one), then ``os.replace`` puts it in
    place; on any error the temporary file is removed and the error propagates.

    Args:
      path: the file; its folder is created.
      payload: what to write.
      strict: strict JSON (non-finite floats as ``null``), else ``NaN`` / ``Infinity`` kept.

    Returns:
      ``path``.

    Raises:
      IsADirectoryError: when a folder stands at ``path`` (it is left alone).
      OSError: when the folder cannot be created or written (e.g. a full disk).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if os.path.isdir(path):
        raise IsADirectoryError(21, "a folder stands where the file should go", path)
    text = json.dumps(to_jsonable(payload, strict=strict), indent=1, allow_nan=not strict)
    handle, partial = tempfile.mkstemp(
        dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".partial"
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    return path


def json_digest(value: Any) -> str:
    """The SHA-256 of ``value``'s canonical JSON text (sorted keys, no spaces, NaN kept).

    A value read back from a file :func:`write_json` wrote (``strict=False``) has the digest
    of what was written: Python floats round-trip exactly through their JSON text.

    Example:
      >>> json_digest({"b": 1.5, "a": [math.inf]}) == json_digest({"a": [math.inf], "b": 1.5})
      True
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_json(path: str) -> Any:
    """The JSON value in ``path`` (``NaN`` / ``Infinity`` accepted)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
