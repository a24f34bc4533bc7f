"""Nash-MTL: the Nash bargaining solution among the tasks.

Reference:
  Navon et al, Multi-Task Learning as a Bargaining Game, 2022.
"""

from __future__ import annotations

import functools

from autoscale_jax import base, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods._power_balance import power_balance
from autoscale_jax.methods._registry import MethodInfo


def nash_mtl(
    num_tasks: int,
    *,
    max_iterations: int = 100,
    update_every: int = 1,
    reg_eps: float = 1e-6,
    tolerance: float = 1e-5,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """Nash-MTL: weights ``α > 0`` with ``(Gα)_k = 1/α_k``; the update is ``Σ_k α_k g_k``.

    The Nash bargaining solution of the tasks' utilities ``u_k(d) = <g_k, d>`` over the ball
    ``||d|| ≤ ε`` is ``d = Σ_k α_k g_k`` with ``α`` solving

    .. math:: G α = 1/α \\quad (\\text{elementwise}), \\qquad α > 0,

    so every task gets ``<g_k, d> = 1/α_k > 0`` and ``||d||² = αᵀGα = K``. The paper solves it
    by a sequence of convex programs (cvxpy); here it is solved in pure JAX by damped Newton on
    the equivalent strictly convex problem ``min_β ½ βᵀCβ - Σ_k log β_k`` on the cosine matrix
    ``C`` (:func:`~autoscale_jax.methods._power_balance.power_balance` with ``p = 1``), so the
    update is exactly invariant to a positive rescaling of any task's gradient (``α_k`` scales
    by the inverse factor). A ridge ``reg_eps · I`` on ``C`` keeps the problem solvable when 0 is in
    the convex hull of the gradients (e.g. exactly opposite gradients), where the exact
    weights would be unbounded.

    Differences from the official code, on purpose: it divides the Gramian by its Frobenius
    norm before solving (so its update has norm ``sqrt(K ||G||_F)`` instead of ``sqrt(K)``)
    and then clips the update to ``max_norm = 1``; chain ``optax.clip_by_global_norm`` for the
    latter. It also silently keeps the previous ``α`` when its solver fails; here the state
    says so instead (``solver_converged=False``, see below).

    ``update_every = T > 1`` is the paper's cheaper variant: the weights are solved at steps
    ``0, T, 2T, ...`` and reused in between. The transformation then has a fast path:
    :func:`autoscale_jax.train.multitask_train_step` skips the per-task gradients between
    solves and calls ``update(Σ_k α_k g_k, ..., presummed=True)``, which only advances the step
    (a presummed gradient at a solve step poisons the update with NaN instead of using stale
    weights silently).

    A zero task gradient cannot bargain: it gets ``α_k = 0`` (its gradient contributes nothing
    anyway) and the others solve among themselves. A solve whose Newton iterations do not meet
    ``tolerance`` within ``max_iterations`` still uses its last (finite, positive) iterate,
    with ``solver_converged=False``; non-finite gradients keep the previous weights in the
    state, flag ``solver_converged=False``, and propagate to the update.

    Args:
      num_tasks: K >= 2.
      max_iterations: Newton iteration budget per solve.
      update_every: solve the weights every this many steps (``>= 1``).
      reg_eps: ridge on the cosine matrix (see above).
      tolerance: relative residual tolerance of ``(Gα)_k α_k = 1``.
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared
        parameters: pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient; no fast path).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` with a
      :class:`~autoscale_jax.methods.GramianMethodState`.

    Example:
      >>> tx = optax.chain(nash_mtl(2, update_every=10), optax.adam(1e-3))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Navon et al, Multi-Task Learning as a Bargaining Game, 2022.
    """

    solve = functools.partial(
        power_balance,
        power=1.0,
        reg_eps=reg_eps,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )
    return _bases.solver_method(
        num_tasks,
        "nash_mtl",
        solve,
        metric_mask=metric_mask,
        heads=heads,
        update_every=update_every,
    )


INFO = MethodInfo(
    name="nash_mtl",
    factory=nash_mtl,
    family="gramian",
    reference="Navon et al, Multi-Task Learning as a Bargaining Game, 2022 (arXiv 2202.01017)",
)
