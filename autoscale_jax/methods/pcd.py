"""PCD: Priority-Constrained Descent, the direction closest to the primary task's gradient that
guarantees every secondary task a share of progress.

Reference:
  Varam & AlHajri, Not All Objectives Are Born Equal: Priority-Constrained Descent for
  Hierarchical Multi-Objective Optimization, TMLR 2026 (arXiv 2606.29521).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._registry import MethodInfo

# Small K-space products at full float32 precision (no TF32 / bf16 passes on accelerators).
_dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
# The exact solve enumerates 2^(K-1) working sets: 32768 small systems at K = 16.
MAX_TASKS = 16


class PCDMemory(NamedTuple):
    """PCD's own state: the moving average of the squared task-gradient norms.

    Attributes:
      sq_norm_ema: [K] float32 ``v_k`` (not bias-corrected).
      count: int32 number of averaged steps ``t``.
      feasible: bool, whether the latest step's constraints were compatible (False: they were
        dropped and the update was ``g_1``).
    """

    sq_norm_ema: jax.Array
    count: jax.Array  # type: ignore[assignment]  # a field named like tuple.count
    feasible: jax.Array


class PCDSolution(NamedTuple):
    """Output of :func:`pcd_weights`.

    Attributes:
      weights: [K] weights on the raw gradients, ``d = Σ_k w_k g_k`` (``||d|| = ||g_1||``).
      multipliers: [K-1] KKT multipliers ``μ_j ≥ 0`` of the secondary constraints.
      feasible: whether the constraints can hold together (else they are dropped: ``d = g_1``).
    """

    weights: jax.Array
    multipliers: jax.Array
    feasible: jax.Array


def pcd_scales(
    memory: PCDMemory, sq_norms: jax.Array, beta: Any, eps: Any
) -> tuple[jax.Array, PCDMemory]:
    """``s_k = 1/sqrt(v̂_k + eps)`` after the update ``v ← βv + (1-β)||g_k||²`` (``v̂`` is ``v``
    bias-corrected by ``1 - β^t``); 0 where ``v̂_k + eps = 0``. Returns ``(s, next memory)``."""
    count = memory.count + 1
    ema = beta * memory.sq_norm_ema.astype(sq_norms.dtype) + (1.0 - beta) * sq_norms
    denominator = jnp.sqrt(ema / (1.0 - beta ** count.astype(sq_norms.dtype)) + eps)
    positive = denominator > 0
    scales = jnp.where(positive, 1.0 / jnp.where(positive, denominator, 1.0), 0.0)
    return scales, PCDMemory(ema, count, memory.feasible)


def _working_sets(num_secondary: int) -> np.ndarray:
    """Every subset of the secondary constraints as a [2^m, m] boolean mask (static)."""
    return np.array(list(itertools.product([False, True], repeat=num_secondary)), bool)


def pcd_weights(
    G: jax.Array, scales: jax.Array, tau: Any = 0.02, *, rtol: float | None = None
) -> PCDSolution:
    """PCD's step from the Gramian (row/column 0: the primary task) and the scales ``s``.

    With ``g̃_k = s_k g_k`` (Gramian ``Ĝ = G ⊙ s sᵀ``) the direction solves

    .. math:: \\tilde d = \\arg\\min_d \\tfrac12 \\|d - \\tilde g_1\\|^2 \\ \\text{s.t.}\\
       \\tilde g_j^T d \\ge τ \\|\\tilde g_j\\|^2, \\ j ≥ 2.

    By the KKT conditions ``d̃ = g̃_1 + Σ_j μ_j g̃_j`` with ``μ ≥ 0``, and some optimal ``μ`` is
    supported on a linearly independent working set ``A`` whose constraints hold with
    equality: ``Ĝ_AA μ_A = b_A``, ``b_j = τ Ĝ_jj - Ĝ_j1``. As in the paper's reference code
    (App. B.2), every working set is solved (one after another, ``lax.map``) and a KKT point
    is taken: ``μ_A ≥ 0`` and every constraint met, both up to ``rtol`` of the scale of ``d̃``
    (ties, from degenerate constraints, go to the one closest to ``g̃_1``). Linearly dependent
    sets (smallest eigenvalue of the unit-diagonal ``Ĝ_AA`` at most ``rtol``) are skipped, so
    dependent or duplicated secondaries are exact too. This costs ``2^(K-1)`` solves of size
    ``K-1``: instant for the handful of tasks PCD is meant for (0.6 ms per step at K = 8, 73 ms
    at K = 14 on a 2-core CPU). No KKT point means the constraints are incompatible (only for
    ``K ≥ 3``): they are dropped, ``d̃ = g̃_1``. Finally ``d̃`` is rescaled to ``||g_1||``;
    ``d = 0`` when ``g_1 = 0`` or ``d̃`` is zero up to round-off.

    Args:
      G: [K, K] Gramian, primary task first.
      scales: [K] scales ``s`` (see :func:`pcd_scales`).
      tau: ``τ ∈ [0, 1]``, the guaranteed fraction of normalised progress.
      rtol: relative tolerance of the tests (``None``: ``10 K eps`` of the dtype).

    Returns:
      A :class:`PCDSolution`.
    """
    G = metrics.at_least_float32(G)
    k = G.shape[0]
    rtol = projections.default_rtol(k, G.dtype, 10.0) if rtol is None else rtol
    normalized = G * scales.astype(G.dtype)[:, None] * scales.astype(G.dtype)[None, :]
    secondary = normalized[1:, 1:]
    b = tau * jnp.diagonal(secondary) - normalized[1:, 0]
    norms = jnp.sqrt(jnp.clip(jnp.diagonal(normalized), 0.0))
    unit = solvers.jacobi_scales(secondary)
    unit_gramian = secondary * unit[:, None] * unit[None, :]
    eye = jnp.eye(k - 1, dtype=G.dtype)

    def solve(mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        core = jnp.where(mask[:, None] & mask[None, :], unit_gramian, eye)
        independent = jnp.linalg.eigvalsh(core)[0] > rtol  # also skips zero secondaries
        mu = jnp.where(mask, unit * jnp.linalg.solve(core, jnp.where(mask, unit * b, 0.0)), 0.0)
        scale = norms[0] + _dot(jnp.abs(mu), norms[1:])  # bounds ||d̃||
        slack = _dot(secondary, mu) - b  # g̃_jᵀd̃ - τ||g̃_j||²
        kkt = jnp.all(mu * norms[1:] >= -rtol * scale) & jnp.all(slack >= -rtol * norms[1:] * scale)
        return mu, independent & kkt

    # One working set after another: vmapped over 2^(K-1) sets (K >= 13), the batched LAPACK
    # calls deadlocked XLA:CPU's thread pool inside a training loop (jaxlib 0.10, 2 cores).
    mus, valid = jax.lax.map(solve, jnp.asarray(_working_sets(k - 1)))
    distance = jnp.sum(_dot(mus, secondary) * mus, axis=1)  # ||d̃ - g̃_1||²
    best = jnp.argmin(jnp.where(valid, distance, jnp.inf))
    feasible = jnp.any(valid)
    multipliers = jnp.where(feasible, jnp.maximum(mus[best], 0.0), 0.0)  # round-off below 0
    unscaled = jnp.concatenate([jnp.ones((1,), G.dtype), multipliers])
    squared_length = _dot(unscaled, _dot(normalized, unscaled))
    magnitude = _dot(jnp.abs(unscaled), norms) ** 2
    moving = (G[0, 0] > 0) & (squared_length > 10.0 * jnp.finfo(G.dtype).eps * magnitude)
    factor = jnp.sqrt(G[0, 0] / jnp.where(moving, squared_length, 1.0))
    weights = jnp.where(moving, unscaled * scales.astype(G.dtype) * factor, 0.0)
    return PCDSolution(weights, multipliers, feasible)


def pcd(
    num_tasks: int,
    *,
    tau: float = 0.02,
    beta: float = 0.999,
    eps: float = 1e-8,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    rtol: float | None = None,
) -> base.MultiTaskTransformation:
    """PCD (Priority-Constrained Descent): task 0 is the primary task, the others secondary.

    Each step follows the primary gradient as closely as possible while every secondary task
    gets at least a fraction ``τ`` of the first-order progress a step along its own normalised
    gradient would give (Varam & AlHajri 2026, Def. 4.1; see :func:`pcd_weights`):

    .. math:: \\tilde d = \\arg\\min_d \\tfrac12 \\|d - \\tilde g_1\\|^2 \\ \\text{s.t.}\\
       \\tilde g_j^T d \\ge τ \\|\\tilde g_j\\|^2, \\qquad d = \\frac{\\|g_1\\|}{\\|\\tilde d\\|}\\,
       \\tilde d,

    with ``g̃_k = g_k / sqrt(v̂_k + ε)``, ``v̂_k`` the bias-corrected moving average (decay
    ``β``) of ``||g_k||²`` over the steps (Def. 4.5). For two tasks this is the closed form
    ``d̃ = g̃_1 + max(0, (τ||g̃_2||² - <g̃_1, g̃_2>)/||g̃_2||²) g̃_2`` (Cor. 4.6); if ``g_1``
    already satisfies every constraint, ``d = g_1``. Because of the normalisation a
    secondary task rescaled by the same constant at every step leaves ``d`` unchanged, and
    the weights are invariant to a common rescaling of all gradients (up to ``ε``). PCD is not
    symmetric: permuting the secondary tasks permutes their weights, the primary stays first.

    Special cases, as in the reference code and TorchJD 0.18: ``g_1 = 0`` gives ``d = 0``;
    incompatible constraints (only for K ≥ 3, e.g. exactly opposite secondaries) are dropped
    for the step (``d = g_1``, ``memory.feasible`` False); ``d̃ = 0`` up to round-off gives
    ``d = 0``. The quadratic program is solved exactly by enumerating the ``2^(K-1)`` working
    sets, as the paper's reference code does (TorchJD uses Goldfarb–Idnani's dual method), in
    the Gramian's dtype (float32 for float32 gradients; the reference solves in float64); K is
    limited to 16. Non-finite gradients propagate to the update while the weights and the
    moving average keep their previous values (``solver_converged=False``).

    Args:
      num_tasks: 2 <= K <= 16 (task 0 is the primary).
      tau: ``τ ∈ [0, 1]`` (the paper's representative setting is 0.02).
      beta: decay ``β ∈ [0, 1)`` of the moving average of the squared gradient norms.
      eps: ``ε ≥ 0`` added to the moving average before the inverse square root.
      metric_mask: leaves the Gramian sees (default all; ``"shared"``: the shared parameters).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).
      rtol: relative tolerance of the working-set tests (``None``: ``10 K eps``).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights`` and, in
      ``memory``, a :class:`PCDMemory`.

    Example:
      >>> tx = optax.chain(pcd(2, tau=0.05), optax.adam(1e-3))  # task 0 is the primary
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Varam & AlHajri, Not All Objectives Are Born Equal: Priority-Constrained Descent for
      Hierarchical Multi-Objective Optimization, TMLR 2026 (arXiv 2606.29521).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if num_tasks > MAX_TASKS:
        raise ValueError(
            f"pcd enumerates 2^(K-1) working sets and supports at most {MAX_TASKS} tasks, got "
            f"{num_tasks}."
        )
    solvers.check_hyperparameter("tau", tau, 0.0, strict=False)
    if isinstance(tau, int | float) and tau > 1:
        raise ValueError(f"tau must be <= 1, got {tau}.")
    solvers.check_hyperparameter("beta", beta, 0.0, strict=False)
    if isinstance(beta, int | float) and beta >= 1:
        raise ValueError(f"beta must be < 1, got {beta}.")
    solvers.check_hyperparameter("eps", eps, 0.0, strict=False)
    if rtol is not None:
        solvers.check_hyperparameter("rtol", rtol, 0.0, strict=True)

    def rule(G: jax.Array, losses: Any, key: Any, memory: PCDMemory) -> _bases.Proposal:
        del losses, key
        G = metrics.at_least_float32(G)
        scales, memory = pcd_scales(memory, jnp.diagonal(G), beta, eps)
        solution = pcd_weights(G, scales, tau, rtol=rtol)
        return _bases.Proposal(solution.weights, memory._replace(feasible=solution.feasible))

    return _bases.gramian_method(
        num_tasks,
        "pcd",
        rule,
        metric_mask=metric_mask,
        heads=heads,
        init_memory=PCDMemory(
            jnp.zeros((num_tasks,), jnp.float32), jnp.zeros((), jnp.int32), jnp.ones((), bool)
        ),
    )


INFO = MethodInfo(
    name="pcd",
    factory=pcd,
    family="gramian",
    reference=(
        "Varam & AlHajri, Not All Objectives Are Born Equal: Priority-Constrained Descent for "
        "Hierarchical Multi-Objective Optimization, TMLR 2026 (arXiv 2606.29521)"
    ),
    symmetric=False,
)
