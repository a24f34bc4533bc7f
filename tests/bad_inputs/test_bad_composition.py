"""Compositions of the multi-task part with optax, the Flax helpers and checkpoints: each bad
one gives a clear error at the first step (when it is traced), or a defined result the state
shows (the non-finite guard's counters, the compilation count after a restore)."""

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
HAS_ORBAX = importlib.util.find_spec("orbax") is not None
K = 3
LOSS_FN, PARAMS, X, Y = regression_problem(num_samples=16, dim=4, hidden=5)
FIRST = "must be the first gradient transformation"
ASCENT = "gradient ascent"


class Raises(NamedTuple):
    error: type
    match: str


class Defined(NamedTuple):
    check: Callable[[Any], None]  # asserts the documented result of run()


def method(steps=2):
    return asj.autoscale(K, estimation_steps=steps, window=1)


def steps(weighting, optimizer=None, count=1, x=X, jit=False):
    """``count`` steps of multitask_train_step; returns (params, state, train)."""
    train = asj.multitask_train_step(LOSS_FN, weighting, optimizer)
    step = jax.jit(train.step) if jit else train.step
    params, state = PARAMS, train.init(PARAMS)
    for _ in range(count):
        params, state, _ = step(params, state, x, Y)
    return params, state, train


def raw(tx, count=1, nan=False):
    """``count`` raw updates of ``tx`` with stacked task gradients; returns (updates, state)."""
    losses, task_grads = asj.task_value_and_grad(LOSS_FN)(PARAMS, X, Y)
    if nan:
        task_grads = jax.tree.map(lambda g: g.at[0].set(jnp.nan), task_grads)
    state = tx.init(PARAMS)
    for _ in range(count):
        updates, state = tx.update(task_grads, state, PARAMS, task_losses=losses)
    return updates, state


def guarded(inner_method=None):
    return asj.accumulation.apply_if_finite(
        optax.chain(inner_method or method(), optax.adam(1e-2)), 2
    )


def nan_step_is_skipped(jit):
    """A step on a batch with a NaN input: nothing moves, the counters say so."""
    tx = guarded()
    train = asj.multitask_train_step(LOSS_FN, tx)
    step = jax.jit(train.step) if jit else train.step
    state = train.init(PARAMS)
    params, state, _ = step(PARAMS, state, X, Y)  # one finite step
    bad_x = X.at[0, 0].set(jnp.nan)
    new_params, new_state, losses = step(params, state, bad_x, Y)
    return params, state, new_params, new_state, losses


def check_nan_step_is_skipped(out):
    params, state, new_params, new_state, losses = out
    assert not np.all(np.isfinite(losses))
    jax.tree.map(np.testing.assert_array_equal, new_params, params)
    jax.tree.map(
        np.testing.assert_array_equal, new_state.weighting.inner_state, state.weighting.inner_state
    )
    assert int(new_state.weighting.notfinite_count) == 1
    assert int(new_state.weighting.total_notfinite) == 1
    assert not bool(new_state.weighting.last_finite)


def check_raw_nan_is_skipped(out):
    updates, state = out
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    fresh = guarded().init(PARAMS)
    jax.tree.map(np.testing.assert_array_equal, state.inner_state, fresh.inner_state)
    assert int(state.notfinite_count) == 1


def nan_steps_past_the_limit():
    """Three NaN updates with max_consecutive_errors=2: the third goes through, as in optax."""
    updates, state = raw(guarded(), count=3, nan=True)
    return updates, state


def check_past_the_limit(out):
    updates, state = out
    assert int(state.notfinite_count) == 3 and int(state.total_notfinite) == 3
    assert np.all(np.isnan(np.asarray(updates["trunk"])))


# --------------------------------------------------------------------------------------------
# Flax
# --------------------------------------------------------------------------------------------
def nnx_step(tx, task_gradients="auto", jit=False):
    """One refused NNX step: the model and optimizer must be left as they were."""
    from flax import nnx

    import autoscale_jax.flax as asjf

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.trunk = nnx.Linear(4, 5, rngs=rngs)
            self.heads = nnx.Linear(5, K, rngs=rngs)

        def __call__(self, x):
            return self.heads(jnp.tanh(self.trunk(x)))

    def loss(model, x, y):
        return jnp.mean((model(x) - y) ** 2, axis=0)

    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step = asjf.nnx_train_step(loss)
    if jit:
        step = nnx.jit(step, static_argnames="task_gradients")
    before = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))
    try:
        step(model, optimizer, X, Y, task_gradients=task_gradients)
    finally:
        jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.Param), before)
        assert int(optimizer.step[...]) == 0


def linen_step(tx, task_gradients="auto"):
    import flax.linen as nn

    import autoscale_jax.flax as asjf

    module = nn.Dense(K)
    variables = module.init(jax.random.PRNGKey(0), X[:1])
    state = asjf.TrainState.create(apply_fn=module.apply, params=variables["params"], tx=tx)

    def loss(params, x, y):
        return jnp.mean((module.apply({"params": params}, x) - y) ** 2, axis=0)

    return state.train_step(loss, X, Y, task_gradients=task_gradients)


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def restore_and_step(tmp_path, commit):
    """Two steps, save, restore with the abstract tree of a fresh state, one more step: the
    compilations of the jitted step."""
    import orbax.checkpoint as ocp

    train = asj.multitask_train_step(LOSS_FN, method(steps=4), optax.adam(1e-2))
    step = jax.jit(train.step)
    fresh = (PARAMS, train.init(PARAMS))
    if commit:  # the documented recipe: every array placed on the device from the start
        fresh = jax.device_put(fresh, jax.devices()[0])
    params, state = fresh
    for _ in range(2):
        params, state, _ = step(params, state, X, Y)
    checkpointer = ocp.StandardCheckpointer()
    path = (tmp_path / f"committed_{commit}").resolve()
    checkpointer.save(path, {"params": params, "state": state})
    checkpointer.wait_until_finished()
    abstract = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, {"params": fresh[0], "state": fresh[1]}
    )
    restored = checkpointer.restore(path, abstract)
    step(restored["params"], restored["state"], X, Y)
    return step._cache_size()


def restore_other_num_tasks(tmp_path):
    import orbax.checkpoint as ocp

    saved = optax.chain(method(), optax.sgd(0.1))
    checkpointer = ocp.StandardCheckpointer()
    path = (tmp_path / "k3").resolve()
    checkpointer.save(path, saved.init(PARAMS))
    checkpointer.wait_until_finished()
    other = optax.chain(asj.autoscale(2, 2), optax.sgd(0.1)).init(PARAMS)
    checkpointer.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, other))


def equal(expected):
    def check(out):
        assert out == expected, out

    return check


adam, clip = optax.adam(1e-2), optax.clip_by_global_norm(1.0)
CASES: list[Any] = [
    # --- the multi-task part not first (train step) -------------------------------------
    ("second-after-adam", lambda: steps(optax.chain(adam, method())), Raises(ValueError, FIRST)),
    (
        "second-after-clip",
        lambda: steps(optax.chain(clip, method(), adam)),
        Raises(ValueError, FIRST),
    ),
    (
        "second-inside-inject-hyperparams",
        lambda: steps(
            optax.inject_hyperparams(lambda lr: optax.chain(optax.sgd(lr), method()))(lr=0.1)
        ),
        Raises(ValueError, FIRST),
    ),
    (
        "second-inside-named-chain",
        lambda: steps(optax.named_chain(("clip", clip), ("w", method()), ("adam", adam))),
        Raises(ValueError, FIRST),
    ),
    (
        "second-jitted",
        lambda: steps(optax.chain(adam, method()), jit=True),
        Raises(ValueError, FIRST),
    ),
    (
        "two-multitask-parts",
        lambda: steps(optax.chain(method(), asj.methods.pcgrad(K), adam)),
        Raises(ValueError, "two multi-task transformations"),
    ),
    # --- optimizer missing or given twice ------------------------------------------------
    ("no-optimizer", lambda: steps(method()), Raises(ValueError, ASCENT)),
    (
        "optimizer-twice",
        lambda: steps(optax.chain(method(), adam), optax.adam(1e-3)),
        Raises(ValueError, "optimizer would apply twice"),
    ),
    (
        "optimizer-twice-inject-hyperparams",
        lambda: steps(
            optax.inject_hyperparams(lambda lr: optax.chain(method(), optax.adam(lr)))(lr=0.1),
            optax.adam(1e-3),
        ),
        Raises(ValueError, "optimizer would apply twice"),
    ),
    # --- optax wrappers that decide from the (placeholder) gradients -----------------------
    (
        "optax-apply-if-finite-around",
        lambda: steps(optax.apply_if_finite(optax.chain(method(), adam), 3)),
        Raises(ValueError, "optax.apply_if_finite cannot wrap the multi-task part"),
    ),
    (
        "optax-apply-if-finite-around-inject",
        lambda: steps(
            optax.apply_if_finite(
                optax.inject_hyperparams(lambda lr: optax.chain(method(), optax.sgd(lr)))(lr=0.1),
                3,
            ),
            jit=True,
        ),
        Raises(ValueError, "optax.apply_if_finite cannot wrap the multi-task part"),
    ),
    (
        "optax-apply-if-finite-raw",  # optax's skip branch has the stacked shape
        lambda: raw(optax.apply_if_finite(optax.chain(method(), adam), 3)),
        Raises(TypeError, "cond branches must have equal output types"),
    ),
    (
        "optax-multisteps-around",  # optax.MultiSteps calls it without the loss VJP
        lambda: steps(optax.MultiSteps(optax.chain(method(), adam), 2)),
        Raises(ValueError, "parameters' shapes .* use autoscale_jax.multi_steps"),
    ),
    # --- the library's non-finite guard ----------------------------------------------------
    ("guard-nan-loss-step", lambda: nan_step_is_skipped(False), Defined(check_nan_step_is_skipped)),
    (
        "guard-nan-loss-step-jitted",
        lambda: nan_step_is_skipped(True),
        Defined(check_nan_step_is_skipped),
    ),
    ("guard-nan-raw", lambda: raw(guarded(), nan=True), Defined(check_raw_nan_is_skipped)),
    ("guard-past-the-limit", nan_steps_past_the_limit, Defined(check_past_the_limit)),
    (
        "guard-without-optimizer",
        lambda: steps(asj.accumulation.apply_if_finite(method(), 2)),
        Raises(ValueError, "must hold the optimizer"),
    ),
    (
        "guard-then-optimizer",
        lambda: steps(guarded(), optax.adam(1e-3)),
        Raises(ValueError, "must wrap the whole chain"),
    ),
    (
        "guard-method-second-raw",
        lambda: raw(asj.accumulation.apply_if_finite(optax.chain(clip, method(), adam), 2)),
        Raises(ValueError, FIRST),
    ),
    (
        "guard-bad-max-errors",
        lambda: asj.accumulation.apply_if_finite(optax.chain(method(), adam), -1),
        Raises(ValueError, "max_consecutive_errors must be an int >= 0"),
    ),
    # --- asj.multi_steps -----------------------------------------------------------------
    (
        "multi-steps-then-optimizer",
        lambda: steps(asj.multi_steps(optax.chain(method(), adam), 2, K), optax.adam(1e-3)),
        Raises(ValueError, "asj.multi_steps must wrap the whole chain"),
    ),
    (
        "multi-steps-without-optimizer-raw",
        lambda: raw(asj.multi_steps(method(), 2, K)),
        Raises(ValueError, "must hold the optimizer"),
    ),
    (
        "multi-steps-method-second-raw",
        lambda: raw(asj.multi_steps(optax.chain(clip, method(), adam), 2, K)),
        Raises(ValueError, FIRST),
    ),
    (
        "multi-steps-without-method",
        lambda: raw(asj.multi_steps(optax.adam(1e-3), 2, K)),
        Raises(ValueError, "holds no multi-task transformation"),
    ),
    (
        "multi-steps-every-k-float",
        lambda: asj.multi_steps(optax.chain(method(), adam), 2.0, K),
        Raises(ValueError, "every_k must be a positive int"),
    ),
    (
        "multi-steps-every-k-bool",
        lambda: asj.multi_steps(optax.chain(method(), adam), True, K),
        Raises(ValueError, "every_k must be a positive int"),
    ),
    # --- the plain baseline ----------------------------------------------------------------
    (
        "ls-step-wrong-task-count",
        lambda: asj.linear_scalarization_step(LOSS_FN, jnp.ones(2), optax.sgd(0.1)).step(
            PARAMS, optax.sgd(0.1).init(PARAMS), X, Y
        ),
        Raises(ValueError, "one weight per task"),
    ),
    (
        "ls-step-matrix-weights",
        lambda: asj.linear_scalarization_step(LOSS_FN, jnp.ones((1, K)), optax.sgd(0.1)),
        Raises(ValueError, r"weights must be a \[K\] vector"),
    ),
]

FLAX_CASES: list[Any] = [
    ("nnx-second", lambda: nnx_step(optax.chain(adam, method())), Raises(ValueError, FIRST)),
    ("nnx-no-optimizer", lambda: nnx_step(method()), Raises(ValueError, ASCENT)),
    (
        "nnx-optax-apply-if-finite-around",
        lambda: nnx_step(optax.apply_if_finite(optax.chain(method(), adam), 3)),
        Raises(ValueError, "optax.apply_if_finite cannot wrap"),
    ),
    (
        "nnx-multi-steps-then-optimizer",  # NNX's "optimizer twice": one inside, one after
        lambda: nnx_step(
            optax.chain(asj.multi_steps(optax.chain(method(), adam), 2, K), optax.adam(1e-3))
        ),
        Raises(ValueError, "asj.multi_steps must wrap the whole chain"),
    ),
    (
        "nnx-premature-one-gradient",
        lambda: nnx_step(optax.chain(method(), adam), task_gradients="never"),
        Raises(ValueError, "still needs per-task gradients"),
    ),
    (
        "nnx-task-gradients-typo",
        lambda: nnx_step(optax.chain(method(), adam), task_gradients="sometimes"),
        Raises(ValueError, "task_gradients must be 'auto' or 'never'"),
    ),
    (
        "nnx-second-jitted",
        lambda: nnx_step(optax.chain(clip, method(), adam), jit=True),
        Raises(ValueError, FIRST),
    ),
    ("linen-second", lambda: linen_step(optax.chain(adam, method())), Raises(ValueError, FIRST)),
    ("linen-no-optimizer", lambda: linen_step(method()), Raises(ValueError, ASCENT)),
    (
        "linen-guard-then-optimizer",
        lambda: linen_step(optax.chain(guarded(), optax.adam(1e-3))),
        Raises(ValueError, "must wrap the whole chain"),
    ),
    (
        "linen-premature-one-gradient",
        lambda: linen_step(optax.chain(method(), adam), task_gradients="never"),
        Raises(ValueError, "still needs per-task gradients"),
    ),
]

CHECKPOINT_CASES: list[Any] = [
    (
        "orbax-restore-committed-no-recompile",
        lambda tmp_path: restore_and_step(tmp_path, commit=True),
        Defined(equal(1)),
    ),
    (
        "orbax-restore-uncommitted-recompiles-once",  # why the recipe commits the fresh state
        lambda tmp_path: restore_and_step(tmp_path, commit=False),
        Defined(equal(2)),
    ),
    (
        "orbax-restore-other-num-tasks",
        restore_other_num_tasks,
        Raises(ValueError, "not compatible with the stored shape"),
    ),
]


def _params(cases, marks=()):
    return [pytest.param(run, expect, id=name, marks=marks) for name, run, expect in cases]


@pytest.mark.parametrize(
    ("run", "expect"),
    _params(CASES)
    + _params(FLAX_CASES, pytest.mark.skipif(not HAS_FLAX, reason="needs flax"))
    + _params(CHECKPOINT_CASES, pytest.mark.skipif(not HAS_ORBAX, reason="needs orbax")),
)
def test_bad_composition(run, expect, tmp_path):
    call = (lambda: run(tmp_path)) if any(run is r for _, r, _ in CHECKPOINT_CASES) else run
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match):
            call()
        return
    expect.check(call())
