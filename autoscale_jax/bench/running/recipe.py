"""The training recipe of a benchmark: Adam's learning rate, β1 / β2 and schedule, the steps and
the batch size. Every row of a report trains with it (EW, the grid, the methods, the search and
the single-task baselines), so differences between rows are differences between methods.

- ``schedule="constant"``: ``optax.adam(learning_rate, b1, b2)``.
- ``schedule="warmup_cosine"``: the learning rate rises linearly from 0 to ``learning_rate``
  over the first ``warmup_fraction`` of the run, then decays along a cosine to 0 at its last
  step (:func:`optax.warmup_cosine_decay_schedule`).

A **restart** (:meth:`Recipe.restart`) zeroes Adam's moments and its bias-correction count, and
keeps the schedule's count: the learning rate goes on along the run's schedule.

Example:
  >>> recipe = Recipe(learning_rate=3e-3, b2=0.99, schedule="warmup_cosine",
  ...                 warmup_fraction=0.05, steps=800)
  >>> recipe.describe()
  'Adam lr 0.003 (β1 0.9, β2 0.99), warm-up 5% + cosine to 0, 800 steps × batch 128'
  >>> schedule = recipe.learning_rate_schedule(800)
  >>> float(schedule(0)), float(schedule(40)), float(schedule(800))
  (0.0, 0.003, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["DEFAULT_RECIPE", "SCHEDULES", "Recipe"]

SCHEDULES = ("constant", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How every run of a benchmark trains: Adam, its schedule, the steps and the batch size.

    Attributes:
      learning_rate: Adam's (peak) learning rate, > 0.
      b1, b2: Adam's moment decays, in [0, 1).
      schedule: ``"constant"`` or ``"warmup_cosine"``.
      warmup_fraction: share of the run spent warming up (``"warmup_cosine"`` only), in [0, 1).
      steps: training steps of a run (a suite's ``--steps`` overrides it).
      batch_size: examples per step.

    Raises:
      ValueError: at construction, naming the field, for a value outside its range.
    """

    learning_rate: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    schedule: str = "constant"
    warmup_fraction: float = 0.0
    steps: int = 800
    batch_size: int = 128

    def __post_init__(self) -> None:
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"Recipe.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"Recipe.{name} must be in [0, 1), got {value}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Recipe.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(
                f"Recipe.warmup_fraction must be in [0, 1), got {self.warmup_fraction}"
            )
        if self.schedule == "constant" and self.warmup_fraction:
            raise ValueError(
                "Recipe.warmup_fraction needs schedule='warmup_cosine' (a constant schedule "
                f"has no warm-up), got {self.warmup_fraction}"
            )
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Recipe.{name} must be a positive integer, got {value!r}")

    def _total(self, total_steps: int | None) -> int:
        if total_steps is None:
            if self.schedule != "constant":
                raise ValueError(
                    f"a {self.schedule!r} schedule needs total_steps, the run's length"
                )
            return self.steps
        if total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        return int(total_steps)

    def learning_rate_schedule(self, total_steps: int | None = None) -> float | optax.Schedule:
        """The learning rate: a float (constant) or a schedule of the step count.

        Args:
          total_steps: the run's steps (the schedule ends there); required for a schedule.
        """
        total = self._total(total_steps)
        if self.schedule == "constant":
            return self.learning_rate
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=self.learning_rate,
            warmup_steps=round(self.warmup_fraction * total),
            decay_steps=total,
            end_value=0.0,
        )

    def optimizer(self, total_steps: int | None = None) -> optax.GradientTransformation:
        """``optax.adam`` with this recipe's β1, β2 and learning-rate schedule.

        Args:
          total_steps: the run's steps; required for a schedule (None: constant only).

        Returns:
          A chain whose state is ``(ScaleByAdamState, EmptyState | ScaleByScheduleState)``.
        """
        return optax.adam(self.learning_rate_schedule(total_steps), b1=self.b1, b2=self.b2)

    def optimizer_key(self, total_steps: int | None = None) -> str:
        """What tells compiled programs with different optimizers apart (part of their cache
        key): the optimizer fields, and the run's steps for a schedule."""
        total = self._total(total_steps)
        fields = (self.learning_rate, self.b1, self.b2, self.schedule, self.warmup_fraction)
        return repr(fields + ((total,) if self.schedule != "constant" else ()))

    def setup_fields(self) -> tuple[Any, ...]:
        """The optimizer fields besides the learning rate that differ from the default (empty
        for the default Adam), for the fingerprint of a run's setup: run files written with
        the default recipe keep their fingerprint."""
        names = ("b1", "b2", "schedule", "warmup_fraction")
        return tuple(
            (n, getattr(self, n)) for n in names if getattr(self, n) != getattr(DEFAULT_RECIPE, n)
        )

    @staticmethod
    def restart(opt_state: Any) -> Any:
        """The optimizer state with Adam's moments and count zeroed, the schedule's count kept.

        Works on a state with leading axes (e.g. candidates trained side by side): every
        array of Adam's part is zeroed. The result equals a fresh ``init`` except that the
        learning rate continues along the schedule.

        Args:
          opt_state: a state of :meth:`optimizer`.

        Returns:
          The restarted state, same structure.
        """
        adam, *rest = opt_state
        if not isinstance(adam, optax.ScaleByAdamState):
            raise TypeError(
                f"Recipe.restart expects the state of Recipe.optimizer, got {type(adam).__name__}"
            )
        return (jax.tree.map(jnp.zeros_like, adam), *rest)

    def describe(self) -> str:
        """One line, e.g. ``Adam lr 0.001 (β1 0.9, β2 0.999), constant, 800 steps × batch 128``."""
        if self.schedule == "constant":
            schedule = "constant"
        else:
            schedule = f"warm-up {self.warmup_fraction:.0%} + cosine to 0"
        return (
            f"Adam lr {self.learning_rate:g} (β1 {self.b1:g}, β2 {self.b2:g}), {schedule}, "
            f"{self.steps} steps × batch {self.batch_size}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for ``results.json``)."""
        return dataclasses.asdict(self)


DEFAULT_RECIPE = Recipe()
