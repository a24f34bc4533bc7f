"""Weight rules: closed forms, the condition-number solver, aggregation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_jacobian

from autoscale_jax import estimator, metrics, weighting


def gramian_of(J):
    return jnp.asarray(J @ J.T, jnp.float32)


@pytest.mark.parametrize("num_tasks", [2, 3, 6])
def test_gms_weights_make_weighted_gms_exactly_one(rng, num_tasks):
    G = gramian_of(random_jacobian(rng, num_tasks, 10))
    w = weighting.gms_weights(G)
    np.testing.assert_allclose(jnp.sum(w), num_tasks, rtol=1e-6)
    weighted = metrics.weighted_gramian(G, w)
    np.testing.assert_allclose(metrics.gradient_magnitude_similarity(weighted), 1.0, rtol=1e-6)
    norms = metrics.task_gradient_norms(weighted)
    np.testing.assert_allclose(norms, norms[0], rtol=1e-5)


def test_gms_weights_scale_inversely_with_gradient_scale(rng):
    J = random_jacobian(rng, 3, 8)
    w = np.asarray(weighting.gms_weights(gramian_of(J)))
    J_scaled = J.copy()
    J_scaled[1] *= 7.0
    w_scaled = np.asarray(weighting.gms_weights(gramian_of(J_scaled)))
    np.testing.assert_allclose((w_scaled[1] / w_scaled[0]) / (w[1] / w[0]), 1 / 7.0, rtol=1e-5)


@pytest.mark.parametrize("rule", ["gms", "cond", "loss"])
def test_permuting_tasks_permutes_weights(rng, rule):
    J = random_jacobian(rng, 4, 9)
    losses = jnp.asarray(rng.uniform(0.1, 5, 4), jnp.float32)
    perm = np.array([2, 0, 3, 1])
    fn = weighting.guide_rule(rule)
    w = fn(gramian_of(J), losses)
    w_perm = fn(gramian_of(J[perm]), losses[perm])
    np.testing.assert_allclose(w_perm, np.asarray(w)[perm], rtol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_cond_guide_never_worse_than_gms(seed):
    rng = np.random.default_rng(seed)
    J = random_jacobian(rng, 4, 6)
    G = gramian_of(J)
    kappa_gms = metrics.condition_number(metrics.weighted_gramian(G, weighting.gms_weights(G)))
    w = weighting.condition_number_weights(G)
    kappa_cond = metrics.condition_number(metrics.weighted_gramian(G, w))
    assert float(kappa_cond) <= float(kappa_gms) * (1 + 1e-5)
    np.testing.assert_allclose(jnp.sum(w), 4, rtol=1e-5)


@pytest.mark.parametrize("seed", [5, 7])
def test_cond_guide_strictly_improves_on_correlated_gradients(seed):
    # Unit norms (GMS weights are all 1) around a common direction: rescaling still lowers κ.
    rng = np.random.default_rng(seed)
    J = rng.normal(size=(3, 4)) + 2 * rng.normal(size=(1, 4))
    J /= np.linalg.norm(J, axis=1, keepdims=True)
    G = J @ J.T

    def kappa(scale):
        return np.sqrt(np.linalg.cond(np.diag(scale) @ G @ np.diag(scale)))

    w = np.asarray(weighting.condition_number_weights(gramian_of(J)), np.float64)
    # Independent reference: random search over the two free log-weights, in float64.
    searched = min(kappa(np.exp(np.r_[0.0, rng.uniform(-2, 2, 2)])) for _ in range(5000))
    assert kappa(w) < 0.95 * kappa(np.ones(3))
    assert kappa(w) <= searched * 1.001


@pytest.mark.parametrize("seed", range(4))
def test_cond_guide_is_stable_under_round_off(seed):
    # A 1e-7 relative perturbation of G (a different reduction order, e.g. 1 vs 8 devices)
    # must not move the weights by more than round-off times the Gramian's own conditioning.
    rng = np.random.default_rng(seed)
    J = rng.normal(size=(5, 40)) * 10 ** rng.uniform(-1, 1, (5, 1)) + rng.normal(size=(1, 40))
    G = J @ J.T
    noise = rng.normal(size=G.shape)
    perturbed = G * (1 + 1e-7 * (noise + noise.T) / 2)
    assert np.linalg.cond(G) < 3e3
    w = weighting.condition_number_weights(jnp.asarray(G, jnp.float32))
    w_perturbed = weighting.condition_number_weights(jnp.asarray(perturbed, jnp.float32))
    np.testing.assert_allclose(w_perturbed, w, rtol=1e-5)


def test_orthogonal_gradients_cond_equals_gms_and_is_one():
    G = jnp.diag(jnp.array([9.0, 1.0, 0.25]))
    w = weighting.condition_number_weights(G)
    np.testing.assert_allclose(
        metrics.condition_number(metrics.weighted_gramian(G, w)), 1.0, rtol=1e-4
    )
    np.testing.assert_allclose(w, weighting.gms_weights(G), rtol=1e-4)


def test_zero_gradient_task_gets_finite_neutral_weight():
    G = jnp.diag(jnp.array([4.0, 0.0, 1.0]))
    w = weighting.gms_weights(G)
    # active inverses 1/2 and 1, the zero task gets their mean 3/4; then sum to 3.
    np.testing.assert_allclose(w, np.array([0.5, 0.75, 1.0]) * 3 / 2.25, rtol=1e-6)
    assert np.all(np.isfinite(weighting.condition_number_weights(G)))
    np.testing.assert_allclose(weighting.gms_weights(jnp.zeros((3, 3))), [1, 1, 1])


def test_loss_balance_weights():
    w = weighting.loss_balance_weights(jnp.array([1.0, 100.0]))
    np.testing.assert_allclose(w, [2 * 100 / 101, 2 / 101], rtol=1e-6)
    np.testing.assert_allclose(w * jnp.array([1.0, 100.0]), [w[0], w[0]], rtol=1e-6)


def test_gradient_norm_scaling_gives_common_norm():
    G = jnp.diag(jnp.array([4.0, 1.0, 16.0]))
    w = weighting.gradient_norm_scaling_weights(G)
    np.testing.assert_allclose(w * jnp.array([2.0, 1.0, 4.0]), [7 / 3] * 3, rtol=1e-6)
    w = weighting.gradient_norm_scaling_weights(G, target=1.0)
    np.testing.assert_allclose(w, [0.5, 1.0, 0.25], rtol=1e-6)


def test_aggregate_window_weights():
    rows = jnp.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    # 3 filled windows: last half = the last ceil(3/2) = 2 rows -> mean (2.5, 1.5), sum 4 -> K=2.
    np.testing.assert_allclose(weighting.aggregate_window_weights(rows, 3), [1.25, 0.75])
    np.testing.assert_allclose(weighting.aggregate_window_weights(rows, 3, "last"), [1.5, 0.5])
    np.testing.assert_allclose(weighting.aggregate_window_weights(rows, 3, "mean"), [1.0, 1.0])
    # ema: e=(1,3) -> 0.9e+0.1(2,2) = (1.1, 2.9) -> 0.9e+0.1(3,1) = (1.29, 2.71); sums to 4.
    np.testing.assert_allclose(
        weighting.aggregate_window_weights(rows, 3, "ema"), np.array([1.29, 2.71]) / 2, rtol=1e-6
    )
    with pytest.raises(ValueError, match="Unknown aggregation"):
        weighting.aggregate_window_weights(rows, 3, "median")


def test_unknown_guide():
    with pytest.raises(ValueError, match="Unknown guide"):
        weighting.guide_rule("entropy")


def test_loss_balance_weights_checks_concrete_losses_inside_a_traced_branch():
    # AutoScale's eager guide="loss" calls it inside lax.cond with concrete losses, where jnp
    # comparisons give tracers (it raised TracerBoolConversionError).
    losses = jnp.array([1.0, 3.0])
    weights = jax.lax.cond(
        jnp.array(True), lambda: weighting.loss_balance_weights(losses), lambda: jnp.zeros(2)
    )
    np.testing.assert_allclose(weights, [1.5, 0.5])
    negative = -losses
    with pytest.raises(ValueError, match="non-negative losses"):
        jax.lax.cond(
            jnp.array(True),
            lambda: weighting.loss_balance_weights(negative),
            lambda: jnp.zeros(2),
        )


@pytest.mark.parametrize("n, first", [(1, 0), (2, 1), (5, 2), (6, 3)])
def test_last_half_starts_at_the_last_ceil_half_statically_and_traced(n, first):
    # One formula for the estimator's static start and the table's traced one.
    assert weighting.last_half_start(n) == first
    assert estimator.aggregation("last_half", n).first_window == first
    assert int(jax.jit(weighting.last_half_start)(jnp.asarray(n))) == first


def test_windows_end_every_window_steps_and_at_the_last_step():
    steps = jnp.arange(7)
    ends = weighting.window_ends(steps, 3, steps == 6)
    assert ends.tolist() == [False, False, True, False, False, True, True]
