"""``gradient_mode="last_layer"``: per-task gradients w.r.t. the head part's parameters.

K VJPs through the heads of a :class:`~autoscale_jax.jacobian.SplitLoss` only, measured on
their shared leaves (the last shared layer; mask ``"shared"`` unless the method gives one);
approximate.
"""

from __future__ import annotations

import functools

from autoscale_jax.modes._protocol import GradientMode
from autoscale_jax.modes._split import require_split_loss, split_forward

MODE = GradientMode(
    name="last_layer",
    exact=False,
    forward=functools.partial(split_forward, part=0),
    check=require_split_loss("last_layer"),
    order=3,
)
