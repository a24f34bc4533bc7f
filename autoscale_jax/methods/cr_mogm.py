"""CR-MOGM: an exponential moving average over the weights any weighting method proposes.

Reference:
  Zhou et al, On the Convergence of Stochastic Multi-Objective Gradient Manipulation and
  Beyond, NeurIPS 2022 (OpenReview ScwfQ7hdwyP).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks, dispatch
from autoscale_jax.methods import _bases, _partial_labels
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._update_paths import checked_stacked, present_weighted_sum


class CRMOGMState(NamedTuple):
    """State of :func:`cr_mogm`.

    Attributes:
      task_weights: [K] float32 ``λ_t``, the averaged weights applied at the latest step
        (before the first step: ``init_weights`` or the inner method's initial weights).
      inner: the wrapped method's state.
      step: int32 updates so far.
    """

    task_weights: jax.Array
    inner: Any
    step: jax.Array


def moving_average(previous: jax.Array, proposed: jax.Array, alpha: Any) -> jax.Array:
    """``α λ_{t-1} + (1 - α) λ̂_t``; a non-finite proposal keeps ``λ_{t-1}``."""
    proposed = jnp.asarray(proposed, previous.dtype)
    averaged = alpha * previous + (1.0 - alpha) * proposed
    return jnp.where(jnp.all(jnp.isfinite(proposed)), averaged, previous).astype(previous.dtype)


def _inner_weights(inner_state: Any) -> jax.Array:
    try:
        return base.task_weights(inner_state)
    except ValueError as err:
        raise TypeError(
            "cr_mogm averages the inner method's task weights, but its state has no "
            "task_weights (methods without weights, such as graddrop, cannot be wrapped)."
        ) from err


def cr_mogm(
    method: base.MultiTaskTransformation,
    *,
    alpha: float = 0.9,
    init_weights: Any = None,
) -> base.MultiTaskTransformation:
    """CR-MOGM: apply a moving average of the weights a wrapped method proposes.

    Stochastic gradient manipulation (MGDA, PCGrad, CAGrad, ...) picks composite weights
    ``λ̂_t`` from one mini-batch, and the paper shows this can keep it away from Pareto
    optimal points. CR-MOGM averages the proposals over steps and updates along

    .. math:: λ_t = α λ_{t-1} + (1 - α) \\hat λ_t, \\qquad d_t = Σ_k λ_{t,k}\\, g_k,

    where ``λ̂_t`` is what the inner method stores in its state's ``task_weights`` after its
    own ``update`` on the same inputs (its combined update is discarded; under ``jit`` XLA
    drops its computation). The update is ``Σ_k λ_{t,k} g_k`` on every leaf, so the wrapper
    is meant for methods whose update is a weighted sum of the task gradients: an inner
    ``heads="plain"`` split is not reproduced, and for methods whose update is not
    ``Σ_k w_k g_k`` (e.g. DB-MTL's averaged gradients) the averaged weights replace it.

    Start: by default ``λ_1 = λ̂_1`` (the average is seeded with the first proposal, so no
    arbitrary start biases the first steps; the paper's analysis leaves ``λ_0`` free). With
    ``init_weights`` the average starts from them instead (TorchJD's ``CRMOGMWeighting``
    starts from ``1/K``). A step with non-finite losses, gradients or proposal leaves ``λ``
    unchanged (the inner method then re-proposes its previous weights, which must not be
    averaged in again); the non-finite gradients still reach the update. For a schedule
    ``α_t`` (TorchJD reads the paper's Corollary 1 as ``α_t`` growing towards 1 while the
    learning rate decays) wrap the factory in ``optax.inject_hyperparams``.

    Fast path: when the inner method has one (loss-space methods, ``update_every > 1``), so
    does the wrapper: its weights are ``α λ_{t-1} + (1 - α) ŵ_t`` with ``ŵ_t`` the inner
    fast-path weights, and a presummed update advances the inner state with that gradient.
    Without an inner fast path there is none.

    Args:
      method: a multi-task transformation of this library whose state has ``task_weights``.
      alpha: ``α`` in [0, 1], the weight on the previous average (0: the inner weights as they
        are; 1: the starting weights forever).
      init_weights: optional [K] ``λ_0``; ``None`` seeds the average with the first proposal.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, **extra_args)`` passes ``task_losses``, ``key`` and every other extra
      argument to the inner method.

    Raises:
      TypeError: for a non-multi-task ``method``, and at ``init`` for a method without task
        weights (GradDrop).

    Example:
      >>> tx = optax.chain(cr_mogm(asj.methods.mgda(2), alpha=0.9), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Zhou et al, On the Convergence of Stochastic Multi-Objective Gradient Manipulation and
      Beyond, NeurIPS 2022 (OpenReview ScwfQ7hdwyP).
    """
    if not isinstance(method, base.MultiTaskTransformation):
        raise TypeError("cr_mogm wraps a multi-task transformation of autoscale_jax.")
    if isinstance(alpha, int | float) and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    if init_weights is not None:
        init_weights = np.asarray(init_weights, np.float32)
        if init_weights.ndim != 1 or not np.all(np.isfinite(init_weights)):
            raise ValueError("init_weights must be a finite [K] vector.")
    inner_fast = method.fast_path

    def init_fn(params: Any) -> CRMOGMState:
        inner = method.init(params)
        start = jnp.asarray(_inner_weights(inner), jnp.float32)
        if init_weights is not None:
            if init_weights.shape != start.shape:
                raise ValueError(
                    f"init_weights must have shape {start.shape}, got {init_weights.shape}."
                )
            start = jnp.asarray(init_weights)
        return CRMOGMState(task_weights=start, inner=inner, step=jnp.zeros((), jnp.int32))

    def average(
        state: CRMOGMState,
        proposed: jax.Array,
        losses: Any,
        stacked: Any = None,
        combined: Any = None,
        present: Any = None,
    ) -> jax.Array:
        """The next ``λ``; kept as it is when the step's inputs (losses, gradients) are not
        finite, since the inner method then re-proposes its previous weights. The absent
        tasks' rows (partial labels) are not inputs."""
        step_alpha = alpha if init_weights is not None else jnp.where(state.step > 0, alpha, 0)
        present = checks.check_task_mask(present, state.task_weights.shape[0])
        if present is not None:
            losses = (
                None
                if losses is None
                else _partial_labels.drop_absent(jnp.asarray(losses), present)
            )
            stacked = jax.tree.map(lambda g: _partial_labels.drop_absent(g, present), stacked)
        inputs = [x for x in (losses, stacked, combined) if x is not None]
        finite = _bases.all_finite(*inputs)
        proposed = jnp.where(finite, jnp.asarray(proposed, jnp.float32), jnp.nan)
        return moving_average(state.task_weights, proposed, step_alpha)

    def update_fn(
        task_grads: Any, state: CRMOGMState, params: Any, inputs: dispatch.UpdateInputs
    ) -> tuple[Any, CRMOGMState]:
        if inputs.presummed:
            if inner_fast is None:
                _bases.reject_presummed("cr_mogm around a method without a fast path")
            assert inner_fast is not None  # reject_presummed raised otherwise
            # The fast path combined the gradient with these same averaged weights.
            proposed = base.fast_path_weights(
                inner_fast, state.inner, inputs.task_losses, inputs.key, inputs.task_mask
            )
            _, inner = method.update(task_grads, state.inner, params, inputs=inputs)
            weights = average(
                state, proposed, inputs.task_losses, combined=task_grads, present=inputs.task_mask
            )
            return task_grads, CRMOGMState(weights, inner, state.step + 1)
        present = checked_stacked(task_grads, state.task_weights.shape[0], inputs.task_mask)
        _, inner = method.update(task_grads, state.inner, params, inputs=inputs)
        proposed = _inner_weights(inner)
        weights = average(state, proposed, inputs.task_losses, task_grads, present=present)
        update = present_weighted_sum(task_grads, weights, present)
        return update, CRMOGMState(weights, inner, state.step + 1)

    fast_path = None
    if inner_fast is not None:

        def fast_weights(
            state: CRMOGMState, task_losses: Any, key: Any, mask: Any = None
        ) -> jax.Array:
            inner_weights = base.fast_path_weights(inner_fast, state.inner, task_losses, key, mask)
            return average(state, inner_weights, task_losses, present=mask)

        fast_path = base.FastPath(
            needs_task_gradients=lambda state: inner_fast.needs_task_gradients(state.inner),
            weights=fast_weights,
            takes_task_mask=True,
        )
    return dispatch.multitask_transformation(init_fn, update_fn, fast_path)


INFO = MethodInfo(
    name="cr_mogm",
    factory=cr_mogm,
    family="wrapper",
    reference=(
        "Zhou et al, On the Convergence of Stochastic Multi-Objective Gradient Manipulation and "
        "Beyond, NeurIPS 2022 (OpenReview ScwfQ7hdwyP; no arXiv id found)"
    ),
)
