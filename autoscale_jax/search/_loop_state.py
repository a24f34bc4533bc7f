"""The streamed search's state and its compiled pieces (see :mod:`autoscale_jax.search.loop`).

The search is a schedule of *segments*: phase 1 (AutoScale), then each rung of each stage. A
segment is consumed in chunks of ``chunk_size`` steps; each chunk is one compiled program, a
``lax.scan`` over a chunk of stacked batches (vmapped over the live candidates, or
``lax.map``-ped over them one after another). The last chunk of a segment is padded with
repeats of its last batch whose steps are skipped (``lax.cond`` on an unbatched flag: no update,
no loss), so every chunk of a segment has one shape and the program compiles once per live
count. Between chunks the state is a pytree of arrays (:class:`SearchState`): it can be
checkpointed and the search resumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from autoscale_jax.search.halving import _broadcast as broadcast
from autoscale_jax.search.halving import _finite_tree as finite_tree
from autoscale_jax.search.halving import _take as take
from autoscale_jax.search.halving import halving_counts
from autoscale_jax.train import TrainState

__all__ = ["SearchState", "Segment"]


class SearchState(NamedTuple):
    """The search between two chunks: a pytree of arrays (checkpoint it with orbax).

    Attributes:
      step: int32, steps consumed so far (every candidate's step counts once).
      params: the live candidates' parameters, leading axis N (N = 1 in phase 1 and at the
        end; padded to a multiple of the device count with copies of row 0).
      opt_state: the live candidates' optimizer states, leading axis N.
      weighting: AutoScale's state (phase 1's; kept unchanged after it).
      weights: [N, K] float32, the live candidates' weights (phase 1: AutoScale's current ones).
      ids: [N] int32, each live row's candidate index in its stage (-1: a padding row).
      loss_sum: [N, K] float32, each live candidate's training losses summed over the rung.
      phase_one_weights: [K] float32, AutoScale's weights at the end of phase 1 (NaN before).
      candidates: per stage, [C_s, K] float32 candidate weights (NaN until the stage starts).
      rung_scores: per stage, [R_s, C_s] float32 scores (NaN: not scored, non-finite, pruned).
      rung_losses: per stage, [C_s, R_s, K] float32 mean training losses over each rung.
      nonfinite: per stage, [R_s] bool: no live candidate was finite at that rung.
      survivors: [S] int32, each stage's survivor index (-1 until the stage ends).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    weighting: Any
    weights: jax.Array
    ids: jax.Array
    loss_sum: jax.Array
    phase_one_weights: jax.Array
    candidates: tuple
    rung_scores: tuple
    rung_losses: tuple
    nonfinite: tuple
    survivors: jax.Array


CANDIDATE_FIELDS = ("params", "opt_state", "weights", "ids", "loss_sum")


class Segment(NamedTuple):
    """Steps ``[start, end)`` of phase 1 (``stage = -1``) or of rung ``rung`` of ``stage``
    with ``live`` real candidates (``rows`` with padding)."""

    start: int
    end: int
    stage: int
    rung: int
    live: int
    rows: int
    last: bool


def schedule(
    stages: Sequence[Any], num_tasks: int, estimation_steps: int, rows_for: Callable[[int], int]
) -> list[Segment]:
    """Phase 1's segment, then one per rung of each stage (live counts by successive halving;
    ``rows_for(n)``: the rows of ``n`` live candidates with padding)."""
    segments, start = [Segment(0, estimation_steps, -1, 0, 1, 1, True)], estimation_steps
    for s, stage in enumerate(stages):
        counts = halving_counts(stage.num_candidates(num_tasks), len(stage.rungs), stage.keep)
        for r, (a, b) in enumerate(itertools.pairwise((0, *stage.rungs))):
            last = r == len(stage.rungs) - 1
            segments.append(
                Segment(start + a, start + b, s, r, counts[r], rows_for(counts[r]), last)
            )
        start += stage.rungs[-1]
    return segments


def describe(segment: Segment, stages: Sequence[Any]) -> str:
    """The progress text of a segment."""
    if segment.stage < 0:
        return "phase 1 (AutoScale)"
    rungs = len(stages[segment.stage].rungs)
    return (
        f"stage {segment.stage + 1}/{len(stages)} rung {segment.rung + 1}/{rungs}: "
        f"{segment.live} candidates"
    )


def pad_rows(tree: Any, rows: int) -> Any:
    """Appends copies of row 0 until the leading axis is ``rows``."""

    def pad(x: jax.Array) -> jax.Array:
        extra = rows - x.shape[0]
        if extra <= 0:
            return x
        return jnp.concatenate([x, jnp.broadcast_to(x[:1], (extra, *x.shape[1:]))])

    return jax.tree.map(pad, tree)


def skip_unless(valid: jax.Array, update: Callable[[Any], Any], carry: Any) -> Any:
    """``update(carry)`` on a real step, ``carry`` on a padding step (a real ``lax.cond``: the
    flag is shared by every candidate, so it stays unbatched under ``jax.vmap``)."""
    return jax.lax.cond(valid, update, lambda c: c, carry)


def phase_one_chunk(
    train_step: Callable, weights_of: Callable, record: Callable | None = None
) -> Callable:
    """``chunk(state, batches, valid) -> state``: AutoScale's phase-1 steps (the train step of
    :func:`autoscale_jax.multitask_train_step`, which restarts the moments at the switch).

    With ``record``, ``chunk`` returns ``(state, records)``: ``record(train_state, losses)``
    after every step, stacked over the chunk (a padding step repeats the previous record)."""

    def chunk(state: SearchState, batches: Any, valid: jax.Array) -> Any:
        def body(carry: tuple, xs: tuple) -> tuple:
            batch, ok = xs

            def update(c: tuple) -> tuple:
                params, train_state, losses = train_step(c[0], c[1], batch)
                return params, train_state, jnp.asarray(losses).astype(c[2].dtype)

            carry = skip_unless(ok, update, carry)
            return carry, None if record is None else record(carry[1], carry[2])

        train_state = TrainState(state.weighting, take(state.opt_state, 0))
        start = (take(state.params, 0), train_state, state.loss_sum[0])
        records: Any
        (params, train_state, _), records = jax.lax.scan(body, start, (batches, valid))
        state = state._replace(
            params=broadcast(params, 1),
            opt_state=broadcast(train_state.optimizer, 1),
            weighting=train_state.weighting,
            weights=weights_of(train_state.weighting)[None].astype(jnp.float32),
        )
        return state if record is None else (state, records)

    return chunk


def initial_state(
    train_state: TrainState, params: Any, weights: jax.Array, stages: Sequence[Any], k: int
) -> SearchState:
    """The state at step 0: phase 1 from ``train_state`` (AutoScale's ``weights``), every
    stage's tables NaN."""
    nan = jnp.float32(jnp.nan)
    counts = [st.num_candidates(k) for st in stages]
    return SearchState(
        step=jnp.asarray(0, jnp.int32),
        params=broadcast(params, 1),
        opt_state=broadcast(train_state.optimizer, 1),
        weighting=train_state.weighting,
        weights=weights[None].astype(jnp.float32),
        ids=jnp.zeros((1,), jnp.int32),
        loss_sum=jnp.zeros((1, k), jnp.float32),
        phase_one_weights=jnp.full((k,), nan),
        candidates=tuple(jnp.full((c, k), nan) for c in counts),
        rung_scores=tuple(
            jnp.full((len(st.rungs), c), nan) for st, c in zip(stages, counts, strict=True)
        ),
        rung_losses=tuple(
            jnp.full((c, len(st.rungs), k), nan) for st, c in zip(stages, counts, strict=True)
        ),
        nonfinite=tuple(jnp.zeros((len(st.rungs),), bool) for st in stages),
        survivors=jnp.full((len(stages),), -1, jnp.int32),
    )


def start_stage(state: SearchState, s: int, candidates: jax.Array, rows: int) -> SearchState:
    """Stage ``s`` from the pick so far (row 0): ``candidates`` [C, K] padded to ``rows``."""
    count, k = candidates.shape
    row_ids = jnp.arange(rows, dtype=jnp.int32)
    return state._replace(
        params=broadcast(take(state.params, 0), rows),
        opt_state=broadcast(take(state.opt_state, 0), rows),
        weights=pad_rows(candidates, rows),
        ids=jnp.where(row_ids < count, row_ids, -1),
        loss_sum=jnp.zeros((rows, k), jnp.float32),
        candidates=(*state.candidates[:s], candidates, *state.candidates[s + 1 :]),
    )


def scalarized_loss(loss_fn: Callable, task_counts: bool) -> Callable:
    """``(params, weights, batch) -> (Σ_k w_k L_k, losses)``; with ``task_counts`` an absent
    task (count 0) gets weight 0 and its placeholder loss never reaches the sum."""

    def scalarized(params: Any, weights: jax.Array, batch: Any) -> tuple:
        out = loss_fn(params, batch)
        if not task_counts:
            losses = jnp.asarray(out)
            return jnp.dot(weights.astype(losses.dtype), losses), losses
        losses, counts = out
        present = jnp.asarray(counts) > 0
        losses = jnp.where(present, losses, 0)
        used = jnp.where(present, weights, 0).astype(losses.dtype)
        return jnp.dot(used, losses), losses

    return scalarized


def candidate_chunk(
    loss_fn: Callable, optimizer: optax.GradientTransformation, task_counts: bool, sequential: bool
) -> Callable:
    """``chunk(state, batches, valid) -> state``: every live candidate trains the chunk's steps
    with its fixed weights, ``θ ← θ - opt(∇ Σ_k w_k L_k(θ))``, on the same batches."""
    grad_fn = jax.grad(scalarized_loss(loss_fn, task_counts), has_aux=True)

    def one(*arguments: Any) -> tuple:
        weights, params, opt_state, loss_sum, batches, valid = arguments

        def body(carry: tuple, xs: tuple) -> tuple:
            batch, ok = xs

            def update(c: tuple) -> tuple:
                grads, losses = grad_fn(c[0], weights, batch)
                updates, new_state = optimizer.update(grads, c[1], c[0])
                return optax.apply_updates(c[0], updates), new_state, c[2] + losses

            return skip_unless(ok, update, carry), None

        out, _ = jax.lax.scan(body, (params, opt_state, loss_sum), (batches, valid))
        return out

    def chunk(state: SearchState, batches: Any, valid: jax.Array) -> SearchState:
        live = (state.weights, state.params, state.opt_state, state.loss_sum)
        if sequential:
            params, opt_state, loss_sum = jax.lax.map(lambda a: one(*a, batches, valid), live)
        else:
            params, opt_state, loss_sum = jax.vmap(one, in_axes=(0, 0, 0, 0, None, None))(
                *live, batches, valid
            )
        return state._replace(params=params, opt_state=opt_state, loss_sum=loss_sum)

    return chunk


def end_rung(score_fn: Callable, segment: Segment, length: int, keep: int, rows: int) -> Callable:
    """``end(state) -> state``: scores the live candidates, records the rung, keeps the best
    ``keep`` (ranked as :func:`~autoscale_jax.search.successive_halving` ranks: non-finite
    last, ties to the lower row) and pads them to ``rows``."""
    s, r = segment.stage, segment.rung

    def end(state: SearchState) -> SearchState:
        count = state.candidates[s].shape[0]
        real = state.ids >= 0
        scores = jax.vmap(score_fn)(state.params).astype(jnp.float32)
        finite = jnp.isfinite(scores) & jax.vmap(finite_tree)(state.params) & real
        scores = jnp.where(finite, scores, jnp.nan)
        slot = jnp.where(real, state.ids, count)  # padding rows write nowhere
        mean = state.loss_sum / length

        def put(table: tuple, value: jax.Array) -> tuple:
            return (*table[:s], value, *table[s + 1 :])

        _, best = jax.lax.top_k(jnp.where(finite, scores, -jnp.inf), keep)
        kept = take(tuple(getattr(state, name) for name in CANDIDATE_FIELDS), best)
        kept = (*pad_rows(kept[:-1], rows), jnp.zeros((rows, mean.shape[1]), jnp.float32))
        new = dict(zip(CANDIDATE_FIELDS, kept, strict=True))
        ids = new["ids"]
        new["ids"] = jnp.where(jnp.arange(rows) < keep, ids, -1)
        survivors = state.survivors
        if segment.last:
            survivors = survivors.at[s].set(state.ids[best[0]])
        scored = state.rung_scores[s].at[r, slot].set(scores, mode="drop")
        losses = state.rung_losses[s].at[slot, r].set(mean, mode="drop")
        return state._replace(
            rung_scores=put(state.rung_scores, scored),
            rung_losses=put(state.rung_losses, losses),
            nonfinite=put(state.nonfinite, state.nonfinite[s].at[r].set(~jnp.any(finite))),
            survivors=survivors,
            **new,
        )

    return end
