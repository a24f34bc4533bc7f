"""MoCo: MGDA on tracked (moving-average) task gradients with one projected step on λ per step.

Reference:
  Fernando et al, Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent
  Stochastic Approach, 2023 (arXiv 2210.12624).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._solvers import check_hyperparameter
from autoscale_jax.methods._stochastic_mgda import moco_weight_step, project_to_simplex

__all__ = ["MoCoState", "moco", "moco_weight_step", "project_to_simplex"]


class MoCoState(NamedTuple):
    """State of :func:`moco`.

    Attributes:
      task_weights: [K] float32 ``λ`` on the simplex, applied to the tracked gradients at the
        latest step.
      tracked_gradients: params-shaped pytree with a leading task axis K (float32 or wider):
        ``y_k``, the tracking estimate of each task gradient (K copies of the parameters).
      step: int32 updates so far.
    """

    task_weights: jax.Array
    tracked_gradients: Any
    step: jax.Array


def moco(
    num_tasks: int,
    *,
    beta: float = 0.5,
    beta_sigma: float = 0.5,
    gamma: float = 0.1,
    gamma_sigma: float = 0.5,
    rho: float = 0.0,
    metric_mask: metrics.MetricMask = None,
) -> base.MultiTaskTransformation:
    """MoCo (multi-objective gradient correction): stochastic MGDA on tracked task gradients.

    The min-norm weights of noisy task gradients are a biased estimate of MGDA's. MoCo keeps a
    tracking estimate ``y_k`` of each task gradient and takes one projected gradient step on
    the weights per training step, on the Gramian of the tracked gradients ``Y = [y_1..y_K]``:

    .. math::
       y_k ← y_k - β_t (y_k - g_k), \\qquad
       λ ← Π_Δ\\big(λ - γ_t (Y Yᵀ + ρ I) λ\\big), \\qquad
       d = \\sum_k λ_k y_k,

    with ``β_t = β / t^{σ_β}``, ``γ_t = γ / t^{σ_γ}`` at step ``t = 1, 2, ...``, ``y = 0`` and
    ``λ = 1/K`` at the start (as in the authors' code), and ``Π_Δ`` the Euclidean projection
    onto the simplex (:func:`project_to_simplex`). The update is ``d``, built from the tracked
    gradients, so it is not a weighted sum of this step's gradients; ``task_weights`` holds
    ``λ`` (``Σ λ = 1``). With ``β = 1, σ_β = 0`` (no tracking) and a fixed Jacobian, repeated
    steps converge to the min-norm weights of ``½ λᵀ(G + ρI)λ`` (MGDA's for ``ρ = 0``) when
    ``γ < 2 / λ_max(G + ρI)``.

    ``γ`` multiplies a Gramian, so it is in units of 1/gradient²: scale it with the gradient
    norms. As in the authors' code, ``y_k`` is not projected onto a bounded set and the raw
    gradients are tracked (LibMTL's port rescales each to ``L_k g_k/||g_k||`` and replaces
    ``Π_Δ`` by a softmax; neither is done here).
    The state holds ``y`` for every leaf: memory of K copies of the parameters, so ``init``
    needs the parameters. MoCo needs task gradients every step: no fast path, and
    ``presummed=True`` is rejected. A step with non-finite gradients returns a non-finite
    update and leaves ``y`` and ``λ`` unchanged.

    Args:
      num_tasks: K >= 2, static.
      beta: tracking rate ``β`` in (0, 1].
      beta_sigma: decay ``σ_β >= 0`` of ``β_t``.
      gamma: step size ``γ > 0`` of the weights.
      gamma_sigma: decay ``σ_γ >= 0`` of ``γ_t``.
      rho: regulariser ``ρ >= 0`` of the weight problem.
      metric_mask: the leaves whose tracked gradients enter ``Y Yᵀ`` (default all; see
        :func:`autoscale_jax.metrics.resolve_mask`); every leaf is tracked and updated.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a :class:`MoCoState`;
      ``update(task_grads, state, params=None)`` (no losses or key needed).

    Example:
      >>> tx = optax.chain(asj.methods.moco(num_tasks=2), optax.adam(1e-3))
      >>> state = tx.init(params)  # allocates the tracked gradients
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params)

    Reference:
      Fernando et al, Mitigating Gradient Bias in Multi-objective Learning: A Provably
      Convergent Stochastic Approach, 2023 (arXiv 2210.12624).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if isinstance(beta, int | float) and not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta!r}.")
    check_hyperparameter("beta_sigma", beta_sigma, 0.0, strict=False)
    check_hyperparameter("gamma", gamma, 0.0, strict=True)
    check_hyperparameter("gamma_sigma", gamma_sigma, 0.0, strict=False)
    check_hyperparameter("rho", rho, 0.0, strict=False)

    def init_state(params: Any) -> MoCoState:
        if params is None or not jax.tree.leaves(params):
            raise ValueError("moco keeps one tracked gradient per task: pass tx.init(params).")

        def zeros(leaf: Any) -> jax.Array:
            leaf = jnp.asarray(leaf)
            return jnp.zeros((num_tasks, *leaf.shape), jnp.promote_types(leaf.dtype, jnp.float32))

        return MoCoState(
            task_weights=jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
            tracked_gradients=jax.tree.map(zeros, params),
            step=jnp.zeros((), jnp.int32),
        )

    def aggregate(
        task_grads: Any, state: MoCoState, losses: Any, key: Any, extra: dict
    ) -> tuple[Any, MoCoState]:
        del losses, key, extra
        step = state.step + 1
        t = step.astype(jnp.float32)
        tracking_rate = beta / t**beta_sigma
        step_size = gamma / t**gamma_sigma
        tracked = jax.tree.map(
            lambda y, g: (y - tracking_rate * (y - g.astype(y.dtype))).astype(y.dtype),
            state.tracked_gradients,
            task_grads,
        )
        G = metrics.gramian(tracked, metrics.resolve_mask(task_grads, metric_mask))
        weights = moco_weight_step(G, state.task_weights, step_size, rho)
        update = jax.tree.map(
            lambda y, g: jnp.tensordot(weights.astype(y.dtype), y, axes=1).astype(g.dtype),
            tracked,
            task_grads,
        )
        proposed = MoCoState(weights, tracked, step)
        finite = _bases.all_finite(weights, tracked)
        return update, _bases.keep_if_finite(proposed, state, finite)._replace(step=step)

    return _bases.stacked_gradient_method(num_tasks, "moco", init_state, aggregate)


INFO = MethodInfo(
    name="moco",
    factory=moco,
    family="elementwise",
    weight_convention="sum_to_1",
    reference=(
        "Fernando et al, Mitigating Gradient Bias in Multi-objective Learning: A Provably "
        "Convergent Stochastic Approach, 2023 (arXiv 2210.12624)"
    ),
)
