"""autoscale-jax: multi-task optimization for JAX.

Per-task gradients from one forward pass, MTO metrics, AutoScale, and multi-task optimizers as
optax transformations that take stacked task gradients and ``task_losses=``.
"""

from autoscale_jax import estimator, methods, metrics, modes, restart, search, weighting
from autoscale_jax._autoscale_state import AutoScaleState
from autoscale_jax.accumulation import (
    ApplyIfFiniteState,
    MultiStepsState,
    apply_if_finite,
    multi_steps,
)
from autoscale_jax.base import (
    FastPath,
    MultiTaskTransformation,
    task_weights,
    weighted_sum,
)
from autoscale_jax.dispatch import needs_task_gradients
from autoscale_jax.jacobian import (
    ObservedGramian,
    SplitLoss,
    shared_parameter_mask,
    task_value_and_grad,
)
from autoscale_jax.methods.autoscale import autoscale
from autoscale_jax.methods.fixed_weights import FixedWeightsState, equal_weights, fixed_weights
from autoscale_jax.modes import task_gramian
from autoscale_jax.restart import restart_at_phase_switch, restart_moments
from autoscale_jax.train import (
    TrainState,
    TrainStep,
    linear_scalarization_step,
    multitask_train_step,
)

# The one version source: pyproject.toml reads it (dynamic = ["version"]).
__version__ = "0.1.0"

__all__ = [
    "ApplyIfFiniteState",
    "AutoScaleState",
    "FastPath",
    "FixedWeightsState",
    "MultiStepsState",
    "MultiTaskTransformation",
    "ObservedGramian",
    "SplitLoss",
    "TrainState",
    "TrainStep",
    "apply_if_finite",
    "autoscale",
    "equal_weights",
    "estimator",
    "fixed_weights",
    "linear_scalarization_step",
    "methods",
    "metrics",
    "modes",
    "multi_steps",
    "multitask_train_step",
    "needs_task_gradients",
    "restart",
    "restart_at_phase_switch",
    "restart_moments",
    "search",
    "shared_parameter_mask",
    "task_gramian",
    "task_value_and_grad",
    "task_weights",
    "weighted_sum",
    "weighting",
]
