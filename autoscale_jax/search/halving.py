"""Successive halving over weightings trained side by side as one program (see
:mod:`autoscale_jax.search`): the candidates' training, the rung schedule, its cost."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "SearchResult",
    "halving_counts",
    "search_cost",
    "successive_halving",
    "train_candidates",
    "validation_search",
]

LossFn = Callable[[Any, Any], jax.Array]
ScoreFn = Callable[[Any], jax.Array]


def halving_counts(num_candidates: int, num_rungs: int, keep: float = 0.5) -> tuple[int, ...]:
    """How many candidates train in each rung of successive halving.

    ``n_0 = C`` and ``n_{r+1} = max(1, ceil(keep · n_r))``; after the last rung one survivor is
    left whatever the count.

    Args:
      num_candidates: C.
      num_rungs: R.
      keep: the share kept at each rung, in (0, 1].

    Returns:
      ``(n_0, ..., n_{R-1})``.

    Example:
      >>> halving_counts(8, 3)
      (8, 4, 2)
    """
    if num_candidates < 1 or num_rungs < 1:
        raise ValueError("num_candidates and num_rungs must be positive")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    counts = [int(num_candidates)]
    for _ in range(num_rungs - 1):
        counts.append(max(1, math.ceil(keep * counts[-1] - 1e-9)))
    return tuple(counts)


def _check_rungs(rungs: Sequence[int]) -> tuple[int, ...]:
    rungs = tuple(int(r) for r in rungs)
    if not rungs or rungs[0] < 1 or any(b <= a for a, b in itertools.pairwise(rungs)):
        raise ValueError(f"rungs must be increasing positive step counts, got {rungs}")
    return rungs


def search_cost(num_candidates: int, rungs: Sequence[int], keep: float = 0.5) -> int:
    """Gradient evaluations of a search: ``Σ_r n_r (rungs[r] - rungs[r-1])``.

    Each candidate step is one backward pass of ``Σ_k w_k L_k``. ``rungs[-1]`` of them are the
    survivor's own steps, which a single run would take anyway.

    Example:
      >>> search_cost(4, (160, 360))        # 4 x 160 + 2 x 200
      1040
    """
    rungs = _check_rungs(rungs)
    counts = halving_counts(num_candidates, len(rungs), keep)
    lengths = [b - a for a, b in itertools.pairwise((0, *rungs))]
    return int(sum(n * ell for n, ell in zip(counts, lengths, strict=True)))


def _linear_scalarization_steps(
    loss_fn: LossFn, optimizer: optax.GradientTransformation
) -> Callable[..., tuple]:
    """``run(weights, params, opt_state, batches) -> (params, opt_state, losses [T, K])``."""

    def scalarized(params: Any, weights: jax.Array, batch: Any) -> tuple[jax.Array, jax.Array]:
        losses = loss_fn(params, batch)
        return jnp.dot(weights.astype(losses.dtype), losses), losses

    grad_fn = jax.grad(scalarized, has_aux=True)

    def run(weights: jax.Array, params: Any, opt_state: Any, batches: Any) -> tuple:
        def step(carry: tuple, batch: Any) -> tuple:
            params, opt_state = carry
            grads, losses = grad_fn(params, weights, batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), losses

        losses: Any
        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, losses

    return run


def train_candidates(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    weights: jax.Array,
    params: Any,
    opt_state: Any,
    batches: Any,
) -> tuple[Any, Any, jax.Array]:
    """Trains ``C`` candidates side by side with fixed weights, one program.

    Candidate ``c`` runs ``T`` steps of ``θ_c ← θ_c - opt(∇ Σ_k w_{c,k} L_k(θ_c))`` on the same
    batches as every other candidate: ``jax.vmap`` over (weights, params, opt_state) of a
    ``lax.scan`` over the batches. Pure: call it inside ``jax.jit``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses.
      optimizer: an optax transformation (e.g. ``optax.adam(1e-3)``).
      weights: [C, K] one weight vector per candidate.
      params: parameters with a leading candidate axis C.
      opt_state: ``optimizer`` states with a leading candidate axis C.
      batches: a pytree whose leaves have a leading step axis T (shared by all candidates).

    Returns:
      ``(params, opt_state, losses)``: the trained copies (leading axis C) and the training
      losses ``[C, T, K]``.
    """
    run = _linear_scalarization_steps(loss_fn, optimizer)
    return jax.vmap(run, in_axes=(0, 0, 0, None))(weights, params, opt_state, batches)


def _broadcast(tree: Any, count: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), tree)


def _take(tree: Any, index: jax.Array | int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


class SearchResult(NamedTuple):
    """The outcome of :func:`successive_halving`.

    Attributes:
      weights: [K] the survivor's weights.
      index: int32 index of the survivor among the candidates.
      params: the survivor's parameters after the last rung (no candidate axis).
      opt_state: the survivor's optimizer state after the last rung.
      rung_scores: [R, C] validation score of each candidate at the end of each rung; NaN for
        candidates pruned before that rung.
      losses: [C, R, K] mean training losses of each candidate over each rung (NaN once pruned).
    """

    weights: jax.Array
    index: jax.Array  # type: ignore[assignment]  # a field named like tuple.index
    params: Any
    opt_state: Any
    rung_scores: jax.Array
    losses: jax.Array


def successive_halving(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    score_fn: ScoreFn,
    candidates: jax.Array,
    params: Any,
    opt_state: Any,
    batches: Any,
    *,
    rungs: Sequence[int],
    keep: float = 0.5,
) -> SearchResult:
    """Successive halving over candidate weightings, all rungs in one traceable program.

    Every candidate starts from the same ``params`` and ``opt_state`` (e.g. AutoScale's phase-1
    parameters and a fresh ``optimizer.init(params)``: see "Optimizer state" in the module
    docstring). Rung ``r`` trains the ``n_r`` live candidates (:func:`halving_counts`) side by side
    on ``batches[rungs[r-1]:rungs[r]]`` (:func:`train_candidates`), scores each with
    ``score_fn`` (higher is better; NaN counts as worst) and keeps the best ``n_{r+1}`` (ties:
    the lower candidate index); after the last rung the best one is the survivor.

    Args:
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses.
      optimizer: the optax transformation the candidates train with.
      score_fn: ``score_fn(params) -> scalar`` validation score, higher is better; traced and
        vmapped (pure JAX; wrap host code in ``jax.pure_callback``).
      candidates: [C, K] candidate weights (:func:`~autoscale_jax.search.alpha_family`,
        :func:`~autoscale_jax.search.task_multipliers`).
      params: starting parameters (no candidate axis).
      opt_state: starting optimizer state.
      batches: a pytree with leading step axis ``T >= rungs[-1]``.
      rungs: increasing step counts (from the start) at which candidates are scored.
      keep: share of candidates kept at each rung.

    Returns:
      A :class:`SearchResult`.
    """
    rungs = _check_rungs(rungs)
    candidates = jnp.asarray(candidates, jnp.float32)
    num_candidates = candidates.shape[0]
    counts = (*halving_counts(num_candidates, len(rungs), keep), 1)
    steps = jax.tree.leaves(batches)[0].shape[0]
    if steps < rungs[-1]:
        raise ValueError(f"batches hold {steps} steps, the last rung needs {rungs[-1]}")
    ids = jnp.arange(num_candidates)
    live = (candidates, _broadcast(params, num_candidates), _broadcast(opt_state, num_candidates))
    rung_scores, rung_losses, start = [], [], 0
    for r, end in enumerate(rungs):
        weights, cand_params, cand_state = live
        segment = jax.tree.map(lambda x, a=start, b=end: x[a:b], batches)
        cand_params, cand_state, losses = train_candidates(
            loss_fn, optimizer, weights, cand_params, cand_state, segment
        )
        scores = jax.vmap(score_fn)(cand_params).astype(jnp.float32)
        full = jnp.full((num_candidates,), jnp.nan, jnp.float32)
        rung_scores.append(full.at[ids].set(scores))
        nan_k = jnp.full((num_candidates, candidates.shape[1]), jnp.nan, jnp.float32)
        rung_losses.append(nan_k.at[ids].set(jnp.mean(losses, axis=1).astype(jnp.float32)))
        _, best = jax.lax.top_k(jnp.where(jnp.isnan(scores), -jnp.inf, scores), counts[r + 1])
        live = _take((weights, cand_params, cand_state), best)
        ids = ids[best]
        start = end
    weights, cand_params, cand_state = _take(live, 0)
    return SearchResult(
        weights=weights,
        index=ids[0].astype(jnp.int32),
        params=cand_params,
        opt_state=cand_state,
        rung_scores=jnp.stack(rung_scores),
        losses=jnp.stack(rung_losses, axis=1),
    )


def validation_search(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    score_fn: ScoreFn,
    *,
    rungs: Sequence[int],
    keep: float = 0.5,
) -> Callable[[jax.Array, Any, Any, Any], SearchResult]:
    """The jitted search ``find(candidates, params, opt_state, batches) -> SearchResult``.

    :func:`successive_halving` with the functions and the schedule fixed: one compiled program
    for every call with the same shapes (all rungs inside it).

    Args:
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses.
      optimizer: the optax transformation the candidates (and then the survivor) train with.
      score_fn: ``score_fn(params) -> scalar`` validation score, higher is better (traced).
      rungs: increasing step counts at which candidates are scored; put the last one at
        30-50% of the training budget (early validation favours the fast task).
      keep: share of candidates kept at each rung.

    Returns:
      The jitted search.

    Example:
      >>> score_fn = lambda p: -jnp.sum(loss_fn(p, batches[-1]))
      >>> steps = jax.tree.map(lambda *b: jnp.stack(b), *(batches * 2))  # 8 steps
      >>> w_gms, opt_state = asj.weighting.gms_weights(G), optax.adam(1e-3).init(params)
      >>> find = validation_search(loss_fn, optax.adam(1e-3), score_fn, rungs=(2, 6))
      >>> from autoscale_jax.search import alpha_family
      >>> result = find(alpha_family(w_gms, (1.0, 1.5, 2.0, 2.5)), params, opt_state, steps)
      >>> # the survivor continues: train result.params with fixed weights result.weights
    """
    rungs = _check_rungs(rungs)
    halving_counts(1, len(rungs), keep)  # validates keep
    search = functools.partial(
        successive_halving, loss_fn, optimizer, score_fn, rungs=rungs, keep=keep
    )
    return jax.jit(search)
