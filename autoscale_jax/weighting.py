"""Metric-guided task-weight rules, normalisation, windows and aggregation of window weights.

A *guide* maps window statistics (mean Gramian ``G`` of the task gradients and mean losses
``L̄``) to linear-scalarization weights ``w`` with ``Σ_k w_k = K``:

- ``"gms"``: ``w_k ∝ 1 / ||ḡ_k||``. Every weighted gradient then has the same norm, so the
  gradient magnitude similarity of every weighted pair is exactly 1 (closed form).
- ``"cond"``: ``argmin_{w > 0} κ(diag(w) G diag(w))``, the condition number of the weighted task
  Jacobian, approximately: a fixed number of gradient steps on a smooth surrogate of ``log κ``
  in ``log w``, started at the ``"gms"`` weights and never worse than them (see
  :func:`condition_number_weights`).
- ``"loss"``: ``w_k ∝ 1 / L̄_k`` (equal weighted losses), for non-negative losses only: a
  negative mean loss has no meaningful inverse (see :func:`loss_balance_weights`).

Tasks whose gradient norm (or loss) is zero carry no signal to balance: they get the mean
weight of the other tasks (all tasks zero: equal weights), so weights stay finite.

References:
  Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization
  Metrics, 2025 (arXiv 2508.13979).
  Gradient-norm loss scaling, 2025 (arXiv 2509.23915).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax import metrics

GUIDES = ("gms", "cond", "loss")
AGGREGATIONS = ("last_half", "last", "mean", "ema")
PREDICTORS = ("aggregate", "linear")


def normalise(weights: jax.Array, total: float | None = None) -> jax.Array:
    """Rescales positive weights to sum to ``total`` (default K, the equal-weight sum)."""
    total = weights.shape[0] if total is None else total
    return weights * (total / jnp.sum(weights))


def _inverse_or_neutral(values: jax.Array, eps: float = 1e-12) -> jax.Array:
    """``1 / |v_k|`` where active; inactive (≈ 0) entries get the mean of the active inverses."""
    values = jnp.abs(values)
    active = values > eps * jnp.maximum(jnp.max(values), eps)
    inverse = jnp.where(active, 1.0 / jnp.where(active, values, 1.0), 0.0)
    count = jnp.sum(active)
    neutral = jnp.where(count > 0, jnp.sum(inverse) / jnp.maximum(count, 1), 1.0)
    return jnp.where(active, inverse, neutral)


def gms_weights(G: jax.Array) -> jax.Array:
    """``w_k ∝ 1 / sqrt(G_kk)``, normalised to ``Σ w = K``: weighted GMS is 1 for every pair.

    Example:
      >>> gms_weights(jnp.diag(jnp.array([4.0, 1.0])))     # norms 2 and 1
      Array([0.6666667, 1.3333334], dtype=float32)
    """
    return normalise(_inverse_or_neutral(metrics.task_gradient_norms(G)))


def loss_balance_weights(losses: jax.Array) -> jax.Array:
    """``w_k ∝ 1 / L̄_k``, normalised to ``Σ w = K``: every weighted loss is equal.

    The losses must be non-negative (shift a loss that can be negative, e.g. a Gaussian
    negative log-likelihood, by a lower bound). A negative entry raises a ``ValueError`` where
    the losses are concrete; under ``jit`` every weight is then NaN. A zero loss gets the
    neutral weight (the mean of the others'); all zero: equal weights.

    Example:
      >>> loss_balance_weights(jnp.array([1.0, 3.0]))
      Array([1.5, 0.5], dtype=float32)
    """
    losses = metrics.at_least_float32(losses)
    # NumPy: inside a trace (a lax.cond branch, even eagerly) jnp ops on a concrete array
    # give tracers.
    if not isinstance(losses, jax.core.Tracer) and bool(np.any(np.asarray(losses) < 0)):
        raise ValueError(
            f"loss_balance_weights (guide='loss') needs non-negative losses, got "
            f"{losses.tolist()}: shift them by a lower bound (L_k - min L_k) or use guide='gms'."
        )
    weights = normalise(_inverse_or_neutral(losses))
    return jnp.where(jnp.any(losses < 0), jnp.nan, weights)


def condition_number_weights(
    G: jax.Array,
    *,
    num_iterations: int = 200,
    temperature: tuple[float, float] = (0.3, 0.02),
) -> jax.Array:
    """Weights minimising the condition number of the weighted task Jacobian.

    With ``A = D G D``, ``D = diag(exp(v))`` and ``ℓ_i = log λ_i(A)``, ``log κ(A) = ℓ_max -
    ℓ_min`` is minimised through its smooth surrogate (soft maximum minus soft minimum of the
    log eigenvalues at temperature ``t``)

    .. math:: f_t(v) = t \\log Σ_i e^{ℓ_i / t} + t \\log Σ_i e^{-ℓ_i / t},
       \\qquad \\log κ(A) ≤ f_t(v) ≤ \\log κ(A) + 2 t \\log K,

    whose gradient is closed form: ``∂ℓ_i/∂v_k = 2 (u_i)_k²`` for ``A u_i = λ_i u_i``, so
    ``∇f_t = 2 Σ_i (p_i - q_i) u_i²`` with ``p = softmax(ℓ/t)``, ``q = softmax(-ℓ/t)``. It sums
    to zero (κ ignores a common scale). Plain gradient steps ``v ← v - t ∇f_t / 2`` start at the
    ``"gms"`` weights while ``t`` anneals geometrically over ``temperature``; the last iterate
    is returned if its true κ is lower than the ``"gms"`` weights' (never worse than ``"gms"``),
    normalised to ``Σ w = K``. For a singular ``G`` (κ = ∞ for every ``w``) the ``"gms"``
    weights are returned.

    Why smooth: κ depends on the extreme eigenvalues only, so its minimum is flat in some
    directions and non-smooth where eigenvalues cross; normalised subgradient steps with a
    best-iterate pick then amplify round-off chaotically: a 1e-7 relative change of ``G`` (the
    round-off between a 1- and an 8-device reduction) moved those weights by 2.4e-3 (median
    over 24 random Gramians, K = 3..20; up to 2.5e-2). Fixed smooth steps are a Lipschitz map
    of ``G``: the same change moves these weights by 6e-7 (median; up to 2e-4 when ``κ(G)`` is
    3.6e4), about the round-off of ``G`` times its condition number, the sensitivity the
    problem itself has. The κ reached is 0.4% above the subgradient solver's on average (at
    most 1.7%; in theory at most ``2 t_end log K`` in ``log κ(G)``).

    Args:
      G: [K, K] Gramian of the task gradients.
      num_iterations: fixed iteration budget (jit-friendly).
      temperature: ``(t_start, t_end)`` of the annealed surrogate, in log-eigenvalue units.

    Returns:
      [K] positive weights.
    """
    G = metrics.at_least_float32(G)
    start = jnp.log(gms_weights(G))
    t_start, t_end = temperature

    def log_kappa(v: jax.Array) -> jax.Array:
        scale = jnp.exp(v)
        eigenvalues = jnp.linalg.eigvalsh(G * scale[:, None] * scale[None, :])
        lam_min = eigenvalues[0]
        return jnp.where(lam_min > 0, jnp.log(eigenvalues[-1]) - jnp.log(lam_min), jnp.inf)

    def step(i: jax.Array, v: jax.Array) -> jax.Array:
        t = t_start * (t_end / t_start) ** (i / max(num_iterations - 1, 1))
        scale = jnp.exp(v)
        eigenvalues, vectors = jnp.linalg.eigh(G * scale[:, None] * scale[None, :])
        logs = jnp.log(jnp.maximum(eigenvalues, jnp.finfo(G.dtype).tiny))
        shares = jax.nn.softmax(logs / t) - jax.nn.softmax(-logs / t)
        grad = 2 * jnp.matmul(vectors**2, shares, precision=metrics.FULL_PRECISION)
        return v - 0.5 * t * (grad - jnp.mean(grad))

    v = jax.lax.fori_loop(0, num_iterations, step, start)
    better = log_kappa(v) < log_kappa(start)
    best = jnp.where(better, v, start)
    return normalise(jnp.exp(best - jnp.max(best)))


def gradient_norm_scaling_weights(G: jax.Array, target: float | None = None) -> jax.Array:
    """The per-step rule ``w_k = S / ||g_k||`` with ``S`` the mean task norm (or ``target``).

    Every weighted gradient gets norm ``S``. Reference: arXiv 2509.23915 (2025), where ``g_k``
    is the gradient of task k on the last shared layer.
    """
    norms = metrics.task_gradient_norms(G)
    scale = jnp.mean(norms) if target is None else target
    return scale * _inverse_or_neutral(norms)


def guide_rule(
    guide: str, *, cond_iterations: int = 200
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """The rule ``(G, L̄) -> w`` of a named guide (``"gms"``, ``"cond"`` or ``"loss"``)."""
    if guide == "gms":
        return lambda G, losses: gms_weights(G)
    if guide == "cond":
        return lambda G, losses: condition_number_weights(G, num_iterations=cond_iterations)
    if guide == "loss":
        return lambda G, losses: loss_balance_weights(losses)
    raise ValueError(f"Unknown guide {guide!r}; choose one of {GUIDES}.")


def window_ends(step: jax.Array, window: int, last_step: jax.Array) -> jax.Array:
    """Whether ``step`` ends a window: every ``window`` steps, and at the phase's last step
    (the last window may be shorter). AutoScale's windows
    (:func:`autoscale_jax.phase_one.phase_one_step`) and
    :func:`autoscale_jax.methods.freeze`'s epochs are both cut this way."""
    return ((step + 1) % window == 0) | last_step


def window_count(estimation_steps: int, window: int) -> int:
    """``ceil(T1 / τ)``: the windows of a phase of ``estimation_steps`` steps (the last may be
    short).

    Example:
      >>> window_count(25, 10)    # steps 0-9, 10-19, 20-24
      3
    """
    return -(-estimation_steps // window)


def last_half_start(num_windows: Any) -> Any:
    """The first of the last ``ceil(n/2)`` of ``n`` windows, ``n - ceil(n/2)``: where
    ``"last_half"`` starts (``n`` a Python int or a traced one).

    Example:
      >>> last_half_start(5)      # windows 2, 3, 4
      2
    """
    return num_windows - (num_windows + 1) // 2


def aggregate_window_weights(
    window_weights: jax.Array, num_windows: jax.Array, how: str = "last_half", decay: float = 0.9
) -> jax.Array:
    """Aggregates the weights chosen in the first ``num_windows`` windows into fixed weights.

    Args:
      window_weights: [W, K] per-window weights (rows past ``num_windows`` are ignored).
      num_windows: how many rows are filled (may be traced); at least 1.
      how: ``"last_half"`` (mean of the last ``ceil(n/2)`` windows, the default), ``"last"``,
        ``"mean"`` (all windows), or ``"ema"`` (``e ← β e + (1-β) w_i`` from the first window,
        as for fixed weights from an SMTO in arXiv 2505.10347).
      decay: ``β`` for ``"ema"``.

    Returns:
      [K] weights normalised to ``Σ w = K``.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"Unknown aggregation {how!r}; choose one of {AGGREGATIONS}.")
    n = jnp.maximum(num_windows, 1)
    index = jnp.arange(window_weights.shape[0])
    if how == "ema":

        def ema_step(i: jax.Array, value: jax.Array) -> jax.Array:
            blended = decay * value + (1 - decay) * window_weights[i]
            return jnp.where(i < n, blended, value)

        return normalise(jax.lax.fori_loop(1, window_weights.shape[0], ema_step, window_weights[0]))
    first: Any = {"last_half": last_half_start(n), "last": n - 1, "mean": 0}[how]
    keep = ((index >= first) & (index < n)).astype(window_weights.dtype)
    return normalise(keep @ window_weights / jnp.sum(keep))


def linear_prediction_coefficients(
    estimation_steps: int, window: int, first_window: int, target_step: int
) -> tuple[float, ...]:
    """Static ``c_e`` such that ``Σ_e c_e y_e`` is the least-squares line through the windows'
    values, evaluated at ``target_step``.

    Window ``e`` covers steps ``[eτ, min((e+1)τ, T1))`` and is placed at its centre step
    ``x_e``; the line is fitted to windows ``e ≥ first_window`` (the others get ``c_e = 0``).
    With ``n`` fitted windows, ``x̄`` their mean centre and ``S = Σ_e (x_e - x̄)²``,

    .. math:: ŷ(x^*) = ȳ + b (x^* - x̄), \\quad b = Σ_e (x_e - x̄)(y_e - ȳ) / S
       \\;\\Rightarrow\\; c_e = 1/n + (x_e - x̄)(x^* - x̄) / S.

    ``Σ_e c_e = 1``: a common shift of every ``y_e`` shifts the prediction by the same amount,
    so on log weights a common scale of the window weights does not change the normalised
    prediction. One fitted window has no slope: ``c = 1`` there.

    Example:
      >>> linear_prediction_coefficients(20, 10, 0, 29)   # centres 4.5 and 14.5
      (-1.45, 2.45)
    """
    num_windows = window_count(estimation_steps, window)
    starts = np.arange(num_windows) * window
    centres = starts + (np.minimum(starts + window, estimation_steps) - 1 - starts) / 2
    fitted = np.arange(num_windows) >= first_window
    x = centres[fitted]
    spread = np.sum((x - x.mean()) ** 2)
    slope_part = (x - x.mean()) * (target_step - x.mean()) / spread if spread > 0 else 0 * x
    coefficients = np.zeros(num_windows)
    coefficients[fitted] = 1 / x.size + slope_part
    return tuple(round(float(c), 12) for c in coefficients)
