"""Tests for task metrics, Δm% (both conventions, sign) and mean rank."""

import numpy as np
import pytest

from autoscale_jax.bench.datasets import TaskSpec
from autoscale_jax.bench.running.evaluation import delta_m, flatten_metrics, mean_rank, task_metrics

CLASSIFY = TaskSpec("digit", "classification", 3, ("accuracy",), (True,))
BINARY = TaskSpec("label", "binary", 1, ("accuracy", "f1"), (True, True))
RECONSTRUCT = TaskSpec("image", "reconstruction", 2, ("mse", "mae"), (False, False))
REGRESS = TaskSpec("energy", "regression", 1, ("mae",), (False,))


# ----------------------------------------------------------------------------- task_metrics


def test_classification_accuracy_uses_argmax():
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0], [9.0, 0.0, 0.0]])
    labels = np.array([0, 2, 0, 0])  # argmax = 0, 2, 1, 0 -> 3 of 4 right
    assert task_metrics(CLASSIFY, logits, labels) == {"accuracy": 0.75}


def test_binary_accuracy_and_f1_threshold_logits_at_zero():
    logits = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    labels = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    # predicted 1, 0, 1, 0, 1: TP = 2, FP = 1, FN = 1, TN = 1 -> accuracy 3/5, F1 = 4/6.
    result = task_metrics(BINARY, logits, labels)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["f1"] == pytest.approx(4 / 6)


def test_binary_f1_without_positives_is_zero():
    assert task_metrics(BINARY, -np.ones(4), np.zeros(4))["f1"] == 0.0


def test_mse_and_mae_average_over_all_elements():
    predictions = np.array([[1.0, 2.0], [0.0, -1.0]])
    targets = np.array([[0.0, 2.0], [0.0, 1.0]])
    # errors 1, 0, 0, -2: MSE = (1 + 4) / 4, MAE = 3 / 4
    assert task_metrics(RECONSTRUCT, predictions, targets) == {"mse": 1.25, "mae": 0.75}


def test_regression_accepts_trailing_singleton_axis():
    targets = np.array([1.0, 2.0, 4.0])
    predictions = np.array([[1.5], [2.0], [3.0]])
    assert task_metrics(REGRESS, predictions, targets)["mae"] == pytest.approx(0.5)


def test_task_metrics_errors():
    with pytest.raises(ValueError, match="does not apply"):
        task_metrics(TaskSpec("x", "regression", 1, ("accuracy",), (True,)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="unknown metric"):
        task_metrics(TaskSpec("x", "regression", 1, ("r2",), (True,)), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="do not match"):
        task_metrics(REGRESS, np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="predictions for"):
        task_metrics(REGRESS, np.ones(2), np.ones(3))


def test_flatten_metrics_lines_up_tasks():
    values, better, owner = flatten_metrics(
        (CLASSIFY, RECONSTRUCT), [{"accuracy": 0.9}, {"mse": 0.1, "mae": 0.2}]
    )
    np.testing.assert_allclose(values, [0.9, 0.1, 0.2])
    assert better == (True, False, False)
    assert owner == (0, 1, 1)
    with pytest.raises(ValueError, match="lacks metric"):
        flatten_metrics((RECONSTRUCT,), [{"mse": 0.1}])


# ----------------------------------------------------------------------------- delta_m


def test_delta_m_per_metric_hand_computed():
    # Accuracy 0.92 vs baseline 0.80 (higher better): +(0.92 - 0.80) / 0.80 * 100 = +15.
    # MSE 0.030 vs baseline 0.020 (lower better):    -(0.030 - 0.020) / 0.020 * 100 = -50.
    # Mean: (15 - 50) / 2 = -17.5.
    assert delta_m([0.92, 0.030], [0.80, 0.020], [True, False]) == pytest.approx(-17.5)


def test_delta_m_positive_means_better_than_baselines():
    # Higher accuracy and lower error than the single-task models must give a positive number.
    assert delta_m([0.95, 0.01], [0.90, 0.02], [True, False]) > 0
    assert delta_m([0.85, 0.03], [0.90, 0.02], [True, False]) < 0
    assert delta_m([0.90, 0.02], [0.90, 0.02], [True, False]) == 0.0


def test_delta_m_per_task_averages_within_tasks_first():
    # Task a: accuracy 0.9 vs 0.75 -> +20. Task b: MSE 0.8 vs 1.0 -> +20, MAE 1.5 vs 1.0 -> -50;
    # task b's mean is -15.
    metrics, baseline = [0.9, 0.8, 1.5], [0.75, 1.0, 1.0]
    better = [True, False, False]
    # per_task: (20 + (-15)) / 2 = 2.5;  per_metric: (20 + 20 - 50) / 3 = -10/3.
    assert delta_m(
        metrics, baseline, better, convention="per_task", task_of_metric=["a", "b", "b"]
    ) == pytest.approx(2.5)
    assert delta_m(metrics, baseline, better) == pytest.approx(-10 / 3)


def test_delta_m_conventions_agree_with_one_metric_per_task():
    rng = np.random.default_rng(1)
    metrics, baseline = rng.uniform(0.1, 2.0, size=(2, 6))
    better = rng.integers(0, 2, 6).astype(bool)
    per_task = delta_m(metrics, baseline, better, convention="per_task", task_of_metric=range(6))
    assert per_task == pytest.approx(delta_m(metrics, baseline, better))


def test_delta_m_accepts_mappings_in_any_key_order():
    metrics = {"acc": 0.92, "mse": 0.030}
    baseline = {"mse": 0.020, "acc": 0.80}
    better = {"mse": False, "acc": True}
    assert delta_m(metrics, baseline, better) == pytest.approx(-17.5)
    owners = {"acc": 0, "mse": 1}
    assert delta_m(
        metrics, baseline, better, convention="per_task", task_of_metric=owners
    ) == pytest.approx(-17.5)


def test_delta_m_errors():
    with pytest.raises(ValueError, match="lengths"):
        delta_m([1.0, 2.0], [1.0], [True, True])
    with pytest.raises(ValueError, match="lengths"):
        delta_m([1.0, 2.0], [1.0, 2.0], [True])
    with pytest.raises(ValueError, match="baseline of 0"):
        delta_m([1.0, 2.0], [0.0, 2.0], [True, True])
    with pytest.raises(ValueError, match="task_of_metric"):
        delta_m([1.0], [1.0], [True], convention="per_task")
    with pytest.raises(ValueError, match="task ids"):
        delta_m([1.0, 2.0], [1.0, 2.0], [True, True], convention="per_task", task_of_metric=[0])
    with pytest.raises(ValueError, match="convention"):
        delta_m([1.0], [1.0], [True], convention="mean")
    with pytest.raises(ValueError, match="keys"):
        delta_m({"a": 1.0}, {"b": 1.0}, {"a": True})
    with pytest.raises(ValueError, match="finite"):
        delta_m([np.nan], [1.0], [True])


# ----------------------------------------------------------------------------- mean_rank


def test_mean_rank_hand_computed_with_ties():
    scores = {
        "ew": [0.90, 0.020, 5.0],
        "mgda": [0.85, 0.010, 5.0],
        "cagrad": [0.90, 0.030, 4.0],
    }
    better = [True, False, True]
    # metric 0 (higher better): ew and cagrad tie for 1st -> 1.5 each, mgda 3.
    # metric 1 (lower better):  mgda 1, ew 2, cagrad 3.
    # metric 2 (higher better): ew and mgda tie for 1st -> 1.5 each, cagrad 3.
    expected = {
        "ew": (1.5 + 2 + 1.5) / 3,
        "mgda": (3 + 1 + 1.5) / 3,
        "cagrad": (1.5 + 3 + 3) / 3,
    }
    result = mean_rank(scores, better)
    assert list(result) == list(scores)
    for method, value in expected.items():
        assert result[method] == pytest.approx(value)


def test_mean_rank_properties():
    rng = np.random.default_rng(2)
    scores = {f"m{i}": list(rng.normal(size=4)) for i in range(5)}
    better = [True, False, True, False]
    ranks = mean_rank(scores, better)
    # Ranks 1..n sum to n (n + 1) / 2 for every metric, so mean ranks do too.
    assert sum(ranks.values()) == pytest.approx(5 * 6 / 2)
    # Flipping every direction reverses every ranking: rank -> n + 1 - rank.
    flipped = mean_rank(scores, [not b for b in better])
    for method in scores:
        assert flipped[method] == pytest.approx(6 - ranks[method])


def test_mean_rank_all_tied():
    assert mean_rank({"a": [1.0], "b": [1.0], "c": [1.0]}, [True]) == {"a": 2.0, "b": 2.0, "c": 2.0}


def test_mean_rank_errors():
    with pytest.raises(ValueError, match="metrics"):
        mean_rank({"a": [1.0, 2.0], "b": [1.0]}, [True, True])
    with pytest.raises(ValueError, match="non-empty"):
        mean_rank({}, [True])
    with pytest.raises(ValueError, match="finite"):
        mean_rank({"a": [np.inf], "b": [1.0]}, [True])
