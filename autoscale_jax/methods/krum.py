"""Krum / Multi-Krum: average the task gradients closest to their nearest neighbours.

Reference:
  Blanchard et al, Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent,
  2017 (arXiv 1703.02757).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo


def _check_static_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | jnp.integer):
        raise ValueError(
            f"{name} must be a static Python int, got {type(value).__name__}. Under "
            f"optax.inject_hyperparams pass static_args=('num_tasks', '{name}')."
        )
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_krum_arguments(num_tasks: int, n_byzantine: Any, n_selected: Any) -> tuple[int, int]:
    """TorchJD's constraints: ``f >= 0``, ``1 <= m <= K`` and ``K >= f + 3`` (so every task
    has ``K - f - 2 >= 1`` neighbours to be scored on). Returns ``(f, m)`` as ints."""
    f = _check_static_int("n_byzantine", n_byzantine, 0)
    m = _check_static_int("n_selected", n_selected, 1)
    if num_tasks < f + 3:
        raise ValueError(
            f"Krum scores each task on its K - n_byzantine - 2 nearest neighbours: it needs "
            f"num_tasks >= n_byzantine + 3 = {f + 3}, got num_tasks={num_tasks}."
        )
    if m > num_tasks:
        raise ValueError(f"n_selected={m} exceeds num_tasks={num_tasks}.")
    return f, m


def krum_distances(G: jax.Array, *, squared: bool = True) -> jax.Array:
    """Pairwise distances between task gradients from their Gramian.

    ``||g_i - g_j||² = G_ii + G_jj - 2 G_ij`` (clipped at 0 against round-off), on the
    symmetrised Gramian so that ``D_ij == D_ji`` exactly.

    Args:
      G: [K, K] Gramian of the task gradients.
      squared: squared distances (the paper); False gives plain distances (TorchJD).

    Returns:
      The [K, K] distances (at least float32), with +inf on the diagonal (a task is not its
      own neighbour).
    """
    G = metrics.at_least_float32(G)
    G = 0.5 * (G + G.T)
    norms = jnp.diagonal(G)
    distances = jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * G, 0.0)
    if not squared:
        distances = jnp.sqrt(distances)
    return jnp.where(jnp.eye(G.shape[0], dtype=bool), jnp.inf, distances)


def krum_scores(G: jax.Array, n_byzantine: int, *, squared: bool = True) -> jax.Array:
    """Krum's scores: for each task, the summed distances to its ``K - f - 2`` nearest others.

    .. math:: s_i = \\sum_{j \\in N_i} \\|g_i - g_j\\|^2

    Args:
      G: [K, K] Gramian of the task gradients.
      n_byzantine: f, static, with ``K >= f + 3``.
      squared: sum squared distances (the paper); False sums plain distances (TorchJD).

    Returns:
      The [K] scores (at least float32).
    """
    return _nearest_and_total(G, n_byzantine, squared)[0]


def _nearest_and_total(G: jax.Array, n_byzantine: int, squared: bool) -> tuple:
    """Each task's summed distances to its ``K - f - 2`` nearest others and to all others.

    Both sums run over each row *sorted*, so they do not depend on the order of the tasks."""
    nearest = jnp.sort(krum_distances(G, squared=squared), axis=1)  # +inf self-distance last
    k = nearest.shape[0]
    return jnp.sum(nearest[:, : k - n_byzantine - 2], axis=1), jnp.sum(nearest[:, :-1], axis=1)


def krum_weights(
    G: jax.Array, n_byzantine: int, n_selected: int = 1, *, squared: bool = True
) -> jax.Array:
    """Multi-Krum's weights: ``1/m`` on the ``m`` lowest-score tasks, 0 elsewhere.

    Ties: equal scores are ranked by the sum of distances to *all* other tasks (the more
    central first), then by task index (the lowest first). The first rule keeps exact ties,
    which are common (with ``K - f - 2 = 1`` the two tasks of the closest pair always tie),
    equivariant under task permutations; the second makes the choice deterministic.

    Args:
      G: [K, K] Gramian.
      n_byzantine: f, static, with ``K >= f + 3``.
      n_selected: m, static, with ``1 <= m <= K``.
      squared: see :func:`krum_scores`.

    Returns:
      The [K] weights, summing to 1.
    """
    scores, totals = _nearest_and_total(G, n_byzantine, squared)
    k = scores.shape[0]
    order = jnp.lexsort((jnp.arange(k), totals, scores))
    ranks = jnp.zeros((k,), jnp.int32).at[order].set(jnp.arange(k, dtype=jnp.int32))
    return jnp.where(ranks < n_selected, 1.0 / n_selected, 0.0).astype(scores.dtype)


def krum(
    num_tasks: int,
    *,
    n_byzantine: int = 0,
    n_selected: int = 1,
    squared: bool = True,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """Krum (``n_selected=1``) and Multi-Krum: average the m most central task gradients.

    With ``f = n_byzantine`` tasks presumed adversarial, each task ``i`` is scored by the
    squared distances to its ``K - f - 2`` nearest other task gradients ``N_i``, and the ``m``
    lowest-score gradients ``S`` are averaged:

    .. math:: s_i = \\sum_{j \\in N_i} \\|g_i - g_j\\|^2, \\qquad
       d = \\frac1m \\sum_{i \\in S} g_i.

    Distances come from the Gramian, ``||g_i - g_j||² = G_ii + G_jj - 2 G_ij``, so the update
    is ``Σ_k w_k g_k`` with ``w_k = 1/m`` on the selected tasks and 0 elsewhere (weights sum
    to 1, like TorchJD's ``KrumWeighting``; ``m = K`` is the plain mean). Deterministic: equal
    scores are ranked by the sum of distances to all other tasks, then by task index (lowest
    first; see :func:`krum_weights`). Permuting the tasks permutes the weights, except when
    tasks tie on both keys (e.g. identical gradients), where the lowest index wins.

    The paper's resilience guarantee holds for ``2f + 2 < K``; like TorchJD, only
    ``K >= f + 3`` and ``1 <= m <= K`` are required here. TorchJD sums plain distances
    ``||g_i - g_j||`` rather than the paper's squared ones: ``squared=False`` reproduces it.
    Distances from the Gramian lose relative precision when two gradients are much closer to
    each other than to the origin (cancellation in float32); that only affects the choice
    between near-identical gradients.

    Non-finite gradients propagate to the update; the state then keeps the previous weights
    with ``solver_converged=False`` (there is no solver: ``solver_converged`` is True on every
    finite step).

    Args:
      num_tasks: K >= n_byzantine + 3, static.
      n_byzantine: f >= 0, the number of task gradients that may be adversarial (default 0:
        score on the K - 2 nearest neighbours).
      n_selected: m in [1, K], gradients averaged (1: Krum; more: Multi-Krum).
      squared: score with squared distances (the paper, default) or plain ones (TorchJD).
      metric_mask: leaves the Gramian sees (default all; pass ``"shared"`` for the shared
        parameters only).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights`` (``1/K``
      before the first step).

    Example:
      >>> tx = optax.chain(asj.methods.krum(5, n_byzantine=1, n_selected=2), optax.sgd(0.1))
      >>> params5 = {"w": jnp.zeros(4)}
      >>> grads5 = {"w": jax.random.normal(key, (5, 4))}   # K = 5 tasks
      >>> updates, state = tx.update(grads5, tx.init(params5), params5)
      >>> sorted(np.asarray(asj.task_weights(state)).tolist())  # 0.5 on the two selected tasks
      [0.0, 0.0, 0.0, 0.5, 0.5]

    Reference:
      Blanchard et al, Machine Learning with Adversaries: Byzantine Tolerant Gradient
      Descent, 2017 (arXiv 1703.02757).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    f, m = check_krum_arguments(num_tasks, n_byzantine, n_selected)
    squared = bool(squared)

    weights = functools.partial(krum_weights, n_byzantine=f, n_selected=m, squared=squared)
    uniform = jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32)
    options = {"metric_mask": metric_mask, "heads": heads, "init_weights": uniform}
    return _bases.weights_method(num_tasks, "krum", weights, **options)


INFO = MethodInfo(
    name="krum",
    factory=krum,
    family="gramian",
    weight_convention="sum_to_1",
    reference=(
        "Blanchard et al, Machine Learning with Adversaries: Byzantine Tolerant Gradient "
        "Descent, 2017 (arXiv 1703.02757)"
    ),
    min_tasks=3,
)
