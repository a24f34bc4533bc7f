"""Input checks of the search (see :mod:`autoscale_jax.search`): clear errors at the API
boundary, before the first step. Shapes are checked always (at trace time under ``jax.jit``);
values only where they are concrete."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax.checks import check_positive_int


def is_traced(value: Any) -> bool:
    """True when any leaf of ``value`` is a tracer (its values are unknown until run time)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def nan_unless(valid: jax.Array, values: jax.Array) -> jax.Array:
    """``values`` where ``valid`` holds, NaN otherwise: bad traced inputs give visible NaNs."""
    return jnp.where(valid, values, jnp.nan)


def check_counts(num_candidates: Any, num_rungs: Any) -> tuple[int, int]:
    return check_positive_int("num_candidates", num_candidates), check_positive_int(
        "num_rungs", num_rungs
    )


def check_keep(keep: Any) -> float:
    """``keep``, the share of candidates kept at each rung: a real number in (0, 1]."""
    if isinstance(keep, str | bool | np.bool_ | jax.core.Tracer) or np.ndim(keep) != 0:
        raise TypeError(
            f"keep must be a number in (0, 1] (the share of candidates kept at each rung, "
            f"e.g. 0.5), got {keep!r}."
        )
    try:
        value = float(keep)
    except (TypeError, ValueError) as err:
        raise TypeError(f"keep must be a number in (0, 1], got {keep!r}.") from err
    if not 0 < value <= 1:
        raise ValueError(
            f"keep must lie in (0, 1] (the share of candidates kept at each rung, e.g. 0.5; "
            f"1 keeps all until the last rung), got {keep}."
        )
    return value


def check_rungs(rungs: Any) -> tuple[int, ...]:
    """``rungs``: a non-empty sequence of strictly increasing positive integer step counts."""
    example = "e.g. rungs=(10, 30) scores after 10 and after 30 steps from the start"
    if isinstance(rungs, str) or not isinstance(rungs, Sequence | np.ndarray | jax.Array):
        raise TypeError(f"rungs must be a sequence of step counts ({example}), got {rungs!r}.")
    values = []
    for position, rung in enumerate(rungs):
        if isinstance(rung, bool | np.bool_):
            rung = None  # a bool is no step count
        try:
            values.append(operator.index(rung))
        except TypeError as err:
            raise TypeError(
                f"rungs must hold integer step counts, got {rung!r} at position {position} "
                f"of {rungs!r} (no rounding is done: give ints, {example})."
            ) from err
    if not values:
        raise ValueError(f"rungs is empty: give at least one step count ({example}).")
    if values[0] < 1 or any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(
            f"rungs must be increasing positive step counts, counted from the start "
            f"({example}; not rung lengths), got {tuple(values)}."
        )
    return tuple(values)


_NO_SCORE = object()


def check_functions(loss_fn: Any, optimizer: Any, score_fn: Any = _NO_SCORE) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable: loss_fn(params, batch) -> [K], got {loss_fn!r}")
    if score_fn is not _NO_SCORE and not callable(score_fn):
        raise TypeError(f"score_fn must be callable: score_fn(params) -> scalar, got {score_fn}")
    methods = (getattr(optimizer, name, None) for name in ("init", "update"))
    if not all(callable(method) for method in methods):
        raise TypeError(
            "optimizer must be an optax transformation with init and update, e.g. "
            f"optax.adam(1e-3) (not the factory optax.adam), got {optimizer!r}."
        )


def check_candidate_weights(weights: Any, name: str = "candidates") -> jax.Array:
    """[C, K] float32 weights; concrete values must be finite, >= 0, a positive entry per row."""
    weights = jnp.asarray(weights)
    if jnp.issubdtype(weights.dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real weights, got dtype {weights.dtype}.")
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(
            f"{name} must be a matrix [num_candidates, K] with one weight vector per row and "
            f"at least one of each, got shape {weights.shape} (for a single vector w, pass "
            "w[None])."
        )
    weights = weights.astype(jnp.float32)
    if not is_traced(weights):
        values = np.asarray(weights)
        bad = ~np.all(np.isfinite(values) & (values >= 0), axis=1) | ~np.any(values > 0, axis=1)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name} must be finite and >= 0 with a positive entry in every row; row {row} "
                f"is {values[row].tolist()} ({int(np.sum(bad))} bad row(s) of "
                f"{values.shape[0]}). Drop or fix those rows."
            )
    return weights


def _leading_sizes(tree: Any, name: str) -> list[int]:
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(
            f"{name} holds no arrays: give a pytree whose leaves have a leading step axis "
            "(e.g. jax.tree.map(lambda *b: jnp.stack(b), *batch_list))."
        )
    sizes = []
    for leaf in leaves:
        if not jnp.shape(leaf):
            raise ValueError(f"every leaf of {name} needs a leading step axis, got a scalar.")
        sizes.append(jnp.shape(leaf)[0])
    return sizes


def check_batches(batches: Any, needed: int, name: str = "batches") -> int:
    """The shared leading step axis ``T`` of ``batches``; raises unless ``T >= needed``."""
    sizes = _leading_sizes(batches, name)
    if len(set(sizes)) > 1:
        raise ValueError(
            f"every leaf of {name} needs the same leading step axis, got {sorted(set(sizes))}."
        )
    if sizes[0] < needed:
        raise ValueError(
            f"{name} hold {sizes[0]} steps (leading axis), the last rung needs {needed}: give "
            f"at least {needed} steps or lower the rungs."
            if needed > 1
            else f"{name} hold 0 steps (leading axis): give at least one step."
        )
    return sizes[0]


def check_candidate_axis(tree: Any, count: int, name: str) -> None:
    """Raises unless every leaf of ``tree`` has the leading candidate axis ``count``."""
    shapes = [jnp.shape(leaf) for leaf in jax.tree.leaves(tree)]
    if any(not shape or shape[0] != count for shape in shapes):
        raise ValueError(
            f"every leaf of {name} needs a leading candidate axis of size {count} (one copy "
            f"per row of weights), got leaf shapes {shapes[:4]}{' ...' if len(shapes) > 4 else ''}"
            f" (stack copies with jax.tree.map(lambda x: jnp.stack([x] * {count}), tree))."
        )


def check_opt_state(optimizer: Any, params: Any, opt_state: Any, prefix: tuple = ()) -> None:
    """Raises unless ``opt_state`` has the structure and shapes of ``optimizer.init(params)``
    (with leading axes ``prefix``)."""
    expected = jax.eval_shape(optimizer.init, params)
    got_leaves, got_tree = jax.tree.flatten(opt_state)
    want_leaves, want_tree = jax.tree.flatten(expected)
    got = [tuple(jnp.shape(x)) for x in got_leaves]
    want = [(*prefix, *x.shape) for x in want_leaves]
    if str(got_tree) != str(want_tree) or got != want:
        where = (
            "with a leading candidate axis (e.g. jax.vmap(optimizer.init)(params))"
            if prefix
            else "without a candidate axis (e.g. optimizer.init(params))"
        )
        raise ValueError(
            f"opt_state does not match optimizer.init(params): expected leaf shapes {want[:4]}, "
            f"got {got[:4]}. Pass the state of this optimizer for these parameters, {where}."
        )


def check_losses(losses: Any, num_tasks: int) -> jax.Array:
    """``loss_fn``'s output at trace time: a floating [K] vector, K the candidates' width."""
    losses = jnp.asarray(losses)
    if losses.shape != (num_tasks,) or not jnp.issubdtype(losses.dtype, jnp.floating):
        raise ValueError(
            f"loss_fn(params, batch) must return the K = {num_tasks} task losses as a float "
            f"vector [{num_tasks}] (one per column of the candidate weights), got shape "
            f"{losses.shape} and dtype {losses.dtype}."
        )
    return losses


def check_score(score_fn: Callable[[Any], Any], params: Any) -> None:
    """Traces ``score_fn`` once on the starting parameters: it must return a real scalar."""
    out = jax.eval_shape(score_fn, params)
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or dtype is None or jnp.issubdtype(dtype, jnp.complexfloating):
        raise ValueError(
            "score_fn(params) must return one real scalar, the validation score (higher is "
            f"better), got {out!r}."
        )


def check_params(params: Any, name: str = "params") -> None:
    """Parameters to train: floating leaves, finite where concrete."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError(f"{name} holds no arrays: there is nothing to train.")
    for leaf in leaves:
        dtype = jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"every leaf of {name} must be a float array (gradients exist only for those), "
                f"got dtype {dtype}."
            )
    if not is_traced(params) and not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        raise ValueError(f"{name} hold NaN or inf values: start the search from finite parameters.")
