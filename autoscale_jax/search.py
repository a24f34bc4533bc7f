"""Validation-guided search of linear-scalarization weights: candidates trained side by side.

The metric guides of :func:`autoscale_jax.autoscale` pick weights from gradient statistics alone.
Where the metric's balance point and the trade-off the evaluation measures disagree (measured on
MultiMNIST classify + reconstruct: GMS settles at a weight ratio of ≈ 13 while the best fixed
weights sit at 178-316), no window or mask fixes the pick. This module searches *around* the
guide's pick with a validation score, at a cost close to one training run:

1. **A one-parameter family that contains the metric guides.** With task-gradient norms
   ``n_k = sqrt(G_kk)``,

   .. math:: w_k(α) ∝ n_k^{-α}, \\qquad Σ_k w_k(α) = K,

   so ``α = 0`` is equal weights and ``α = 1`` the GMS guide (every weighted norm equal);
   ``α > 1`` goes further in the direction GMS moved from equal weights. Since the GMS weights
   are ``∝ 1/n_k``, the family is also ``w(α) ∝ w_gms^α`` (:func:`alpha_family`), so it can be
   built from AutoScale's phase-1 weights without the Gramian. The family scales every log
   ratio by the same ``α``: it cannot move one task against the others, so for ``K ≥ 3``
   :func:`task_multipliers` adds per-task moves ``w_k ← f w_k`` around a point.
2. **Candidates trained side by side.** :func:`train_candidates` trains ``C`` copies of the
   parameters and optimizer state, one per weight vector, with plain linear scalarization
   ``θ_c ← θ_c - opt(∇_θ Σ_k w_{c,k} L_k(θ_c))``, as one program: ``jax.vmap`` over
   (weights, parameters, optimizer state) of a ``lax.scan`` over the steps, every candidate on
   the same batches.
3. **Successive halving** (:func:`successive_halving`, :func:`validation_search`): at the end of
   each rung every live candidate is scored with a user-given validation score (higher is
   better) and only the best ``ceil(keep · n)`` train on; after the last rung one survivor is
   left, and its parameters and optimizer state continue training with its weights. All rungs
   are one jitted program (live counts are static), so the search compiles once.

Horizons. Validation rankings taken early in training are biased towards the task that learns
fast: on MultiMNIST (classify + reconstruct, 800 steps) the best fixed ratio by validation at
25% of training is 56, at 37-50% it is 178, the same as at the end (on MultiFashion the early
bias goes the other way). Pruning at a short horizon therefore drops candidates that win in
the end. Put the *last* rung at 30-50% of the training budget and prune gently before it
(``keep ≥ 0.5``); :func:`search_cost` gives the price in gradient evaluations.

Optimizer state. Start the candidates from the phase-1 *parameters* with a *fresh* optimizer
state, not the phase-1 one: Adam's second moments remember the gradient scale of the phase-1
weights (with ``β2 = 0.999``, for about a thousand steps), so a candidate that moves a task's
weight by 10-100x trains with distorted effective weights for most of the run. Measured on the
five discriminating benchmarks of the bench (tuning seeds 100-104), the fresh state improved
the search's test Δm by 4.5-9.3 points. Part of that gain is the restart itself: a fixed-weight
run whose Adam state is reset once at step 40 gains 4-5 points too (the bench's Adam at
``1e-3`` under-steps once the first large gradients sit in its second moments), so compare
the search with a grid trained the same way before crediting the pick.

Cost. A rung of length ``ℓ`` with ``n`` live candidates costs ``n ℓ`` backward passes; the
survivor's own steps are steps the run needed anyway, so the search adds
``search_cost(...) - rungs[-1]`` gradient evaluations to one run.

Example:
  >>> from autoscale_jax import search
  >>> w_gms = asj.weighting.gms_weights(G)                     # e.g. AutoScale's phase-1 pick
  >>> cands = search.alpha_family(w_gms, alphas=(1.0, 1.5, 2.0, 2.5))
  >>> def score_fn(p):                                          # higher is better
  ...   return -jnp.sum(loss_fn(p, batches[-1]))
  >>> steps = jax.tree.map(lambda *b: jnp.stack(b), *(batches * 2))  # leading axis 8 >= 6
  >>> find = search.validation_search(loss_fn, optax.adam(1e-3), score_fn, rungs=(2, 6))
  >>> result = find(cands, params, optax.adam(1e-3).init(params), steps)
  >>> result.weights.shape
  (2,)

Reference:
  Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization
  Metrics, 2025 (arXiv 2508.13979).
  Jamieson & Talwalkar, Non-stochastic Best Arm Identification and Hyperparameter
  Optimization, 2016 (arXiv 1502.07943) (successive halving).
  Li et al, Hyperband: A Novel Bandit-Based Approach to Hyperparameter Optimization, 2018
  (arXiv 1603.06560).
"""

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
    "alpha_family",
    "alpha_weights",
    "halving_counts",
    "search_cost",
    "successive_halving",
    "task_multipliers",
    "train_candidates",
    "validation_search",
]

LossFn = Callable[[Any, Any], jax.Array]
ScoreFn = Callable[[Any], jax.Array]


def _normalise(weights: jax.Array) -> jax.Array:
    """Rescales the last axis to sum to K."""
    return weights * (weights.shape[-1] / jnp.sum(weights, axis=-1, keepdims=True))


def alpha_weights(G: jax.Array, alpha: float | jax.Array, eps: float = 1e-12) -> jax.Array:
    """The guide family ``w_k ∝ ||g_k||^-α`` from a Gramian, normalised to ``Σ w = K``.

    ``α = 0`` gives equal weights and ``α = 1`` the ``"gms"`` guide
    (:func:`autoscale_jax.weighting.gms_weights`). A task whose gradient norm is zero (below
    ``eps`` times the largest) carries no scale: it gets the mean weight of the others, as in
    the guides.

    Args:
      G: [K, K] Gramian of the task gradients.
      alpha: the exponent ``α`` (may be traced).
      eps: relative threshold below which a norm counts as zero.

    Returns:
      [K] positive weights summing to K.

    Example:
      >>> alpha_weights(jnp.diag(jnp.array([4.0, 1.0])), 2.0)    # norms 2 and 1
      Array([0.4, 1.6], dtype=float32)
    """
    G = jnp.asarray(G)
    G = G.astype(jnp.promote_types(G.dtype, jnp.float32))
    norms = jnp.sqrt(jnp.maximum(jnp.diagonal(G), 0.0))
    active = norms > eps * jnp.maximum(jnp.max(norms), eps)
    powered = jnp.where(active, jnp.where(active, norms, 1.0) ** -alpha, 0.0)
    count = jnp.sum(active)
    neutral = jnp.where(count > 0, jnp.sum(powered) / jnp.maximum(count, 1), 1.0)
    return _normalise(jnp.where(active, powered, neutral))


def alpha_family(gms_weights: Any, alphas: Sequence[float]) -> jax.Array:
    """Candidates ``w(α) ∝ w_gms^α`` for each ``α``: the guide family from the GMS weights.

    With ``w_gms ∝ 1/||g_k||`` (AutoScale's ``"gms"`` phase-1 weights, or
    :func:`autoscale_jax.weighting.gms_weights`) this is :func:`alpha_weights` without the
    Gramian: for two tasks the weight ratio becomes ``r_gms^α``.

    Args:
      gms_weights: [K] positive weights at ``α = 1``.
      alphas: the exponents, e.g. ``(1.0, 1.5, 2.0, 2.5)``.

    Returns:
      [A, K] weights, each row summing to K.

    Example:
      >>> np.round(np.asarray(alpha_family(jnp.array([0.5, 1.5]), (0.0, 1.0, 2.0))), 4)
      array([[1. , 1. ],
             [0.5, 1.5],
             [0.2, 1.8]], dtype=float32)
    """
    weights = jnp.asarray(gms_weights, jnp.float32)
    exponents = jnp.asarray(alphas, jnp.float32)[:, None]
    return _normalise(jnp.exp(exponents * jnp.log(weights / jnp.max(weights))[None, :]))


def task_multipliers(weights: Any, factors: Sequence[float]) -> jax.Array:
    """Per-task moves around ``weights``: the centre, then ``w_k ← f w_k`` for each task and
    factor, each row normalised to ``Σ w = K``.

    These move one task against the others, which the one-parameter family cannot do for
    ``K ≥ 3``. For ``K = 2`` a factor ``f`` on task 0 equals ``1/f`` on task 1, so give one
    side of each pair (e.g. ``(4.0,)``: ratios ``r/4`` and ``4 r``).

    Args:
      weights: [K] centre weights.
      factors: multipliers ``f`` (each ≠ 1).

    Returns:
      ``[1 + K · F, K]`` weights: row 0 the centre, then task 0's factors, task 1's, ...

    Example:
      >>> task_multipliers(jnp.ones(3), (4.0,)).shape
      (4, 3)
    """
    centre = jnp.asarray(weights, jnp.float32)
    if centre.ndim != 1:
        raise ValueError(f"weights must be a vector [K], got shape {centre.shape}")
    rows = [centre] + [centre.at[k].multiply(f) for k in range(centre.shape[0]) for f in factors]
    return _normalise(jnp.stack(rows))


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
      candidates: [C, K] candidate weights (:func:`alpha_family`, :func:`task_multipliers`).
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
      >>> result = find(alpha_family(w_gms, (1.0, 1.5, 2.0, 2.5)), params, opt_state, steps)
      >>> # the survivor continues: train result.params with fixed weights result.weights
    """
    rungs = _check_rungs(rungs)
    halving_counts(1, len(rungs), keep)  # validates keep
    search = functools.partial(
        successive_halving, loss_fn, optimizer, score_fn, rungs=rungs, keep=keep
    )
    return jax.jit(search)
