"""``gradient_mode="gramian"``: G column by column, ``J (M Jᵀ e_k)``, without K×P memory.

Each column is a VJP then a JVP (``lax.map`` over the tasks, ``chunk_size`` at a time): K VJPs
+ K JVPs, O(P + K²) memory; exact (float round-off).
"""

from __future__ import annotations

from typing import Any

import jax

from autoscale_jax import jacobian
from autoscale_jax.modes._protocol import Forward, GradientMode, ModeCall


def forward(call: ModeCall) -> Forward:
    """The losses and their linearization; the Gramian from its JVP and transpose."""
    fn = lambda p: call.loss_fn(p, *call.args)  # noqa: E731
    counts = None
    if call.task_counts:
        losses, jvp_fn, counts = jax.linearize(fn, call.params, has_aux=True)
    else:
        losses, jvp_fn = jax.linearize(fn, call.params)
    loss_vjp = jax.linear_transpose(jvp_fn, call.params)

    def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
        G = jacobian.gramian_from_linearization(
            jvp_fn,
            loss_vjp,
            call.params,
            losses.shape[0],
            losses.dtype,
            metric_mask=metric_mask,
            chunk_size=call.chunk_size or 1,
        )
        return jacobian.ObservedGramian(G)

    return Forward(losses, loss_vjp, counts, task_gramian)


MODE = GradientMode(name="gramian", exact=True, forward=forward, order=1)
