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

One call. :func:`find_weights` runs the whole design in a user's loop (AutoScale's phase 1,
the restart, the stages, the survivor) on batches streamed in fixed-size chunks, on one or
several devices, resumable from checkpoints (:mod:`autoscale_jax.search.loop`).

Nothing silent. Every function checks its inputs before the first step (a ``ValueError`` or
``TypeError`` naming the argument). At run time candidates whose score or parameters are
non-finite rank last; a rung where none is finite sets ``SearchResult.nonfinite`` and clears
``ok``, and an eager search then raises :class:`SearchError` instead of returning NaN
parameters (:func:`successive_halving`).

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

from autoscale_jax.search.candidates import alpha_family, alpha_weights, task_multipliers
from autoscale_jax.search.halving import (
    SearchError,
    SearchResult,
    halving_counts,
    search_cost,
    successive_halving,
    train_candidates,
    validation_search,
)
from autoscale_jax.search.loop import (
    SearchReport,
    StageReport,
    WeightSearch,
    WeightSearchResult,
    find_weights,
)
from autoscale_jax.search.stages import (
    Stage,
    alpha_stage,
    default_stages,
    multiplier_stage,
    weights_stage,
)

__all__ = [
    "SearchError",
    "SearchReport",
    "SearchResult",
    "Stage",
    "StageReport",
    "WeightSearch",
    "WeightSearchResult",
    "alpha_family",
    "alpha_stage",
    "alpha_weights",
    "default_stages",
    "find_weights",
    "halving_counts",
    "multiplier_stage",
    "search_cost",
    "successive_halving",
    "task_multipliers",
    "train_candidates",
    "validation_search",
    "weights_stage",
]
