"""Per-task gradients from one forward pass and K batched vector-Jacobian products.

For a loss function returning a vector of K task losses, the Jacobian of the losses with respect
to the parameters has one row per task. Reverse mode gives row k as the VJP with the cotangent
``e_k`` (the k-th unit vector); ``jax.vmap`` over the K cotangents computes every row from the
same linearisation, so the forward pass runs once instead of K times.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import autoscale_jax as asj
  >>> def loss_fn(params, x):
  ...   return jnp.stack([jnp.sum(params["w"] * x), jnp.sum((params["w"] * x) ** 2)])
  >>> params = {"w": jnp.array([1.0, 2.0])}
  >>> losses, task_grads = asj.task_value_and_grad(loss_fn)(params, jnp.array([1.0, 1.0]))
  >>> task_grads["w"].shape                      # leading task axis K = 2
  (2, 2)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import metrics

LossFn = Callable[..., Any]


def check_losses(losses: Any) -> None:
    """Raises unless ``losses`` is a vector [K] of task losses."""
    if not hasattr(losses, "ndim") or losses.ndim != 1:
        raise ValueError(
            "loss_fn must return a vector of task losses with shape [K]; got "
            f"{getattr(losses, 'shape', type(losses))}."
        )


def stacked_vjp(vjp_fn: Callable, cotangents: jax.Array, chunk_size: int | None = None) -> Any:
    """Applies ``vjp_fn`` to every row of ``cotangents``, ``chunk_size`` rows at a time.

    With ``cotangents = I_K`` this turns one linearisation into the K per-task gradients.
    """
    num_rows = cotangents.shape[0]
    batched = jax.vmap(lambda c: vjp_fn(c)[0])
    if chunk_size is None or chunk_size >= num_rows:
        return batched(cotangents)
    num_chunks = -(-num_rows // chunk_size)
    padded = (
        jnp.zeros((num_chunks * chunk_size, num_rows), cotangents.dtype)
        .at[:num_rows]
        .set(cotangents)
    )
    # lax.map runs the chunks one after another, bounding peak memory to chunk_size rows.
    stacked = jax.lax.map(batched, padded.reshape(num_chunks, chunk_size, num_rows))
    return jax.tree.map(
        lambda x: x.reshape(num_chunks * chunk_size, *x.shape[2:])[:num_rows], stacked
    )


def task_value_and_grad(
    loss_fn: LossFn,
    *,
    has_aux: bool = False,
    chunk_size: int | None = None,
    per_task_batches: bool = False,
) -> Callable[..., tuple[Any, Any]]:
    """Builds a function returning the task losses and the per-task gradients.

    With ``loss_fn(params, *args) -> losses`` of shape [K], the returned function computes

    .. math:: g_k = \\nabla_\\theta L_k(\\theta), \\quad k = 1..K

    as ``jax.vmap`` over the VJPs with cotangents ``e_1..e_K`` of one linearisation.

    Args:
      loss_fn: ``loss_fn(params, *args)`` returning the [K] losses (or ``(losses, aux)`` with
        ``has_aux``). Gradients are taken with respect to the first argument.
      has_aux: whether ``loss_fn`` returns ``(losses, aux)``.
      chunk_size: process the K cotangents ``chunk_size`` at a time (``jax.lax.map`` over
        chunks) to bound memory when K is large; ``None`` does all K at once.
      per_task_batches: multi-input mode: every positional argument after ``params`` carries a
        leading task axis of size K (task k's own batch). Task k's loss is then
        ``loss_fn(params, *batch_k)[k]``; this costs K forward passes (the data differ).

    Returns:
      A function ``(params, *args) -> (losses, task_grads)`` (``((losses, aux), task_grads)``
      with ``has_aux``), where ``task_grads`` is the params pytree with a leading axis K.

    Raises:
      ValueError: when the losses are not a vector, or ``chunk_size`` is not positive.
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")

    def value_and_task_grads(params: Any, *args: Any) -> tuple[Any, Any]:
        if per_task_batches:
            return _per_task_batches(loss_fn, has_aux, params, args)
        fn = functools.partial(_call, loss_fn, args=args)
        if has_aux:
            losses, vjp_fn, aux = jax.vjp(fn, params, has_aux=True)
        else:
            losses, vjp_fn = jax.vjp(fn, params)
        check_losses(losses)
        task_grads = stacked_vjp(vjp_fn, jnp.eye(losses.shape[0], dtype=losses.dtype), chunk_size)
        return ((losses, aux) if has_aux else losses), task_grads

    return value_and_task_grads


def _call(loss_fn: LossFn, params: Any, args: tuple) -> Any:
    return loss_fn(params, *args)


def _per_task_batches(loss_fn: LossFn, has_aux: bool, params: Any, args: tuple) -> tuple:
    """Task k's gradient of ``loss_fn(params, *batch_k)[k]``, vmapped over (k, batch_k)."""
    leaves = jax.tree.leaves(args)
    if not leaves:
        raise ValueError("per_task_batches=True needs at least one batch argument.")
    num_tasks = leaves[0].shape[0]

    def one_task(task_args: tuple, cotangent: jax.Array) -> tuple:
        fn = functools.partial(_call, loss_fn, args=task_args)
        if has_aux:
            losses, vjp_fn, aux = jax.vjp(fn, params, has_aux=True)
        else:
            losses, vjp_fn, aux = (*jax.vjp(fn, params), None)
        check_losses(losses)
        if losses.shape[0] != num_tasks:
            raise ValueError(
                f"per_task_batches: the batches have a leading axis of {num_tasks} but loss_fn "
                f"returned {losses.shape[0]} losses."
            )
        return jnp.vdot(losses, cotangent), vjp_fn(cotangent.astype(losses.dtype))[0], aux

    eye = jnp.eye(num_tasks)
    losses, task_grads, aux = jax.vmap(one_task)(args, eye)
    return ((losses, aux) if has_aux else losses), task_grads


def shared_parameter_mask(task_grads: Any) -> Any:
    """Which parameter leaves are shared: two or more tasks have a nonzero gradient there.

    A task head's gradient is zero for every other task, so heads drop out. Evaluate it once on
    concrete gradients (outside ``jit``) to get a pytree of Python bools to pass as
    ``metric_mask``; :func:`autoscale_jax.autoscale` also accepts ``metric_mask="shared"``,
    which applies the same rule to every step's gradients inside ``jit``.

    Args:
      task_grads: concrete per-task gradients (leading task axis).

    Returns:
      A pytree of Python bools with the structure of the parameters.
    """
    return jax.tree.map(bool, metrics.resolve_mask(task_grads, "shared"))


# --- Gramian without the K x P Jacobian, representation gradients, task sampling -------------


class ObservedGramian(NamedTuple):
    """A step's task Gramian and which of its entries were observed.

    Attributes:
      gramian: [K, K]; entries of unobserved tasks are 0.
      task_mask: [K] bools, the tasks whose gradient was measured (``None``: all of them).
      inclusion: [K, K] probability that entry ``(i, j)`` is observed, for task sampling
        (``None``: every entry always is).
    """

    gramian: jax.Array
    task_mask: jax.Array | None = None
    inclusion: jax.Array | None = None

    def unbiased(self) -> jax.Array:
        """The inverse-probability estimate ``Ĝ_ij = G_ij / π_ij`` on observed entries, 0 else.

        ``E[Ĝ] = G`` over the random subsets (Horvitz-Thompson); without sampling it is ``G``.
        """
        if self.inclusion is None or self.task_mask is None:
            return self.gramian
        pairs = self.task_mask[:, None] & self.task_mask[None, :]
        return jnp.where(pairs, self.gramian / self.inclusion, 0.0)


class SplitLoss(NamedTuple):
    """A loss function split at a shared representation ``z`` (for the representation modes).

    ``SplitLoss(representation, heads)(params, *args) = heads(params, representation(params,
    *args), *args)``, so it is an ordinary ``loss_fn`` everywhere; the ``"representation"`` and
    ``"last_layer"`` gradient modes of :func:`autoscale_jax.multitask_train_step` use the split.

    Attributes:
      representation: ``(params, *args) -> z`` (any pytree), the shared encoder.
      heads: ``(params, z, *args) -> losses [K]``, the part after the marked representation.

    Example:
      >>> loss_fn = asj.SplitLoss(
      ...     representation=lambda p, x, y: jnp.tanh(x @ p["trunk"]),
      ...     heads=lambda p, z, x, y: jnp.mean((z @ p["heads"] - y) ** 2, axis=0))
    """

    representation: Callable[..., Any]
    heads: Callable[..., jax.Array]

    def __call__(self, params: Any, *args: Any) -> jax.Array:
        return self.heads(params, self.representation(params, *args), *args)


def mask_leaves(tree: Any, keep: Any) -> Any:
    """``tree`` with the leaves whose ``keep`` is False (Python or traced bool) set to zero."""
    if keep is None:
        return tree

    def leaf(x: jax.Array, k: Any) -> jax.Array:
        if k is True:
            return x
        return jnp.zeros_like(x) if k is False else jnp.where(k, x, jnp.zeros_like(x))

    return jax.tree.map(leaf, tree, keep)


def _chunked_map(fn: Callable, rows: jax.Array, chunk_size: int) -> Any:
    """``jax.vmap(fn)(rows)``, ``chunk_size`` rows at a time (``lax.map`` over chunks)."""
    num_rows = rows.shape[0]
    chunk_size = max(min(chunk_size, num_rows), 1)
    num_chunks = -(-num_rows // chunk_size)
    padded = (
        jnp.zeros((num_chunks * chunk_size, *rows.shape[1:]), rows.dtype).at[:num_rows].set(rows)
    )
    out = jax.lax.map(jax.vmap(fn), padded.reshape(num_chunks, chunk_size, *rows.shape[1:]))
    return jax.tree.map(lambda x: x.reshape(num_chunks * chunk_size, *x.shape[2:])[:num_rows], out)


def shared_leaves_from_vjp(
    vjp_fn: Callable, num_tasks: int, dtype: Any, chunk_size: int = 1
) -> Any:
    """The ``"shared"`` metric mask without stacking the gradients: one VJP per task.

    A leaf is shared when two or more tasks have a nonzero gradient in it; each task's VJP
    only contributes one bool per leaf, so memory stays O(P + K·leaves).

    Returns:
      A params-shaped pytree of traced bools.
    """

    def nonzero(cotangent: jax.Array) -> Any:
        (grads,) = vjp_fn(cotangent)
        return jax.tree.map(lambda g: jnp.any(g != 0), grads)

    flags = _chunked_map(nonzero, jnp.eye(num_tasks, dtype=dtype), chunk_size)
    return jax.tree.map(lambda f: jnp.sum(f) >= 2, flags)


def resolve_params_mask(params: Any, mask: Any) -> Any:
    """A metric mask as a params-shaped pytree of bools (``"shared"`` is not resolved here).

    A predicate is called as ``predicate(key_path, leaf)`` with the *parameter* leaves.
    """
    if mask is None or isinstance(mask, str):
        return None
    if callable(mask):
        return jax.tree_util.tree_map_with_path(lambda p, x: bool(mask(p, x)), params)
    return jax.tree.map(lambda _, m: m, params, mask)


def gramian_from_linearization(
    jvp_fn: Callable,
    vjp_fn: Callable,
    params: Any,
    num_tasks: int,
    dtype: Any = jnp.float32,
    *,
    metric_mask: Any = None,
    chunk_size: int = 1,
) -> jax.Array:
    """The task Gramian ``G = J M Jᵀ`` column by column, never holding the K×P Jacobian.

    Column k is a JVP of a VJP: ``v_k = M Jᵀ e_k`` (one VJP, masked to the leaves the metrics
    see), then ``G e_k = J v_k`` (one JVP). ``jax.lax.map`` runs ``chunk_size`` columns at a
    time, so memory is O(chunk_size · P + K²) on top of the forward pass's residuals. Exact:
    equal to :func:`autoscale_jax.metrics.gramian` of the stacked gradients up to float
    round-off; the cost is K VJPs and K JVPs (2K with ``metric_mask="shared"``, whose
    per-leaf test needs every task's VJP before the first column).

    Args:
      jvp_fn: ``v -> J v``, the losses' JVP at ``params`` (``jax.linearize``).
      vjp_fn: ``u -> (Jᵀ u,)``, the losses' VJP at ``params``.
      params: the parameters (their structure resolves a mask predicate).
      num_tasks: K.
      dtype: the losses' dtype.
      metric_mask: ``None``, ``"shared"``, a pytree of bools or a predicate on the key path.
      chunk_size: columns per ``lax.map`` iteration.

    Returns:
      The [K, K] Gramian in at least float32 (symmetrised: ``(G + Gᵀ)/2``).
    """
    if isinstance(metric_mask, str):
        if metric_mask != "shared":
            raise ValueError(
                f"Unknown mask {metric_mask!r}; use None, 'shared', a pytree or a callable."
            )
        keep = shared_leaves_from_vjp(vjp_fn, num_tasks, dtype, chunk_size)
    else:
        keep = resolve_params_mask(params, metric_mask)

    def column(cotangent: jax.Array) -> jax.Array:
        (v,) = vjp_fn(cotangent)
        return metrics.at_least_float32(jvp_fn(mask_leaves(v, keep)))

    G = _chunked_map(column, jnp.eye(num_tasks, dtype=dtype), chunk_size)
    return (G + G.T) / 2


def representation_task_gradients(heads_vjp: Callable, num_tasks: int, dtype: Any) -> Any:
    """Per-task gradients with respect to the representation ``z``: K VJPs through the heads.

    ``heads_vjp`` is the VJP of ``(params, z) -> losses``; its second output is ``∂L_k/∂z``.
    """
    return jax.vmap(lambda e: heads_vjp(e)[1])(jnp.eye(num_tasks, dtype=dtype))


def sample_tasks(key: jax.Array, num_tasks: int, num_sampled: int) -> tuple:
    """A uniformly random subset of ``num_sampled`` of the ``num_tasks`` tasks.

    Returns:
      ``(indices [m], task_mask [K] bools, inclusion [K, K])`` with the inclusion
      probabilities ``π_kk = m/K`` and ``π_ij = m(m-1) / (K(K-1))`` for ``i ≠ j``.
    """
    if not 2 <= num_sampled <= num_tasks:
        raise ValueError(
            f"num_sampled_tasks must be between 2 and K = {num_tasks}, got {num_sampled}."
        )
    indices = jax.random.choice(key, num_tasks, (num_sampled,), replace=False)
    mask = jnp.zeros((num_tasks,), bool).at[indices].set(True)
    m, k = num_sampled, num_tasks
    pair = m * (m - 1) / (k * (k - 1))
    inclusion = jnp.where(jnp.eye(k, dtype=bool), m / k, pair).astype(jnp.float32)
    return indices, mask, inclusion


def sampled_gramian(
    vjp_fn: Callable,
    key: jax.Array,
    num_tasks: int,
    num_sampled: int,
    dtype: Any = jnp.float32,
    *,
    metric_mask: Any = None,
    chunk_size: int | None = None,
) -> ObservedGramian:
    """The Gramian entries of a random subset of ``m`` tasks: m VJPs instead of K.

    Unbiased: :meth:`ObservedGramian.unbiased` has expectation ``G`` over the subsets, and
    AutoScale's estimator averages each entry over the samples that observed it.

    Returns:
      An :class:`ObservedGramian` with zeros outside the sampled rows and columns.
    """
    indices, mask, inclusion = sample_tasks(key, num_tasks, num_sampled)
    cotangents = jnp.eye(num_tasks, dtype=dtype)[indices]
    task_grads = stacked_vjp(vjp_fn, cotangents, chunk_size)
    block = metrics.gramian(task_grads, metric_mask)
    G = (
        jnp.zeros((num_tasks, num_tasks), block.dtype)
        .at[indices[:, None], indices[None, :]]
        .set(block)
    )
    return ObservedGramian(G, mask, inclusion)
