"""One base per method family: the ``init``/``update`` skeleton every method shares.

A method supplies only its rule; the base does the checks, the finite-state guard, the
combination of the task gradients and the fast path:

- :func:`gramian_method`: weights solved from the K×K Gramian of the task gradients each step
  (MGDA, CAGrad, UPGrad, Nash-MTL, IMTL-G, Aligned-MTL, ...), including the *gradient
  surgery* methods that draw a random order each step (PCGrad, GradVac: ``needs_key=True``).
  Every method of this family accepts ``metric_mask`` (which leaves the Gramian sees) and
  ``heads`` (whether the task heads get the weighted or their own plain gradient). It is a
  transition on :func:`~autoscale_jax.methods._update_paths.gramian_base`, the update paths
  it shares with AutoScale and fixed weights.
- :func:`~autoscale_jax.methods._loss_weighting.loss_weighting` (its own module): weights
  from the losses and the method's own state (UW, DWA, RLW, FAMO, ...).
- :func:`stacked_gradient_method`: the general form, for methods that act on the stacked
  gradients element by element (GradDrop, TrimmedMean) or keep gradient-sized memory.

Rules are traced under ``jax.default_matmul_precision("float32")`` (full precision): their
K-space matmuls stay full float32 on GPU (TF32) and TPU (bf16 passes).

A rule returns a :class:`Proposal`; the base applies it only when it and the Gramian are
finite, otherwise it keeps the previous weights and memory (the update still carries the
non-finite gradients, so nothing is silently repaired). An all-zero Gramian (nothing measured:
a metric mask that selects no shared leaf, heads that share no parameter) is not solved
either: the previous weights are applied and kept, and ``state.gramian_zero`` says so.

Partial labels (``task_mask``): every family gives an absent task weight 0 and lets the present
ones train (see :mod:`autoscale_jax.methods._partial_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods._heads import aggregation_mask, check_heads
from autoscale_jax.methods._partial_labels import (
    masked,
    stand_in_gramian,
    stand_in_losses,
    stand_in_map,
)
from autoscale_jax.methods._update_paths import (
    GramianFn,
    Sample,
    gramian_base,
    reject_presummed,
    require_key,
    stacked_gradient_method,
)

__all__ = [
    "GramianMethodState",
    "GramianRule",
    "Proposal",
    "aggregation_mask",
    "all_finite",
    "as_rule",
    "check_heads",
    "gramian_base",
    "gramian_method",
    "keep_if_finite",
    "reject_presummed",
    "require_key",
    "solver_method",
    "stacked_gradient_method",
    "weights_method",
    "work_dtype",
]


class Proposal(NamedTuple):
    """What a rule proposes for one step.

    Attributes:
      weights: [K] task weights for this step's update.
      memory: the method's own state for the next step (``()`` when it has none).
      iterations: iterations its solver used (0 without a solver).
      converged: whether its solver met its tolerance (True without a solver).
    """

    weights: jax.Array
    memory: Any = ()
    iterations: Any = 0
    converged: Any = True


class GramianMethodState(NamedTuple):
    """State of every :func:`gramian_method`.

    Attributes:
      task_weights: [K] float32 weights of the latest usable solve, as applied (0 for a task
        absent then); a step that cannot solve (a non-finite or all-zero Gramian) applies them
        again (0 for the tasks absent now) and keeps them.
      solver_iterations: int32 iterations of the latest solve.
      solver_converged: bool, whether the latest proposal was finite, its Gramian nonzero and
        its solver converged (False before the first solve).
      gramian_zero: bool, whether the latest solve step measured an all-zero Gramian on the
        present tasks (``metric_mask`` selects no shared leaf, heads that share no parameter,
        or no task present): the rule was not applied and the previous weights were kept.
      step: int32 updates so far.
      memory: the method's own state (e.g. GradVac's targets; ``()`` when none).
    """

    task_weights: jax.Array
    solver_iterations: jax.Array
    solver_converged: jax.Array
    gramian_zero: jax.Array
    step: jax.Array
    memory: Any


# rule(G, losses or None, key or None, memory) -> Proposal
GramianRule = Callable[[jax.Array, Any, Any, Any], Proposal]


def as_rule(solve: Callable[[jax.Array, jax.Array | None], Any]) -> GramianRule:
    """A :func:`gramian_method` rule from a stateless solver ``(G, losses) -> SolverResult``
    (:mod:`~autoscale_jax.methods._solvers`) whose solution is the [K] weights."""

    def rule(G: jax.Array, losses: Any, key: Any, memory: Any) -> Proposal:
        del key
        result = solve(G, losses)
        return Proposal(result.solution, memory, result.iterations, result.converged)

    return rule


def solver_method(
    num_tasks: int, name: str, solve: Callable[[jax.Array], Any], **options: Any
) -> base.MultiTaskTransformation:
    """A :func:`gramian_method` whose weights are the solution of a stateless solver of the
    Gramian alone, ``solve(G) -> SolverResult`` (see :func:`as_rule`); ``options``
    (``metric_mask``, ``heads``, ``update_every``, ...) go to :func:`gramian_method`."""

    def solve_ignoring_losses(G: jax.Array, losses: jax.Array | None) -> Any:
        del losses
        return solve(G)

    return gramian_method(num_tasks, name, as_rule(solve_ignoring_losses), **options)


def weights_method(
    num_tasks: int, name: str, weights: Callable[[jax.Array], jax.Array], **options: Any
) -> base.MultiTaskTransformation:
    """A :func:`gramian_method` whose [K] weights are a closed form of the Gramian alone,
    ``weights(G)`` (no solver to report on, no memory); ``options`` go to
    :func:`gramian_method`."""

    def rule(G: jax.Array, losses: Any, key: Any, memory: Any) -> Proposal:
        del losses, key
        return Proposal(weights(G), memory)

    return gramian_method(num_tasks, name, rule, **options)


def keep_if_finite(new: Any, previous: Any, finite: jax.Array) -> Any:
    """``new`` (in the previous dtypes) where ``finite``, else ``previous``, leaf by leaf."""
    return jax.tree.map(
        lambda n, p: jnp.where(finite, jnp.asarray(n).astype(p.dtype), p), new, previous
    )


def all_finite(*trees: Any) -> jax.Array:
    """Whether every leaf of every tree is finite (True for empty trees)."""
    leaves = [jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def work_dtype(G: jax.Array) -> Any:
    """The dtype weights are applied in: the Gramian's, at least float32."""
    return jnp.promote_types(G.dtype, jnp.float32)


def gramian_method(
    num_tasks: int,
    name: str,
    rule: GramianRule,
    *,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
    needs_key: bool = False,
    losses_required: bool = False,
    update_every: int = 1,
    init_memory: Any = (),
    init_weights: jax.Array | None = None,
    gramian_fn: GramianFn | None = None,
) -> base.MultiTaskTransformation:
    """A method whose weights are a function of the task Gramian ``G = J Jᵀ`` each step.

    The update is ``Σ_k w_k g_k`` with ``w = rule(G, losses, key, memory).weights``. The
    rule never sees the P parameters, only the K×K Gramian (on the leaves ``metric_mask``
    selects), so every method of the family costs one Gramian plus a K-dimensional problem.

    Args:
      num_tasks: K >= 2.
      name: the registry name, for error messages.
      rule: ``(G, losses, key, memory) -> Proposal``.
      metric_mask: the leaves the Gramian sees (``None``: all; ``"shared"``: leaves where two
        or more tasks have a nonzero gradient; a pytree of bools or a predicate, see
        :func:`autoscale_jax.metrics.resolve_mask`).
      heads: ``"weighted"``: every leaf gets ``Σ_k w_k g_k``; ``"plain"``: only the shared
        leaves (``metric_mask``, default ``"shared"``) are measured and weighted, every other
        leaf gets ``Σ_k g_k`` (each task head its own gradient, TorchJD's ``mtl_backward``).
      needs_key: whether ``update`` requires ``key=`` (the rule then gets it).
      losses_required: whether ``update`` requires ``task_losses=``.
      update_every: solve every this many steps and reuse the weights in between; then the
        steps in between need no per-task gradients (a fast path). A static int >= 1.
      init_memory: the rule's memory before the first step.
      init_weights: [K] weights before the first step (default ones).
      gramian_fn: ``(task_grads, extra_args) -> G`` to measure elsewhere (MGDA-UB).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a
      :class:`GramianMethodState`. Unless ``heads="plain"`` or ``gramian_fn`` is given (both
      need the stacked gradients), it carries a :class:`~autoscale_jax.base.GramianPath`:
      the same state transition from a Gramian measured elsewhere, so the method trains in
      every gradient mode of :func:`autoscale_jax.multitask_train_step`. With task sampling
      the rule sees the unbiased estimate ``Ĝ = G / π`` on the observed entries
      (:meth:`~autoscale_jax.jacobian.ObservedGramian.unbiased`).
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    check_heads(heads)
    if not isinstance(update_every, int) or update_every < 1:
        raise ValueError(
            f"update_every must be a positive Python int, got {update_every!r}. Under "
            "optax.inject_hyperparams pass static_args=('num_tasks', 'update_every')."
        )
    measured = aggregation_mask(metrics.check_metric_mask(metric_mask), heads)
    if init_weights is None:
        init_weights = jnp.ones((num_tasks,), jnp.float32)

    def init_state(params: Any) -> GramianMethodState:
        del params
        return GramianMethodState(
            task_weights=jnp.asarray(init_weights, jnp.float32),
            solver_iterations=jnp.zeros((), jnp.int32),
            solver_converged=jnp.zeros((), bool),
            gramian_zero=jnp.zeros((), bool),
            step=jnp.zeros((), jnp.int32),
            memory=init_memory,
        )

    def solve(
        state: GramianMethodState, G: jax.Array, losses: Any, key: Any, present: Any
    ) -> tuple:
        """``(weights to apply, next state)``; the applied weights keep the solver's dtype."""
        # K-space solvers ask for full float32 matmuls (TF32 / bf16 passes lose digits).
        with jax.default_matmul_precision("float32"):  # = "highest", a name jax 0.4.30 knows
            if present is not None:  # the rule sees the stand-ins of absent tasks
                G = stand_in_gramian(metrics.at_least_float32(G), present)
                losses = None if losses is None else stand_in_losses(losses, present)
            proposal = rule(G, losses, key, state.memory)
            weights = proposal.weights
            if present is not None:  # folded back: Σ w_k g'_k = Σ (Aᵀ w)_k g_k
                weights = stand_in_map(present, work_dtype(G)).T @ weights
        finite = all_finite(G, proposal.weights, proposal.memory)
        measured = jnp.any(G != 0)  # not jnp.diagonal: a two-batch cross Gramian is not PSD
        usable = finite & measured
        previous = masked(state.task_weights, present)
        applied = jnp.where(usable, weights, previous).astype(work_dtype(G))
        return applied, state._replace(
            task_weights=keep_if_finite(weights, state.task_weights, usable),
            solver_iterations=jnp.asarray(proposal.iterations, jnp.int32),
            solver_converged=usable & jnp.asarray(proposal.converged, bool),
            gramian_zero=all_finite(G) & ~measured,
            memory=keep_if_finite(proposal.memory, state.memory, usable),
        )

    def transition(state: GramianMethodState, sample: Sample) -> tuple:
        """Solve (every ``update_every`` steps) and count the step; with task sampling the
        rule sees the unbiased ``Ĝ = G / π`` on the observed entries."""
        G, present = sample.observed.unbiased(), sample.present
        if update_every == 1:
            weights, new_state = solve(state, G, sample.losses, sample.key, present)
        else:
            weights, new_state = jax.lax.cond(
                state.step % update_every == 0,
                lambda: solve(state, G, sample.losses, sample.key, present),
                lambda: (masked(state.task_weights, present).astype(work_dtype(G)), state),
            )
        return weights, new_state._replace(step=state.step + 1)

    def is_solve_step(state: GramianMethodState) -> jax.Array:
        return state.step % update_every == 0

    def presummed_update(
        combined: Any, state: GramianMethodState, losses: Any, key: Any, present: Any
    ) -> tuple:
        del losses, key, present  # the fast path zeroed the absent tasks' weights
        # Between solves the fast path applied the stored weights; at a solve step it would
        # have used stale ones, so the update is poisoned instead of silently wrong.
        poison = jnp.where(is_solve_step(state), jnp.nan, 1.0)
        update = jax.tree.map(lambda g: g * poison.astype(g.dtype), combined)
        return update, state._replace(step=state.step + 1)

    fast_path = None
    if update_every > 1 and heads == "weighted":
        fast_path = base.FastPath(
            needs_task_gradients=is_solve_step,
            weights=lambda state, task_losses, key: state.task_weights,
        )
    return gramian_base(
        num_tasks,
        name,
        init_state,
        transition,
        measured=measured,
        heads=heads,
        needs_key=needs_key,
        losses_required=losses_required,
        gramian_fn=gramian_fn,
        fast_path=fast_path,
        presummed_update=presummed_update if fast_path is not None else None,
    )
