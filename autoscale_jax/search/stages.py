"""The stages of the one-call search (:func:`autoscale_jax.search.find_weights`): which
candidates each stage trains around the previous pick, on which rungs, and the default design.

A stage maps the weights picked so far ``w`` (AutoScale's phase-1 weights for the first stage,
the previous survivor's after) to ``C`` candidate weight vectors, then runs successive halving
over them (:func:`~autoscale_jax.search.halving_counts`):

- ``alpha_stage(alphas, rungs)``: ``w(α) ∝ w^α`` (:func:`~autoscale_jax.search.alpha_family`),
  the one-parameter family through equal weights (α = 0) and ``w`` (α = 1);
- ``multiplier_stage(factors, rungs)``: ``w`` and ``w_k ← f w_k`` for each task and factor
  (:func:`~autoscale_jax.search.task_multipliers`): moves one task against the others;
- ``weights_stage(candidates, rungs)``: given ``[C, K]`` weights (a control: one row trains
  phase 1, then those fixed weights).

``default_stages(K, budget)`` is the design of the bench's ``autoscale_search``
(``autoscale_jax.bench.method_config.search_options``): α ∈ {1, 1.5, 2, 2.5, 3} on rungs at
5% and 30% of the budget after phase 1 (25% for K ≥ 3), keeping half; for K ≥ 3 then ×4 on
each task around the survivor, one rung of 7.5%. Measured there: 1.75x (K = 2) and 1.93x
(K = 3) the gradient evaluations of one equal-weight run of 800 steps.

Example:
  >>> [stage.kind for stage in default_stages(3, 800)]
  ['alpha', 'multipliers']
  >>> default_stages(3, 800)[0].rungs
  (40, 200)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from autoscale_jax.search import _checks
from autoscale_jax.search.candidates import alpha_family, task_multipliers

__all__ = [
    "Stage",
    "alpha_stage",
    "default_estimation_steps",
    "default_stages",
    "multiplier_stage",
    "weights_stage",
]

KINDS = ("alpha", "multipliers", "weights")


class Stage(NamedTuple):
    """One stage: ``kind`` (``"alpha"``, ``"multipliers"`` or ``"weights"``), its ``values``
    (exponents, factors or a [C, K] matrix), ``rungs`` counted from the stage's start, ``keep``.
    """

    kind: str
    values: Any
    rungs: tuple[int, ...]
    keep: float = 0.5

    def num_candidates(self, num_tasks: int) -> int:
        """C, the stage's candidate count for K tasks."""
        if self.kind == "alpha":
            return len(self.values)
        if self.kind == "multipliers":
            return 1 + num_tasks * len(self.values)
        return int(np.shape(self.values)[0])

    def candidates(self, weights: jax.Array) -> jax.Array:
        """The [C, K] candidates around ``weights`` (the pick so far)."""
        if self.kind == "alpha":
            return alpha_family(weights, self.values)
        if self.kind == "multipliers":
            return task_multipliers(weights, self.values)
        return jnp.asarray(self.values, jnp.float32)


def _stage(kind: str, values: Any, rungs: Sequence[int], keep: float) -> Stage:
    return Stage(kind, values, _checks.check_rungs(rungs), _checks.check_keep(keep))


def alpha_stage(alphas: Sequence[float], rungs: Sequence[int], keep: float = 0.5) -> Stage:
    """Candidates ``w(α) ∝ w^α`` around the pick ``w`` (distinct finite ``alphas``)."""
    return _stage("alpha", tuple(float(a) for a in alphas), rungs, keep)


def multiplier_stage(factors: Sequence[float], rungs: Sequence[int], keep: float = 0.5) -> Stage:
    """The pick ``w`` and ``w_k ← f w_k`` for each task and factor (``f > 0``, ``f ≠ 1``)."""
    return _stage("multipliers", tuple(float(f) for f in factors), rungs, keep)


def weights_stage(candidates: Any, rungs: Sequence[int], keep: float = 0.5) -> Stage:
    """Given ``[C, K]`` candidates (finite, >= 0, a positive entry per row)."""
    weights = np.asarray(_checks.check_candidate_weights(candidates))
    return _stage("weights", weights, rungs, keep)


def default_estimation_steps(budget: int, window: int = 10) -> int:
    """AutoScale's phase 1 in the default design: 5% of the budget, at least one window."""
    return max(window, round(0.05 * budget))


def default_stages(num_tasks: int, budget: int) -> tuple[Stage, ...]:
    """The bench's search design for K tasks and a training ``budget`` (see the module doc)."""
    last = 0.25 if num_tasks >= 3 else 0.3
    stages = [
        alpha_stage(
            (1.0, 1.5, 2.0, 2.5, 3.0), (max(1, round(0.05 * budget)), max(2, round(last * budget)))
        )
    ]
    if num_tasks >= 3:
        stages.append(multiplier_stage((4.0,), (max(1, round(0.075 * budget)),)))
    return tuple(stages)


def check_stages(stages: Any, num_tasks: int) -> tuple[Stage, ...]:
    """Each stage's kind, values, rungs and keep, checked before the first step."""
    if isinstance(stages, Stage) or not isinstance(stages, Sequence | tuple):
        raise TypeError(
            "stages must be a sequence of Stage (alpha_stage, multiplier_stage, weights_stage; "
            f"() for AutoScale's phase 1 alone), got {stages!r}."
        )
    checked = []
    for number, stage in enumerate(stages):
        if not isinstance(stage, Stage) or stage.kind not in KINDS:
            raise TypeError(
                f"stages[{number}] must be a Stage built by alpha_stage, multiplier_stage or "
                f"weights_stage, got {stage!r}."
            )
        probe = jnp.ones(num_tasks, jnp.float32)
        if stage.kind == "weights":
            width = np.shape(stage.values)[1]
            if width != num_tasks:
                raise ValueError(
                    f"stages[{number}] has candidates for {width} tasks, loss_fn has "
                    f"num_tasks = {num_tasks}: give one column per task."
                )
        else:
            stage.candidates(probe)  # alpha_family / task_multipliers check their values
        checked.append(_stage(stage.kind, stage.values, stage.rungs, stage.keep))
    return tuple(checked)
