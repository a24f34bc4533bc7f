"""ConFIG: the conflict-free direction with equal projections on every unit task gradient.

Reference:
  Liu, Chu, Thuerey, ConFIG: Towards Conflict-free Training of Physics Informed Neural
  Networks, 2024 (arXiv 2408.11104).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _projections as projections
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._registry import MethodInfo

# Small K-space products at full float32 precision (no TF32 / bf16 passes on accelerators).
_dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)


def config_weights(
    G: jax.Array, preferences: jax.Array | None = None, rtol: float | None = None
) -> jax.Array:
    """ConFIG's weights ``w`` (``d = Σ_k w_k g_k``) from the Gramian alone.

    With ``n_k = ||g_k||``, unit gradients ``ĝ_k = g_k / n_k`` (rows of ``Ĵ``), their cosine
    matrix ``C = Ĵ Ĵᵀ`` and ``p`` the direction weights (default ones):
    ``g̃_u = Ĵ⁺ p = Ĵᵀ a`` with ``a = C⁺ p``, ``||g̃_u||² = aᵀCa``, ``<ĝ_k, g̃_u> = (Ca)_k``,
    and the update ``d = (Σ_k <g_k, g_u>) g_u`` with ``g_u = g̃_u / ||g̃_u||`` becomes

    .. math:: d = \\frac{n^T C a}{a^T C a} \\sum_k a_k \\hat g_k, \\qquad
       w_k = \\frac{n^T C a}{a^T C a} \\frac{a_k}{n_k}.

    ``C⁺`` keeps the eigenvalues above ``rtol · λ_max`` (a pseudo-inverse with a relative
    cut-off). A zero gradient (norm at most ``1e-12`` of the largest) has ``ĝ_k = 0``: it gets
    ``w_k = 0`` and the others behave as without it. When ``p`` has no component (beyond
    ``rtol`` of its squared norm) in the span of the kept eigenvectors, ``g̃_u`` vanishes (e.g.
    two exactly opposite gradients) and the weights are 0.

    Args:
      G: [K, K] Gramian.
      preferences: [K] positive direction weights ``p`` (default ones).
      rtol: relative eigenvalue cut-off of ``C``; ``None``: ``K · eps`` of the Gramian's dtype
        (:func:`~autoscale_jax.methods._projections.default_rtol`).

    Returns:
      The [K] weights.
    """
    C, norms, nonzero = solvers.unit_cosine_matrix(G)
    k = C.shape[0]
    p = jnp.ones((k,), C.dtype) if preferences is None else jnp.asarray(preferences, C.dtype)
    # A zero gradient's row of C is decoupled (identity); with p_k = 0 it gets a_k = 0, which is
    # what the pseudo-inverse of Ĵ with a zero row gives.
    p = jnp.where(nonzero, p, 0.0)
    rtol = projections.default_rtol(k, C.dtype) if rtol is None else rtol
    eigen = projections.psd_eigen(C, rtol)
    coordinates = jnp.where(eigen.kept, _dot(eigen.eigenvectors.T, p), 0.0)
    safe = jnp.where(eigen.kept, eigen.eigenvalues, 1.0)
    a = jnp.where(nonzero, _dot(eigen.eigenvectors, coordinates / safe), 0.0)
    projected = _dot(eigen.eigenvectors, coordinates)  # C a: the component of p in range(C)
    squared_length = jnp.sum(coordinates**2 / safe)  # aᵀ C a = ||g̃_u||²
    present = jnp.sum(coordinates**2) > rtol * jnp.sum(p**2)
    length = _dot(norms, projected)  # Σ_k <g_k, g̃_u>
    scale = jnp.where(present, length / jnp.where(present, squared_length, 1.0), 0.0)
    safe_norms = jnp.where(nonzero, norms, 1.0)
    return jnp.where(nonzero & present, scale * a / safe_norms, 0.0)


def config(
    num_tasks: int,
    *,
    preferences: Sequence[float] | jax.Array | None = None,
    rtol: float | None = None,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """ConFIG (Conflict-Free Inverse Gradients), computed from the task Gramian.

    The direction has the same projection on every unit task gradient, and its length is the
    sum of the projections of the task gradients on it (Liu et al 2024, Eq. 2):

    .. math:: g_u = \\mathcal U\\big([\\mathcal U(g_1), …, \\mathcal U(g_K)]^{-T}
       \\mathbf 1_K\\big), \\qquad d = \\Big(\\sum_k g_k^T g_u\\Big)\\, g_u,

    with ``U(x) = x/||x||`` and ``M^{-T}`` the pseudo-inverse of ``Mᵀ``. For linearly
    independent gradients (K ≤ P) ``<g_k/||g_k||, d>`` is the same positive number for every
    task, so ``d`` conflicts with none. Everything follows from the cosine matrix, so
    :func:`config_weights` returns ``w`` with ``d = Σ_k w_k g_k``. ``preferences`` are the
    paper's direction weights ``ŵ`` (TorchJD's ``pref_vector``): the projections are then
    proportional to them. The weights are invariant to a common positive rescaling of the
    gradients (``d`` scales with it) and permute with the tasks.

    Linearly dependent gradients are handled by the pseudo-inverse (eigenvalues of the cosine
    matrix below ``rtol · λ_max`` dropped), as in the reference code; the projections are then
    equal only in the least-squares sense, and the length rule is kept as written (it can
    be negative there). A zero task gradient gets weight 0; when ``g̃_u`` vanishes (exactly
    opposite gradients) or all gradients are zero the update is 0, never NaN (all zero: the
    state keeps its previous weights and sets ``gramian_zero``). The cosine
    matrix is decomposed in the Gramian's dtype (float32 for float32 gradients), so nearly
    dependent gradients are resolved only to about ``sqrt(rtol)``. Non-finite gradients
    propagate to the update; the state then keeps the previous weights.

    Args:
      num_tasks: K >= 2.
      preferences: [K] positive direction weights (default ones).
      rtol: relative eigenvalue cut-off of the cosine matrix (``None``: ``K · eps``).
      metric_mask: leaves the Gramian sees (default all; ``"shared"``: the shared parameters).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a
      :class:`~autoscale_jax.methods.GramianMethodState`.

    Example:
      >>> tx = optax.chain(config(2), optax.adam(1e-3))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Liu, Chu, Thuerey, ConFIG: Towards Conflict-free Training of Physics Informed Neural
      Networks, 2024 (arXiv 2408.11104).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    if rtol is not None:
        solvers.check_hyperparameter("rtol", rtol, 0.0, strict=False)
    if preferences is not None:
        preferences = jnp.asarray(preferences, jnp.float32)
        if preferences.shape != (num_tasks,):
            raise ValueError(
                f"preferences must have shape ({num_tasks},), got {preferences.shape}."
            )
        if not isinstance(preferences, jax.core.Tracer) and bool(jnp.any(preferences <= 0)):
            raise ValueError(f"preferences must be positive, got {preferences}.")

    weights = functools.partial(config_weights, preferences=preferences, rtol=rtol)
    return _bases.weights_method(num_tasks, "config", weights, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="config",
    factory=config,
    family="gramian",
    reference=(
        "Liu, Chu & Thuerey, ConFIG: Towards Conflict-free Training of Physics Informed Neural "
        "Networks, 2024 (arXiv 2408.11104)"
    ),
)
