"""AutoScale's phase 1 as a state machine (autoscale_jax/phase_one.py): the windows, the
explorer and the linear predictor, against hand-derived cases."""

import jax.numpy as jnp
import numpy as np

from autoscale_jax import estimator, metrics, phase_one, weighting


def test_phase_one_step_trains_each_window_with_the_previous_choice_and_ends_in_the_aggregate():
    phase = phase_one.PhaseOne(
        rule=lambda G, losses: weighting.gms_weights(G),
        uses="gramian",
        estimation_steps=3,
        window=2,
        warm_start=False,
        aggregation=estimator.aggregation("mean", 2),
    )
    stats, snapshot = estimator.init_window_statistics(2), metrics.empty_task_metrics()
    weights, trained = jnp.ones(2), []
    for step, diagonal in enumerate([(4.0, 1.0), (4.0, 1.0), (1.0, 4.0)]):
        G = jnp.diag(jnp.array(diagonal))
        used, weights, stats, snapshot = phase_one.phase_one_step(
            phase, jnp.int32(step), weights, stats, snapshot, G, jnp.ones(2)
        )
        trained.append(used)
    # window 0 (steps 0, 1) trains at equal weights and picks gms = [2/3, 4/3]; window 1 (the
    # last step) trains with that and picks [4/3, 2/3]; "mean" aggregates the two to [1, 1].
    np.testing.assert_allclose(trained, [[1, 1], [1, 1], [2 / 3, 4 / 3]], rtol=1e-6)
    np.testing.assert_allclose(weights, [1.0, 1.0], rtol=1e-6)
    assert int(stats.windows_closed) == 2 and int(stats.estimates) == 2
    # the snapshot: the last sample's metrics at the weights it trained with (GMS 32/68)
    np.testing.assert_allclose(snapshot.gradient_magnitude_similarity, 32 / 68, rtol=1e-6)


def test_phase_one_without_a_usable_sample_ends_with_nan_weights():
    phase = phase_one.PhaseOne(
        lambda G, losses: weighting.gms_weights(G),
        "gramian",
        1,
        1,
        True,
        estimator.aggregation("last_half", 1),
    )
    stats, snapshot = estimator.init_window_statistics(2), metrics.empty_task_metrics()
    used, weights, stats, _ = phase_one.phase_one_step(
        phase, jnp.int32(0), jnp.ones(2), stats, snapshot, jnp.zeros((2, 2)), jnp.ones(2)
    )
    np.testing.assert_array_equal(used, [1.0, 1.0])  # no warm start from a degenerate sample
    assert np.all(np.isnan(weights)) and int(stats.degenerate) == 1


def _phase(explorer=None, aggregation=None, estimation_steps=4, window=2):
    return phase_one.PhaseOne(
        rule=lambda G, losses: weighting.gms_weights(G),
        uses="gramian",
        estimation_steps=estimation_steps,
        window=window,
        warm_start=True,
        aggregation=aggregation or estimator.aggregation("mean", 2),
        explorer=explorer,
    )


def _replay(phase, samples):
    stats, snapshot = estimator.init_window_statistics(2), metrics.empty_task_metrics()
    weights, trained = jnp.ones(2), []
    for step, G in enumerate(samples):
        used, weights, stats, snapshot = phase_one.phase_one_step(
            phase, jnp.int32(step), weights, stats, snapshot, G, jnp.ones(2)
        )
        trained.append(np.asarray(used))
    return trained, weights, stats, snapshot


def test_an_explorer_trains_each_step_with_its_own_samples_weights_and_the_guide_still_measures():
    samples = [jnp.diag(jnp.array(d)) for d in [(4.0, 1.0), (1.0, 9.0), (9.0, 1.0), (1.0, 1.0)]]
    # an explorer that is easy to tell apart: weights ∝ the Gramian's diagonal
    explorer = lambda G, losses: weighting.normalise(jnp.diagonal(G))  # noqa: E731
    trained, final, _, snapshot = _replay(_phase(explorer), samples)
    guided, guided_final, _, _ = _replay(_phase(), samples)
    for used, G in zip(trained, samples, strict=True):
        np.testing.assert_allclose(used, 2 * np.diagonal(G) / np.trace(G), rtol=1e-6)
    assert not np.allclose(trained, guided)
    # the windows see the same samples, so the guide picks the same w*
    np.testing.assert_allclose(final, guided_final, rtol=1e-6)
    # the snapshot is taken at the weights the step trained with: diag(1, 1) at (1, 1)
    np.testing.assert_allclose(snapshot.gradient_magnitude_similarity, 1.0, rtol=1e-6)


def test_an_explorer_step_on_an_unusable_sample_trains_with_the_guides_weights():
    samples = [jnp.diag(jnp.array([4.0, 1.0])), jnp.full((2, 2), jnp.nan)]
    explorer = lambda G, losses: weighting.normalise(jnp.diagonal(G))  # noqa: E731
    trained, _, stats, _ = _replay(_phase(explorer, window=4), samples)
    np.testing.assert_allclose(trained[0], [1.6, 0.4], rtol=1e-6)
    np.testing.assert_allclose(trained[1], [2 / 3, 4 / 3], rtol=1e-6)  # the warm start's gms
    assert int(stats.skipped) == 1


def test_the_linear_predictor_extrapolates_the_line_through_the_windows_log_weights():
    # four windows of 2 steps whose gms weights (∝ 1/norm) have log(w2/w1) = 0.2 .. 0.8 ...
    ratios = np.exp([0.2, 0.4, 0.6, 0.8])
    samples = [jnp.diag(jnp.array([r**2, 1.0])) for r in ratios for _ in range(2)]
    agg = estimator.linear_prediction(8, 2, "mean", target_step=99)
    _, final, stats, _ = _replay(_phase(aggregation=agg, estimation_steps=8), samples)
    # ... a line in the window centre c_e = 2e + 0.5 with slope 0.1 per step: at step 99 the
    # log-ratio is 0.2 + 0.1 * (99 - 0.5) = 10.05, an exact extrapolation
    ratio = np.exp(0.2 + 0.1 * (99 - 0.5))
    np.testing.assert_allclose(final, 2 * np.array([1.0, ratio]) / (ratio + 1), rtol=1e-4)
    assert int(stats.aggregated) == 4
