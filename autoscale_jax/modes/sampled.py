"""``gradient_mode="sampled"``: the Gramian entries of ``m = num_sampled_tasks`` random tasks.

m VJPs per step, the tasks drawn with the step's ``key``; unbiased. AutoScale's estimator
averages each entry over the windows' samples that saw it; the other methods get the
inverse-probability estimate ``G_ij / π_ij`` (unbiased, but their weights are nonlinear in it:
approximate).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from autoscale_jax import jacobian
from autoscale_jax.modes._protocol import Forward, GradientMode, ModeCall, plain_forward


def check(loss_fn: Any, num_sampled_tasks: Any) -> None:
    """Raises unless ``num_sampled_tasks`` is a Python or NumPy int >= 2."""
    if (
        isinstance(num_sampled_tasks, bool | np.bool_)
        or not isinstance(num_sampled_tasks, int | np.integer)
        or num_sampled_tasks < 2
    ):
        raise ValueError(
            "gradient_mode='sampled' needs num_sampled_tasks, a Python or NumPy int >= 2, "
            f"got {num_sampled_tasks!r}."
        )


def forward(call: ModeCall) -> Forward:
    """The plain forward pass; the Gramian of the sampled tasks' VJPs."""
    plain = plain_forward(call)
    if call.key is None:
        raise ValueError(
            "gradient_mode='sampled' draws the tasks with the step's key: call "
            "step(params, state, *batch, key=jax.random.key(i))."
        )
    sample_key = jax.random.fold_in(call.key, 0x5A11)  # independent of the method's draws
    losses = plain.losses

    def task_gramian(metric_mask: Any) -> jacobian.ObservedGramian:
        return jacobian.sampled_gramian(
            plain.loss_vjp,
            sample_key,
            losses.shape[0],
            call.num_sampled_tasks,  # type: ignore[arg-type]  # check: an int here
            losses.dtype,
            metric_mask=metric_mask,
            chunk_size=call.chunk_size,
        )

    return plain._replace(task_gramian=task_gramian)


MODE = GradientMode(
    name="sampled",
    exact=False,
    forward=forward,
    check=check,
    options=("num_sampled_tasks",),
    order=4,
)
