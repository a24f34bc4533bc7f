"""The weight study on a tiny budget, and Spearman's ρ against hand-computed values."""

import math

import numpy as np
import pytest
from bench_tiny import BATCH, tiny_benchmark

from autoscale_jax.bench.experiments.study import STUDY_METRICS, spearman_correlation, weight_study


def test_weight_study_correlates_early_metrics_with_final_delta_m():
    study = weight_study(
        tiny_benchmark(), grid_size=3, steps=20, batch_size=BATCH, probe_every=5, eval_every=10
    )
    assert study.early_steps == 5 and len(study.weights) == 3 and len(study.delta_m) == 3
    assert set(study.spearman) == set(STUDY_METRICS)
    for name, values in study.early_metrics.items():
        assert len(values) == 3 and all(math.isfinite(v) for v in values), name
    # Weighted GMS at the weights of each run differs across weightings (weights matter).
    assert np.ptp(study.early_metrics["gradient_magnitude_similarity"]) > 0
    for rho in study.spearman.values():
        assert math.isnan(rho) or -1.0 <= rho <= 1.0


def test_spearman_correlation_matches_hand_computed_values():
    # No ties: 1 - 6 Σ d² / (n (n² - 1)) with d = (0, -1, 1, 0): 1 - 12 / 60.
    assert spearman_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman_correlation([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # Ties: y ranks (1, 2, 3.5, 5, 3.5); Pearson of the ranks = 8 / sqrt(10 · 9.5).
    rho = spearman_correlation([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])
    assert rho == pytest.approx(8 / math.sqrt(95))
    # Monotone transforms do not change ρ; non-finite pairs are dropped.
    assert spearman_correlation([1, 2, 3, 4], np.exp([1, 3, 2, 4])) == pytest.approx(0.8)
    assert spearman_correlation([1, 2, np.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)
    assert math.isnan(spearman_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        spearman_correlation([1, 2], [1, 2, 3])
