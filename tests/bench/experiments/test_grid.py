"""The LS weight grid; the vmapped grid equals the sequential one."""

import numpy as np
from bench_tiny import BUDGET, STEPS, tiny_benchmark, tiny_report

from autoscale_jax.bench.experiments.grid import grid_search, ls_weight_grid, weights_label
from autoscale_jax.bench.running.run_store import RunStore


def test_ls_weight_grid():
    pair = ls_weight_grid(2, 5, max_ratio=100.0)
    np.testing.assert_allclose(pair.sum(axis=1), 2.0)
    np.testing.assert_allclose(pair[2], [1.0, 1.0])  # odd sizes include equal weights
    np.testing.assert_allclose(pair[::-1], pair[:, ::-1])  # symmetric in the two tasks
    np.testing.assert_allclose(pair[-1, 1] / pair[-1, 0], 100.0)
    many = ls_weight_grid(4, 6, seed=3)
    assert many.shape == (6, 4) and np.all(many > 0)
    np.testing.assert_allclose(many.sum(axis=1), 4.0)
    np.testing.assert_allclose(many[0], 1.0)


def test_weights_label_tells_grid_points_apart():
    labels = [weights_label(w) for w in ls_weight_grid(2, 9)]
    assert len(set(labels)) == 9 and labels[4] == "ls[1,1]"


def test_ls_weight_grid_for_more_tasks_reaches_large_ratios():
    many = ls_weight_grid(3, 200, max_ratio=1000.0, seed=0)
    ratios = many.max(axis=1) / many.min(axis=1)
    assert np.all(ratios <= 1000.0 * (1 + 1e-9)) and np.max(ratios) > 300.0


def test_vmapped_grid_equals_the_sequential_grid():
    bench, weights = tiny_benchmark(), ls_weight_grid(2, 3, max_ratio=30.0)
    baselines = tiny_report().baselines
    common = {"seeds": (0,), "baselines": baselines, **BUDGET}
    sequential = grid_search(bench, weights, **common)
    vmapped = grid_search(bench, weights, vmapped=True, **common)
    assert vmapped.best_index == sequential.best_index
    np.testing.assert_allclose(vmapped.validation_scores, sequential.validation_scores, rtol=1e-5)
    for seq_point, vm_point in zip(sequential.runs, vmapped.runs, strict=True):
        (seq,), (vm,) = seq_point, vm_point
        assert (vm.method, vm.selected_step, vm.steps) == (seq.method, seq.selected_step, seq.steps)
        assert vm.gradient_evaluations == seq.gradient_evaluations == STEPS
        assert vm.validation_steps == seq.validation_steps == [10, 20, 30]
        np.testing.assert_allclose(vm.validation_scores, seq.validation_scores, rtol=1e-5)
        for vm_task, seq_task in zip(vm.test_metrics, seq.test_metrics, strict=True):
            for name, value in seq_task.items():
                np.testing.assert_allclose(vm_task[name], value, rtol=1e-4)
        np.testing.assert_allclose(vm.delta_m["per_metric"], seq.delta_m["per_metric"], atol=1e-3)
        assert vm.wall_time_s > 0 and len(vm.chunk_times_s) == len(seq.chunk_times_s)
    # One compiled program trains every grid point of a chunk.
    vmapped_keys = [k for k in bench.cache.trainers if k.method.name == "vmapped_fixed_weights"]
    assert {k.method.options for k in vmapped_keys} >= {"3"}


def test_vmapped_grid_resumes_from_stored_runs(tmp_path):
    bench, weights = tiny_benchmark(), ls_weight_grid(2, 2, max_ratio=10.0)
    store = RunStore(str(tmp_path), resume=True)
    first = grid_search(bench, weights, seeds=(1,), vmapped=True, store=store, **BUDGET)
    again = grid_search(bench, weights, seeds=(1,), vmapped=True, store=store, **BUDGET)
    assert [p[0].wall_time_s for p in again.runs] == [p[0].wall_time_s for p in first.runs]
