"""Private NNX helpers of :mod:`autoscale_jax.flax`: pure views of variables, the split loss,
the optimizer update across Flax versions and the in-place restart of the moments."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from autoscale_jax import restart


def _value(variable: Any) -> Any:
    getter = getattr(variable, "get_value", None)  # Flax >= 0.12 deprecates ``.value``
    return getter() if getter is not None else variable.value


def _set_value(variable: Any, value: Any) -> None:
    setter = getattr(variable, "set_value", None)  # Flax >= 0.12 deprecates ``.value``
    if setter is not None:
        setter(value)
    else:
        variable.value = value


# Flax < 0.11 states hold VariableState boxes (later releases hold the variables).
_BOXES = tuple(box for box in (nnx.Variable, vars(nnx).get("VariableState")) if box)


def pure(tree: Any) -> Any:
    """``tree`` with every Flax variable replaced by its value."""
    return jax.tree.map(
        lambda v: _value(v) if isinstance(v, _BOXES) else v,
        tree,
        is_leaf=lambda v: isinstance(v, _BOXES),
    )


def pure_loss(
    loss_fn: Callable[..., jax.Array], graphdef: Any, rest: Any, wrt: Any, args: tuple
) -> Callable[[Any], tuple[jax.Array, Any]]:
    """``params -> (losses, new non-wrt state)`` of a split NNX model."""

    def pure_loss(params: Any) -> tuple[jax.Array, Any]:
        # Fresh copies of the other variables: the forward pass may update them (batch
        # statistics) inside this trace.
        merged = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))
        return loss_fn(merged, *args), split(merged, wrt)[2]

    return pure_loss


def split(model: Any, wrt: Any) -> Any:
    """``(graphdef, wrt state, other state)`` of ``model``."""
    return nnx.split(model, wrt, ...)


def optimizer_update(optimizer: Any, model: Any, grads: Any, **kwargs: Any) -> Any:
    """``nnx.Optimizer.update`` across Flax versions (the model argument came in 0.11)."""
    if "model" in vars(optimizer):  # Flax < 0.11, or nnx.ModelAndOptimizer
        return optimizer.update(grads, **kwargs)
    return optimizer.update(model, grads, **kwargs)


def restart_at_phase_switch(optimizer: Any, model: Any, before: Any) -> None:
    """Restarts ``optimizer``'s moments in place when its last update ended AutoScale's phase
    1 (:func:`autoscale_jax.restart.at_phase_switch`); ``before``: its pure state before."""
    after = pure(optimizer.opt_state)
    params = pure(split(model, optimizer.wrt)[1])
    restarted = restart.at_phase_switch(optimizer.tx, before, after, params)
    if restarted is not after:
        # Variable by variable: the optimizer state's container types differ across Flax
        # versions (raw arrays before 0.11 hold OptState variables that nnx.update refuses).
        is_variable = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
        variables = jax.tree.leaves(optimizer.opt_state, is_leaf=is_variable)
        values = jax.tree.leaves(restarted)
        if len(variables) != len(values):
            raise ValueError("The restarted optimizer state does not match the optimizer's.")
        for variable, value in zip(variables, values, strict=True):
            _set_value(variable, value)
