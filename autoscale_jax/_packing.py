"""Pytrees of small arrays stored as one flat array per dtype.

Why: each array a jitted step takes and returns costs dispatch time (about a microsecond on
CPU, next to a few milliseconds of step). AutoScale's phase-1 records are sixteen small arrays
that phase 2 only passes through; packed they are two.

Example:
  >>> import jax.numpy as jnp
  >>> tree = {"counts": jnp.arange(3), "sums": jnp.ones((2, 2)), "total": jnp.zeros(())}
  >>> packed = pack(tree)
  >>> [a.shape for a in packed]            # float32 leaves first, then int32
  [(5,), (3,)]
  >>> unpack(packed, tree)["sums"].shape
  (2, 2)
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp


def _dtypes(leaves: list) -> list:
    """The leaves' distinct dtypes in a fixed order (by name)."""
    return sorted({jnp.dtype(leaf.dtype) for leaf in leaves}, key=str)


def pack(tree: Any) -> tuple[jax.Array, ...]:
    """The leaves of ``tree``, raveled and concatenated: one 1-D array per dtype."""
    leaves = jax.tree.leaves(tree)
    return tuple(
        jnp.concatenate([jnp.ravel(leaf) for leaf in leaves if leaf.dtype == dtype])
        for dtype in _dtypes(leaves)
    )


def check_sizes(packed: tuple[jax.Array, ...], like: Any, what: str = "packed records") -> None:
    """Raises unless ``packed`` has the arrays, dtypes and sizes :func:`pack` gives ``like``.

    Sizes are static, so this holds under ``jit`` too: a state saved by another version of the
    library (another record layout) or for another task count fails here, not deep in a slice.
    """
    leaves = jax.tree.leaves(like)
    dtypes = _dtypes(leaves)
    if len(packed) != len(dtypes):
        raise ValueError(f"expected {len(dtypes)} packed arrays, got {len(packed)}.")
    for array, dtype in zip(packed, dtypes, strict=True):
        size = sum(math.prod(leaf.shape) for leaf in leaves if jnp.dtype(leaf.dtype) == dtype)
        if jnp.shape(array) != (size,) or jnp.dtype(array.dtype) != dtype:
            raise ValueError(
                f"The {what} holds a {jnp.dtype(array.dtype)} array of shape "
                f"{jnp.shape(array)} where this version expects {dtype} of shape ({size},): it "
                "was saved by another version of autoscale_jax or for another configuration. "
                "Start from tx.init(params)."
            )


def unpack(packed: tuple[jax.Array, ...], like: Any) -> Any:
    """The inverse of :func:`pack`: ``like`` (arrays or ``jax.ShapeDtypeStruct``) gives the
    tree's structure, shapes and dtypes (checked with :func:`check_sizes`)."""
    leaves, treedef = jax.tree.flatten(like)
    dtypes = _dtypes(leaves)
    check_sizes(packed, like)
    offsets = [0] * len(dtypes)
    out = []
    for leaf in leaves:
        group = dtypes.index(jnp.dtype(leaf.dtype))
        start, size = offsets[group], math.prod(leaf.shape)
        out.append(packed[group][start : start + size].reshape(leaf.shape))
        offsets[group] += size
    return jax.tree.unflatten(treedef, out)
