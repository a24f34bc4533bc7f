"""The validation-guided search: the α guide family, candidates side by side, successive halving."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autoscale_jax import search, weighting

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"


def _gramian(rng, num_tasks=3, dim=7):
    jac = rng.normal(size=(num_tasks, dim)) * 10.0 ** rng.uniform(-2, 2, size=(num_tasks, 1))
    return jnp.asarray(jac @ jac.T, jnp.float32)


def test_alpha_zero_is_equal_weights_and_alpha_one_is_gms(rng):
    for num_tasks in (2, 3, 5):
        G = _gramian(rng, num_tasks)
        np.testing.assert_allclose(search.alpha_weights(G, 0.0), np.ones(num_tasks), rtol=1e-6)
        np.testing.assert_allclose(
            search.alpha_weights(G, 1.0), weighting.gms_weights(G), rtol=1e-5
        )
    # A task with a zero gradient gets the mean weight of the others, as in the gms guide.
    G = jnp.diag(jnp.array([4.0, 0.0, 1.0]))
    np.testing.assert_allclose(search.alpha_weights(G, 1.0), weighting.gms_weights(G), rtol=1e-6)


def test_alpha_family_from_gms_weights_equals_alpha_weights_from_the_gramian(rng):
    G = _gramian(rng, 4)
    alphas = (0.0, 0.5, 1.0, 2.0, 3.0)
    family = search.alpha_family(weighting.gms_weights(G), alphas)
    assert family.shape == (5, 4)
    for row, alpha in zip(family, alphas, strict=True):
        np.testing.assert_allclose(row, search.alpha_weights(G, alpha), rtol=1e-4)
        np.testing.assert_allclose(jnp.sum(row), 4.0, rtol=1e-6)
    # Two tasks: the weight ratio of w(α) is the GMS ratio to the power α.
    pair = search.alpha_family(jnp.array([0.5, 1.5]), (2.0, 3.0))
    np.testing.assert_allclose(pair[:, 1] / pair[:, 0], [9.0, 27.0], rtol=1e-5)


def test_task_multipliers_move_one_task_against_the_others():
    centre = jnp.array([1.0, 2.0, 3.0])
    rows = search.task_multipliers(centre, (4.0, 0.5))
    assert rows.shape == (1 + 3 * 2, 3)
    np.testing.assert_allclose(rows.sum(axis=1), 3.0, rtol=1e-6)
    np.testing.assert_allclose(rows[0], centre / 2.0, rtol=1e-6)  # the centre, normalised
    ratios = rows / rows[0]
    # Row 1 multiplies task 0 by 4 and row 6 multiplies task 2 by 0.5, relative to the others.
    np.testing.assert_allclose(ratios[1, 0] / ratios[1, 1], 4.0, rtol=1e-5)
    np.testing.assert_allclose(ratios[1, 1], ratios[1, 2], rtol=1e-6)
    np.testing.assert_allclose(ratios[6, 2] / ratios[6, 0], 0.5, rtol=1e-5)


def test_halving_counts_and_cost():
    assert search.halving_counts(8, 3) == (8, 4, 2)
    assert search.halving_counts(5, 3) == (5, 3, 2)
    assert search.halving_counts(4, 4, keep=0.5) == (4, 2, 1, 1)
    assert search.search_cost(4, (160, 360)) == 4 * 160 + 2 * 200
    assert search.search_cost(6, (10, 30, 60), keep=1 / 3) == 6 * 10 + 2 * 20 + 1 * 30
    with pytest.raises(ValueError, match="increasing"):
        search.search_cost(4, (100, 100))
    with pytest.raises(ValueError, match="keep"):
        search.halving_counts(4, 2, keep=0.0)


# A small two-layer regression net with three tasks (one output each) sharing the first layer.
def _mlp_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = np.stack([x[:, 0] * 3.0, np.sin(x[:, 1]), 0.1 * x[:, 2] ** 2], axis=1).astype(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)
    params = {
        "w1": jnp.asarray(rng.normal(size=(5, 8)) * 0.5, jnp.float32),
        "w2": jnp.asarray(rng.normal(size=(8, 3)) * 0.5, jnp.float32),
    }

    def loss_fn(p, index):
        pred = jnp.tanh(x[index] @ p["w1"]) @ p["w2"]
        return jnp.mean((pred - y[index]) ** 2, axis=0)

    batches = jnp.asarray(rng.integers(0, 64, size=(12, 16)), jnp.int32)
    return loss_fn, params, batches


def _separate_run(loss_fn, optimizer, weights, params, batches):
    """The reference: one candidate trained alone, step by step, without vmap or scan."""
    state = optimizer.init(params)
    for batch in batches:
        grads = jax.grad(lambda p, b=batch: jnp.dot(weights, loss_fn(p, b)))(params)
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def test_vmapped_candidates_equal_separate_runs():
    loss_fn, params, batches = _mlp_problem()
    optimizer = optax.adam(1e-2)
    weights = jnp.array([[1.0, 1.0, 1.0], [2.5, 0.4, 0.1], [0.1, 0.2, 2.7]])
    stacked = jax.tree.map(lambda x: jnp.stack([x] * 3), params)
    states = jax.vmap(optimizer.init)(stacked)
    trained, trained_states, losses = jax.jit(
        lambda w, p, s, b: search.train_candidates(loss_fn, optimizer, w, p, s, b)
    )(weights, stacked, states, batches)
    assert losses.shape == (3, 12, 3)
    for c in range(3):
        expected, expected_state = _separate_run(loss_fn, optimizer, weights[c], params, batches)
        for name in params:
            np.testing.assert_allclose(trained[name][c], expected[name], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(
            trained_states[0].mu["w1"][c], expected_state[0].mu["w1"], rtol=2e-5, atol=1e-7
        )
    # Different weights give different parameters: the candidates really are separate.
    assert not np.allclose(trained["w2"][1], trained["w2"][2])


# Quadratic tasks L_k(θ) = ||θ - a_k||²: linear scalarization with weights w converges to
# θ*(w) = Σ_k w_k a_k / Σ_k w_k, so a score that rewards closeness to θ*(w_c) for one
# candidate c has a known best candidate.
ANCHORS = jnp.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])


def _quadratic_loss(params, batch):
    del batch
    return jnp.sum((params["theta"][None, :] - ANCHORS) ** 2, axis=1)


def _candidates(rng, count=8):
    return jnp.asarray(rng.uniform(0.1, 3.0, size=(count, 3)), jnp.float32)


def _target_score(target_weights):
    target = target_weights @ ANCHORS / jnp.sum(target_weights)
    return lambda params: -jnp.sum((params["theta"] - target) ** 2)


def test_successive_halving_keeps_the_best_candidate_by_score(rng):
    candidates = _candidates(rng)
    best = 5
    optimizer = optax.sgd(0.05)
    params = {"theta": jnp.array([1.0, 1.0])}
    batches = jnp.zeros((60, 1))
    rungs = (10, 25, 60)
    result = search.successive_halving(
        _quadratic_loss,
        optimizer,
        _target_score(candidates[best]),
        candidates,
        params,
        optimizer.init(params),
        batches,
        rungs=rungs,
    )
    assert int(result.index) == best
    np.testing.assert_allclose(result.weights, candidates[best])
    scores = np.asarray(result.rung_scores)
    assert scores.shape == (3, 8)
    assert [int(np.sum(np.isfinite(row))) for row in scores] == [8, 4, 2]
    # The candidates trained in each rung are exactly the best of the previous rung.
    for r in range(2):
        alive_next = set(np.flatnonzero(np.isfinite(scores[r + 1])).tolist())
        top = set(np.argsort(-np.nan_to_num(scores[r], nan=-np.inf))[: len(alive_next)].tolist())
        assert alive_next == top
    assert np.nanargmax(scores[-1]) == best
    # The survivor continued its own trajectory: the same as training it alone to the last rung.
    alone, _ = _separate_run(
        _quadratic_loss, optimizer, candidates[best], params, batches[: rungs[-1]]
    )
    np.testing.assert_allclose(result.params["theta"], alone["theta"], rtol=1e-5)
    assert result.losses.shape == (8, 3, 3)


def test_successive_halving_ranks_nan_scores_last(rng):
    candidates = _candidates(rng, 4)
    optimizer = optax.sgd(0.05)
    params = {"theta": jnp.array([1.0, 1.0])}
    target = _target_score(candidates[0])

    def score(p):  # candidate 0 would win, but its score is NaN: it must be dropped.
        value = target(p)
        return jnp.where(value > -1e-3, jnp.nan, value)

    result = search.successive_halving(
        _quadratic_loss,
        optimizer,
        score,
        candidates,
        params,
        optimizer.init(params),
        jnp.zeros((40, 1)),
        rungs=(40,),
    )
    assert np.isnan(result.rung_scores[0, 0]) and np.sum(np.isnan(result.rung_scores)) == 1
    assert int(result.index) == int(np.nanargmax(result.rung_scores[0]))


@contextlib.contextmanager
def _count_backend_compiles():
    """Programs XLA compiled or took from the persistent cache (the test run's conftest turns
    it on), in the block."""
    events = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE:
            events.append(duration)

    def hit_listener(event, **kwargs):
        if event == CACHE_HIT:
            events.append(0.0)

    jax.monitoring.register_event_duration_secs_listener(listener)
    jax.monitoring.register_event_listener(hit_listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
        jax.monitoring.unregister_event_listener(hit_listener)


def test_validation_search_is_one_compiled_program(rng):
    optimizer = optax.adam(0.05)
    params = {"theta": jnp.array([1.0, 1.0])}
    state = optimizer.init(params)
    batches = jnp.zeros((30, 1))
    first, second = _candidates(rng), _candidates(rng)
    traces = []

    def loss(p, batch):
        traces.append(1)  # Python runs only while tracing
        return _quadratic_loss(p, batch)

    find = search.validation_search(
        loss, optimizer, _target_score(first[2]), rungs=(5, 15, 30), keep=0.5
    )
    with _count_backend_compiles() as compiles:
        result = jax.block_until_ready(find(first, params, state, batches))
    assert len(compiles) == 1  # all three rungs, their pruning and the scores: one program
    assert int(result.index) == 2
    traced, other_batches = len(traces), jax.block_until_ready(batches + 1.0)
    with _count_backend_compiles() as compiles:
        jax.block_until_ready(find(second, params, state, other_batches))
    assert len(compiles) == 0 and len(traces) == traced


def test_successive_halving_checks_its_inputs(rng):
    optimizer = optax.sgd(0.1)
    params = {"theta": jnp.zeros(2)}
    with pytest.raises(ValueError, match="last rung"):
        search.successive_halving(
            _quadratic_loss,
            optimizer,
            lambda p: 0.0,
            _candidates(rng, 2),
            params,
            optimizer.init(params),
            jnp.zeros((5, 1)),
            rungs=(3, 8),
        )
