"""Flax helpers: NNX and linen models with stacked task gradients and the fast phase 2.

This module needs Flax (``pip install "autoscale-jax[flax]"``); the rest of the package does
not import it, so ``import autoscale_jax`` works without Flax.

**NNX.** ``nnx.Optimizer`` takes any optax transformation and forwards extra keywords to its
``update``, so a multi-task chain works as it is; :func:`nnx_task_value_and_grad` gives the
stacked task gradients of the ``nnx.Param`` state and :func:`nnx_train_step` the step with the
one-backward-pass fast path (per-task gradients only while the multi-task part needs them):

  >>> from flax import nnx
  >>> model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))                # 2 tasks: one output each
  >>> def model_loss(model, x, y):                              # -> [K] losses
  ...   return jnp.mean((model(x) - y) ** 2, axis=0)
  >>> tx = optax.chain(asj.autoscale(num_tasks=2, estimation_steps=2), optax.sgd(0.1))
  >>> optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  >>> x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
  >>> losses, task_grads = asjf.nnx_task_value_and_grad(model_loss)(model, x, y)
  >>> task_grads["kernel"].shape                                # leading task axis K = 2
  (2, 3, 2)
  >>> step = nnx.jit(asjf.nnx_train_step(model_loss))
  >>> for _ in range(3):
  ...   losses = step(model, optimizer, x, y)
  >>> bool(asjf.needs_task_gradients(optimizer))                # estimation is over
  False

(``optimizer.update(model, task_grads, task_losses=losses)`` is the plain stacked update.)

**linen.** :class:`TrainState` is ``flax.training.train_state.TrainState`` whose
``apply_gradients`` takes ``task_losses`` (and ``key`` and the extra inputs of a method), and
whose :meth:`TrainState.train_step` runs the fast-path step:

  >>> import flax.linen as nn
  >>> module = nn.Dense(2)
  >>> variables = module.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
  >>> state = asjf.TrainState.create(apply_fn=module.apply, params=variables["params"], tx=tx)
  >>> def linen_loss(params, x, y):
  ...   return jnp.mean((state.apply_fn({"params": params}, x) - y) ** 2, axis=0)
  >>> losses, task_grads = asj.task_value_and_grad(linen_loss)(state.params, x, y)
  >>> state = state.apply_gradients(grads=task_grads, task_losses=losses)
  >>> step = jax.jit(lambda state, x, y: state.train_step(linen_loss, x, y))
  >>> state, losses = step(state, x, y)

**The shared trunk for** ``metric_mask``. The metrics should see the shared parameters only.
``metric_mask="shared"`` finds them from the gradients; to name them instead, build a
predicate from module names (:func:`module_mask`, any container) or from an NNX filter
(:func:`nnx_metric_mask`):

  >>> mask = asjf.module_mask("trunk")                          # every leaf under a "trunk"
  >>> tx = asj.autoscale(num_tasks=2, estimation_steps=100, metric_mask=mask)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.training import train_state as linen_train_state

from autoscale_jax import _composition, _nnx, base, dispatch, jacobian, restart, train
from autoscale_jax._nnx import optimizer_update as _optimizer_update
from autoscale_jax._nnx import pure as _pure
from autoscale_jax._nnx import pure_loss as _pure_loss
from autoscale_jax._nnx import split as _split

__all__ = [
    "TrainState",
    "module_mask",
    "needs_task_gradients",
    "nnx_metric_mask",
    "nnx_task_value_and_grad",
    "nnx_train_step",
    "path_names",
    "task_weights",
]


# --------------------------------------------------------------------------------------------
# Masks of the shared trunk
# --------------------------------------------------------------------------------------------
def path_names(key_path: Any) -> tuple[str, ...]:
    """The names along a JAX key path (dict keys, attribute names, sequence indices).

    A trailing ``value`` (the array inside a Flax variable) is dropped, so a path reads the
    same on an ``nnx.State`` of variables and on its plain arrays.

    Example:
      >>> (path, leaf), = jax.tree_util.tree_flatten_with_path({"trunk": {"w": 1}})[0]
      >>> asjf.path_names(path)
      ('trunk', 'w')
    """
    names = []
    for entry in key_path:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                names.append(str(getattr(entry, attribute)))
                break
        else:
            names.append(str(entry))
    if names and names[-1] == "value":
        names.pop()
    return tuple(names)


def module_mask(*names: str) -> Callable[[Any, Any], bool]:
    """A ``metric_mask`` predicate: the leaves below a module (or parameter) with one of ``names``.

    Works on any parameter container (linen ``{"params": {...}}`` dicts, NNX states, plain
    dicts): a leaf counts when one of the names along its path equals one of ``names``.

    Args:
      *names: module or parameter names, e.g. ``"trunk"`` or ``"Dense_0"``.

    Returns:
      ``predicate(key_path, leaf) -> bool`` for ``metric_mask``.

    Raises:
      ValueError: without a name.

    Example:
      >>> mask = asjf.module_mask("trunk")
      >>> asj.metrics.resolve_mask({"trunk": {"w": 1.0}, "head": {"w": 2.0}}, mask)
      {'head': {'w': False}, 'trunk': {'w': True}}
    """
    if not names:
        raise ValueError("module_mask needs at least one module name.")
    wanted = frozenset(names)

    def predicate(key_path: Any, leaf: Any) -> bool:
        del leaf
        return not wanted.isdisjoint(path_names(key_path))

    return predicate


def nnx_metric_mask(
    model: nnx.Module, filter: Any, *, wrt: Any = nnx.Param
) -> Callable[[Any, Any], bool]:
    """A ``metric_mask`` predicate from an NNX filter: the ``wrt`` variables that ``filter``
    selects (``nnx.PathContains("trunk")``, a variable type, ``nnx.All(...)``, ...).

    Args:
      model: the NNX module (only its structure is read).
      filter: any NNX filter.
      wrt: the variables the optimizer trains (``nnx.Optimizer``'s ``wrt``).

    Returns:
      ``predicate(key_path, leaf) -> bool`` for ``metric_mask``.

    Raises:
      ValueError: when ``filter`` selects no ``wrt`` variable (the metrics would see nothing).

    Example:
      >>> class Net(nnx.Module):
      ...   def __init__(self, rngs):
      ...     self.trunk = nnx.Linear(3, 4, rngs=rngs)
      ...     self.head = nnx.Linear(4, 2, rngs=rngs)
      >>> mask = asjf.nnx_metric_mask(Net(nnx.Rngs(0)), nnx.PathContains("trunk"))
      >>> tx = asj.autoscale(num_tasks=2, estimation_steps=100, metric_mask=mask)
    """
    selected = nnx.state(model, nnx.All(wrt, filter))
    paths = frozenset(
        path_names(path) for path, _ in jax.tree_util.tree_flatten_with_path(selected)[0]
    )
    if not paths:
        raise ValueError(f"The filter {filter!r} selects no {wrt} variable of this model.")

    def predicate(key_path: Any, leaf: Any) -> bool:
        del leaf
        return path_names(key_path) in paths

    return predicate


# --------------------------------------------------------------------------------------------
# NNX
# --------------------------------------------------------------------------------------------
def nnx_task_value_and_grad(
    loss_fn: Callable[..., jax.Array], *, wrt: Any = nnx.Param, chunk_size: int | None = None
) -> Callable[..., tuple[jax.Array, Any]]:
    """Per-task gradients of an NNX model: ``(model, *args) -> (losses, task_grads)``.

    ``task_grads`` is the ``nnx.State`` of the ``wrt`` variables with a leading task axis K,
    ready for ``nnx.Optimizer.update(model, task_grads, task_losses=losses)``. Other state the
    forward pass changes (batch statistics, RNG counters) is written back to ``model``.

    Args:
      loss_fn: ``loss_fn(model, *args) -> losses`` of shape [K].
      wrt: the variables to differentiate (the optimizer's ``wrt``).
      chunk_size: per-task VJPs this many at a time (bounds memory).
    """

    def value_and_task_grads(model: nnx.Module, *args: Any) -> tuple[jax.Array, Any]:
        graphdef, params, rest = _split(model, wrt)
        pure_loss = _pure_loss(loss_fn, graphdef, rest, wrt, args)
        losses, vjp_fn, new_rest = jax.vjp(pure_loss, params, has_aux=True)
        jacobian.check_losses(losses)
        eye = jnp.eye(losses.shape[0], dtype=losses.dtype)
        task_grads = jacobian.stacked_vjp(vjp_fn, eye, chunk_size)
        nnx.update(model, new_rest)
        return losses, task_grads

    return value_and_task_grads


def nnx_train_step(
    loss_fn: Callable[..., jax.Array],
    *,
    chunk_size: int | None = None,
    restart_moments: bool = True,
) -> Callable[..., jax.Array]:
    """The multi-task step for an NNX model and ``nnx.Optimizer``, with the fast phase 2.

    ``step(model, optimizer, *args, key=None, task_gradients="auto", **update_inputs) ->
    losses`` updates ``model`` and ``optimizer`` in place (wrap it in ``nnx.jit``). One forward
    pass; the multi-task part of ``optimizer.tx`` (first in its chain) receives the loss VJP
    and computes the K per-task gradients while it needs them, else the single gradient
    ``∇ Σ_k w_k L_k`` (see :func:`autoscale_jax.multitask_train_step`).
    ``task_gradients="never"`` is the one-gradient branch alone (no ``lax.cond``): the cost of
    a plain optax step, valid once :func:`needs_task_gradients` is False (premature: eagerly a
    ``ValueError``, under ``nnx.jit`` NaN weights, as ``TrainStep.one_gradient_step``).
    ``optimizer.tx`` is checked as :func:`autoscale_jax.multitask_train_step` checks its
    ``weighting`` (``ValueError``/``TypeError`` at trace time, leaving ``model`` and
    ``optimizer`` as they were). The step that ends AutoScale's phase 1 restarts the moments
    of ``optimizer.tx`` (see :mod:`autoscale_jax.restart`), as the plain step does.

    Args:
      loss_fn: ``loss_fn(model, *args) -> losses`` of shape [K].
      chunk_size: per-task VJPs this many at a time (bounds memory).
      restart_moments: restart the optimizer's moments when AutoScale's phase 1 ends (see
        :func:`autoscale_jax.multitask_train_step`); ``False`` carries them over.
    """
    if not isinstance(restart_moments, bool):
        raise ValueError(f"restart_moments must be True or False, got {restart_moments!r}.")

    def step(
        model: nnx.Module,
        optimizer: Any,
        *args: Any,
        key: jax.Array | None = None,
        task_gradients: str = "auto",
        **update_inputs: Any,
    ) -> jax.Array:
        if task_gradients not in dispatch.TASK_GRADIENT_POLICIES:
            raise ValueError(f"task_gradients must be 'auto' or 'never', got {task_gradients!r}.")
        opt_state = _pure(optimizer.opt_state)
        if task_gradients == "never":
            train.refuse_premature_one_gradient_step(
                optimizer.tx, opt_state, 'nnx_train_step(..., task_gradients="never")'
            )
        before = _pure(nnx.state(model)), _pure(nnx.state(optimizer))
        graphdef, params, rest = _split(model, optimizer.wrt)
        pure_loss = _pure_loss(loss_fn, graphdef, rest, optimizer.wrt, args)
        losses, vjp_fn, new_rest = jax.vjp(pure_loss, params, has_aux=True)
        jacobian.check_losses(losses)
        nnx.update(model, new_rest)
        try:
            # The step's inputs, read once: the multi-task part receives this one object.
            inputs = dispatch.UpdateInputs.from_keywords(
                dict(
                    task_losses=losses,
                    key=key,
                    loss_vjp=lambda cotangent: vjp_fn(cotangent),
                    task_gradients=task_gradients,
                    vjp_chunk_size=chunk_size,
                    **update_inputs,
                )
            )
            with _composition.scope("optimizer.tx", _pure(params), opt_state) as seen:
                # params: a placeholder, the multi-task part uses inputs.loss_vjp
                updates = _optimizer_update(optimizer, model, params, inputs=inputs)
            seen.check_train_step(updates, optimizer_given=False)
            if restart_moments and task_gradients == "auto":
                _nnx.restart_at_phase_switch(optimizer, model, opt_state)
        except (ValueError, TypeError):
            nnx.update(model, before[0])  # eagerly the update may have been applied
            nnx.update(optimizer, before[1])
            raise
        return losses

    return step


def needs_task_gradients(optimizer: Any) -> Any:
    """:func:`autoscale_jax.needs_task_gradients` of an ``nnx.Optimizer`` or linen
    :class:`TrainState`: whether the next step still needs per-task gradients."""
    return dispatch.needs_task_gradients(optimizer.tx, _pure(optimizer.opt_state))


def task_weights(optimizer: Any) -> jax.Array:
    """The task weights inside an ``nnx.Optimizer`` or linen :class:`TrainState`."""
    return base.task_weights(_pure(optimizer.opt_state))


# --------------------------------------------------------------------------------------------
# linen
# --------------------------------------------------------------------------------------------
class TrainState(linen_train_state.TrainState):
    """A linen ``TrainState`` for multi-task transformations.

    ``tx`` is a multi-task transformation or a chain starting with one. The gradients of
    :meth:`apply_gradients` are stacked task gradients; :meth:`train_step` is the
    one-forward-pass step with the fast phase 2.
    """

    def apply_gradients(
        self,
        *,
        grads: Any,
        task_losses: jax.Array | None = None,
        key: jax.Array | None = None,
        update_inputs: dict[str, Any] | None = None,
        restart_moments: bool = True,
        **kwargs: Any,
    ) -> TrainState:
        """One update from stacked task gradients.

        Args:
          grads: stacked task gradients (leading task axis K) with the structure of
            ``params``.
          task_losses: the [K] losses (required by most methods).
          key: a PRNG key for random methods.
          update_inputs: further keyword inputs of the method's ``update`` (e.g.
            ``second_task_grads``).
          restart_moments: restart the optimizer's moments on the update that ends
            AutoScale's phase 1 (see :mod:`autoscale_jax.restart`); ``False`` carries them.
          **kwargs: other fields to ``replace``, as in flax's ``apply_gradients``.
        """
        tx = optax.with_extra_args_support(self.tx)
        updates, opt_state = tx.update(
            grads,
            self.opt_state,
            self.params,
            task_losses=task_losses,
            key=key,
            **(update_inputs or {}),
        )
        params = optax.apply_updates(self.params, updates)
        if restart_moments:
            opt_state = restart.at_phase_switch(tx, self.opt_state, opt_state, params)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)

    def train_step(
        self,
        loss_fn: Callable[..., jax.Array],
        *args: Any,
        key: jax.Array | None = None,
        task_gradients: str = "auto",
        restart_moments: bool = True,
        **update_inputs: Any,
    ) -> tuple[TrainState, jax.Array]:
        """One forward pass, then per-task gradients or one gradient, as ``tx`` needs.

        Args:
          loss_fn: ``loss_fn(params, *args) -> losses`` of shape [K] (static under ``jit``).
          *args: its inputs.
          key: a PRNG key for random methods.
          task_gradients: ``"auto"`` (a ``lax.cond`` on the phase when it depends on the
            state) or ``"never"`` (the one-gradient branch alone: the cost of a plain optax
            step, valid once :meth:`needs_task_gradients` is False).
          restart_moments: restart the optimizer's moments at the end of AutoScale's phase 1
            (see :func:`autoscale_jax.multitask_train_step`).
          **update_inputs: further keyword inputs of the method's ``update``.

        Returns:
          ``(new_state, losses)``.
        """
        if task_gradients not in dispatch.TASK_GRADIENT_POLICIES:
            raise ValueError(f"task_gradients must be 'auto' or 'never', got {task_gradients!r}.")
        step = train.multitask_train_step(loss_fn, self.tx, restart_moments=restart_moments)
        run = step.step if task_gradients == "auto" else step.one_gradient_step
        params, state, losses = run(
            self.params, train.TrainState(self.opt_state, ()), *args, key=key, **update_inputs
        )
        return self.replace(step=self.step + 1, params=params, opt_state=state.weighting), losses

    def needs_task_gradients(self) -> Any:
        """Whether the next step still needs per-task gradients (see
        :func:`autoscale_jax.needs_task_gradients`)."""
        return dispatch.needs_task_gradients(self.tx, self.opt_state)
