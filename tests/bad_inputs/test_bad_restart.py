"""The restart of the optimizer's moments at AutoScale's phase switch: every bad input is a clear
error at the first step (a state type the rule does not know is refused, never kept or reset by
guess), and the weightings without a phase have a defined result (no restart)."""

import importlib.util
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj

HAS_FLAX = importlib.util.find_spec("flax") is not None
K = 3
LOSS_FN, PARAMS, X, Y = regression_problem(num_samples=16, dim=4, hidden=5)
UNKNOWN = "does not know whether a MemoryState holds moments"


class Raises(NamedTuple):
    error: type
    match: str


class Defined(NamedTuple):
    check: Callable[[Any], None]  # asserts the documented result of run()


class MemoryState(NamedTuple):
    """A state type of a user's transformation that the rule does not know."""

    memory: Any


def with_memory() -> optax.GradientTransformation:
    def init(params):
        return MemoryState(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        return updates, MemoryState(jax.tree.map(lambda m, u: 0.9 * m + u, state.memory, updates))

    return optax.GradientTransformation(init, update)


def autoscale(steps=1):
    return asj.autoscale(K, estimation_steps=steps, window=1)


def steps(weighting, optimizer=None, count=1, jit=False, **options):
    """``count`` steps of multitask_train_step; returns the final state."""
    train = asj.multitask_train_step(LOSS_FN, weighting, optimizer, **options)
    step = jax.jit(train.step) if jit else train.step
    params, state = PARAMS, train.init(PARAMS)
    for _ in range(count):
        params, state, _ = step(params, state, X, Y)
    return state


def raw(tx, count=1, params=PARAMS):
    losses, task_grads = asj.task_value_and_grad(LOSS_FN)(PARAMS, X, Y)
    state = tx.init(PARAMS)
    for _ in range(count):
        _, state = tx.update(task_grads, state, params, task_losses=losses)
    return state


def nnx_step(restart_moments):
    import autoscale_jax.flax as asjf

    return asjf.nnx_train_step(lambda model, x, y: jnp.zeros(K), restart_moments=restart_moments)


def linen_apply_gradients(tx):
    import autoscale_jax.flax as asjf

    state = asjf.TrainState.create(apply_fn=None, params=PARAMS, tx=tx)
    return state.apply_gradients(grads=PARAMS)


def memory_count(state):
    return np.asarray(jax.tree.leaves(state.optimizer.memory)[0])


CASES: list[Any] = [
    (
        "restart_moments-not-bool",
        lambda: steps(autoscale(), optax.adam(1e-2), restart_moments="yes"),
        Raises(ValueError, "restart_moments must be True or False"),
    ),
    (
        "unknown-state-type-eager-first-step",  # before the switch: the first step refuses it
        lambda: steps(autoscale(steps=5), with_memory()),
        Raises(ValueError, UNKNOWN),
    ),
    (
        "unknown-state-type-jit",
        lambda: steps(autoscale(steps=5), with_memory(), jit=True),
        Raises(ValueError, UNKNOWN),
    ),
    (
        "unknown-state-type-inside-the-chain",
        lambda: steps(optax.chain(autoscale(), with_memory(), optax.sgd(0.1))),
        Raises(ValueError, UNKNOWN),
    ),
    (
        "unknown-state-type-restart-off-carries-it",
        lambda: steps(autoscale(), with_memory(), count=2, restart_moments=False),
        Defined(lambda state: assert_nonzero(memory_count(state))),
    ),
    (
        "register_state-not-a-namedtuple",
        lambda: asj.restart.register_state(dict, keep=("count",)),
        Raises(ValueError, "state_type must be a NamedTuple class"),
    ),
    (
        "register_state-unknown-field",
        lambda: asj.restart.register_state(MemoryState, keep=("count",)),
        Raises(ValueError, "must name distinct fields of MemoryState"),
    ),
    (
        "register_state-field-kept-and-inner",
        lambda: asj.restart.register_state(MemoryState, keep=("memory",), inner=("memory",)),
        Raises(ValueError, "must name distinct fields"),
    ),
    (
        "restart_moments-other-transformation",
        lambda: asj.restart_moments(
            optax.adam(1e-2).init(PARAMS), PARAMS, optax.sgd(0.1, momentum=0.9)
        ),
        Raises(ValueError, "pass the transformation that made the state"),
    ),
    (
        "restart_moments-params-of-other-shapes",
        lambda: asj.restart_moments(
            optax.adam(1e-2).init(PARAMS), jax.tree.map(lambda p: p[:1], PARAMS), optax.adam(1e-2)
        ),
        Raises(ValueError, "other shapes or dtypes than the running state"),
    ),
    (
        "wrapper-update-without-params",
        lambda: raw(
            asj.restart_at_phase_switch(optax.chain(autoscale(), optax.adam(1e-2))), params=None
        ),
        Raises(ValueError, "needs params="),
    ),
    (
        "wrapper-without-multitask-part",
        lambda: asj.restart_at_phase_switch(optax.adam(1e-2)).update(
            PARAMS, optax.adam(1e-2).init(PARAMS), PARAMS
        ),
        Raises(ValueError, "found no multi-task transformation"),
    ),
    (
        "update_every-has-no-phase-never-restarts",
        lambda: steps(asj.methods.nash_mtl(K, update_every=2), optax.adam(1e-2), count=3),
        Defined(lambda state: assert_equal(int(state.optimizer[0].count), 3)),
    ),
    (
        "multi_steps-hides-the-phase-never-restarts",
        lambda: steps(asj.multi_steps(optax.chain(autoscale(), optax.adam(1e-2)), 1, K), count=3),
        Defined(lambda state: assert_equal(int(state.weighting.inner_state[1][0].count), 3)),
    ),
]


def bench_build(name, restart):
    from autoscale_jax.bench.running import chunk
    from autoscale_jax.bench.running.method_config import RESTART, MethodConfig

    config = MethodConfig("row", name, {RESTART: restart})
    return chunk.method_build(config, K, PARAMS)


BENCH_CASES: list[Any] = [
    (
        "bench-restart-option-not-bool",
        lambda: bench_build("autoscale", "no"),
        Raises(ValueError, "takes True or False on a method with an estimation phase .*got 'no'"),
    ),
    (
        "bench-restart-option-on-another-row",
        lambda: bench_build("mgda", False),
        Raises(ValueError, "with an estimation phase .*; got False on 'mgda'"),
    ),
]

FLAX_CASES: list[Any] = [
    (
        "nnx-restart_moments-not-bool",
        lambda: nnx_step(restart_moments=1),
        Raises(ValueError, "restart_moments must be True or False"),
    ),
    (
        "linen-apply_gradients-without-multitask-part",
        lambda: linen_apply_gradients(optax.adam(1e-2)),
        Raises(ValueError, "found no multi-task transformation"),
    ),
]


def assert_nonzero(array):
    assert np.any(array != 0)


def assert_equal(a, b):
    assert a == b


def _params(cases, marks=()):
    return [pytest.param(run, expect, id=name, marks=marks) for name, run, expect in cases]


@pytest.mark.parametrize(
    ("run", "expect"),
    _params(CASES)
    + _params(BENCH_CASES, pytest.mark.skipif(not HAS_FLAX, reason="the bench needs flax"))
    + _params(FLAX_CASES, pytest.mark.skipif(not HAS_FLAX, reason="needs flax")),
)
def test_bad_restart(run, expect):
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match):
            run()
        return
    expect.check(run())
