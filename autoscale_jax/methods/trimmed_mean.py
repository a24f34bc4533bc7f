"""TrimmedMean: per coordinate, drop the largest and smallest task components and average.

Reference:
  Yin et al, Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates, 2018
  (arXiv 1803.01498).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo


class TrimmedMeanState(NamedTuple):
    """State of :func:`trimmed_mean`: empty. The trimmed mean works coordinate by coordinate
    and has no task weights, so ``asj.task_weights`` raises on it."""


def check_trim_number(trim_number: Any, num_tasks: int) -> int:
    """Validates ``trim_number``: a static int with ``0 <= trim_number`` and
    ``num_tasks >= 2 * trim_number + 1`` (at least one component per coordinate survives)."""
    if isinstance(trim_number, bool) or not isinstance(trim_number, int | jnp.integer):
        raise ValueError(
            f"trim_number must be a static Python int, got {type(trim_number).__name__}. Under "
            "optax.inject_hyperparams pass static_args=('num_tasks', 'trim_number')."
        )
    if trim_number < 0:
        raise ValueError(f"trim_number must be >= 0, got {trim_number}.")
    if num_tasks < 2 * trim_number + 1:
        raise ValueError(
            f"trim_number={trim_number} removes {2 * trim_number} of the {num_tasks} task "
            f"components of every coordinate; it needs num_tasks >= 2 * trim_number + 1 = "
            f"{2 * trim_number + 1}."
        )
    return int(trim_number)


def _trimmed_leaf(task_grad: jax.Array, trim_number: int) -> jax.Array:
    """The trimmed mean of one stacked leaf [K, ...] along the task axis; keeps its dtype."""
    g = metrics.at_least_float32(task_grad)
    num_tasks = g.shape[0]
    # Static slice of the sorted task axis: jit sees fixed shapes whatever the values.
    kept = jnp.sort(g, axis=0)[trim_number : num_tasks - trim_number]
    trimmed = jnp.mean(kept, axis=0)
    # A non-finite component would be sorted to an end (NaN last) and could be trimmed away
    # silently: such a coordinate gets the plain mean instead, which is non-finite too.
    finite = jnp.all(jnp.isfinite(g), axis=0)
    return jnp.where(finite, trimmed, jnp.mean(g, axis=0)).astype(task_grad.dtype)


def trimmed_mean_combine(task_grads: Any, trim_number: int, shared: Any = True) -> Any:
    """The coordinate-wise trimmed mean of stacked task gradients (deterministic).

    For every coordinate with task components ``g_1, ..., g_K`` sorted as
    ``g_(1) <= ... <= g_(K)`` and ``t = trim_number``:

    .. math:: \\text{out} = \\frac{1}{K - 2t} \\sum_{i = t + 1}^{K - t} g_{(i)}

    Args:
      task_grads: stacked task gradients (leading task axis K on every leaf).
      trim_number: t, static, with ``K >= 2t + 1``.
      shared: ``True`` (every leaf is trimmed), or a pytree of (possibly traced) bools per
        leaf: leaves marked False get the plain sum ``Σ_k g_k`` instead (task heads).

    Returns:
      The params-shaped combined gradient, in the leaves' dtypes.
    """
    if shared is True:
        return jax.tree.map(lambda g: _trimmed_leaf(g, trim_number), task_grads)

    def leaf(g: jax.Array, keep: Any) -> jax.Array:
        trimmed = _trimmed_leaf(g, trim_number)
        if keep is True:
            return trimmed
        plain = jnp.sum(g, axis=0)
        return plain if keep is False else jnp.where(keep, trimmed, plain)

    return jax.tree.map(leaf, task_grads, shared)


def trimmed_mean(
    num_tasks: int, *, trim_number: int = 1, heads: str = "weighted"
) -> base.MultiTaskTransformation:
    """Coordinate-wise trimmed mean of the task gradients, a Byzantine-robust aggregator.

    Every parameter coordinate is aggregated on its own: of its K task components, the
    ``t = trim_number`` largest and the ``t`` smallest are dropped and the remaining
    ``K - 2t`` are averaged,

    .. math:: d_p = \\frac{1}{K - 2t} \\sum_{i = t + 1}^{K - t} (g_{(i)})_p,

    where ``(g_{(i)})_p`` is the i-th smallest of ``(g_1)_p, ..., (g_K)_p``. ``t = 0`` is the
    plain mean, ``K = 2t + 1`` the coordinate-wise median. As in Yin et al (and TorchJD's
    ``TrimmedMean``) the result is a *mean*: with equal gradients it is ``g``, not ``K g``
    (an equal-weight sum would be K times larger; adjust the learning rate accordingly).

    Robustness: if at most ``t`` tasks are outliers (arbitrarily large, finite), each
    coordinate of the result stays within the range of the other tasks' components. The
    result does not depend on the order of the tasks. Ties need no rule: equal values are
    interchangeable in the sort.

    The aggregation is element-wise, so this method works on the leaves, not the Gramian, and
    has no task weights: its state is empty and ``asj.task_weights`` raises on it.

    Non-finite inputs: a coordinate with a NaN or ±inf component gets the plain mean of its
    components (non-finite) instead of a trimmed value, so NaN/inf always reach the update and
    are never trimmed away silently (robustness is against large finite values; a non-finite
    gradient is a failed step, as for every method here). Other coordinates are unaffected.

    Args:
      num_tasks: K >= 2, static.
      trim_number: t, components dropped at *each* end of every coordinate; a static int with
        ``0 <= t`` and ``K >= 2t + 1``.
      heads: ``"weighted"``: every leaf gets the trimmed mean; ``"plain"``: only the shared
        leaves (two or more tasks with a nonzero gradient) are trimmed and every other leaf
        gets ``Σ_k g_k`` (each task head its own gradient, as TorchJD's ``mtl_backward``).
        With ``t >= 1`` and ``"weighted"``, a task head's lone nonzero component is always
        an extreme of its coordinate, so the heads would get no gradient at all: use
        ``"plain"`` for networks with task heads.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None)`` ignores ``task_losses`` and ``key``. It always needs the per-task
      gradients.

    Example:
      >>> tx = optax.chain(asj.methods.trimmed_mean(num_tasks=5, trim_number=1), optax.sgd(0.1))
      >>> params5 = {"w": jnp.zeros(4)}
      >>> grads5 = {"w": jax.random.normal(key, (5, 4))}   # K = 5 tasks
      >>> state = tx.init(params5)
      >>> updates, state = tx.update(grads5, state, params5)

    Reference:
      Yin et al, Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates,
      2018 (arXiv 1803.01498).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    trim_number = check_trim_number(trim_number, num_tasks)
    _bases.check_heads(heads)

    def aggregate(
        task_grads: Any, state: TrimmedMeanState, losses: Any, key: Any, extra: dict
    ) -> tuple[Any, TrimmedMeanState]:
        del losses, key, extra
        shared = True
        if heads == "plain":
            shared = metrics.resolve_mask(task_grads, "shared")
        return trimmed_mean_combine(task_grads, trim_number, shared), state

    return _bases.stacked_gradient_method(
        num_tasks, "trimmed_mean", lambda params: TrimmedMeanState(), aggregate
    )


INFO = MethodInfo(
    name="trimmed_mean",
    factory=trimmed_mean,
    family="elementwise",
    weight_convention="none",
    reference=(
        "Yin et al, Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates, "
        "2018 (arXiv 1803.01498)"
    ),
    min_tasks=3,
)
