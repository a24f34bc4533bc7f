"""SDMGrad: direction-oriented MGDA with weights from two independent batches.

Reference:
  Xiao et al, Direction-oriented Multi-objective Learning: Simple and Provable Stochastic
  Algorithms, 2023 (arXiv 2305.18409).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._solvers import SolverResult, check_hyperparameter
from autoscale_jax.methods._stochastic_mgda import (
    cross_gramian,
    project_to_simplex,
    two_batch_gramian,
    two_batch_method,
)

__all__ = ["cross_gramian", "sdmgrad", "sdmgrad_weights", "two_batch_gramian"]


def sdmgrad_weights(
    G: jax.Array,
    init: jax.Array,
    *,
    regularization: Any = 0.3,
    step_size: Any = 5.0,
    momentum: Any = 0.5,
    num_steps: int = 20,
    tolerance: float = 1e-5,
) -> SolverResult:
    """SDMGrad's inner loop: projected heavy-ball steps along ``Ĝ (w + λ 1/K)`` on the simplex.

    .. math::
       Ĝ = G / s^2, \\quad s = \\tfrac1K \\sum_k \\sqrt{\\max(G_{kk}, 0)}, \\qquad
       m ← μ m + Ĝ (w + λ \\mathbf{1}/K), \\quad w ← Π_Δ(w - η m)

    from ``w = init`` and ``m = 0``, ``num_steps`` times (the normalisation by ``s²`` is the
    authors' code; when no diagonal entry is positive ``s²`` is ``max |G_ij|``, or 1 for a zero
    matrix). With ``G = J₁J₂ᵀ`` for independent batches, ``Ĝ w`` is an unbiased estimate of
    the full-batch ``ĴĴᵀw`` (up to the normalisation).

    Args:
      G: [K, K] (cross) Gramian.
      init: [K] starting weights on the simplex (the previous step's, a warm start).
      regularization: ``λ >= 0``, the pull towards the average gradient.
      step_size: ``η > 0``.
      momentum: ``μ`` in [0, 1).
      num_steps: the fixed budget ``S >= 1``, static.
      tolerance: ``converged`` reports whether the last step moved ``w`` by at most this much
        (max-norm); a small budget with a large step often ends before that, by design.

    Returns:
      A :class:`~autoscale_jax.methods._solvers.SolverResult` with ``w`` on the simplex.
    """
    G = metrics.at_least_float32(G)
    scale = jnp.mean(jnp.sqrt(jnp.clip(jnp.diag(G), 0.0))) ** 2
    largest = jnp.max(jnp.abs(G))
    scale = jnp.where(scale > 0, scale, jnp.where(largest > 0, largest, 1.0))
    G = G / scale
    anchor = regularization * jnp.mean(G, axis=1)  # λ Ĝ 1/K

    def body(_: int, carry: tuple) -> tuple:
        w, velocity, _ = carry
        velocity = momentum * velocity + G @ w + anchor
        new_w = project_to_simplex(w - step_size * velocity)
        return new_w, velocity, jnp.max(jnp.abs(new_w - w))

    start = (init.astype(G.dtype), jnp.zeros_like(init, G.dtype), jnp.asarray(jnp.inf, G.dtype))
    w, _, change = jax.lax.fori_loop(0, num_steps, body, start)
    return SolverResult(w, jnp.asarray(num_steps, jnp.int32), change <= tolerance)


def sdmgrad(
    num_tasks: int,
    *,
    regularization: float = 0.3,
    step_size: float = 5.0,
    momentum: float = 0.5,
    num_steps: int = 20,
    tolerance: float = 1e-5,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """SDMGrad: MGDA regularised towards the average gradient, with unbiased stochastic weights.

    The direction-oriented problem keeps the common descent direction near the average gradient
    ``g₀ = (1/K) Σ_k g_k``; its dual in the simplex weights ``w`` is

    .. math::
       \\min_{w ∈ Δ} \\tfrac12 \\|G_w\\|^2 + λ \\langle g_0, G_w \\rangle, \\qquad
       G_w = \\sum_k w_k g_k, \\qquad d = \\frac{G_w + λ g_0}{1 + λ}.

    ``λ = 0`` is MGDA, ``λ → ∞`` the average gradient. The quadratic term is estimated without
    bias from two independent batches: the weights take ``S`` projected SGD steps
    (:func:`sdmgrad_weights`, warm-started from the previous step) on the cross Gramian
    ``G = J₁ J₂ᵀ`` of ``task_grads`` (J₁) and ``second_task_grads`` (J₂). The update is ``d``
    on ``task_grads``: ``Σ_k c_k g_k`` with ``c = (w + λ/K)/(1 + λ)``, stored as
    ``task_weights`` (``Σ c = 1``). The paper builds ``d`` from a third independent batch:
    pass it as ``task_grads`` together with ``second_task_grads`` and ``third_task_grads``
    (then ``G = J₂ J₃ᵀ``).

    A training loop supplies the second batch's gradients as an extra keyword::

        losses, g1 = asj.task_value_and_grad(loss_fn)(params, batch1)
        _, g2 = asj.task_value_and_grad(loss_fn)(params, batch2)
        updates, state = tx.update(g1, state, params, second_task_grads=g2)

    ``state.memory`` holds ``w``; ``solver_converged`` says whether the last inner step moved
    ``w`` by at most ``tolerance`` (see :func:`sdmgrad_weights`). Non-finite gradients in any
    batch keep the previous weights (``solver_converged=False``); non-finite ``task_grads``
    still reach the update. No fast path: every step needs both batches' task gradients.

    Args:
      num_tasks: K >= 2, static.
      regularization: ``λ >= 0``.
      step_size: inner step ``η > 0`` (on the normalised Gramian).
      momentum: inner heavy-ball momentum ``μ`` in [0, 1).
      num_steps: inner steps ``S >= 1`` per update, static.
      tolerance: the inner loop's convergence report (see :func:`sdmgrad_weights`).
      metric_mask: the leaves the cross Gramian sees (see
        :func:`~autoscale_jax.methods._bases.gramian_method`).
      heads: ``"weighted"`` or ``"plain"`` (task heads get their own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a
      :class:`~autoscale_jax.methods.GramianMethodState`; ``update(task_grads, state,
      params=None, *, second_task_grads, third_task_grads=None)``.

    Example:
      >>> tx = optax.chain(asj.methods.sdmgrad(num_tasks=2), optax.sgd(1e-2))
      >>> state = tx.init(params)
      >>> _, g1 = asj.task_value_and_grad(loss_fn)(params, batches[0])   # two independent
      >>> _, g2 = asj.task_value_and_grad(loss_fn)(params, batches[1])   # batches
      >>> updates, state = tx.update(g1, state, params, second_task_grads=g2)

    Reference:
      Xiao et al, Direction-oriented Multi-objective Learning: Simple and Provable Stochastic
      Algorithms, 2023 (arXiv 2305.18409).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    _bases.check_heads(heads)
    check_hyperparameter("regularization", regularization, 0.0, strict=False)
    check_hyperparameter("step_size", step_size, 0.0, strict=True)
    if isinstance(momentum, int | float) and not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}.")
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive Python int, got {num_steps!r}.")
    check_hyperparameter("tolerance", tolerance, 0.0, strict=False)

    def rule(G: jax.Array, losses: Any, key: Any, memory: jax.Array) -> _bases.Proposal:
        del losses, key
        result = sdmgrad_weights(
            G,
            memory,
            regularization=regularization,
            step_size=step_size,
            momentum=momentum,
            num_steps=num_steps,
            tolerance=tolerance,
        )
        weights = (result.solution + regularization / num_tasks) / (1.0 + regularization)
        return _bases.Proposal(weights, result.solution, result.iterations, result.converged)

    return two_batch_method(num_tasks, "sdmgrad", rule, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="sdmgrad",
    factory=sdmgrad,
    family="gramian",
    weight_convention="sum_to_1",
    reference=(
        "Xiao et al, Direction-oriented Multi-objective Learning: Simple and Provable "
        "Stochastic Algorithms, 2023 (arXiv 2305.18409)"
    ),
    extra_inputs=("second_task_grads",),
)
