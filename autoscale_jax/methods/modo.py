"""MoDo: stochastic MGDA with one projected step on λ per step, on a double-sampled Gramian.

Reference:
  Chen et al, Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and
  Conflict-Avoidance, 2023 (arXiv 2305.20057).
"""

from __future__ import annotations

from typing import Any

import jax

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._solvers import check_hyperparameter
from autoscale_jax.methods._stochastic_mgda import moco_weight_step, two_batch_method


def modo_weights(G: jax.Array, weights: jax.Array, step_size: Any, rho: Any = 0.1) -> jax.Array:
    """MoDo's weight step ``λ ← Π_Δ(λ - γ (G λ + ρ λ))`` on a (cross) Gramian ``G = J₁J₂ᵀ``.

    Args:
      G: [K, K] cross Gramian of two independent batches (any [K, K] matrix).
      weights: [K] current ``λ`` on the simplex.
      step_size: ``γ > 0``.
      rho: regulariser ``ρ >= 0``.

    Returns:
      The next [K] ``λ`` on the simplex.
    """
    return moco_weight_step(G, weights, step_size, rho)


def modo(
    num_tasks: int,
    *,
    gamma: float = 1e-3,
    rho: float = 0.1,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """MoDo (multi-objective gradient with double sampling): stochastic MGDA without bias.

    MGDA's weights minimise ``½ λᵀ J Jᵀ λ`` over the simplex; with one batch, ``J₁J₁ᵀ`` is a
    biased estimate of the full-batch ``ĴĴᵀ``. MoDo takes one projected gradient step per
    training step on the cross Gramian of two independent batches, whose expectation is
    ``ĴĴᵀ``:

    .. math::
       λ ← Π_Δ\\big(λ - γ (J_1 J_2ᵀ λ + ρ λ)\\big), \\qquad d = \\sum_k λ_k g_k,

    from ``λ = 1/K``, with ``Π_Δ`` the Euclidean projection onto the simplex
    (:func:`~autoscale_jax.methods.moco.project_to_simplex`). ``J₁`` is ``task_grads``, ``J₂``
    is ``second_task_grads``, and the update ``d`` is built from ``task_grads``. The paper
    builds ``d`` from a third independent batch: pass it as ``task_grads`` together with
    ``second_task_grads`` and ``third_task_grads`` (then ``λ`` uses ``J₂J₃ᵀ``). With one
    Jacobian repeated (``J₁ = J₂``) and ``ρ = 0`` the weights converge to MGDA's min-norm
    weights when ``γ < 2/λ_max(J Jᵀ)``; ``γ`` is in units of 1/gradient². A small ``γ`` keeps
    the weights near static (the paper's trade-off: better generalisation, less conflict
    avoidance). ``task_weights`` holds ``λ`` (``Σ λ = 1``).

    A training loop supplies the second batch's gradients as an extra keyword::

        losses, g1 = asj.task_value_and_grad(loss_fn)(params, batch1)
        _, g2 = asj.task_value_and_grad(loss_fn)(params, batch2)
        updates, state = tx.update(g1, state, params, second_task_grads=g2)

    Non-finite gradients in any batch keep the previous weights (``solver_converged=False``);
    non-finite ``task_grads`` still reach the update. No fast path.

    Args:
      num_tasks: K >= 2, static.
      gamma: weight step size ``γ > 0``.
      rho: regulariser ``ρ >= 0``.
      metric_mask: the leaves the cross Gramian sees (see
        :func:`~autoscale_jax.methods._bases.gramian_method`).
      heads: ``"weighted"`` or ``"plain"`` (task heads get their own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a
      :class:`~autoscale_jax.methods.GramianMethodState` (``memory`` is ``λ``);
      ``update(task_grads, state, params=None, *, second_task_grads, third_task_grads=None)``.

    Example:
      >>> tx = optax.chain(asj.methods.modo(num_tasks=2, gamma=1e-2), optax.sgd(1e-2))
      >>> state = tx.init(params)
      >>> _, g1 = asj.task_value_and_grad(loss_fn)(params, batches[0])   # two independent
      >>> _, g2 = asj.task_value_and_grad(loss_fn)(params, batches[1])   # batches
      >>> updates, state = tx.update(g1, state, params, second_task_grads=g2)

    Reference:
      Chen et al, Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization
      and Conflict-Avoidance, 2023 (arXiv 2305.20057).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    _bases.check_heads(heads)
    check_hyperparameter("gamma", gamma, 0.0, strict=True)
    check_hyperparameter("rho", rho, 0.0, strict=False)

    def rule(G: jax.Array, losses: Any, key: Any, memory: jax.Array) -> _bases.Proposal:
        del losses, key
        weights = modo_weights(G, memory, gamma, rho)
        return _bases.Proposal(weights, weights)

    return two_batch_method(num_tasks, "modo", rule, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="modo",
    factory=modo,
    family="gramian",
    weight_convention="sum_to_1",
    reference=(
        "Chen et al, Three-Way Trade-Off in Multi-Objective Learning: Optimization, "
        "Generalization and Conflict-Avoidance, 2023 (arXiv 2305.20057)"
    ),
    extra_inputs=("second_task_grads",),
)
