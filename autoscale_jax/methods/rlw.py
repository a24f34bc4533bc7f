"""Random loss weighting (RLW): fresh random task weights every step.

Reference:
  Lin et al, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
  Learning, 2022.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks
from autoscale_jax.methods._loss_weighting import loss_weighting
from autoscale_jax.methods._registry import MethodInfo

DISTRIBUTIONS = ("normal", "dirichlet")


class RandomLossWeightingState(NamedTuple):
    """State of :func:`random_loss_weighting`.

    Attributes:
      task_weights: [K] weights drawn for the latest step.
      step: int32 calls so far; folded into the key, so one key gives a new draw per step.
    """

    task_weights: jax.Array
    step: jax.Array


def random_simplex_weights(key: jax.Array, num_tasks: int, distribution: str) -> jax.Array:
    """One draw on the probability simplex: ``softmax(N(0, I))`` or ``Dirichlet(1, ..., 1)``."""
    if distribution == "normal":
        return jax.nn.softmax(jax.random.normal(key, (num_tasks,), jnp.float32))
    return jax.random.dirichlet(key, jnp.ones((num_tasks,), jnp.float32))


def random_loss_weighting(
    num_tasks: int, *, distribution: str = "normal", weights_sum: float | None = None
) -> base.MultiTaskTransformation:
    """RLW: random weights ``λ ~ p(λ)`` on the simplex, redrawn every step.

    .. math:: λ = \\mathrm{softmax}(\\tilde λ), \\; \\tilde λ \\sim N(0, I_K)
              \\quad\\text{or}\\quad λ \\sim \\mathrm{Dir}(1, ..., 1)

    and the update is ``S Σ_k λ_k ∇L_k``. The paper trains on ``Σ_k λ_k L_k`` (weights on the
    simplex, ``S = 1``); this library scales weights to sum to ``K`` by default
    (``S = weights_sum = K``), the sum of equal weights, so switching from equal weighting
    keeps the learning-rate scale. ``weights_sum=1.0`` is the paper's convention. Both
    distributions are exchangeable, so every task's expected weight is ``S / K``.

    The draw for a step uses ``jax.random.fold_in(key, step)`` with the state's step count:
    a fixed key still gives new weights every step, and a given key and step always give the
    same weights (the fast path and the update draw the same ones).

    Loss-space method: its fast path never needs task gradients. ``task_losses`` is optional.

    Args:
      num_tasks: K >= 2, static.
      distribution: ``"normal"`` (softmax of standard normal draws, the paper's main choice)
        or ``"dirichlet"`` (``Dir(1)``: uniform on the simplex).
      weights_sum: the sum ``S`` of the weights; ``None`` means ``K``.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, key, task_losses=None, presummed=False)``. ``key`` is required: a
      ``ValueError`` says so when it is missing.

    Example:
      >>> tx = optax.chain(random_loss_weighting(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> step = 0
      >>> updates, state = tx.update(task_grads, state, params, key=jax.random.key(step))

    Reference:
      Lin et al, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
      Learning, 2022.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"Unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}.")
    total = num_tasks if weights_sum is None else weights_sum

    def init_state() -> RandomLossWeightingState:
        return RandomLossWeightingState(
            task_weights=jnp.ones((num_tasks,), jnp.float32), step=jnp.zeros((), jnp.int32)
        )

    def step(state: RandomLossWeightingState, losses: Any, key: jax.Array) -> tuple:
        del losses
        step_key = jax.random.fold_in(key, state.step)
        weights = total * random_simplex_weights(step_key, num_tasks, distribution)
        return weights, state._replace(step=state.step + 1)

    return loss_weighting(num_tasks, "rlw", init_state, step, needs_key=True, losses_required=False)


INFO = MethodInfo(
    name="rlw",
    factory=random_loss_weighting,
    family="loss",
    needs_key=True,
    needs_losses=False,
    weight_convention="sum_to_k",
    reference=(
        "Lin et al, Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task "
        "Learning, 2022 (arXiv 2111.10603)"
    ),
)
