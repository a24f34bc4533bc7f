"""Benchmark results as JSON: dataclasses, NamedTuples and numpy values as plain values.

``results.json`` and ``study.json`` are strict JSON (non-finite floats become ``null``); the
per-run files of :mod:`autoscale_jax.bench.run_store` keep ``NaN`` / ``Infinity`` so a run
reloads exactly (a diverged run's ``-inf`` selection score must stay ``-inf``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import numpy as np

__all__ = ["read_json", "to_jsonable", "write_json"]


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

    Args:
      path: the file; its folder is created.
      payload: what to write.
      strict: strict JSON (non-finite floats as ``null``), else ``NaN`` / ``Infinity`` kept.

    Returns:
      ``path``.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(to_jsonable(payload, strict=strict), handle, indent=1, allow_nan=not strict)
    os.replace(partial, path)
    return path


def read_json(path: str) -> Any:
    """The JSON value in ``path`` (``NaN`` / ``Infinity`` accepted)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
