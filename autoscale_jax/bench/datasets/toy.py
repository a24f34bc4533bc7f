r"""The analytic two-objective toy problem of CAGrad, Nash-MTL and FAMO.

With ``x = (x1, x2)`` and ``LOWER = 5e-6``:

.. math::

    f_1 &= \log\max(|0.5(-x_1 - 7) - \tanh(-x_2)|, \mathrm{LOWER}) + 6 \\
    f_2 &= \log\max(|0.5(-x_1 + 3) + \tanh(-x_2) + 2|, \mathrm{LOWER}) + 6 \\
    s_1 &= ((-x_1 + 7)^2 + 0.1(-x_2 - 8)^2) / 10 - 20 \\
    s_2 &= ((-x_1 - 7)^2 + 0.1(-x_2 - 8)^2) / 10 - 20 \\
    c_1 &= \max(\tanh(0.5 x_2), 0), \quad c_2 = \max(\tanh(-0.5 x_2), 0) \\
    L_1 &= f_1 c_1 + s_1 c_2, \quad L_2 = f_2 c_1 + s_2 c_2

For ``x2 > 0`` the losses are logarithmic valleys; for ``x2 < 0`` they are quadratic bowls
scaled by ``c_2``. The individual minima sit near ``(7, -8.36)`` (task 1) and ``(-7, -8.36)``
(task 2) and the Pareto set is a curve joining them in the lower half-plane. Nash-MTL and FAMO
additionally multiply ``L_1`` by 0.1 (``first_loss_scale``) to unbalance the two losses.

This definition was checked against the public CAGrad repository (``toy.py``) and the
Nash-MTL / FAMO repositories (``experiments/toy/problem.py``, ``trainer.py``).

Reference: Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

__all__ = [
    "CAGRAD_STARTS",
    "NASH_MTL_STARTS",
    "TOY_LOWER",
    "TOY_STARTS",
    "is_pareto_stationary",
    "min_norm_weight",
    "pareto_stationarity",
    "toy_losses",
]

TOY_LOWER = 5e-6
# Initial points of the CAGrad repository's toy experiment (its figure 1).
CAGRAD_STARTS = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
# Initial points of the Nash-MTL and FAMO toy experiments.
NASH_MTL_STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))
# Union of both lists, CAGrad's first.
TOY_STARTS = CAGRAD_STARTS + tuple(p for p in NASH_MTL_STARTS if p not in CAGRAD_STARTS)


def toy_losses(x: jax.Array, *, first_loss_scale: float = 1.0) -> jax.Array:
    """The two losses ``(L_1, L_2)`` of the CAGrad toy at ``x`` (see the module docstring).

    Args:
      x: point ``[2]``.
      first_loss_scale: factor on ``L_1``; 1 in CAGrad, 0.1 in Nash-MTL and FAMO.

    Returns:
      ``[2]`` array ``(first_loss_scale * L_1, L_2)`` in the dtype of ``x``.

    Example:
      >>> [round(float(v), 3) for v in toy_losses(jnp.array([-8.5, 7.5]))]
      [6.552, 7.901]

    Reference: Liu et al, Conflict-Averse Gradient Descent for Multi-task Learning, 2021.
    """
    x = jnp.asarray(x)
    x1, x2 = x[0], x[1]
    valley_1 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 - 7) - jnp.tanh(-x2)), TOY_LOWER)) + 6
    valley_2 = jnp.log(jnp.maximum(jnp.abs(0.5 * (-x1 + 3) + jnp.tanh(-x2) + 2), TOY_LOWER)) + 6
    bowl_1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    bowl_2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    upper = jnp.maximum(jnp.tanh(0.5 * x2), 0)
    lower = jnp.maximum(jnp.tanh(-0.5 * x2), 0)
    loss_1 = valley_1 * upper + bowl_1 * lower
    loss_2 = valley_2 * upper + bowl_2 * lower
    return jnp.stack([first_loss_scale * loss_1, loss_2])


def min_norm_weight(g1: jax.Array, g2: jax.Array) -> jax.Array:
    """Weight ``a`` in [0, 1] minimising ``||a g1 + (1 - a) g2||`` (MGDA for two tasks).

    Setting the derivative of ``||g2 + a (g1 - g2)||^2`` to zero gives
    ``a* = <g2, g2 - g1> / ||g1 - g2||^2``, clipped to [0, 1]; any ``a`` is optimal when
    ``g1 = g2`` and 0.5 is returned.

    Args:
      g1: first gradient ``[D]``.
      g2: second gradient ``[D]``.

    Returns:
      Scalar weight of ``g1``.

    Example:
      >>> min_norm_weight(jnp.array([1.0, 0.0]), jnp.array([-1.0, 0.0]))
      Array(0.5, dtype=float32)

    Reference: Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018.
    """
    difference = g1 - g2
    squared = jnp.vdot(difference, difference)
    safe = jnp.where(squared > 0, squared, 1.0)
    weight = jnp.clip(jnp.vdot(g2, -difference) / safe, 0.0, 1.0)
    return jnp.where(squared > 0, weight, 0.5)


@jax.jit
def pareto_stationarity(x: jax.Array, first_loss_scale: float = 1.0) -> jax.Array:
    r"""Norm of the min-norm point of the convex hull of the two task gradients at ``x``.

    .. math:: \min_{a \in [0, 1]} \| a \nabla L_1(x) + (1 - a) \nabla L_2(x) \|

    It is zero exactly at Pareto-stationary points (no common descent direction exists), so it
    measures how far an optimizer's end point is from the Pareto set. A positive
    ``first_loss_scale`` changes the value but not where it is zero.

    Args:
      x: point ``[2]``.
      first_loss_scale: factor on ``L_1`` as in :func:`toy_losses`.

    Returns:
      Non-negative scalar.

    Example:
      >>> float(pareto_stationarity(jnp.array([9.0, 9.0]))) > 0.05
      True

    Reference: Désidéri, Multiple-gradient descent algorithm (MGDA) for multiobjective
    optimization, 2012.
    """
    losses = functools.partial(toy_losses, first_loss_scale=first_loss_scale)
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    jacobian = jax.jacrev(losses)(x)
    weight = min_norm_weight(jacobian[0], jacobian[1])
    return jnp.linalg.norm(weight * jacobian[0] + (1 - weight) * jacobian[1])


def is_pareto_stationary(x: jax.Array, tol: float = 1e-3, *, first_loss_scale: float = 1.0) -> bool:
    """Whether :func:`pareto_stationarity` at ``x`` is at most ``tol``.

    Args:
      x: point ``[2]``.
      tol: tolerance on the min-norm of the gradient hull.
      first_loss_scale: factor on ``L_1`` as in :func:`toy_losses`.

    Returns:
      A Python bool.

    Example:
      >>> is_pareto_stationary(jnp.array([-8.5, 7.5]))
      False

    Reference: Désidéri, Multiple-gradient descent algorithm (MGDA) for multiobjective
    optimization, 2012.
    """
    return bool(pareto_stationarity(x, first_loss_scale) <= tol)
