"""Plain linear scalarization: fixed and equal weights, ``Σ_k w_k g_k``.

Methods on the Gramian base (:func:`~autoscale_jax.methods._update_paths.gramian_base`) whose
transition reads no Gramian: the stacked gradients are combined with the given weights, and the
fast path (one gradient of ``Σ_k w_k L_k``) serves every step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks
from autoscale_jax.methods._partial_labels import masked
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._update_paths import Sample, gramian_base

__all__ = ["FixedWeightsState", "equal_weights", "fixed_weights"]


class FixedWeightsState(NamedTuple):
    """State of :func:`fixed_weights`: the weights, readable with ``task_weights``."""

    task_weights: jax.Array


def fixed_weights(weights: Any) -> base.MultiTaskTransformation:
    """Linear scalarization with fixed weights: the update is ``Σ_k w_k g_k``.

    Args:
      weights: [K] task weights (K >= 2), used as given (no normalisation): finite, >= 0,
        not all zero (checked when concrete; a ``ValueError`` otherwise).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``task_losses`` is optional. Its
      fast path never needs task gradients. With ``task_mask`` (partial labels) the absent
      tasks' weights are 0 in that step's update.

    Example:
      >>> tx = optax.chain(asj.fixed_weights([1.0, 0.1]), optax.adam(1e-3))
    """
    weights = jnp.asarray(weights, jnp.float32)
    if weights.ndim != 1:
        raise ValueError(f"weights must be a vector [K], got shape {weights.shape}.")
    num_tasks = checks.check_num_tasks(weights.shape[0])
    if not isinstance(weights, jax.core.Tracer):  # traced under inject_hyperparams' update
        values = np.asarray(weights)
        if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.any(values > 0):
            raise ValueError(
                "fixed_weights needs finite, non-negative weights with at least one positive, "
                f"got {values.tolist()}."
            )

    def init_state(params: Any) -> FixedWeightsState:
        del params
        return FixedWeightsState(task_weights=weights)

    # The closed-over weights win over the state's, so inject_hyperparams can change them.
    def transition(state: FixedWeightsState, sample: Sample) -> tuple:
        return masked(weights, sample.present), FixedWeightsState(weights)

    def presummed_update(combined: Any, state: FixedWeightsState, *_: Any) -> tuple:
        return combined, FixedWeightsState(weights)

    return gramian_base(
        num_tasks,
        "fixed_weights",
        init_state,
        transition,
        reads_gramian=False,
        fast_path=base.loss_space_fast_path(lambda state, task_losses, key: state.task_weights),
        presummed_update=presummed_update,
    )


def equal_weights(num_tasks: int) -> base.MultiTaskTransformation:
    """Equal weighting (uniform loss): :func:`fixed_weights` with ``w_k = 1``.

    Example:
      >>> tx = optax.chain(asj.equal_weights(3), optax.adam(1e-3))
    """
    return fixed_weights(jnp.ones((checks.check_num_tasks(num_tasks),), jnp.float32))


INFO = (
    MethodInfo(
        name="fixed_weights",
        factory=fixed_weights,
        family="scalarization",
        weight_convention="as_given",
        constructor="weights",
        reference="linear scalarization with given weights",
        kind="fixed",
    ),
    MethodInfo(
        name="equal_weights",
        factory=equal_weights,
        family="scalarization",
        weight_convention="sum_to_k",
        reference="uniform linear scalarization (the unitary baseline)",
        kind="fixed",
    ),
)
