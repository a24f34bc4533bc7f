"""Dynamic weight average against a float64 numpy reference and hand-derived values."""

import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest

import autoscale_jax as asj
from autoscale_jax.methods.dwa import dynamic_weight_average


def reference_dwa(losses_seq, temperature, epoch_length):
    """float64: epoch means; from the third epoch w = K softmax((L(e-1)/L(e-2)) / T)."""
    num_tasks = len(losses_seq[0])
    epoch_means, current, weights = [], [], []
    for t, losses in enumerate(losses_seq):
        if len(epoch_means) >= 2:
            logits = epoch_means[-1] / epoch_means[-2] / temperature
            w = np.exp(logits - logits.max())
            weights.append(num_tasks * w / w.sum())
        else:
            weights.append(np.ones(num_tasks))
        current.append(np.asarray(losses, np.float64))
        if (t + 1) % epoch_length == 0:
            epoch_means.append(np.mean(current, axis=0))
            current = []
    return np.array(weights)


@pytest.mark.parametrize(("temperature", "epoch_length"), [(2.0, 1), (2.0, 3), (0.5, 2)])
def test_matches_numpy_reference(temperature, epoch_length):
    rng = np.random.default_rng(0)
    losses = checks.loss_sequence(rng, 3, 12)
    tx = dynamic_weight_average(3, temperature=temperature, epoch_length=epoch_length)
    grads = checks.gradient_sequence(rng, 3, 12)
    combined, weights, _ = checks.run_updates(tx, grads, losses)
    expected = reference_dwa(losses, temperature, epoch_length)
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    for key in ("a", "b"):
        np.testing.assert_allclose(
            combined[-1][key], np.einsum("k,k...->...", expected[-1], grads[-1][key]), rtol=1e-5
        )
    np.testing.assert_allclose(weights.sum(axis=1), 3.0, rtol=1e-5)
    # Equal weights for the first two epochs, then they move.
    np.testing.assert_array_equal(weights[: 2 * epoch_length], 1.0)
    assert not np.allclose(weights[2 * epoch_length :], 1.0)


def test_hand_derived_weights():
    tx = dynamic_weight_average(2, temperature=2.0)
    params = {"w": jnp.zeros(3)}
    J = jnp.array([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
    state = tx.init(params)
    for losses in ([1.0, 1.0], [2.0, 1.0]):
        out, state = tx.update({"w": J}, state, params, task_losses=jnp.array(losses))
        np.testing.assert_allclose(out["w"], J[0] + J[1])  # first two steps: equal weights
    out, state = tx.update({"w": J}, state, params, task_losses=jnp.array([3.0, 3.0]))
    # r = (2/1, 1/1) = (2, 1); w = 2 softmax(r / 2) = 2 (e, e^0.5) / (e + e^0.5).
    expected = 2 * np.exp([1.0, 0.5]) / np.exp([1.0, 0.5]).sum()
    np.testing.assert_allclose(asj.task_weights(state), expected, rtol=1e-6)
    np.testing.assert_allclose(out["w"], expected @ np.asarray(J), rtol=1e-6)


def test_high_temperature_gives_equal_weights():
    rng = np.random.default_rng(1)
    tx = dynamic_weight_average(3, temperature=1e6)
    _, weights, _ = checks.run_updates(
        tx, checks.gradient_sequence(rng, 3, 6), checks.loss_sequence(rng, 3, 6)
    )
    np.testing.assert_allclose(weights, 1.0, rtol=1e-5)


def test_non_finite_losses_are_left_out_of_the_epoch_mean():
    tx = dynamic_weight_average(2, epoch_length=2)
    params = {"w": jnp.zeros(1)}
    grads = {"w": jnp.ones((2, 1))}
    state = tx.init(params)
    for losses in ([1.0, 2.0], [jnp.nan, 5.0], [2.0, 2.0], [4.0, 4.0]):
        _, state = tx.update(grads, state, params, task_losses=jnp.array(losses))
    np.testing.assert_allclose(state.older_losses, [1.0, 2.0])  # the NaN step was skipped
    np.testing.assert_allclose(state.previous_losses, [3.0, 3.0])
    assert int(state.epochs_completed) == 2
    # A zero older loss gives a huge but finite ratio: finite weights summing to K.
    tx = dynamic_weight_average(2)
    state = tx.init(params)
    for losses in ([0.0, 1.0], [1.0, 1.0], [1.0, 1.0]):
        _, state = tx.update(grads, state, params, task_losses=jnp.array(losses))
    np.testing.assert_allclose(asj.task_weights(state), [2.0, 0.0], atol=1e-6)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        dynamic_weight_average(2, temperature=0.0)
    with pytest.raises(ValueError, match="epoch_length"):
        dynamic_weight_average(2, epoch_length=0)


@pytest.mark.parametrize("check", checks.LOSS_SPACE_CHECKS)
def test_loss_space_contract(check):
    checks.check_loss_space_contract(check, dynamic_weight_average)
