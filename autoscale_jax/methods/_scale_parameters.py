"""A tiny optimizer for a method's own K-vector of parameters (log-variances, logits, weights).

Uncertainty weighting, IMTL-L, GradNorm and FAMO learn a few scalars per task alongside the
network; these helpers give them one optax step that never lets a non-finite value in.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

SCALE_OPTIMIZERS = ("sgd", "adam")


def check_positive(name: str, value: Any) -> None:
    """Rejects a non-positive Python number (traced values, e.g. injected ones, pass)."""
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")


def scale_optimizer(
    name: str, learning_rate: Any, *, weight_decay: Any = 0.0
) -> optax.GradientTransformation:
    """The internal optimizer of a method's own K-vector of parameters.

    Args:
      name: ``"sgd"`` (plain gradient descent) or ``"adam"`` (optax defaults).
      learning_rate: its step size.
      weight_decay: an L2 term ``γ x`` added to the gradient before the optimizer, as
        ``torch.optim.Adam(weight_decay=γ)`` does (not AdamW's decoupled decay).

    Returns:
      An ``optax.GradientTransformation`` over a [K] vector.
    """
    if name not in SCALE_OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {SCALE_OPTIMIZERS}.")
    check_positive("learning_rate", learning_rate)
    inner = optax.sgd(learning_rate) if name == "sgd" else optax.adam(learning_rate)
    return optax.chain(optax.add_decayed_weights(weight_decay), inner)


def descend(
    optimizer: optax.GradientTransformation,
    values: jax.Array,
    gradient: jax.Array,
    optimizer_state: Any,
    apply: Any = True,
) -> tuple[jax.Array, Any]:
    """One optimizer step on ``values`` with ``gradient``, skipped unless ``apply`` and finite.

    A skipped step (non-finite gradient, e.g. from a NaN loss) leaves the values and the
    optimizer state unchanged, so the state of a method always stays finite.
    """
    gradient = gradient.astype(values.dtype)
    updates, new_state = optimizer.update(gradient, optimizer_state, values)
    new_values = optax.apply_updates(values, updates)
    keep = jnp.logical_and(apply, jnp.all(jnp.isfinite(new_values)))
    new_values = jnp.where(keep, new_values, values)
    new_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_state, optimizer_state)
    return new_values, new_state
