"""PBI: penalty-based boundary intersection, MOEA/D's scalarization, as loss-space weights.

Reference:
  Zhang & Li, MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition, IEEE
  Transactions on Evolutionary Computation 11(6), 2007.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks
from autoscale_jax.methods._loss_weighting import check_preference, loss_weighting
from autoscale_jax.methods._registry import MethodInfo

# Points closer to the preference ray than this fraction of ||L - z*|| count as on it (float
# round-off level): there d2 has no gradient and its subgradient 0 is used.
DISTANCE_RTOL = 1e-5


class PBIState(NamedTuple):
    """State of :func:`pbi`.

    Attributes:
      task_weights: [K] float32 ``w = ∂g/∂L`` of the latest step (may be negative).
      ideal_point: [K] float32 ``z*`` used at the latest step.
      has_ideal: whether ``ideal_point`` holds a running minimum yet (``"running_min"``).
    """

    task_weights: jax.Array
    ideal_point: jax.Array
    has_ideal: jax.Array


def pbi_value(losses: jax.Array, preference: jax.Array, ideal_point: Any, theta: Any):
    """``g = d1 + θ d2`` with ``d1 = <L - z*, r̂>`` and ``d2 = ||L - z* - d1 r̂||``."""
    unit = preference / jnp.linalg.norm(preference)
    shifted = losses - ideal_point
    d1 = jnp.dot(shifted, unit)
    return d1 + theta * jnp.linalg.norm(shifted - d1 * unit)


def pbi_weights(losses: jax.Array, preference: jax.Array, ideal_point: Any, theta: Any):
    """``w = ∂g/∂L = r̂ + θ p / ||p||`` with ``p = L - z* - d1 r̂`` (``w = r̂`` when ``p = 0``)."""
    unit = jnp.asarray(preference, losses.dtype)
    unit = unit / jnp.linalg.norm(unit)
    shifted = losses - ideal_point
    perpendicular = shifted - jnp.dot(shifted, unit) * unit
    d2 = jnp.linalg.norm(perpendicular)
    on_ray = d2 <= DISTANCE_RTOL * jnp.linalg.norm(shifted)
    direction = jnp.where(on_ray, 0.0, perpendicular / jnp.where(on_ray, 1.0, d2))
    return unit + theta * direction


def pbi(
    num_tasks: int,
    *,
    preference: Any = None,
    theta: float = 5.0,
    ideal_point: Any = 0.0,
) -> base.MultiTaskTransformation:
    """PBI: descend MOEA/D's boundary-intersection scalarization of the losses.

    With a preference direction ``r`` (unit ``r̂ = r/||r||``) and an ideal point ``z*``,

    .. math:: g(L) = d_1 + θ d_2, \\qquad d_1 = \\langle L - z^*, \\hat r\\rangle, \\qquad
              d_2 = \\lVert L - z^* - d_1 \\hat r \\rVert,

    ``d1`` is the progress along the preference ray and ``d2`` the distance to it. Its
    gradient is ``Σ_k w_k ∇L_k`` with the loss-space weights (``p = L - z* - d1 r̂ ⊥ r̂``)

    .. math:: w = \\frac{∂ g}{∂ L} = \\hat r + θ \\frac{p}{\\lVert p\\rVert},

    since ``∂d1/∂L = r̂`` and ``∂d2/∂L = (I - r̂ r̂ᵀ) p / ||p|| = p / ||p||``. Components of
    ``p`` are negative for tasks below the ray, so weights may be negative (unnormalised).
    On the ray (``d2 = 0``, taken as ``d2 <= 1e-5 ||L - z*||``, the level of float
    round-off) ``d2`` is not differentiable: its subgradient 0 is used and ``w = r̂``.
    ``θ = 0`` gives ``w = r̂``.

    Zhang & Li write ``d1`` with an absolute value (for ``L >= z*`` and ``r >= 0`` it is
    non-negative anyway); the signed form here keeps ``g`` smooth off the ray. ``z*`` is
    fixed (default 0, the lower bound of non-negative losses) or, as in MOEA/D,
    ``"running_min"``: the element-wise minimum of all finite losses seen so far, this step
    included. Non-finite losses leave the weights and ``z*`` unchanged.

    Loss-space method: its fast path never needs task gradients.

    Args:
      num_tasks: K >= 2, static.
      preference: [K] non-negative direction ``r`` (default uniform; only its direction
        matters).
      theta: the penalty ``θ >= 0`` on ``d2`` (MOEA/D uses 5).
      ideal_point: scalar or [K] ``z*``, or ``"running_min"``.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, task_losses, presummed=False)`` (``task_losses`` required).

    Example:
      >>> tx = optax.chain(pbi(2, preference=[1.0, 3.0], theta=5.0), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Zhang & Li, MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition,
      IEEE Transactions on Evolutionary Computation 11(6), 2007.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    r = jnp.asarray(check_preference(preference, num_tasks))
    if isinstance(theta, int | float) and not theta >= 0:
        raise ValueError(f"theta must be non-negative, got {theta!r}.")
    running = isinstance(ideal_point, str)
    if running and ideal_point != "running_min":
        raise ValueError(f"ideal_point must be numbers or 'running_min', got {ideal_point!r}.")
    if not running and not isinstance(ideal_point, jax.Array):
        values = np.asarray(ideal_point, np.float32)
        if values.ndim > 1 or (values.ndim == 1 and values.shape != (num_tasks,)):
            raise ValueError(f"ideal_point must be a scalar or have shape ({num_tasks},).")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"ideal_point must be finite, got {ideal_point!r}.")

    def init_state() -> PBIState:
        start = jnp.zeros((num_tasks,), jnp.float32)
        if not running:
            start = jnp.broadcast_to(jnp.asarray(ideal_point, jnp.float32), (num_tasks,))
        return PBIState(
            task_weights=r / jnp.linalg.norm(r), ideal_point=start, has_ideal=jnp.zeros((), bool)
        )

    def step(state: PBIState, losses: jax.Array, key: Any) -> tuple:
        del key
        ideal, has_ideal = state.ideal_point, state.has_ideal
        if running:
            finite = jnp.all(jnp.isfinite(losses))
            lowest = jnp.where(has_ideal, jnp.minimum(ideal, losses), losses)
            ideal = jnp.where(finite, lowest, ideal).astype(jnp.float32)
            has_ideal = has_ideal | finite
        weights = pbi_weights(losses, r, ideal, theta)
        return weights, PBIState(task_weights=weights, ideal_point=ideal, has_ideal=has_ideal)

    return loss_weighting(num_tasks, "pbi", init_state, step)


INFO = MethodInfo(
    name="pbi",
    factory=pbi,
    family="loss",
    reference=(
        "Zhang & Li, MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition, "
        "IEEE TEVC 2007 (penalty-based boundary intersection)"
    ),
)
