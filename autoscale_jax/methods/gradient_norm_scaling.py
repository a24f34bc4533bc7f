"""Gradient-norm loss scaling: every task's weighted gradient gets the same norm, each step.

Reference:
  Gradient-norm loss scaling for multi-task learning, 2025 (arXiv 2509.23915).
"""

from __future__ import annotations

import functools

from autoscale_jax import base, metrics, weighting
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo


def gradient_norm_scaling(
    num_tasks: int,
    *,
    target_norm: float | None = None,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """Gradient-norm loss scaling: each step, ``w_k = S / ||g_k||`` on the masked leaves.

    ``S`` is the mean of the task norms (or ``target_norm``), so every weighted task gradient
    has norm ``S`` on the measured leaves. The paper measures ``g_k`` on the last shared layer:
    pass a ``metric_mask`` selecting it.

    Args:
      num_tasks: K >= 2.
      target_norm: a fixed common norm ``S``; ``None`` uses the mean task norm each step.
      metric_mask: which leaves the norms see (see :func:`autoscale`).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state holds the latest
      weights in ``task_weights``; it always needs task gradients.

    Reference:
      Gradient-norm loss scaling for multi-task learning, 2025 (arXiv 2509.23915).
    """

    weights = functools.partial(weighting.gradient_norm_scaling_weights, target=target_norm)
    return _bases.weights_method(
        num_tasks, "gradient_norm_scaling", weights, metric_mask=metric_mask, heads=heads
    )


INFO = MethodInfo(
    name="gradient_norm_scaling",
    factory=gradient_norm_scaling,
    family="gramian",
    reference="Gradient-norm loss scaling for multi-task learning, 2025 (arXiv 2509.23915)",
    kind="guided",
)
