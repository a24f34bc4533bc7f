"""ExcessMTL: task weights from exponentiated-gradient steps on estimated excess risks.

Reference:
  He et al, Robust Multi-Task Learning with Excess Risks, 2024 (arXiv 2402.02009).
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive

# The ε under the square root of the accumulated squared gradients (the official code's).
CURVATURE_EPS = 1e-7


class ExcessMTLState(NamedTuple):
    """State of :func:`excess_mtl`.

    Attributes:
      task_weights: [K] weights applied at the latest step (positive, sum K).
      squared_gradient_sums: params-shaped pytree with a leading task axis K (float32 or
        wider): ``H_k = Σ_t g_k(t)²`` on the counted leaves (zeros on the others).
      initial_excess: [K] each task's first positive excess-risk estimate (0 until then),
        the scale every later estimate is divided by.
      excess_risks: [K] the estimates ``E_k`` of the latest step.
      step: int32 updates so far.
    """

    task_weights: jax.Array
    squared_gradient_sums: Any
    initial_excess: jax.Array
    excess_risks: jax.Array
    step: jax.Array


def excess_risks(task_grads: Any, squared_sums: Any, mask: Any, eps: float) -> jax.Array:
    """``E_k = Σ_i g_{k,i}² / sqrt(H_{k,i} + ε)`` over the leaves ``mask`` keeps.

    Args:
      task_grads: stacked task gradients (leading task axis K on every leaf).
      squared_sums: the accumulated squared gradients ``H`` (same structure), this step's
        ``g²`` included.
      mask: a pytree of (possibly traced) bools per leaf, see
        :func:`autoscale_jax.metrics.resolve_mask`.
      eps: ``ε`` under the square root.

    Returns:
      [K] estimates, at least float32.
    """
    g_leaves, treedef = jax.tree.flatten(task_grads)
    treedef = cast(Any, treedef)  # jaxlib's PyTreeDef has no usable stub
    h_leaves = treedef.flatten_up_to(squared_sums)
    masks = treedef.flatten_up_to(mask)
    num_tasks = g_leaves[0].shape[0]
    total = jnp.zeros((num_tasks,), jnp.promote_types(g_leaves[0].dtype, jnp.float32))
    for g, h, keep in zip(g_leaves, h_leaves, masks, strict=True):
        if keep is False:
            continue
        g = metrics.at_least_float32(g).reshape(num_tasks, -1)
        term = jnp.sum(g * g / jnp.sqrt(h.reshape(num_tasks, -1) + eps), axis=1)
        total = total + (term if keep is True else jnp.where(keep, term, 0.0))
    return total


def excess_mtl_weights(weights: jax.Array, excess_ratios: jax.Array, step_size: Any) -> jax.Array:
    """Exponentiated gradient ``w_k ← K w_k e^{η r_k} / Σ_j w_j e^{η r_j}``, in log space."""
    logits = jnp.log(weights) + step_size * excess_ratios
    return weights.shape[0] * jax.nn.softmax(logits)


def excess_mtl(
    num_tasks: int,
    *,
    step_size: float = 1e-2,
    metric_mask: metrics.MetricMask = "shared",
    eps: float = CURVATURE_EPS,
) -> base.MultiTaskTransformation:
    """ExcessMTL: weight each task by how far it is from convergence (its excess risk).

    A second-order Taylor expansion around the task optimum gives the excess risk
    ``L_k(θ) - L_k(θ_k^*) ≈ ½ g_kᵀ H_k^{-1} g_k``; with a diagonal, Adagrad-style curvature
    estimate from the accumulated squared gradients the estimate is

    .. math:: E_k(t) = \\sum_i \\frac{g_{k,i}(t)^2}{\\sqrt{\\sum_{s \\le t} g_{k,i}(s)^2 + ε}},
              \\qquad r_k(t) = \\frac{E_k(t)}{E_k(t_0)},

    normalised by the task's first estimate ``E_k(t_0)`` so tasks of different loss scales
    compare (the official code's convention, also LibMTL's: no ½, ``ε = 1e-7``). The weights
    follow one exponentiated-gradient (mirror ascent) step on the simplex per update,

    .. math:: w_k(t) = K \\frac{w_k(t-1)\\, e^{η r_k(t)}}{\\sum_j w_j(t-1)\\, e^{η r_j(t)}},
              \\qquad w(0) = 1,

    and the update is ``Σ_k w_k(t) g_k(t)`` on every leaf, heads included (as the official
    code's ``Σ_k w_k L_k`` backward). A task whose estimate stays high relative to its start
    gains weight; one that converges (small gradients after large ones) loses weight. At the
    first step every ratio is 1, so the weights stay equal (as in the official code, which
    skips that step).

    Which leaves count: ``E`` and ``H`` use the leaves ``metric_mask`` selects (default
    ``"shared"``, the official code's shared parameters); ``H`` holds K copies of the
    parameters. A task whose estimate is still 0 (a zero gradient) has no reference yet: its
    ratio is 0 until its first positive estimate, which becomes ``E_k(t_0)``. A step with a
    non-finite gradient applies the previous weights (the non-finite update propagates) and
    leaves the state unchanged. ExcessMTL needs task gradients every step: it has no fast path
    and rejects ``presummed=True``.

    Args:
      num_tasks: K >= 2, static.
      step_size: ``η > 0``, the exponentiated-gradient step (the official default 1e-2).
      metric_mask: ``"shared"`` (default), ``None`` (all leaves), a pytree of bools or a
        predicate (see :func:`autoscale_jax.metrics.resolve_mask`).
      eps: ``ε > 0`` under the square root.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with an :class:`ExcessMTLState`;
      ``init(params)`` needs the parameters; ``update(task_grads, state, params=None)``.

    Example:
      >>> tx = optax.chain(excess_mtl(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params)

    Reference:
      He et al, Robust Multi-Task Learning with Excess Risks, 2024 (arXiv 2402.02009).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_positive("step_size", step_size)
    check_positive("eps", eps)

    def init_state(params: Any) -> ExcessMTLState:
        if params is None or not jax.tree.leaves(params):
            raise ValueError(
                "excess_mtl keeps accumulated squared gradients shaped like the parameters: "
                "call init(params) with the parameters."
            )

        def zeros(leaf: Any) -> jax.Array:
            leaf = jnp.asarray(leaf)
            return jnp.zeros((num_tasks, *leaf.shape), jnp.promote_types(leaf.dtype, jnp.float32))

        zero_k = jnp.zeros((num_tasks,), jnp.float32)
        return ExcessMTLState(
            task_weights=jnp.ones((num_tasks,), jnp.float32),
            squared_gradient_sums=jax.tree.map(zeros, params),
            initial_excess=zero_k,
            excess_risks=zero_k,
            step=jnp.zeros((), jnp.int32),
        )

    def aggregate(
        task_grads: Any, state: ExcessMTLState, losses: Any, key: Any, extra: dict
    ) -> tuple[Any, ExcessMTLState]:
        del losses, key, extra
        mask = metrics.resolve_mask(task_grads, metric_mask)

        def accumulate(h: jax.Array, g: jax.Array, keep: Any) -> jax.Array:
            if keep is False:
                return h
            added = h + jnp.square(metrics.at_least_float32(g)).astype(h.dtype)
            return added if keep is True else jnp.where(keep, added, h)

        sums = jax.tree.map(accumulate, state.squared_gradient_sums, task_grads, mask)
        excess = excess_risks(task_grads, sums, mask, eps)
        initial = jnp.where(state.initial_excess > 0, state.initial_excess, excess)
        ratios = jnp.where(initial > 0, excess / jnp.where(initial > 0, initial, 1.0), 0.0)
        weights = excess_mtl_weights(state.task_weights, ratios, step_size)
        finite = _bases.all_finite(weights, sums, excess)
        proposed = ExcessMTLState(weights, sums, initial, excess, state.step)
        new_state = _bases.keep_if_finite(proposed, state, finite)._replace(step=state.step + 1)
        applied = jnp.where(finite, weights, state.task_weights)
        return base.weighted_sum(task_grads, applied), new_state

    return _bases.stacked_gradient_method(num_tasks, "excess_mtl", init_state, aggregate)


INFO = MethodInfo(
    name="excess_mtl",
    factory=excess_mtl,
    family="elementwise",
    weight_convention="sum_to_k",
    reference="He et al, Robust Multi-Task Learning with Excess Risks, 2024 (arXiv 2402.02009)",
)
