"""COSMOS: a preference-weighted sum of the losses minus a cosine penalty towards the preference.

Reference:
  Ruchte & Grabocka, Scalable Pareto Front Approximation for Deep Multi-Objective Learning,
  2021 (arXiv 2103.13392).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks
from autoscale_jax.methods._loss_weighting import check_preference, loss_weighting
from autoscale_jax.methods._registry import MethodInfo

# Below this loss norm the cosine is undefined; its term is dropped (w = r).
LOSS_NORM_EPS = 1e-12


class CosmosState(NamedTuple):
    """State of :func:`cosmos`.

    Attributes:
      task_weights: [K] float32 ``w = ∂f/∂L`` of the latest step (may be negative).
      preference: [K] float32 ``r`` of the latest step.
    """

    task_weights: jax.Array
    preference: jax.Array


def cosmos_preference(key: jax.Array, num_tasks: int, concentration: Any = 1.2) -> jax.Array:
    """The preference COSMOS trains with at a step: ``r ~ Dir(concentration)``.

    Call it with the key passed to ``update`` to condition the network on the same ``r``.
    """
    alphas = jnp.broadcast_to(jnp.asarray(concentration, jnp.float32), (num_tasks,))
    return jax.random.dirichlet(key, alphas)


def cosmos_weights(losses: jax.Array, preference: jax.Array, mu: Any) -> jax.Array:
    """``w_k = ∂/∂L_k [Σ_j r_j L_j - μ cos(r, L)] = r_k - μ (r̂_k - c L̂_k) / ||L||``.

    ``r̂ = r/||r||``, ``L̂ = L/||L||`` and ``c = <r̂, L̂>``; for ``||L|| = 0`` the cosine is
    undefined and its term is dropped (``w = r``).
    """
    r = jnp.asarray(preference, losses.dtype)
    loss_norm = jnp.linalg.norm(losses)
    defined = ~(loss_norm <= LOSS_NORM_EPS)  # NaN losses stay NaN
    safe_norm = jnp.where(defined, loss_norm, 1.0)
    unit_r = r / jnp.linalg.norm(r)
    unit_losses = losses / safe_norm
    cosine = jnp.dot(unit_r, unit_losses)
    cosine_gradient = (unit_r - cosine * unit_losses) / safe_norm
    return r - mu * jnp.where(defined, cosine_gradient, 0.0)


def cosmos(
    num_tasks: int,
    *,
    preference: Any = None,
    mu: float = 2.0,
    sample_preferences: bool = False,
    concentration: Any = 1.2,
) -> base.MultiTaskTransformation:
    """COSMOS: linear scalarization by a preference ``r`` plus a penalty on the angle to ``r``.

    The network minimises

    .. math:: f(L) = Σ_k r_k L_k - μ \\cos(r, L), \\qquad
              \\cos(r, L) = \\frac{\\langle r, L \\rangle}{\\lVert r\\rVert \\lVert L\\rVert},

    whose gradient is ``Σ_k w_k ∇L_k`` with the loss-space weights

    .. math:: w_k = \\frac{∂ f}{∂ L_k} = r_k - \\frac{μ}{\\lVert L\\rVert}
              \\big(\\hat r_k - \\cos(r, L)\\, \\hat L_k\\big),
              \\quad \\hat r = r/\\lVert r\\rVert, \\; \\hat L = L/\\lVert L\\rVert.

    The penalty pulls the loss vector towards the ray of ``r``: a task whose share of the
    loss is below its preference share gets a *smaller*, possibly negative, weight (weights
    are unnormalised and may be negative). ``μ = 0`` is linear scalarization with ``w = r``.
    When ``||L|| = 0`` the cosine is undefined and its term is dropped (``w = r``).

    The paper samples ``r ~ Dir(α)`` for every batch and feeds it to the network as an extra
    input, so one network learns the whole Pareto front. Conditioning the network is the
    user's part. This transformation uses a fixed ``preference`` (default uniform ``1/K``)
    or, with ``sample_preferences=True``, draws ``r = cosmos_preference(key, K,
    concentration)`` from the ``key`` passed to ``update``: call ``cosmos_preference`` with
    the same key to condition the network on the same ``r``. Defaults follow the official
    code for Multi-MNIST: ``μ = 2``, ``α = 1.2``.

    Loss-space method: its fast path never needs task gradients.

    Args:
      num_tasks: K >= 2, static.
      preference: [K] non-negative ``r`` (default ``1/K`` each); ignored when sampling.
      mu: ``μ >= 0``, the weight of the cosine penalty.
      sample_preferences: draw a new ``r`` from the key each step (then ``key`` is required).
      concentration: scalar or [K] Dirichlet concentration ``α > 0`` for sampling.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, key=None, presummed=False)`` (``task_losses`` required;
      ``key`` when sampling).

    Example:
      >>> tx = optax.chain(cosmos(2, preference=[0.3, 0.7], mu=2.0), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Ruchte & Grabocka, Scalable Pareto Front Approximation for Deep Multi-Objective
      Learning, 2021 (arXiv 2103.13392).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    fixed = check_preference(preference, num_tasks)
    if isinstance(mu, int | float) and not mu >= 0:
        raise ValueError(f"mu must be non-negative, got {mu!r}.")
    if not isinstance(concentration, jax.Array):
        values = np.asarray(concentration, np.float32)
        if values.ndim > 1 or (values.ndim == 1 and values.shape != (num_tasks,)):
            raise ValueError(f"concentration must be a scalar or have shape ({num_tasks},).")
        if not np.all(values > 0):
            raise ValueError(f"concentration must be positive, got {concentration!r}.")

    def init_state() -> CosmosState:
        r = jnp.asarray(fixed)
        return CosmosState(task_weights=r, preference=r)

    def step(state: CosmosState, losses: jax.Array, key: Any) -> tuple:
        if sample_preferences:
            r = cosmos_preference(key, num_tasks, concentration)
        else:
            r = jnp.asarray(fixed)
        weights = cosmos_weights(losses, r, mu)
        return weights, CosmosState(task_weights=weights, preference=r)

    return loss_weighting(num_tasks, "cosmos", init_state, step, needs_key=sample_preferences)


INFO = MethodInfo(
    name="cosmos",
    factory=cosmos,
    family="loss",
    reference=(
        "Ruchte & Grabocka, Scalable Pareto Front Approximation for Deep Multi-Objective "
        "Learning, 2021 (arXiv 2103.13392)"
    ),
)
