"""The search's result and its failure report (see :mod:`autoscale_jax.search`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from autoscale_jax.search._checks import is_traced


class SearchResult(NamedTuple):
    """The outcome of :func:`~autoscale_jax.search.successive_halving`.

    Attributes:
      weights: [K] the survivor's weights.
      index: int32 index of the survivor among the candidates.
      params: the survivor's parameters after the last rung (no candidate axis).
      opt_state: the survivor's optimizer state after the last rung.
      rung_scores: [R, C] the score each candidate was ranked by at the end of each rung:
        ``score_fn``'s value, NaN where that value or the candidate's parameters are
        non-finite (those rank below every finite score), and NaN for candidates pruned before
        that rung.
      losses: [C, R, K] mean training losses of each candidate over each rung (NaN once pruned).
      nonfinite: [R] bool, True at a rung where no live candidate had a finite score (and
        finite parameters): the candidates kept there are the first by index, not the best.
      ok: bool scalar, ``not any(nonfinite)``: the survivor was picked by score and its
        parameters are finite. An eager search with ``ok`` False raises :class:`SearchError`;
        under ``jax.jit`` (or a compiled ``validation_search(...).lower(...).compile()``)
        check ``ok`` yourself before using the survivor.
    """

    weights: jax.Array
    index: jax.Array  # type: ignore[assignment]  # a field named like tuple.index
    params: Any
    opt_state: Any
    rung_scores: jax.Array
    losses: jax.Array
    nonfinite: jax.Array
    ok: jax.Array


class SearchError(ValueError):
    """An eager search whose survivor was not picked by score: at some rung every live
    candidate's score (or parameters) was non-finite. ``result`` holds the
    :class:`SearchResult` (``ok`` False) for inspection."""

    def __init__(self, message: str, result: SearchResult) -> None:
        super().__init__(message)
        self.result = result


def raise_if_failed(result: SearchResult, rungs: tuple[int, ...]) -> SearchResult:
    """Raises :class:`SearchError` when ``result`` is concrete and not ``ok``."""
    if is_traced(result.ok) or bool(result.ok):
        return result
    bad = [rungs[r] for r in np.flatnonzero(np.asarray(result.nonfinite)).tolist()]
    raise SearchError(
        f"The search did not pick by score: at the rung(s) ending at step(s) {bad} no live "
        "candidate had a finite validation score and finite parameters, so the candidates "
        "kept there were the first by index and the survivor (index "
        f"{int(result.index)}) may hold NaN parameters. Scores per rung: "
        f"{np.asarray(result.rung_scores).tolist()}. Fix score_fn (it must return a finite "
        "scalar) or the training that diverged (learning rate, candidate weights); this "
        "error's .result holds the SearchResult.",
        result,
    )
