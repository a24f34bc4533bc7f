"""STCH: smooth Tchebycheff scalarization, a log-sum-exp (smooth max) of the task objectives.

Reference:
  Lin et al, Smooth Tchebycheff Scalarization for Multi-Objective Optimization, 2024
  (arXiv 2402.19078).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._loss_weighting import LOG_LOSS_EPS, log_loss_weights, loss_weighting
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive

# Warm-up steps of the log-loss form when none are given (the official code warms up for
# 4 epochs; here it counts steps, so pass about that many steps for a faithful replay).
DEFAULT_WARMUP_STEPS = 100


class STCHState(NamedTuple):
    """State of :func:`stch`.

    Attributes:
      task_weights: [K] loss-space weights applied at the latest step.
      nadir: [K] mean of the (clamped) finite loss vectors seen during the warm-up (ones
        until the first one): the ``n`` of the log form.
      warmup_count: int32 finite loss vectors averaged into ``nadir`` so far.
    """

    task_weights: jax.Array
    nadir: jax.Array
    warmup_count: jax.Array


def stch_weights(
    losses: jax.Array,
    *,
    mu: Any,
    preferences: jax.Array,
    reference: jax.Array,
    log_losses: bool,
    eps: float = LOG_LOSS_EPS,
) -> jax.Array:
    """Loss-space weights of ``K μ log Σ_k exp(λ_k f_k / μ)``: ``Σ_k w_k ∇L_k`` is its gradient.

    With ``s = softmax(λ ⊙ f / μ)`` (computed max-shifted, so any ``μ > 0`` is stable):

    - ``log_losses=True``: ``f_k = log(L_k + ε) - log(n_k + ε)`` with the nadir
      ``n = reference``, and ``w_k = K λ_k s_k / (L_k + ε)``;
    - ``log_losses=False``: ``f_k = L_k - z*_k`` with the ideal point ``z* = reference``, and
      ``w_k = K λ_k s_k``.

    Losses (and the nadir) are clamped at 0 in the log form. Returns [K] weights, at least
    float32; non-finite losses give non-finite weights for the caller to handle.
    """
    losses = metrics.at_least_float32(losses)
    preferences = jnp.asarray(preferences, losses.dtype)
    if log_losses:
        inverse = log_loss_weights(losses, eps)
        objectives = -jnp.log(inverse) - jnp.log(jnp.maximum(reference, 0.0) + eps)
    else:
        inverse = jnp.ones_like(losses)
        objectives = losses - reference
    smooth_max = jax.nn.softmax(preferences * objectives / mu)
    return losses.shape[0] * preferences * smooth_max * inverse


def _check_preferences(preferences: Any, num_tasks: int) -> Any:
    """Validates concrete preferences; traced ones (``inject_hyperparams``) pass unchecked."""
    if preferences is None:
        return np.ones((num_tasks,), np.float32)
    if isinstance(preferences, jax.core.Tracer):
        return preferences
    values = np.asarray(preferences, np.float32)
    if values.shape != (num_tasks,):
        raise ValueError(f"preferences must have shape ({num_tasks},), got {values.shape}.")
    if not (np.all(np.isfinite(values)) and np.all(values >= 0) and values.sum() > 0):
        raise ValueError(f"preferences must be finite, non-negative, not all 0: {preferences!r}.")
    return values


def _check_ideal_point(ideal_point: Any, num_tasks: int) -> Any:
    """``z*`` as a [K] array (default zeros); concrete values must be finite, shape () or [K]."""
    if ideal_point is None:
        return np.zeros((num_tasks,), np.float32)
    if isinstance(ideal_point, jax.core.Tracer):
        return jnp.broadcast_to(ideal_point, (num_tasks,))
    values = np.asarray(ideal_point, np.float32)
    if values.shape not in ((), (num_tasks,)) or not np.all(np.isfinite(values)):
        raise ValueError(f"ideal_point must be finite with shape () or ({num_tasks},).")
    return np.broadcast_to(values, (num_tasks,)).copy()


def stch(
    num_tasks: int,
    *,
    mu: float = 1.0,
    preferences: Any = None,
    log_losses: bool = True,
    warmup_steps: int | None = None,
    ideal_point: Any = None,
    eps: float = LOG_LOSS_EPS,
) -> base.MultiTaskTransformation:
    """STCH: descend the smooth Tchebycheff scalarization of the task objectives.

    .. math:: g_μ(θ \\mid λ) = μ \\log \\sum_k \\exp\\Big(\\frac{λ_k (f_k(θ) - z^*_k)}{μ}\\Big),
              \\qquad ∇ g_μ = \\sum_k \\mathrm{softmax}\\Big(\\frac{λ ⊙ (f - z^*)}{μ}\\Big)_k
              λ_k ∇ f_k

    a smooth upper bound of the Tchebycheff scalarization ``max_k λ_k (f_k - z*_k)`` (the gap
    is at most ``μ log K``). As ``μ → 0`` all weight goes to the worst weighted task; as
    ``μ → ∞`` the softmax becomes uniform and the gradient that of the linear scalarization
    ``Σ_k λ_k f_k / K``. The update is ``K ∇g_μ`` (the official MTL code's factor), so the
    ``μ → ∞`` limit applies the weights ``λ`` to the objectives.

    Two forms of the objectives ``f_k``:

    - ``log_losses=True`` (default; the paper's multi-task code, also LibMTL's):
      ``f_k = log(L_k / n_k)`` with ``z* = 0``, where the nadir ``n_k`` is the mean loss of the
      first ``warmup_steps`` steps (finite ones only). During the warm-up the method trains
      on ``Σ_k λ_k log L_k`` (weights ``λ_k / L_k``, the ``μ → ∞`` limit), afterwards with
      ``w_k = K λ_k s_k / L_k``. The official code warms up for 4 epochs and averages the
      losses of the last one; here the warm-up counts steps and averages all of them.
    - ``log_losses=False`` (the paper's general form): ``f_k = L_k - z*_k`` with the ideal
      point ``ideal_point`` (default 0) and ``w_k = K λ_k s_k``, from the first step.

    The paper takes ``λ`` on the simplex; since ``g_{cμ}(θ | cλ) = c g_μ(θ | λ)``, the default
    ``λ = 1`` with ``μ`` is the simplex point ``1/K`` with ``μ/K``, times ``K``. Losses are
    clamped at 0 before ``+ ε`` in the log form (weights stay finite). A step with non-finite
    losses applies and keeps the previous weights and does not enter the nadir.

    Args:
      num_tasks: K >= 2, static.
      mu: the smoothing ``μ > 0`` (the official code's default is 1).
      preferences: [K] non-negative ``λ`` (default ones).
      log_losses: the log form (True) or the raw losses (False); static.
      warmup_steps: static int >= 0; only for the log form (default 100; 0: no nadir, ``n = 1``).
      ideal_point: [K] or scalar ``z*``; only for ``log_losses=False`` (default 0).
      eps: ``ε > 0`` added to the clamped losses in the log form.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a :class:`STCHState`;
      ``update(task_grads, state, params=None, *, task_losses, presummed=False)``.

    Example:
      >>> tx = optax.chain(stch(2, mu=0.5, warmup_steps=400), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(task_grads, state, params, task_losses=losses)

    Reference:
      Lin et al, Smooth Tchebycheff Scalarization for Multi-Objective Optimization, 2024
      (arXiv 2402.19078).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_positive("mu", mu)
    check_positive("eps", eps)
    lam = _check_preferences(preferences, num_tasks)
    if log_losses:
        if ideal_point is not None:
            raise ValueError("ideal_point is for log_losses=False; the log form uses the nadir.")
        warmup_steps = DEFAULT_WARMUP_STEPS if warmup_steps is None else warmup_steps
    elif warmup_steps:
        raise ValueError("warmup_steps estimates the nadir of log_losses=True only.")
    if not isinstance(warmup_steps, int | None) or (warmup_steps or 0) < 0:
        raise ValueError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}.")
    ideal = _check_ideal_point(ideal_point, num_tasks)

    def init_state() -> STCHState:
        return STCHState(
            task_weights=jnp.ones((num_tasks,), jnp.float32),
            nadir=jnp.ones((num_tasks,), jnp.float32),
            warmup_count=jnp.zeros((), jnp.int32),
        )

    def step(state: STCHState, losses: jax.Array, key: Any) -> tuple:
        del key
        if not log_losses:
            weights = stch_weights(
                losses, mu=mu, preferences=lam, reference=ideal, log_losses=False, eps=eps
            )
            return weights, state
        warming = state.warmup_count < (warmup_steps or 0)
        smooth = stch_weights(
            losses, mu=mu, preferences=lam, reference=state.nadir, log_losses=True, eps=eps
        )
        weights = jnp.where(warming, lam * log_loss_weights(losses, eps), smooth)
        record = warming & jnp.all(jnp.isfinite(losses))
        count = state.warmup_count + record.astype(jnp.int32)
        mean = state.nadir + (jnp.maximum(losses, 0.0) - state.nadir) / jnp.maximum(count, 1)
        nadir = jnp.where(record, mean, state.nadir)  # the first record replaces the ones
        return weights, state._replace(nadir=nadir.astype(jnp.float32), warmup_count=count)

    return loss_weighting(num_tasks, "stch", init_state, step)


INFO = MethodInfo(
    name="stch",
    factory=stch,
    family="loss",
    reference=(
        "Lin et al, Smooth Tchebycheff Scalarization for Multi-Objective Optimization, 2024 "
        "(arXiv 2402.19078)"
    ),
)
