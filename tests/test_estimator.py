"""Window statistics: sums, counts, skips and the O(1) running aggregate of window weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax import estimator, weighting


def test_window_means_and_close():
    stats = estimator.init_window_statistics(num_tasks=2)
    stats = estimator.accumulate(stats, jnp.eye(2), jnp.array([1.0, 2.0]))
    stats = estimator.accumulate(stats, 3 * jnp.eye(2), jnp.array([3.0, 4.0]))
    mean_G, mean_losses = estimator.window_means(stats)
    np.testing.assert_allclose(mean_G, 2 * np.eye(2))
    np.testing.assert_allclose(mean_losses, [2.0, 3.0])
    stats = estimator.close_window(stats, jnp.array([0.5, 1.5]))
    assert int(stats.count) == 0 and int(stats.windows_closed) == 1
    np.testing.assert_allclose(stats.aggregate, [0.5, 1.5])
    np.testing.assert_allclose(stats.gramian_sum, 0.0)
    np.testing.assert_array_equal(stats.gramian_count, 0)


def test_non_finite_samples_are_skipped_and_counted():
    stats = estimator.init_window_statistics(2)
    stats = estimator.accumulate(stats, jnp.eye(2), jnp.array([1.0, jnp.nan]))
    stats = estimator.accumulate(stats, jnp.full((2, 2), jnp.inf), jnp.array([1.0, 1.0]))
    stats = estimator.accumulate(stats, jnp.eye(2), jnp.array([1.0, 1.0]))
    assert int(stats.skipped) == 2 and int(stats.count) == 1
    assert np.all(np.isfinite(stats.gramian_sum)) and np.all(np.isfinite(stats.loss_sum))


def test_accumulate_is_jittable_without_recompiling():
    fn = jax.jit(estimator.accumulate)
    stats = estimator.init_window_statistics(3)
    for scale in (1.0, 2.0):
        stats = fn(stats, scale * jnp.eye(3), jnp.ones(3))
    assert fn._cache_size() == 1
    np.testing.assert_allclose(estimator.window_means(stats)[0], 1.5 * np.eye(3))


def test_masked_samples_count_each_entry_separately():
    stats = estimator.init_window_statistics(3)
    full = jnp.arange(9.0).reshape(3, 3)
    # Task 2 unobserved: its NaN row and loss are ignored, not skipped.
    partial = full.at[2].set(jnp.nan).at[:, 2].set(jnp.nan)
    stats = estimator.accumulate(stats, full, jnp.array([1.0, 2.0, 3.0]))
    stats = estimator.accumulate(
        stats, 3 * partial, jnp.array([3.0, 4.0, jnp.nan]), jnp.array([True, True, False])
    )
    assert int(stats.skipped) == 0 and int(stats.count) == 2
    mean_G, mean_losses = estimator.window_means(stats)
    both_seen = (np.arange(3)[:, None] < 2) & (np.arange(3)[None, :] < 2)
    # (full + 3 full) / 2 where both tasks were seen twice, else the one full sample.
    np.testing.assert_allclose(mean_G, np.asarray(full) * np.where(both_seen, 2.0, 1.0))
    np.testing.assert_allclose(mean_losses, [2.0, 3.0, 3.0])
    np.testing.assert_array_equal(stats.gramian_count, [[2, 2, 1], [2, 2, 1], [1, 1, 1]])


@pytest.mark.parametrize("how", estimator.AGGREGATIONS)
@pytest.mark.parametrize("num_windows", [1, 2, 5, 6])
def test_running_aggregate_equals_the_row_aggregate(how, num_windows):
    rows = np.random.default_rng(num_windows).uniform(0.1, 3.0, size=(num_windows, 3))
    agg = estimator.aggregation(how, num_windows)
    stats = estimator.init_window_statistics(3)
    for row in rows:
        stats = estimator.close_window(stats, jnp.asarray(row, jnp.float32), agg)
    expected = weighting.aggregate_window_weights(jnp.asarray(rows), num_windows, how)
    np.testing.assert_allclose(estimator.aggregated_weights(stats), expected, rtol=1e-6)


def test_state_size_does_not_depend_on_estimation_steps():
    def size(estimation_steps):
        state = asj.autoscale(4, estimation_steps).init({"w": jnp.zeros(3)})
        return sum(x.size for x in jax.tree.leaves(state))

    assert size(10) == size(10**9) == size(1)


def test_a_billion_step_phase_one_compiles_and_runs():
    tx = asj.autoscale(2, 10**9, window=10)
    state = tx.init({"w": jnp.zeros(3)})
    grads = {"w": jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])}
    updates, state = jax.jit(lambda g, s: tx.update(g, s, task_losses=jnp.ones(2)))(grads, state)
    np.testing.assert_allclose(updates["w"], [4 / 3, 4 / 3, 0.0], rtol=1e-6)  # w = (4/3, 2/3)
