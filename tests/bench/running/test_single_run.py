"""One run end to end on a tiny budget: cost accounting, traces, selection; the batch order."""

import numpy as np
import pytest
from bench_tiny import BATCH, BUDGET, EVAL_EVERY, STEPS, tiny_benchmark, tiny_report

import autoscale_jax as asj
from autoscale_jax.bench.running import single_run
from autoscale_jax.bench.running.benchmark import MethodKey, TrainerKey
from autoscale_jax.bench.running.method_config import LAST_SHARED_LAYER, MethodConfig


def test_autoscale_run_counts_k_passes_in_phase_one_and_one_after():
    bench, estimation_steps = tiny_benchmark(), 10
    k = bench.num_tasks
    config = MethodConfig(
        "autoscale_gms",
        "autoscale",
        {"estimation_steps": estimation_steps, "window": 5, "metric_mask": "shared"},
    )
    result = single_run.run(bench, config, seed=0, baselines=tiny_report().baselines, **BUDGET)
    assert result.gradient_evaluations == k * estimation_steps + (STEPS - estimation_steps)
    weights = np.asarray(result.weights)
    assert weights.shape == (STEPS, k) and result.weight_steps == list(range(1, STEPS + 1))
    np.testing.assert_allclose(weights.sum(axis=1), k, rtol=1e-5)
    # Phase 2 trains with the fixed weights chosen when phase 1 ended.
    phase_two = weights[estimation_steps - 1 :]
    np.testing.assert_allclose(phase_two, np.broadcast_to(weights[-1], phase_two.shape), rtol=1e-6)
    assert not np.allclose(weights[-1], 1.0)
    assert result.estimator_steps == list(range(1, estimation_steps + 1))
    assert np.all(np.isfinite(result.estimator_metrics["gradient_magnitude_similarity"]))
    assert result.probe_steps == [0, 10, 20, 30] and result.validation_steps == [10, 20, 30]
    assert len(result.chunk_times_s) == 3 and result.wall_time_s > 0
    assert result.selected_step in result.validation_steps
    assert result.selection_score == max(result.validation_scores)
    # The earliest of equally good checkpoints is the one kept.
    assert result.selected_step == result.validation_steps[int(np.argmax(result.validation_scores))]
    assert set(result.delta_m) == {"per_metric", "per_task"}


def test_methods_without_fast_path_count_k_passes_every_step():
    bench = tiny_benchmark()
    config = MethodConfig(
        "gradient_norm_scaling", "gradient_norm_scaling", {"metric_mask": LAST_SHARED_LAYER}
    )
    result = single_run.run(bench, config, seed=1, **BUDGET)
    assert asj.methods.get("gradient_norm_scaling", num_tasks=2).fast_path is None
    assert result.gradient_evaluations == bench.num_tasks * STEPS
    assert result.delta_m is None  # no baselines given
    # Each step rescales every task gradient to the mean norm, so the weights move.
    assert np.ptp(np.asarray(result.weights)[:, 0]) > 0


def test_fixed_weightings_share_one_compiled_trainer():
    bench = tiny_benchmark()
    tiny_report()  # EW, two grid points and two single-task runs: all fixed weights
    assert "equal_weights" not in {key.method.name for key in bench.cache.trainers}
    # The benchmark (and its cache) is shared with other test modules, which may compile
    # fixed-weight trainers for other recipes: count those of this report's recipe only.
    optimizer = bench.recipe.optimizer_key(STEPS)
    fixed = [
        key
        for key in bench.cache.trainers
        if key.method.name == "fixed_weights"
        and (key.chunk_length, key.batch_size, key.optimizer) == (EVAL_EVERY, BATCH, optimizer)
    ]
    assert fixed == [TrainerKey(MethodKey("fixed_weights", ""), EVAL_EVERY, BATCH, optimizer)]


def test_batch_indices_shuffle_whole_epochs_deterministically():
    indices = single_run.batch_indices(10, 3, 7, seed=0)
    assert indices.shape == (7, 3)
    epoch = indices[:3].ravel()  # 3 batches per epoch, the last example of each epoch dropped
    assert len(set(epoch.tolist())) == 9
    np.testing.assert_array_equal(indices, single_run.batch_indices(10, 3, 7, seed=0))
    assert not np.array_equal(indices, single_run.batch_indices(10, 3, 7, seed=1))
    with pytest.raises(ValueError):
        single_run.batch_indices(2, 3, 1, seed=0)
