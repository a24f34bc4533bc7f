"""TrimmedMean: against a float64 numpy trimmed mean (ties, the median case), invariance to the
task order, robustness to outlier tasks, non-finite inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TORCHJD_JACOBIAN, as_task_grads, random_jacobian
from method_checks import assert_compiles_once_and_survives_nan, flat

import autoscale_jax as asj
from autoscale_jax.methods.trimmed_mean import trimmed_mean, trimmed_mean_combine

_JITTED: dict = {}


def numpy_trimmed_mean(J: np.ndarray, trim_number: int) -> np.ndarray:
    """Yin et al's trimmed mean, column by column in float64 (J is [K, P]): drop the t largest
    and t smallest entries of each column, average the K - 2t others."""
    J = np.asarray(J, np.float64)
    k = J.shape[0]
    out = np.empty(J.shape[1])
    for p in range(J.shape[1]):
        column = sorted(J[:, p])
        out[p] = sum(column[trim_number : k - trim_number]) / (k - 2 * trim_number)
    return out


def run(J: np.ndarray, trim_number: int, heads: str = "weighted") -> np.ndarray:
    """One jitted update of ``trimmed_mean`` on the two-leaf pytree of J (flat)."""
    signature = (len(J), trim_number, heads)
    if signature not in _JITTED:
        tx = trimmed_mean(len(J), trim_number=trim_number, heads=heads)
        _JITTED[signature] = (tx, jax.jit(tx.update))
    tx, update = _JITTED[signature]
    out, _ = update(as_task_grads(J), tx.init(None))
    return flat(out)


def test_torchjd_jacobian_hand_derived():
    # K = 2, t = 0: the mean of [-4, 1, 1] and [6, 1, 1]
    np.testing.assert_allclose(run(TORCHJD_JACOBIAN, 0), [1.0, 1.0, 1.0])
    # K = 5, t = 1, one column: sorted [-7, -1, 2, 2, 100] -> mean of [-1, 2, 2] = 1
    grads = {"w": jnp.array([[2.0], [100.0], [-1.0], [-7.0], [2.0]])}
    np.testing.assert_allclose(trimmed_mean_combine(grads, 1)["w"], [1.0])


@pytest.mark.parametrize(
    ("num_tasks", "trim_number"), [(2, 0), (3, 1), (4, 1), (5, 1), (5, 2), (7, 2), (8, 3)]
)
def test_matches_numpy_reference(rng, num_tasks, trim_number):
    for _ in range(3):
        J = random_jacobian(rng, num_tasks, 9)
        expected = numpy_trimmed_mean(J, trim_number)
        np.testing.assert_allclose(
            run(J, trim_number), expected, rtol=1e-5, atol=1e-6 * np.abs(J).max()
        )


@pytest.mark.parametrize(("num_tasks", "trim_number"), [(4, 1), (5, 2), (6, 2)])
def test_matches_numpy_reference_with_ties(rng, num_tasks, trim_number):
    J = rng.integers(-2, 3, size=(num_tasks, 12)).astype(np.float64)  # many equal entries
    J[:, 0] = 1.5  # a column where every task agrees
    np.testing.assert_allclose(run(J, trim_number), numpy_trimmed_mean(J, trim_number), rtol=1e-6)
    assert run(J, trim_number)[0] == 1.5


@pytest.mark.parametrize("num_tasks", [3, 5, 7])
def test_largest_trim_is_the_median(rng, num_tasks):
    J = random_jacobian(rng, num_tasks, 10)
    np.testing.assert_allclose(run(J, num_tasks // 2), np.median(J, axis=0), rtol=1e-6)


def test_no_trimming_is_the_mean(rng):
    J = random_jacobian(rng, 4, 8)
    np.testing.assert_allclose(run(J, 0), J.mean(axis=0), rtol=1e-5, atol=1e-6 * np.abs(J).max())


def test_task_order_does_not_matter(rng):
    J = random_jacobian(rng, 6, 11)
    update = run(J, 2)
    for _ in range(4):
        np.testing.assert_array_equal(run(J[rng.permutation(6)], 2), update)


@pytest.mark.parametrize(("num_tasks", "trim_number", "n_outliers"), [(5, 1, 1), (7, 2, 2)])
def test_outliers_stay_within_the_range_of_the_others(rng, num_tasks, trim_number, n_outliers):
    honest_count = num_tasks - n_outliers
    for _ in range(5):
        honest = rng.normal(size=(honest_count, 10))
        outliers = 1e6 * rng.choice([-1.0, 1.0], size=(n_outliers, 10))
        J = np.concatenate([honest, outliers])[rng.permutation(num_tasks)]
        update = run(J, trim_number)
        assert np.all(update >= honest.min(axis=0) - 1e-6)
        assert np.all(update <= honest.max(axis=0) + 1e-6)
        # the plain mean is dragged away by the same outliers
        assert np.abs(J.mean(axis=0)).max() > 1e4


def test_nan_and_inf_reach_only_their_coordinates(rng):
    J = random_jacobian(rng, 5, 6)
    J[1, 0] = np.nan  # would be sorted last and trimmed if not guarded
    J[4, 4] = np.inf
    J[2, 5] = -np.inf
    update = run(J, 1)
    assert np.isnan(update[0])
    assert update[4] == np.inf and update[5] == -np.inf
    expected = numpy_trimmed_mean(J[:, 1:4], 1)
    np.testing.assert_allclose(
        update[1:4], expected, rtol=1e-5, atol=1e-6 * np.abs(J[:, 1:4]).max()
    )


def test_jit_compiles_once_and_nan_propagates(rng):
    assert_compiles_once_and_survives_nan(trimmed_mean(5, trim_number=2), 5, rng)


def test_plain_heads_give_each_head_its_own_gradient(rng):
    # columns 0-2 ("a"): a trunk every task touches; columns 3-5 ("b"): task 0's head only
    J = rng.normal(size=(5, 6))
    J[1:, 3:] = 0.0
    plain = run(J, 1, heads="plain")
    np.testing.assert_allclose(plain[:3], numpy_trimmed_mean(J[:, :3], 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain[3:], J[0, 3:], rtol=1e-6)
    # without it the head's lone component is an extreme and is always trimmed away
    np.testing.assert_array_equal(run(J, 1)[3:], 0.0)


def test_keeps_the_leaf_dtype(rng):
    tx = trimmed_mean(3)
    grads = {"w": jnp.asarray(random_jacobian(rng, 3, 4), jnp.bfloat16)}
    update, _ = tx.update(grads, tx.init(None))
    assert update["w"].dtype == jnp.bfloat16


def test_has_no_task_weights(rng):
    with pytest.raises(ValueError, match="No multi-task state"):
        asj.task_weights(trimmed_mean(3).init(None))


@pytest.mark.parametrize(
    ("num_tasks", "kwargs", "match"),
    [
        (4, {"trim_number": 2}, "num_tasks >= 2 \\* trim_number \\+ 1 = 5"),
        (2, {"trim_number": 1}, "num_tasks >= 2 \\* trim_number \\+ 1 = 3"),
        (5, {"trim_number": -1}, "trim_number must be >= 0"),
        (5, {"trim_number": 1.0}, "static Python int"),
        (5, {"trim_number": True}, "static Python int"),
        (5, {"heads": "both"}, "Unknown heads"),
    ],
)
def test_rejects_bad_arguments(num_tasks, kwargs, match):
    with pytest.raises(ValueError, match=match):
        trimmed_mean(num_tasks, **kwargs)


def test_chains_first_in_optax(rng):
    J = random_jacobian(rng, 5, 4)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2)}
    tx = optax.chain(trimmed_mean(5, trim_number=1), optax.sgd(1.0))
    updates, _ = tx.update(as_task_grads(J), tx.init(params), params)
    np.testing.assert_allclose(-flat(updates), numpy_trimmed_mean(J, 1), rtol=1e-5, atol=1e-6)
