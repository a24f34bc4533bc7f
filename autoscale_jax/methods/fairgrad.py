"""FairGrad: α-fair allocation of the update among the tasks.

Reference:
  Ban & Ji, Fair Resource Allocation in Multi-Task Learning, 2024.
"""

from __future__ import annotations

import functools

from autoscale_jax import base, checks, metrics
from autoscale_jax.methods import _bases
from autoscale_jax.methods import _solvers as solvers
from autoscale_jax.methods._power_balance import power_balance
from autoscale_jax.methods._registry import MethodInfo


def fairgrad(
    num_tasks: int,
    *,
    alpha: float = 1.0,
    reg_eps: float = 1e-6,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    metric_mask: metrics.MetricMask = None,
    heads: str = "weighted",
) -> base.MultiTaskTransformation:
    """FairGrad: weights ``w > 0`` with ``G w = w^{-1/α}`` (elementwise); update ``Σ_k w_k g_k``.

    The update maximises the α-fair utility of the tasks' improvements ``u_k = <g_k, d>``,

    .. math:: \\max_d \\sum_k \\frac{u_k^{1-α}}{1-α} \\quad \\text{s.t.} \\quad \\|d\\| ≤ ε

    (``log u_k`` for ``α = 1``), whose optimality condition with ``d = Σ_k w_k g_k`` is
    ``(Gw)_k = w_k^{-1/α}``. ``α = 0`` would be linear scalarization (excluded: the condition
    degenerates), ``α = 1`` proportional fairness (identical to Nash-MTL), ``α → ∞`` max-min
    fairness. The system is solved in pure JAX by damped Newton on an equivalent strictly
    convex problem (:func:`~autoscale_jax.methods._power_balance.power_balance` with ``p = 1/α``),
    instead of the official code's ``scipy.optimize.least_squares``.

    Only ``α = 1`` is invariant to rescaling a task's gradient; otherwise the balance depends on
    the gradient norms. A ridge ``reg_eps · I`` on the cosine matrix keeps the problem solvable
    when 0 is in the convex hull of the gradients. A zero task gradient gets weight 0 (it
    cannot satisfy its equation and contributes nothing). A solve that does not meet
    ``tolerance`` within ``max_iterations`` uses its last (finite, positive) iterate with
    ``solver_converged=False``; non-finite gradients keep the previous weights in the state,
    flag ``solver_converged=False`` and propagate to the update.

    Args:
      num_tasks: K >= 2.
      alpha: the fairness parameter ``α > 0``.
      reg_eps: ridge on the cosine matrix.
      max_iterations: Newton iteration budget.
      tolerance: relative residual tolerance of ``(Gw)_k w_k^{1/α} = 1``.
      metric_mask: leaves the Gramian sees (default all; the paper uses the shared
        parameters: pass ``"shared"``).
      heads: ``"weighted"`` (every leaf gets the weighted sum) or ``"plain"`` (only the shared
        leaves are measured and weighted; each task head gets its own gradient).

    Returns:
      A :class:`~autoscale_jax.base.MultiTaskTransformation` whose state
      (:class:`~autoscale_jax.methods.GramianMethodState`) holds ``task_weights``,
      ``solver_iterations`` and ``solver_converged``.

    Example:
      >>> tx = optax.chain(fairgrad(2, alpha=2.0), optax.adam(1e-3))
      >>> updates, state = tx.update(task_grads, tx.init(params), params)

    Reference:
      Ban & Ji, Fair Resource Allocation in Multi-Task Learning, 2024.
    """
    num_tasks = checks.check_num_tasks(num_tasks)
    solvers.check_hyperparameter("alpha", alpha, 0.0, strict=True)
    power = 1.0 / alpha

    solve = functools.partial(
        power_balance,
        power=power,
        reg_eps=reg_eps,
        max_iterations=max_iterations,
        tolerance=tolerance,
    )
    return _bases.solver_method(num_tasks, "fairgrad", solve, metric_mask=metric_mask, heads=heads)


INFO = MethodInfo(
    name="fairgrad",
    factory=fairgrad,
    family="gramian",
    reference="Ban & Ji, Fair Resource Allocation in Multi-Task Learning, 2024 (arXiv 2402.15638)",
)
