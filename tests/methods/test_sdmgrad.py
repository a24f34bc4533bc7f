"""SDMGrad against a float64 numpy replay (normalised cross Gramian, projected heavy-ball inner
loop, warm start, (G_w + λ g₀)/(1 + λ)), and its two limits: λ = 0 with one batch repeated is
MGDA, λ → ∞ is the average gradient."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import as_task_grads
from sibling_checks import assert_bad_batch_keeps_the_weights, run_batches
from solver_references import moderate_jacobian, numpy_project, reference_min_norm_weights

from autoscale_jax import metrics
from autoscale_jax.methods.sdmgrad import cross_gramian, sdmgrad


def reference_sdmgrad(first, second, lam, lr, momentum, num_steps):
    """float64 replay of the authors' update on J₁J₂ᵀ, applied to J₁."""
    K = first[0].shape[0]
    w = np.full(K, 1.0 / K)
    outs, weights, memories = [], [], []
    for J1, J2 in zip(first, second, strict=True):
        G = np.asarray(J1, np.float64) @ np.asarray(J2, np.float64).T
        scale = np.mean(np.sqrt(np.maximum(np.diag(G), 0))) ** 2
        G = G / (scale if scale > 0 else np.abs(G).max())  # no positive diagonal: max |G_ij|
        velocity = np.zeros(K)
        for _ in range(num_steps):
            velocity = momentum * velocity + G @ w + lam * G.mean(axis=1)
            w = numpy_project(w - lr * velocity)
        c = (w + lam / K) / (1 + lam)
        outs.append(c @ J1)
        weights.append(c)
        memories.append(w)
    return np.array(outs), np.array(weights), np.array(memories)


def test_cross_gramian_matches_numpy_with_and_without_mask():
    rng = np.random.default_rng(0)
    J1, J2 = moderate_jacobian(rng), moderate_jacobian(rng)
    g1, g2 = as_task_grads(J1), as_task_grads(J2)
    np.testing.assert_allclose(cross_gramian(g1, g2), J1 @ J2.T, rtol=1e-5, atol=1e-5)
    masked = cross_gramian(g1, g2, {"a": False, "b": True})
    np.testing.assert_allclose(masked, J1[:, 3:] @ J2[:, 3:].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cross_gramian(g1, g1), metrics.gramian(g1), rtol=1e-6)


@pytest.mark.parametrize(
    ("lam", "lr", "momentum", "num_steps"),
    [(0.3, 5.0, 0.5, 20), (0.0, 0.3, 0.0, 7), (2.0, 1.0, 0.9, 3)],
)
def test_matches_float64_replay(lam, lr, momentum, num_steps):
    rng = np.random.default_rng(1)
    first = [moderate_jacobian(rng) for _ in range(5)]
    second = [J + 0.5 * moderate_jacobian(rng) for J in first]  # a correlated second batch
    tx = sdmgrad(3, regularization=lam, step_size=lr, momentum=momentum, num_steps=num_steps)
    outs, weights, memories, state = run_batches(tx, first, second)
    ref = reference_sdmgrad(first, second, lam, lr, momentum, num_steps)
    # With the default step (η = 5, beyond the quadratic's stability limit) 20 inner steps
    # amplify float32 round-off to ~1e-4 before the projection contracts it again.
    np.testing.assert_allclose(memories, ref[2], atol=3e-4)
    np.testing.assert_allclose(weights, ref[1], atol=3e-4)
    np.testing.assert_allclose(outs, ref[0], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    assert int(state.solver_iterations) == num_steps


def test_one_batch_repeated_without_regularization_reaches_mgda():
    rng = np.random.default_rng(2)
    J = moderate_jacobian(rng, 4, 7)
    tx = sdmgrad(4, regularization=0.0, step_size=0.2, momentum=0.5, num_steps=50)
    outs, weights, _, state = run_batches(tx, [J] * 40, [J] * 40)
    expected = reference_min_norm_weights(J @ J.T)
    np.testing.assert_allclose(weights[-1], expected, atol=1e-5)
    np.testing.assert_allclose(outs[-1], expected @ J, atol=1e-5 * np.abs(J).max())
    assert bool(state.solver_converged)


def test_large_regularization_gives_the_average_gradient():
    rng = np.random.default_rng(3)
    J1, J2 = moderate_jacobian(rng), moderate_jacobian(rng)
    outs, weights, _, _ = run_batches(sdmgrad(3, regularization=1e6), [J1], [J2])
    np.testing.assert_allclose(weights[0], np.full(3, 1 / 3), atol=1e-6)
    np.testing.assert_allclose(outs[0], J1.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_third_batch_gives_the_weights_and_first_the_update():
    rng = np.random.default_rng(4)
    first = [moderate_jacobian(rng) for _ in range(3)]
    other_first = [moderate_jacobian(rng) for _ in range(3)]
    second = [moderate_jacobian(rng) for _ in range(3)]
    third = [moderate_jacobian(rng) for _ in range(3)]
    outs, weights, _, _ = run_batches(sdmgrad(3), first, second, third)
    _, weights_other, _, _ = run_batches(sdmgrad(3), other_first, second, third)
    np.testing.assert_array_equal(weights, weights_other)
    _, ref_weights, _ = reference_sdmgrad(second, third, 0.3, 5.0, 0.5, 20)
    np.testing.assert_allclose(weights, ref_weights, atol=2e-5)
    np.testing.assert_allclose(outs, np.einsum("tk,tkp->tp", weights, first), rtol=1e-5, atol=1e-5)


def test_permuting_tasks_permutes_weights_and_keeps_updates():
    rng = np.random.default_rng(5)
    first = [moderate_jacobian(rng, 4) for _ in range(4)]
    second = [moderate_jacobian(rng, 4) for _ in range(4)]
    perm = np.array([2, 0, 3, 1])
    tx = sdmgrad(4, step_size=0.5)
    outs, weights, _, _ = run_batches(tx, first, second)
    outs_p, weights_p, _, _ = run_batches(tx, [J[perm] for J in first], [J[perm] for J in second])
    np.testing.assert_allclose(weights_p, weights[:, perm], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outs_p, outs, rtol=1e-4, atol=1e-5)


def test_plain_heads_give_each_head_its_own_gradient():
    rng = np.random.default_rng(6)
    trunk = moderate_jacobian(rng, 2, 4)
    head = np.array([[1.0, 2.0], [0.0, 0.0]])  # task 0's head: zero for task 1
    grads = {"trunk": jnp.asarray(trunk, jnp.float32), "head": jnp.asarray(head, jnp.float32)}
    tx = sdmgrad(2, heads="plain")
    out, state = tx.update(grads, tx.init(None), None, second_task_grads=grads)
    np.testing.assert_allclose(out["head"], head.sum(axis=0))
    np.testing.assert_allclose(out["trunk"], state.task_weights @ trunk, rtol=1e-5)


def test_nan_in_either_batch_keeps_the_weights():
    rng = np.random.default_rng(7)
    J = [moderate_jacobian(rng) for _ in range(3)]
    _, _, _, state = run_batches(sdmgrad(3), J, J[::-1])
    bad = moderate_jacobian(rng)
    bad[0, 1] = np.nan
    assert_bad_batch_keeps_the_weights(sdmgrad(3), state, rng, bad)


def test_rejects_missing_or_mismatched_batches_and_bad_hyperparameters():
    tx = sdmgrad(2)
    grads = {"w": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match="second_task_grads=g2"):
        tx.update(grads, tx.init(None), None)
    with pytest.raises(ValueError, match="structure and shapes"):
        tx.update(grads, tx.init(None), None, second_task_grads={"w": jnp.ones((2, 4))})
    with pytest.raises(ValueError, match="leading task axis"):
        tx.update(grads, tx.init(None), None, second_task_grads={"w": jnp.ones((3, 3))})
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(3)}, tx.init(None), None, presummed=True)
    bad = [
        {"regularization": -0.1},
        {"step_size": 0.0},
        {"momentum": 1.0},
        {"num_steps": 0},
        {"heads": "own"},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            sdmgrad(2, **kwargs)
