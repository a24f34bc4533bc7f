"""``gradient_mode="last_layer"``: per-task gradients w.r.t. the head part's parameters.

K VJPs through the heads of a :class:`~autoscale_jax.jacobian.SplitLoss` only, measured on
their shared leaves (the last shared layer; mask ``"shared"`` unless the method gives one);
approximate.
"""

from __future__ import annotations

from autoscale_jax.modes._split import split_mode

MODE = split_mode("last_layer", part=0, order=3)
