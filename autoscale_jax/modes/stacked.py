"""``gradient_mode="stacked"`` (the default): the K stacked per-task gradients.

G from the K per-task gradients the transformation stacks itself (K VJPs, K×P memory); exact,
and every method trains in it (the gradient-space ones need the stacked gradients).
"""

from __future__ import annotations

from autoscale_jax.modes._protocol import GradientMode, plain_forward

# No Gramian of its own (Forward.task_gramian is None): the transformation stacks the K
# per-task gradients ``loss_vjp(e_k)`` and measures what it needs from them.
MODE = GradientMode(name="stacked", exact=True, forward=plain_forward, order=0)
