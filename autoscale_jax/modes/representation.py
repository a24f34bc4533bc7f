"""``gradient_mode="representation"``: per-task gradients w.r.t. a shared representation ``z``.

K VJPs through the heads of a :class:`~autoscale_jax.jacobian.SplitLoss` only; approximate
(the MGDA-UB bound of Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization,
2018).
"""

from __future__ import annotations

from autoscale_jax.modes._split import split_mode

MODE = split_mode("representation", part=1, order=2)
