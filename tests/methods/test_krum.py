"""Krum / Multi-Krum: scores and selection against a float64 numpy brute force, TorchJD's
documented example, outliers never selected, ties to the lowest index."""

import jax
import numpy as np
import pytest
from conftest import as_task_grads, random_jacobian
from method_checks import (
    assert_compiles_once_and_flags_nan,
    assert_permutes_with_tasks,
    gramian32,
    run_method,
)

from autoscale_jax.methods.krum import krum, krum_scores, krum_weights

scores_fn = jax.jit(krum_scores, static_argnums=1, static_argnames="squared")
# n_selected may be traced (it only enters a comparison and a division): fewer compilations
weights_fn = jax.jit(krum_weights, static_argnums=1, static_argnames="squared")


def reference_distances(J: np.ndarray, squared: bool = True) -> np.ndarray:
    """float64 distances between the rows themselves (not via the Gramian)."""
    J = np.asarray(J, np.float64)
    d = np.array([[np.sum((a - b) ** 2) for b in J] for a in J])
    return d if squared else np.sqrt(d)


def reference_scores(J: np.ndarray, n_byzantine: int, squared: bool = True) -> np.ndarray:
    """Sum of the K - f - 2 smallest distances from each row to the other rows."""
    d = reference_distances(J, squared)
    k = len(J)
    return np.array([np.sort(np.delete(d[i], i))[: k - n_byzantine - 2].sum() for i in range(k)])


def reference_selection(J: np.ndarray, n_byzantine: int, n_selected: int, squared=True):
    """Indices of the m smallest scores; ties to the smaller total distance to all other rows,
    then to the lowest index."""
    scores = reference_scores(J, n_byzantine, squared)
    totals = reference_distances(J, squared).sum(axis=1)
    return np.array(sorted(range(len(J)), key=lambda i: (scores[i], totals[i], i))[:n_selected])


def test_torchjd_documented_example():
    # TorchJD's Krum docstring: Krum(n_byzantine=1, n_selected=4) on this J gives [1.25, 0.75,
    # 1.5] (row 2 is adversarial). Squared and plain distances select the same rows here.
    J = np.array([[1, 1, 1], [1, 0, 1], [75, -666, 23], [1, 2, 3], [2, 0, 1.0]])
    for squared in (True, False):
        update, weights, _ = run_method(krum(5, n_byzantine=1, n_selected=4, squared=squared), J)
        np.testing.assert_allclose(update, [1.25, 0.75, 1.5], rtol=1e-6)
        np.testing.assert_array_equal(weights, [0.25, 0.25, 0.0, 0.25, 0.25])


@pytest.mark.parametrize(("num_tasks", "n_byzantine"), [(3, 0), (5, 1), (7, 2), (8, 1)])
@pytest.mark.parametrize("squared", [True, False])
def test_scores_and_selection_match_numpy(rng, num_tasks, n_byzantine, squared):
    checked = 0
    for _ in range(6):
        J = rng.normal(size=(num_tasks, 6)) * rng.uniform(0.2, 5.0, size=(num_tasks, 1))
        expected = reference_scores(J, n_byzantine, squared)
        scores = np.asarray(scores_fn(gramian32(J), n_byzantine, squared=squared))
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5 * expected.max())
        for m in range(1, num_tasks + 1):
            ordered = np.sort(expected)
            # float32 may swap two nearly equal scores: skip those; exact ties (a mutual
            # nearest pair when K - f - 2 = 1) are exact in float32 too and are checked
            gap = ordered[m] - ordered[m - 1] if m < num_tasks else np.inf
            if 0 < gap < 1e-3 * ordered[m - 1]:
                continue
            weights = np.asarray(weights_fn(gramian32(J), n_byzantine, m, squared=squared))
            reference = np.zeros(num_tasks)
            reference[reference_selection(J, n_byzantine, m, squared)] = 1.0 / m
            np.testing.assert_array_equal(weights, reference.astype(np.float32))
            checked += 1
    assert checked >= 5 * num_tasks


def test_method_update_is_the_mean_of_the_selected_rows(rng):
    tx = krum(6, n_byzantine=1, n_selected=3)
    J = random_jacobian(rng, 6, 8)
    update, weights, state = run_method(tx, J)
    chosen = reference_selection(J, 1, 3)
    np.testing.assert_array_equal(np.flatnonzero(weights), np.sort(chosen))
    np.testing.assert_allclose(update, J[chosen].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-7)
    assert bool(state.solver_converged)


def test_squared_and_plain_distances_can_disagree(rng):
    # the flag matters: on random Jacobians the two scores pick different rows at times
    differ = 0
    for _ in range(40):
        J = rng.normal(size=(5, 2))
        a = reference_selection(J, 1, 1, squared=True)
        b = reference_selection(J, 1, 1, squared=False)
        differ += a[0] != b[0]
    assert differ > 0


@pytest.mark.parametrize("colluding", [False, True])
@pytest.mark.parametrize(("num_tasks", "n_byzantine"), [(5, 1), (7, 2), (9, 3)])
def test_outliers_are_never_selected(rng, num_tasks, n_byzantine, colluding):
    # K - f honest gradients around a common direction, f outliers far away (each its own
    # random direction, or all the same point when they collude); K >= 2f + 3.
    for _ in range(5):
        honest = rng.normal(size=(1, 10)) + 0.3 * rng.normal(size=(num_tasks - n_byzantine, 10))
        if colluding:
            outliers = np.repeat(50.0 * rng.normal(size=(1, 10)), n_byzantine, axis=0)
        else:
            outliers = 50.0 * rng.normal(size=(n_byzantine, 10))
        J = np.concatenate([honest, outliers])
        perm = rng.permutation(num_tasks)
        J, is_outlier = J[perm], perm >= num_tasks - n_byzantine
        for m in range(1, num_tasks - n_byzantine + 1):
            weights = np.asarray(weights_fn(gramian32(J), n_byzantine, m))
            assert np.all(weights[is_outlier] == 0.0)
            assert np.isclose(weights.sum(), 1.0)


def test_equal_scores_go_to_the_more_central_task():
    # 1-D points 0, 1, 3 with f = 0 (one neighbour each): tasks 0 and 1 tie at score 1, task 1
    # is closer to task 2 (total 1 + 4 = 5 against 1 + 9 = 10), so it is selected
    J = np.zeros((3, 4))
    J[:, 0] = [0.0, 1.0, 3.0]
    G = gramian32(J)
    np.testing.assert_array_equal(scores_fn(G, 0), [1.0, 1.0, 4.0])
    np.testing.assert_array_equal(weights_fn(G, 0, 1), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(weights_fn(gramian32(J[::-1]), 0, 1), [0.0, 1.0, 0.0])


def test_full_ties_go_to_the_lowest_index(rng):
    a, b = rng.normal(size=(2, 5))
    J = np.stack([b, a, b, a])  # every score is ||a - b||², every total 2 ||a - b||²
    G = gramian32(J)
    scores = np.asarray(scores_fn(G, 0))
    assert np.all(scores == scores[0])
    np.testing.assert_array_equal(weights_fn(G, 0, 1), [1.0, 0.0, 0.0, 0.0])
    third = np.float32(1 / 3)
    np.testing.assert_array_equal(weights_fn(G, 0, 3), [third, third, third, 0.0])


def test_selecting_all_tasks_is_the_mean(rng):
    J = random_jacobian(rng, 4, 6)
    update, weights, _ = run_method(krum(4, n_byzantine=1, n_selected=4), J)
    np.testing.assert_allclose(weights, 0.25)
    np.testing.assert_allclose(update, J.mean(axis=0), rtol=1e-5, atol=1e-6 * np.abs(J).max())


@pytest.mark.parametrize(("num_tasks", "n_byzantine", "n_selected"), [(3, 0, 1), (6, 1, 2)])
def test_permuting_tasks_permutes_the_weights(rng, num_tasks, n_byzantine, n_selected):
    # (3, 0, 1): each score is the distance to the nearest task, so the closest pair always
    # ties; the centrality rule, not the index, decides it
    tx = krum(num_tasks, n_byzantine=n_byzantine, n_selected=n_selected)
    for _ in range(5):
        assert_permutes_with_tasks(tx, random_jacobian(rng, num_tasks, 7))


def test_metric_mask_selects_leaves(rng):
    J = random_jacobian(rng, 5, 6)
    _, weights, _ = run_method(krum(5, n_byzantine=1, metric_mask={"a": True, "b": False}), J)
    expected = reference_selection(J[:, :3], 1, 1)
    np.testing.assert_array_equal(np.flatnonzero(weights), expected)


def test_initial_weights_sum_to_one():
    np.testing.assert_allclose(krum(4, n_byzantine=0).init(None).task_weights, 0.25)


def test_jit_compiles_once_and_nan_is_flagged(rng):
    assert_compiles_once_and_flags_nan(krum(5, n_byzantine=1, n_selected=2), 5, rng)


def test_inf_gradient_reaches_the_update(rng):
    J = random_jacobian(rng, 5, 6)
    J[3, 1] = np.inf
    tx = krum(5, n_byzantine=1)
    out, state = tx.update(as_task_grads(J), tx.init(None))
    assert not np.all(np.isfinite(out["a"]))
    np.testing.assert_array_equal(state.task_weights, np.float32(0.2))
    assert not bool(state.solver_converged)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_byzantine": -1}, "n_byzantine must be >= 0"),
        ({"n_byzantine": 0, "n_selected": 0}, "n_selected must be >= 1"),
        ({"n_byzantine": 3}, "num_tasks >= n_byzantine \\+ 3 = 6"),
        ({"n_byzantine": 0, "n_selected": 6}, "n_selected=6 exceeds num_tasks=5"),
        ({"n_byzantine": 1.0}, "static Python int"),
        ({"n_byzantine": True}, "static Python int"),
        ({"n_byzantine": 0, "heads": "both"}, "Unknown heads"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        krum(5, **kwargs)
