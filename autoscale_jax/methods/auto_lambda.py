"""Auto-Lambda: task weights learned by a one-step lookahead on a validation batch.

Reference:
  Liu, James, Davison & Johns, Auto-Lambda: Disentangling Dynamic Task Relationships,
  TMLR 2022 (arXiv 2202.03091).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._registry import MethodInfo
from autoscale_jax.methods._scale_parameters import check_positive, descend, scale_optimizer


class AutoLambdaState(NamedTuple):
    """State of :func:`auto_lambda`.

    Attributes:
      task_weights: [K] float32 ``λ`` applied at the latest step.
      meta_gradient: [K] float32 ``∂L_val/∂λ`` of the latest step with finite inputs.
      optimizer_state: state of the internal optimizer on ``λ``.
      step: int32 updates so far.
    """

    task_weights: jax.Array
    meta_gradient: jax.Array
    optimizer_state: Any
    step: jax.Array


def auto_lambda_lookahead(params: Any, task_grads: Any, weights: jax.Array, lookahead_lr: Any):
    """The virtual step ``θ' = θ - η Σ_k λ_k g_k`` at which to take the validation gradient.

    Args:
      params: the parameters ``θ``.
      task_grads: stacked task gradients (leading task axis K).
      weights: [K] ``λ``: ``asj.task_weights(state)`` *before* the update.
      lookahead_lr: ``η``.

    Returns:
      The params-shaped ``θ'``.
    """
    combined = base.weighted_sum(task_grads, jnp.asarray(weights))
    return jax.tree.map(lambda p, d: p - lookahead_lr * d.astype(p.dtype), params, combined)


def auto_lambda_meta_gradient(task_grads: Any, validation_grads: Any, lookahead_lr: Any):
    """``∂L_val(θ - η Σ_j λ_j g_j)/∂λ_k = -η <∇L_val(θ'), g_k>``, over every leaf.

    Args:
      task_grads: stacked task gradients (leading task axis K).
      validation_grads: the params-shaped ``∇L_val(θ')`` (no task axis).
      lookahead_lr: ``η``.

    Returns:
      The [K] meta-gradient (at least float32).
    """

    def leaf(g: jax.Array, v: jax.Array) -> jax.Array:
        g = metrics.at_least_float32(g)
        flat_g = g.reshape(g.shape[0], -1)
        flat_v = metrics.at_least_float32(v).reshape(-1).astype(g.dtype)
        return jnp.dot(flat_g, flat_v, precision=jax.lax.Precision.HIGHEST)

    products = jax.tree.leaves(jax.tree.map(leaf, task_grads, validation_grads))
    return -lookahead_lr * sum(products)


def _check_validation_grads(validation_grads: Any, task_grads: Any) -> None:
    if validation_grads is None:
        raise ValueError(
            "auto_lambda needs the validation gradient: call update(task_grads, state, params, "
            "validation_grads=g_val) with g_val = ∇ Σ_{primary k} L_k(θ'; validation batch), a "
            "params-shaped pytree without task axis (θ' from auto_lambda_lookahead)."
        )
    try:
        chex.assert_trees_all_equal_structs(validation_grads, task_grads)
        shapes = jax.tree.map(
            lambda g, v: g.shape[1:] == jnp.shape(v), task_grads, validation_grads
        )
    except (AssertionError, ValueError) as err:
        raise ValueError(f"validation_grads must have the tree of the parameters: {err}") from err
    if not all(jax.tree.leaves(shapes)):
        raise ValueError(
            "validation_grads must be params-shaped: every leaf the shape of a task gradient "
            "without its leading task axis."
        )


def auto_lambda(
    num_tasks: int,
    *,
    lookahead_lr: float = 1e-3,
    learning_rate: float = 1e-4,
    initial_weight: float = 0.1,
    optimizer: str = "adam",
    non_negative: bool = True,
) -> base.MultiTaskTransformation:
    """Auto-Lambda: learn ``λ`` so that one training step lowers the validation loss.

    The weights solve the bilevel problem

    .. math:: \\min_λ L_{val}(θ'(λ)), \\qquad θ'(λ) = θ - η Σ_k λ_k g_k,

    where ``L_val`` is the loss of the *primary* tasks on a validation batch (all tasks in
    multi-task learning; the primary ones in auxiliary learning) and ``g_k = ∇L_k(θ)`` on the
    training batch. The task gradients do not depend on ``λ``, so the chain rule gives the
    meta-gradient in closed form, with no second derivative and no finite difference:

    .. math:: \\frac{∂ L_{val}(θ'(λ))}{∂ λ_k} = -η \\, \\langle ∇L_{val}(θ'), g_k \\rangle .

    The official code estimates the inner products by central finite differences of the
    training losses at ``θ ± ε ∇L_val(θ')`` (DARTS style); here they are computed exactly
    from the stacked task gradients. This is the first-order approximation of the bilevel
    problem: exact for a plain-SGD virtual step (momentum and weight decay, which the
    official virtual step includes, move ``θ'`` but not its derivative in ``λ``), and a
    surrogate that ignores the preconditioner when the real optimizer is adaptive. Each
    step: the meta-gradient takes one step of the internal optimizer on ``λ`` (Adam, as in
    the official code), ``λ`` is clipped at 0 when ``non_negative``, and the update is
    ``Σ_k λ_k g_k`` with the *new* ``λ`` (the official order: meta step, then the training
    step on the same batch).

    The caller computes ``validation_grads``: ``θ' = auto_lambda_lookahead(params,
    task_grads, asj.task_weights(state), lookahead_lr)``, then ``∇ Σ_{primary} L_k(θ')`` on
    a validation batch (the official code draws it from a second shuffle of the training
    set). Taking it at ``θ`` instead of ``θ'`` is a cheaper, further approximation.

    Defaults follow the official code for dense prediction: ``λ_0 = 0.1``, Adam with step
    1e-4. The official code does not clip ``λ``; ``non_negative=False`` reproduces that.
    With Adam the scale ``η`` barely matters (Adam is invariant to a constant factor on the
    gradient), with ``"sgd"`` it scales the meta step; set it to the network's learning rate.
    A step with a non-finite meta-gradient leaves ``λ`` and the optimizer state unchanged (the
    non-finite gradients still reach the update). No fast path: every step needs the task
    gradients.

    Args:
      num_tasks: K >= 2, static.
      lookahead_lr: ``η`` of the virtual step.
      learning_rate: the internal optimizer's step size on ``λ``.
      initial_weight: ``λ_0`` for every task (>= 0).
      optimizer: ``"adam"`` or ``"sgd"`` for ``λ``.
      non_negative: project ``λ`` onto ``λ >= 0`` after every step.

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation`; ``update(task_grads, state,
      params=None, *, validation_grads)`` (``ValueError`` when ``validation_grads`` is
      missing or not params-shaped; ``task_losses`` is ignored).

    Example:
      >>> tx = optax.chain(auto_lambda(2), optax.adam(1e-3))
      >>> state = tx.init(params)
      >>> lookahead = auto_lambda_lookahead(params, task_grads, asj.task_weights(state), 1e-3)
      >>> val_batch = batches[1]
      >>> val_grads = jax.grad(lambda p: loss_fn(p, val_batch).sum())(lookahead)
      >>> updates, state = tx.update(task_grads, state, params, validation_grads=val_grads)

    Reference:
      Liu, James, Davison & Johns, Auto-Lambda: Disentangling Dynamic Task Relationships,
      TMLR 2022 (arXiv 2202.03091).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_positive("lookahead_lr", lookahead_lr)
    if isinstance(initial_weight, int | float) and not initial_weight >= 0:
        raise ValueError(f"initial_weight must be non-negative, got {initial_weight!r}.")
    tx = scale_optimizer(optimizer, learning_rate)

    def init_state(params: Any) -> AutoLambdaState:
        del params
        weights = jnp.full((num_tasks,), initial_weight, jnp.float32)
        return AutoLambdaState(
            task_weights=weights,
            meta_gradient=jnp.zeros((num_tasks,), jnp.float32),
            optimizer_state=tx.init(weights),
            step=jnp.zeros((), jnp.int32),
        )

    def aggregate(
        task_grads: Any, state: AutoLambdaState, losses: Any, key: Any, extra: dict
    ) -> tuple[Any, AutoLambdaState]:
        del losses, key
        validation_grads = extra.get("validation_grads")
        _check_validation_grads(validation_grads, task_grads)
        meta_gradient = auto_lambda_meta_gradient(task_grads, validation_grads, lookahead_lr)
        weights, optimizer_state = descend(
            tx, state.task_weights, meta_gradient, state.optimizer_state
        )
        if non_negative:
            weights = jnp.maximum(weights, 0.0)
        finite = jnp.all(jnp.isfinite(meta_gradient))
        return base.weighted_sum(task_grads, weights), AutoLambdaState(
            task_weights=weights,
            meta_gradient=jnp.where(finite, meta_gradient, state.meta_gradient).astype(jnp.float32),
            optimizer_state=optimizer_state,
            step=state.step + 1,
        )

    return _bases.stacked_gradient_method(num_tasks, "auto_lambda", init_state, aggregate)


INFO = MethodInfo(
    name="auto_lambda",
    factory=auto_lambda,
    family="elementwise",
    reference=(
        "Liu, James, Davison & Johns, Auto-Lambda: Disentangling Dynamic Task Relationships, "
        "TMLR 2022 (arXiv 2202.03091)"
    ),
    extra_inputs=("validation_grads",),
)
