"""Successive halving over weightings trained side by side as one program (see
:mod:`autoscale_jax.search`): the candidates' training, the rung schedule, its cost."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from autoscale_jax.search import _checks
from autoscale_jax.search._result import SearchError, SearchResult, raise_if_failed

__all__ = [
    "SearchError",
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
      num_candidates: C, a positive int.
      num_rungs: R, a positive int.
      keep: the share kept at each rung, a number in (0, 1].

    Returns:
      ``(n_0, ..., n_{R-1})``.

    Raises:
      ValueError, TypeError: for a count that is not a positive int, or ``keep`` outside
        (0, 1] (NaN included) or not a number.

    Example:
      >>> halving_counts(8, 3)
      (8, 4, 2)
    """
    num_candidates, num_rungs = _checks.check_counts(num_candidates, num_rungs)
    keep = _checks.check_keep(keep)
    counts = [num_candidates]
    for _ in range(num_rungs - 1):
        counts.append(max(1, math.ceil(keep * counts[-1] - 1e-9)))
    return tuple(counts)


def search_cost(num_candidates: int, rungs: Sequence[int], keep: float = 0.5) -> int:
    """Gradient evaluations of a search: ``Σ_r n_r (rungs[r] - rungs[r-1])``.

    Each candidate step is one backward pass of ``Σ_k w_k L_k``. ``rungs[-1]`` of them are the
    survivor's own steps, which a single run would take anyway. ``rungs`` must be a non-empty
    sequence of strictly increasing positive ints (no rounding); the other arguments are
    checked as in :func:`halving_counts`.

    Example:
      >>> search_cost(4, (160, 360))        # 4 x 160 + 2 x 200
      1040
    """
    rungs = _checks.check_rungs(rungs)
    counts = halving_counts(num_candidates, len(rungs), keep)
    lengths = [b - a for a, b in itertools.pairwise((0, *rungs))]
    return int(sum(n * ell for n, ell in zip(counts, lengths, strict=True)))


def _linear_scalarization_steps(
    loss_fn: LossFn, optimizer: optax.GradientTransformation
) -> Callable[..., tuple]:
    """``run(weights, params, opt_state, batches) -> (params, opt_state, losses [T, K])``."""

    def scalarized(params: Any, weights: jax.Array, batch: Any) -> tuple[jax.Array, jax.Array]:
        losses = _checks.check_losses(loss_fn(params, batch), weights.shape[-1])
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
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses (a float vector whose length is
        the width K of ``weights``).
      optimizer: an optax transformation (e.g. ``optax.adam(1e-3)``).
      weights: [C, K] one weight vector per candidate: finite, >= 0, a positive entry in every
        row (values checked when concrete; under ``jax.jit`` they are not, and a non-finite
        row trains to non-finite parameters).
      params: float parameters with a leading candidate axis C.
      opt_state: ``optimizer`` states with a leading candidate axis C (the shapes of
        ``optimizer.init`` of one candidate's parameters).
      batches: a pytree whose leaves share a leading step axis ``T >= 1`` (shared by all
        candidates).

    Returns:
      ``(params, opt_state, losses)``: the trained copies (leading axis C) and the training
      losses ``[C, T, K]``.

    Raises:
      ValueError, TypeError: at trace time, for any argument outside the above, naming it.
    """
    _checks.check_functions(loss_fn, optimizer)
    weights = _checks.check_candidate_weights(weights, "weights")
    count = weights.shape[0]
    _checks.check_params(params)
    _checks.check_candidate_axis(params, count, "params")
    one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x)[1:], jnp.result_type(x)), params)
    _checks.check_opt_state(optimizer, one, opt_state, prefix=(count,))
    _checks.check_batches(batches, 1)
    return _train(loss_fn, optimizer, weights, params, opt_state, batches)


def _train(loss_fn: LossFn, optimizer: Any, *arguments: Any) -> tuple[Any, Any, jax.Array]:
    """:func:`train_candidates` without the checks (a rung's live candidates)."""
    run = _linear_scalarization_steps(loss_fn, optimizer)
    return jax.vmap(run, in_axes=(0, 0, 0, None))(*arguments)


def _broadcast(tree: Any, count: int) -> Any:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), tree)


def _take(tree: Any, index: jax.Array | int) -> Any:
    return jax.tree.map(lambda x: x[index], tree)


def _finite_tree(tree: Any) -> jax.Array:
    """True when every floating leaf of ``tree`` (one candidate) is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


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
    ``score_fn`` (higher is better) and keeps the best ``n_{r+1}`` (ties: the lower candidate
    index); after the last rung the best one is the survivor.

    Non-finite values. A candidate whose score is NaN or ±inf, or whose parameters hold a NaN
    or inf, ranks below every candidate with a finite score (its ``rung_scores`` entry is NaN).
    If at some rung no live candidate is finite, the pick there is by index, not by score:
    the result's ``nonfinite[r]`` is True and ``ok`` False, and when this function runs
    eagerly (outside ``jax.jit``) it raises :class:`SearchError` (its ``.result`` holds the
    result) instead of returning the survivor as if fine.

    Args:
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses (a float vector, K the width of
        ``candidates``).
      optimizer: the optax transformation the candidates train with.
      score_fn: ``score_fn(params) -> scalar`` validation score, higher is better; traced and
        vmapped (pure JAX; wrap host code in ``jax.pure_callback``).
      candidates: [C, K] candidate weights (:func:`~autoscale_jax.search.alpha_family`,
        :func:`~autoscale_jax.search.task_multipliers`): finite, >= 0, a positive entry in
        every row (values checked when concrete).
      params: starting float parameters (no candidate axis; finite, checked when concrete).
      opt_state: starting optimizer state, shaped as ``optimizer.init(params)``.
      batches: a pytree whose leaves share a leading step axis ``T >= rungs[-1]`` (steps past
        ``rungs[-1]`` are not used).
      rungs: a non-empty sequence of strictly increasing positive ints: the step counts (from
        the start) at which candidates are scored.
      keep: share of candidates kept at each rung, in (0, 1].

    Returns:
      A :class:`SearchResult`.

    Raises:
      ValueError, TypeError: before the first step, for any argument outside the above,
        naming it and the fix.
      SearchError: eagerly, after the search, when the pick was not by score (see above).
    """
    _checks.check_functions(loss_fn, optimizer, score_fn)
    rungs = _checks.check_rungs(rungs)
    candidates = _checks.check_candidate_weights(candidates)
    num_candidates = candidates.shape[0]
    counts = (*halving_counts(num_candidates, len(rungs), keep), 1)
    _checks.check_batches(batches, rungs[-1])
    _checks.check_params(params)
    _checks.check_opt_state(optimizer, params, opt_state)
    _checks.check_score(score_fn, params)
    ids = jnp.arange(num_candidates)
    live = (candidates, _broadcast(params, num_candidates), _broadcast(opt_state, num_candidates))
    rung_scores, rung_losses, nonfinite, start = [], [], [], 0
    for r, end in enumerate(rungs):
        weights, cand_params, cand_state = live
        segment = jax.tree.map(lambda x, a=start, b=end: x[a:b], batches)
        cand_params, cand_state, losses = _train(
            loss_fn, optimizer, weights, cand_params, cand_state, segment
        )
        scores = jax.vmap(score_fn)(cand_params).astype(jnp.float32)
        finite = jnp.isfinite(scores) & jax.vmap(_finite_tree)(cand_params)
        scores = jnp.where(finite, scores, jnp.nan)
        nonfinite.append(~jnp.any(finite))
        full = jnp.full((num_candidates,), jnp.nan, jnp.float32)
        rung_scores.append(full.at[ids].set(scores))
        nan_k = jnp.full((num_candidates, candidates.shape[1]), jnp.nan, jnp.float32)
        rung_losses.append(nan_k.at[ids].set(jnp.mean(losses, axis=1).astype(jnp.float32)))
        _, best = jax.lax.top_k(jnp.where(finite, scores, -jnp.inf), counts[r + 1])
        live = _take((weights, cand_params, cand_state), best)
        ids = ids[best]
        start = end
    weights, cand_params, cand_state = _take(live, 0)
    failed = jnp.stack(nonfinite)
    result = SearchResult(
        weights=weights,
        index=ids[0].astype(jnp.int32),
        params=cand_params,
        opt_state=cand_state,
        rung_scores=jnp.stack(rung_scores),
        losses=jnp.stack(rung_losses, axis=1),
        nonfinite=failed,
        ok=~jnp.any(failed),
    )
    return raise_if_failed(result, rungs)


class _Search:
    """The jitted search of :func:`validation_search`: concrete candidate weights are checked
    before the call, and a concrete result that is not ``ok`` raises :class:`SearchError`."""

    def __init__(self, search: Callable[..., SearchResult], rungs: tuple[int, ...]) -> None:
        self._jitted = jax.jit(search)
        self._rungs = rungs

    def __call__(self, candidates: Any, params: Any, opt_state: Any, batches: Any) -> SearchResult:
        candidates = _checks.check_candidate_weights(candidates)
        result = self._jitted(candidates, params, opt_state, batches)
        return raise_if_failed(result, self._rungs)

    def lower(self, candidates: Any, *args: Any) -> Any:
        """``jax.jit``'s ``lower``; the compiled program returns ``ok`` without raising."""
        return self._jitted.lower(_checks.check_candidate_weights(candidates), *args)


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
    for every call with the same shapes (all rungs inside it). The functions, ``rungs`` and
    ``keep`` are checked here; the arguments of ``find`` at its first trace (candidate weights
    on every call, before the program runs). A search whose pick was not by score (every live
    candidate non-finite at some rung, see :func:`successive_halving`) raises
    :class:`SearchError` when ``find`` is called from Python; ``find.lower(...).compile()``
    gives a program that returns the result with ``ok`` False instead.

    Args:
      loss_fn: ``loss_fn(params, batch) -> [K]`` task losses.
      optimizer: the optax transformation the candidates (and then the survivor) train with.
      score_fn: ``score_fn(params) -> scalar`` validation score, higher is better (traced).
      rungs: strictly increasing positive int step counts at which candidates are scored; put
        the last one at 30-50% of the training budget (early validation favours the fast task).
      keep: share of candidates kept at each rung, in (0, 1].

    Returns:
      The jitted search.

    Example:
      >>> score_fn = lambda p: -jnp.sum(loss_fn(p, batches[-1]))
      >>> steps = jax.tree.map(lambda *b: jnp.stack(b), *(batches * 2))  # 8 steps
      >>> w_gms, opt_state = asj.weighting.gms_weights(G), optax.adam(1e-3).init(params)
      >>> find = validation_search(loss_fn, optax.adam(1e-3), score_fn, rungs=(2, 6))
      >>> from autoscale_jax.search import alpha_family
      >>> result = find(alpha_family(w_gms, (1.0, 1.5, 2.0, 2.5)), params, opt_state, steps)
      >>> bool(result.ok)  # the survivor continues: train result.params with result.weights
      True
    """
    _checks.check_functions(loss_fn, optimizer, score_fn)
    rungs = _checks.check_rungs(rungs)
    keep = _checks.check_keep(keep)
    search = functools.partial(
        successive_halving, loss_fn, optimizer, score_fn, rungs=rungs, keep=keep
    )
    return _Search(search, rungs)
