"""DB-MTL against a float64 numpy reference of the paper's update (log-loss gradients, moving
average, max-norm rescaling on shared leaves, plain log-loss gradients on task heads)."""

import jax
import jax.numpy as jnp
import method_checks as checks
import numpy as np
import pytest
from conftest import random_jacobian

import autoscale_jax as asj
from autoscale_jax.methods.db_mtl import db_mtl

NUM_TASKS = 3
SHARED, HEAD = 6, 2  # columns of the shared leaf, of each task's head leaf


def task_grads_with_heads(rng):
    """A shared leaf every task reaches and one head leaf per task (zero for other tasks)."""
    shared = random_jacobian(rng, NUM_TASKS, SHARED)
    heads = rng.normal(size=(NUM_TASKS, HEAD))
    grads = {"trunk": shared.astype(np.float32)}
    for k in range(NUM_TASKS):
        head = np.zeros((NUM_TASKS, HEAD), np.float32)
        head[k] = heads[k]
        grads[f"head{k}"] = head
    return grads


def flat(tree):
    return np.concatenate([np.asarray(tree[key]).reshape(-1) for key in sorted(tree)])


def reference_db_mtl(grads_seq, losses_seq, beta, beta_sigma, eps=1e-8):
    """float64: ĝ ← β_t ĝ + (1-β_t) ∇log(L+ε) on the trunk, Σ α_k ĝ_k there, Σ ∇log L on heads."""
    average = np.zeros((NUM_TASKS, SHARED))
    outputs, scales = [], []
    for t, (grads, losses) in enumerate(zip(grads_seq, losses_seq, strict=True), start=1):
        log_factor = 1.0 / (np.asarray(losses, np.float64) + eps)
        decay = beta / t**beta_sigma
        average = decay * average + (1 - decay) * log_factor[:, None] * grads["trunk"]
        norms = np.linalg.norm(average, axis=1)
        alpha = norms.max() / norms
        out = {"trunk": alpha @ average}
        for k in range(NUM_TASKS):
            out[f"head{k}"] = log_factor @ grads[f"head{k}"]
        outputs.append(out)
        scales.append(alpha)
    return outputs, np.array(scales)


@pytest.mark.parametrize(("beta", "beta_sigma"), [(0.9, 0.0), (0.5, 0.5), (0.0, 0.0)])
def test_matches_numpy_reference_with_shared_mask(beta, beta_sigma):
    rng = np.random.default_rng(0)
    grads = [task_grads_with_heads(rng) for _ in range(6)]
    losses = checks.loss_sequence(rng, NUM_TASKS, 6)
    tx = db_mtl(NUM_TASKS, beta=beta, beta_sigma=beta_sigma)  # default mask: "shared"
    combined, weights, state = checks.run_updates(tx, grads, losses)
    expected, scales = reference_db_mtl(grads, losses, beta, beta_sigma)
    for out, ref in zip(combined, expected, strict=True):
        np.testing.assert_allclose(flat(out), flat(ref), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(state.gradient_scales, scales[-1], rtol=1e-4)
    np.testing.assert_allclose(weights[-1], scales[-1] / np.asarray(losses[-1]), rtol=1e-4)


def test_every_balanced_term_has_the_largest_norm():
    rng = np.random.default_rng(1)
    grads = [task_grads_with_heads(rng) for _ in range(3)]
    losses = checks.loss_sequence(rng, NUM_TASKS, 3)
    _, _, state = checks.run_updates(db_mtl(NUM_TASKS), grads, losses)
    averages = np.asarray(state.gradient_averages["trunk"])
    balanced = np.linalg.norm(state.gradient_scales[:, None] * averages, axis=1)
    np.testing.assert_allclose(balanced, np.linalg.norm(averages, axis=1).max(), rtol=1e-5)


def test_rescaling_a_task_loss_leaves_the_update_unchanged():
    rng = np.random.default_rng(2)
    grads = [task_grads_with_heads(rng) for _ in range(4)]
    losses = checks.loss_sequence(rng, NUM_TASKS, 4)
    scale = np.array([1.0, 100.0, 0.01], np.float32)
    combined, _, _ = checks.run_updates(db_mtl(NUM_TASKS), grads, losses)
    scaled_grads = [jax.tree.map(lambda g: g * scale.reshape(-1, 1), gr) for gr in grads]
    scaled_losses = [loss * scale for loss in losses]
    combined_s, _, _ = checks.run_updates(db_mtl(NUM_TASKS), scaled_grads, scaled_losses)
    for a, b in zip(combined, combined_s, strict=True):
        np.testing.assert_allclose(flat(a), flat(b), rtol=1e-4, atol=1e-6)


def test_zero_gradient_and_non_finite_input_are_defined():
    J = np.array([[-4.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    tx = db_mtl(2, metric_mask=None)
    params = {"w": jnp.zeros(3)}
    state = tx.init(params)
    out, state = tx.update({"w": J}, state, params, task_losses=jnp.array([2.0, 1.0]))
    # The zero task gets α = 1 (its term is zero); the other is its own max: α = 1.
    np.testing.assert_allclose(state.gradient_scales, [1.0, 1.0])
    np.testing.assert_allclose(out["w"], 0.1 * J[0] / 2.0, rtol=1e-5)
    before = state
    nan_grads = {"w": np.where(J == -4.0, np.nan, J)}
    out, state = tx.update(nan_grads, state, params, task_losses=jnp.array([2.0, 1.0]))
    assert np.isnan(out["w"][0])  # the non-finite gradient reaches the update
    jax.tree.map(np.testing.assert_array_equal, state.gradient_averages, before.gradient_averages)
    assert np.all(np.isfinite(asj.task_weights(state)))


def test_train_step_matches_optax_chain():
    checks.assert_fast_path_matches_chain(lambda: db_mtl(3), num_steps=4)


def test_permuting_tasks_permutes_weights():
    checks.assert_permutation_equivariant(lambda: db_mtl(4, metric_mask=None))


def test_has_no_fast_path_and_rejects_presummed_and_bad_arguments():
    checks.assert_needs_task_gradients(db_mtl)
    with pytest.raises(ValueError, match="beta"):
        db_mtl(2, beta=1.0)
    with pytest.raises(ValueError, match="beta_sigma"):
        db_mtl(2, beta_sigma=-0.5)
