"""``gradient_mode="representation"``: per-task gradients w.r.t. a shared representation ``z``.

K VJPs through the heads of a :class:`~autoscale_jax.jacobian.SplitLoss` only; approximate
(the MGDA-UB bound of Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization,
2018).
"""

from __future__ import annotations

import functools

from autoscale_jax.modes._protocol import GradientMode
from autoscale_jax.modes._split import require_split_loss, split_forward

MODE = GradientMode(
    name="representation",
    exact=False,
    forward=functools.partial(split_forward, part=1),
    check=require_split_loss("representation"),
    order=2,
)
