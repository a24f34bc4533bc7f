"""GradNorm: learnable task weights that equalise weighted gradient norms, paced by training rate.

Reference:
  Chen et al, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
  Networks, 2018.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics, weighting
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import descend, scale_optimizer

# Learned weights are kept at least this large before renormalising: a step that would make a
# weight negative would otherwise flip its task's gradient (the paper does not say).
_MIN_WEIGHT = 1e-6


class GradNormMemory(NamedTuple):
    """GradNorm's own state (``memory`` of its :class:`~autoscale_jax.methods.GramianMethodState`).

    Attributes:
      learned_weights: [K] the weights the next step applies (``Σ = K``).
      initial_losses: [K] ``L_k(0)``, the first finite loss of each task (NaN before one).
      gradient_norms: [K] ``||∇_W L_k||`` of the latest step, on the masked leaves.
      optimizer_state: state of the internal optimizer of the weights.
    """

    learned_weights: jax.Array
    initial_losses: jax.Array
    gradient_norms: jax.Array
    optimizer_state: Any


def gradnorm_weight_gradient(
    weights: jax.Array,
    gradient_norms: jax.Array,
    losses: jax.Array,
    initial_losses: jax.Array,
    alpha: Any,
) -> jax.Array:
    """``∂/∂w_k Σ_i |w_i G_i - Ḡ r_i^α|`` with the target ``Ḡ r_i^α`` held constant.

    ``G_i = w_i ||∇_W L_i||``, ``Ḡ = mean_i G_i``, ``r_i = (L_i / L_i(0)) / mean_j (L_j /
    L_j(0))``; the derivative is ``sign(G_k - Ḡ r_k^α) ||∇_W L_k||``.
    """
    weighted_norms = weights * gradient_norms
    rates = jnp.clip(metrics.training_rates(losses, initial_losses), 0.0)
    targets = jnp.mean(weighted_norms) * rates**alpha
    return jnp.sign(weighted_norms - targets) * gradient_norms


def gradnorm(
    num_tasks: int,
    *,
    alpha: float = 1.5,
    learning_rate: float = 0.025,
    optimizer: str = "adam",
    metric_mask: metrics.MetricMask = "shared",
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """GradNorm: weights ``w`` trained so each ``||∇_W w_k L_k||`` tracks its training rate.

    With ``G_k = ||∇_W w_k L_k|| = w_k ||∇_W L_k||`` on the parameters ``W`` (the leaves that
    ``metric_mask`` selects; the paper uses the last shared layer), ``Ḡ = mean_k G_k``, and the
    inverse training rate ``r_k = L̃_k / mean_j L̃_j``, ``L̃_k = L_k(t) / L_k(0)``, the weights
    descend

    .. math:: L_{grad}(w) = Σ_k |G_k(w) - Ḡ\\, r_k^α|

    with the target ``Ḡ r_k^α`` held constant, and are then renormalised to ``Σ_k w_k = K``.
    Each step applies the current ``w`` (``Σ_k w_k ∇L_k``) and then takes one step of an
    internal optimizer on ``w`` (the paper uses the network's optimizer; here it is separate
    so the weighting chains with any optax optimizer). ``α`` sets how strongly slow tasks are
    pushed (``α = 0``: equal weighted gradient norms). Weights are kept above 1e-6 before
    renormalising so none turns negative.

    The norms come from the diagonal of the masked Gramian (:func:`metrics.gramian`), so only
    ``O(K P_W)`` extra work. GradNorm needs task gradients every step: it has no fast path and
    does not accept ``presummed=True``. ``L_k(0)`` is the first finite loss of each task. A
    step whose gradient norms or losses are not finite leaves the weights unchanged (the
    non-finite gradient still reaches the update). A zero task gradient gives ``G_k = 0`` and
    no gradient for ``w_k``: defined, that weight only moves by renormalisation.

    Args:
      num_tasks: K >= 2, static.
      alpha: the asymmetry ``α >= 0`` (the paper uses 0.12 to 3; 1.5 is common).
      learning_rate: step size of the internal optimizer of the weights.
      optimizer: ``"adam"`` (default) or ``"sgd"``.
      metric_mask: which leaves form ``W``: ``"shared"`` (leaves where two or more tasks have a
        nonzero gradient: task heads drop out), ``None`` (all), a pytree of bools or a predicate
        ``(key_path, leaf) -> bool`` (see :func:`metrics.resolve_mask`); pass the last shared
        layer to follow the paper.
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the
        ``metric_mask`` leaves are weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` without a fast path;
      ``update(task_grads, state, params=None, *, task_losses)`` (``task_losses`` required).
      Its state's ``memory`` is a :class:`GradNormMemory`.

    Example:
      >>> tx = optax.chain(gradnorm(2, alpha=1.5), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, batch)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Chen et al, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
      Networks, 2018.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if isinstance(alpha, int | float) and alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha!r}.")
    tx = scale_optimizer(optimizer, learning_rate)

    def rule(G: jax.Array, losses: jax.Array, key: Any, memory: Any) -> Any:
        del key
        norms = metrics.task_gradient_norms(G).astype(jnp.float32)
        initial_losses = jnp.where(
            jnp.isfinite(memory.initial_losses), memory.initial_losses, losses
        ).astype(jnp.float32)
        weights = memory.learned_weights
        gradient = gradnorm_weight_gradient(weights, norms, losses, initial_losses, alpha)
        learned, optimizer_state = descend(tx, weights, gradient, memory.optimizer_state)
        learned = weighting.normalise(jnp.maximum(learned, _MIN_WEIGHT))
        return _bases.Proposal(
            weights, GradNormMemory(learned, initial_losses, norms, optimizer_state)
        )

    ones = jnp.ones((num_tasks,), jnp.float32)
    return _bases.gramian_method(
        num_tasks,
        "gradnorm",
        rule,
        metric_mask=metric_mask,
        heads=heads,
        losses_required=True,
        init_memory=GradNormMemory(
            learned_weights=ones,
            initial_losses=jnp.full((num_tasks,), jnp.nan, jnp.float32),
            gradient_norms=jnp.zeros((num_tasks,), jnp.float32),
            optimizer_state=tx.init(ones),
        ),
    )


INFO = MethodInfo(
    name="gradnorm",
    factory=gradnorm,
    family="gramian",
    needs_losses=True,
    weight_convention="sum_to_k",
    reference=(
        "Chen et al, GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep "
        "Multitask Networks, 2018 (arXiv 1711.02257)"
    ),
)
