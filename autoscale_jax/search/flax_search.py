"""The one-call search (:func:`autoscale_jax.search.find_weights`) for Flax models: an NNX model
with its ``nnx.Optimizer``, or a linen :class:`autoscale_jax.flax.TrainState`.

Needs Flax (``pip install "autoscale-jax[flax]"``); ``autoscale_jax.search`` does not import
this module.

**NNX.** :func:`find_weights_nnx` splits the model into its ``wrt`` parameters (the optimizer's,
default ``nnx.Param``) and the rest, runs the search on ``loss_fn(nnx.merge(graphdef, θ, rest),
batch)`` with the optimizer's plain optax transformation, then writes the survivor's
parameters into the model and its optimizer state into the ``nnx.Optimizer`` (in place).
Train on with the weighted sum ``Σ_k w_k L_k`` and ``optimizer.update``. The other variables
(batch statistics, RNG counts) are read during the search, not updated.

**linen.** :func:`find_weights_linen` takes a ``TrainState`` whose ``tx`` is the plain
optimizer and returns one whose ``tx`` is ``optax.chain(asj.fixed_weights(w*), tx)`` with the
survivor's parameters, optimizer state and step: ``state.train_step(loss_fn, batch)`` trains on
with the fixed weights at the cost of one backward pass.

Example:
  >>> from flax import nnx
  >>> from autoscale_jax.search.flax_search import find_weights_nnx
  >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  >>> optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  >>> def model_loss(model, batch):
  ...   return jnp.mean((model(batch["x"]) - batch["y"]) ** 2, axis=0)
  >>> score = lambda model: -jnp.sum(model_loss(model, batches[-1]))
  >>> found = find_weights_nnx(model, optimizer, model_loss, score, iter(batches * 3),
  ...                          budget=40, estimation_steps=2, window=1, progress=False,
  ...                          stages=(asj.search.alpha_stage((1.0, 2.0), rungs=(4,)),))
  >>> found.report.steps, found.weights.shape
  (6, (2,))

Reference:
  Yang, Ikemura et al, AutoScale: Linear Scalarization Guided by Multi-Task Optimization
  Metrics, 2025 (arXiv 2508.13979).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import optax
from flax import nnx

import autoscale_jax as _asj
from autoscale_jax import _nnx
from autoscale_jax.flax import TrainState
from autoscale_jax.search.loop import WeightSearchResult, find_weights

__all__ = ["find_weights_linen", "find_weights_nnx"]


def _plain(tx: Any, state: Any, where: str) -> None:
    """Refuses an optimizer that already holds a multi-task part (the search adds its own)."""
    try:
        _asj.needs_task_gradients(tx, state)
    except (TypeError, ValueError):
        return
    raise ValueError(
        f"{where} holds a multi-task transformation: the search runs AutoScale and the fixed "
        "weights itself; build it with the plain optimizer (e.g. optax.adam(1e-3))."
    )


def find_weights_nnx(
    model: nnx.Module,
    optimizer: nnx.Optimizer,
    loss_fn: Callable[[nnx.Module, Any], Any],
    score_fn: Callable[[nnx.Module], jax.Array],
    batches: Iterable[Any] | Callable[[int], Any],
    *,
    budget: int,
    **options: Any,
) -> WeightSearchResult:
    """:func:`~autoscale_jax.search.find_weights` for an NNX model; updates ``model`` and
    ``optimizer`` in place with the survivor.

    Args:
      model: the NNX model.
      optimizer: its ``nnx.Optimizer`` built with a plain optax transformation.
      loss_fn: ``loss_fn(model, batch) -> [K]`` (or ``(losses, counts)``).
      score_fn: ``score_fn(model) -> scalar``, higher is better (traced, vmapped).
      batches: an iterator of batches, or a function ``step -> batch``.
      budget: the training budget in steps.
      **options: as in :func:`~autoscale_jax.search.find_weights`.

    Returns:
      The :class:`~autoscale_jax.search.WeightSearchResult` (``params``: an ``nnx.State``).

    Raises:
      TypeError: for a ``model`` that is not an ``nnx.Module`` or an ``optimizer`` that is
        not an ``nnx.Optimizer``.
      ValueError: for an optimizer whose transformation holds a multi-task part, and the
        errors of :func:`~autoscale_jax.search.find_weights`.
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}.")
    if not isinstance(optimizer, nnx.Optimizer):
        raise TypeError(
            f"optimizer must be an nnx.Optimizer(model, tx, wrt=...), got {type(optimizer)}."
        )
    _plain(optimizer.tx, _nnx.pure(optimizer.opt_state), "optimizer.tx")
    wrt = getattr(optimizer, "wrt", nnx.Param)
    graphdef, params, rest = _nnx.split(model, wrt)
    params = _nnx.pure(params)  # arrays, not Flax variables (whose pytrees differ by version)

    def pure_loss(p: Any, batch: Any) -> Any:
        return loss_fn(nnx.merge(graphdef, p, rest), batch)

    def pure_score(p: Any) -> jax.Array:
        return score_fn(nnx.merge(graphdef, p, rest))

    found = find_weights(
        pure_loss, optimizer.tx, pure_score, params, batches, budget=budget, **options
    )
    nnx.update(model, found.params)
    is_variable = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
    variables = jax.tree.leaves(optimizer.opt_state, is_leaf=is_variable)
    values = jax.tree.leaves(found.opt_state)
    if len(variables) != len(values):
        raise ValueError("The survivor's optimizer state does not match optimizer.opt_state.")
    for variable, value in zip(variables, values, strict=True):
        _nnx._set_value(variable, value)
    step = getattr(optimizer, "step", None)
    if isinstance(step, nnx.Variable):
        _nnx._set_value(step, _nnx._value(step) + found.report.steps)
    return found


def find_weights_linen(
    state: TrainState,
    loss_fn: Callable[[Any, Any], Any],
    score_fn: Callable[[Any], jax.Array],
    batches: Iterable[Any] | Callable[[int], Any],
    *,
    budget: int,
    **options: Any,
) -> tuple[TrainState, WeightSearchResult]:
    """:func:`~autoscale_jax.search.find_weights` for a linen ``TrainState``.

    Args:
      state: an :class:`autoscale_jax.flax.TrainState` whose ``tx`` is the plain optimizer.
      loss_fn: ``loss_fn(params, batch) -> [K]`` (or ``(losses, counts)``).
      score_fn: ``score_fn(params) -> scalar``, higher is better.
      batches: an iterator of batches, or a function ``step -> batch``.
      budget: the training budget in steps.
      **options: as in :func:`~autoscale_jax.search.find_weights`.

    Returns:
      ``(state, result)``: the survivor's ``TrainState`` (``tx = optax.chain(
      asj.fixed_weights(w*), tx)``, its step advanced by ``result.report.steps``) and the
      :class:`~autoscale_jax.search.WeightSearchResult`.

    Raises:
      TypeError: for a ``state`` that is not an ``autoscale_jax.flax.TrainState``.
      ValueError: for a ``tx`` that holds a multi-task part, and the errors of
        :func:`~autoscale_jax.search.find_weights`.
    """
    if not isinstance(state, TrainState):
        raise TypeError(
            "state must be an autoscale_jax.flax.TrainState (TrainState.create(apply_fn=..., "
            f"params=..., tx=optax.adam(...))), got {type(state).__name__}."
        )
    _plain(state.tx, state.opt_state, "state.tx")
    found = find_weights(
        loss_fn, state.tx, score_fn, state.params, batches, budget=budget, **options
    )
    return state.replace(
        step=state.step + found.report.steps,
        params=found.params,
        tx=optax.chain(_asj.fixed_weights(found.weights), state.tx),
        opt_state=tuple(found.train_state()),
    ), found
