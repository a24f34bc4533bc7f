"""FAMO: fast adaptive multitask optimization, balancing the rate at which log losses fall.

Reference:
  Liu et al, FAMO: Fast Adaptive Multitask Optimization, 2023.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._loss_weighting import LOG_LOSS_EPS, log_loss_weights, loss_weighting
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import descend, scale_optimizer


class FAMOState(NamedTuple):
    """State of :func:`famo`.

    Attributes:
      task_weights: [K] weights ``c z_k / L_k`` applied at the latest step (they sum to 1).
      logits: [K] ``ξ``, as updated at the latest step (``z = softmax(ξ)``).
      optimizer_state: state of the internal Adam on ``ξ``.
      previous_losses: [K] each task's loss at the latest step with finite losses where it
        was present.
      has_previous: [K] whether ``previous_losses`` holds a loss of that task yet.
    """

    task_weights: jax.Array
    logits: jax.Array
    optimizer_state: Any
    previous_losses: jax.Array
    has_previous: jax.Array


def famo_weights(logits: jax.Array, shifted_losses: jax.Array, eps: float) -> jax.Array:
    """``w_k = c z_k / L_k`` with ``z = softmax(ξ)`` and ``c = (Σ_k z_k / L_k)^{-1}``."""
    scaled = jax.nn.softmax(logits) * log_loss_weights(shifted_losses, eps)
    return scaled / jnp.sum(scaled)


def logit_gradient(
    logits: jax.Array, log_loss_decrease: jax.Array, known: jax.Array | None = None
) -> jax.Array:
    """``(∂z/∂ξ)ᵀ δ = z ⊙ (δ - <z, δ>)`` for ``z = softmax(ξ)``, the gradient FAMO descends.

    With ``known`` ([K] bools: the tasks whose decrease was measured) the same gradient for
    the softmax over those tasks alone; the others' logits get 0.
    """
    z = jax.nn.softmax(logits)
    if known is None:
        return z * (log_loss_decrease - jnp.dot(z, log_loss_decrease))
    z = jnp.where(known, z, 0)
    delta = jnp.where(known, log_loss_decrease, 0)
    z = z / jnp.maximum(jnp.sum(z), jnp.finfo(z.dtype).tiny)
    return z * (delta - jnp.dot(z, delta))


def famo(
    num_tasks: int,
    *,
    learning_rate: float = 0.025,
    weight_decay: float = 1e-3,
    min_losses: Any = 0.0,
    eps: float = LOG_LOSS_EPS,
) -> base.MultiTaskTransformation:
    """FAMO: the direction that decreases every log loss at about the same rate, in O(K).

    With logits ``ξ``, ``z = softmax(ξ)`` and losses ``L_k`` (minus their lower bound), the
    update direction is

    .. math:: d = Σ_k \\frac{c\\, z_k}{L_k} ∇L_k, \\qquad c = \\Big(Σ_k \\frac{z_k}{L_k}\\Big)^{-1},

    i.e. weights ``w_k = c z_k / L_k`` that sum to 1 (the gradient of ``Σ_k z_k log L_k``
    rescaled by ``c``). ``ξ`` follows the observed decrease of the log losses
    ``δ_k = log L_k(t-1) - log L_k(t)``: one Adam step (with L2 ``weight_decay`` on ``ξ``, as
    ``torch.optim.Adam(weight_decay=γ)``) along ``(∂z/∂ξ)ᵀ δ``, which moves weight away from
    tasks whose losses fell fastest. Equal losses give ``w_k = z_k``; two tasks with equal
    losses keep ``z`` (and the weights) equal.

    Timing: the paper evaluates ``L(t)`` on the same batch right after the parameter step, which
    costs a second forward pass. Here ``ξ`` is updated at the start of the next call from the
    losses of that call (stored in the state): the call at step ``t`` first updates ``ξ`` with
    ``δ = log L(t-1) - log L(t)`` (skipped at the first step), then applies the weights from
    the new ``ξ`` and ``L(t)``. The decrease is measured across two batches rather than on one.
    The paper also clips the combined gradient to norm 1: chain ``optax.clip_by_global_norm(1.0)``
    after this transformation for that.

    Losses are shifted by ``min_losses`` (their lower bound, 0 by default) and clamped at 0
    before ``+ eps``, so the logarithm and the weights are always defined. Non-finite losses
    skip the ``ξ`` step and are not stored; the previous weights are then applied and kept
    (the non-finite gradient still reaches the update).

    Loss-space method: its fast path never needs task gradients; the fast path's weights
    perform the same ``ξ`` step as the update, so both paths give identical results.

    Partial labels (``task_mask``): an absent task gets weight 0, its decrease ``δ_k`` counts as
    0 in the ``ξ`` step and its stored loss stays the last one observed (so ``δ_k`` spans the
    gap when it returns); the present tasks' weights are ``c z_k / L_k`` as above, with the
    absent task's ``L_k`` standing in as the present tasks' mean loss.

    Args:
      num_tasks: K >= 2, static.
      learning_rate: Adam step size on ``ξ`` (the paper's 0.025).
      weight_decay: the L2 coefficient ``γ`` on ``ξ`` (the paper uses 1e-3 to 1e-2, by dataset).
      min_losses: scalar or [K] lower bounds of the losses.
      eps: added to the shifted losses before the logarithm.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False, task_mask=None)`` (``task_losses``
      required).

    Example:
      >>> tx = optax.chain(famo(2), optax.clip_by_global_norm(1.0), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Liu et al, FAMO: Fast Adaptive Multitask Optimization, 2023.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    tx = scale_optimizer("adam", learning_rate, weight_decay=weight_decay)

    def shifted(losses: jax.Array) -> jax.Array:
        return metrics.at_least_float32(losses) - min_losses

    def log_shifted(losses: jax.Array) -> jax.Array:
        """``log(max(L_k - min_k, 0) + eps)``."""
        return -jnp.log(log_loss_weights(shifted(losses), eps))

    def step_weights(
        state: FAMOState, losses: jax.Array, present: jax.Array
    ) -> tuple[jax.Array, jax.Array, Any]:
        """The ``ξ`` step from the stored losses to these, then this step's weights.

        The base calls it for the update and the fast path alike.
        """
        known = present & state.has_previous
        decrease = jnp.where(known, log_shifted(state.previous_losses) - log_shifted(losses), 0)
        logits, optimizer_state = descend(
            tx,
            state.logits,
            logit_gradient(state.logits, decrease, known),
            state.optimizer_state,
            apply=jnp.any(known),
        )
        weights = famo_weights(logits, shifted(losses), eps)
        return weights, logits, optimizer_state

    def init_state() -> FAMOState:
        logits = jnp.zeros((num_tasks,), jnp.float32)
        return FAMOState(
            task_weights=jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32),
            logits=logits,
            optimizer_state=tx.init(logits),
            previous_losses=jnp.ones((num_tasks,), jnp.float32),
            has_previous=jnp.zeros((num_tasks,), bool),
        )

    def step(state: FAMOState, losses: jax.Array, key: Any, present: Any) -> tuple:
        del key
        present = jnp.ones((num_tasks,), bool) if present is None else present
        weights, logits, optimizer_state = step_weights(state, losses, present)
        finite = jnp.all(jnp.isfinite(losses))
        keep = finite & present
        return weights, FAMOState(
            task_weights=weights,
            logits=logits,
            optimizer_state=optimizer_state,
            previous_losses=jnp.where(keep, losses, state.previous_losses).astype(jnp.float32),
            has_previous=state.has_previous | keep,
        )

    return loss_weighting(num_tasks, "famo", init_state, step, takes_task_mask=True)


INFO = MethodInfo(
    name="famo",
    factory=famo,
    family="loss",
    weight_convention="sum_to_1",
    reference="Liu et al, FAMO: Fast Adaptive Multitask Optimization, 2023 (arXiv 2306.03792)",
)
