"""Checks shared by sibling methods' test modules (a helper module, not tests).

Dual-cone methods (UPGrad, DualProj): no conflict with any task, a zero gradient ignored.
Stochastic MGDA (MoCo, MoDo, SDMGrad): runs over sequences of batches, the min-norm limit, a
bad batch that keeps the weights.
"""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import as_task_grads, random_jacobian
from method_checks import flat, run_method
from solver_references import moderate_jacobian, reference_min_norm_weights

import autoscale_jax as asj
from autoscale_jax.methods.mgda import mgda_weights


def assert_update_conflicts_with_no_task(exact, ridged, rng, num_tasks, dim, reg_eps=1e-4):
    """A dual-cone method (UPGrad, DualProj) on random conflicting Jacobians: ``exact``
    (``reg_eps=0``) conflicts with no task; ``ridged`` (``reg_eps``) gives ``<g_k, d> ≥
    -reg_eps tr(G) w_k``."""
    conflicts = 0
    for _ in range(10):
        J = random_jacobian(rng, num_tasks, dim)
        conflicts += np.any(J @ J.T < 0)
        norms = np.linalg.norm(J, axis=1)
        update, _, _ = run_method(exact, J)
        assert np.all(J @ update >= -1e-5 * norms * np.linalg.norm(update) - 1e-7)
        update, weights, _ = run_method(ridged, J)
        assert np.all(J @ update >= -reg_eps * np.sum(norms**2) * weights - 1e-5 * norms.max())
    assert conflicts >= 5  # the Jacobians do conflict


def assert_zero_gradient_is_ignored(exact, ridged, rng, reference_alone):
    """A dual-cone method (UPGrad, DualProj): a zero task gradient neither contributes to nor
    constrains the update. With ``g_3 = 0`` the update of ``exact`` (``reg_eps=0``) is
    ``2/3 · reference_alone(J[:2]) @ J[:2]`` (the float64 weights of the two other tasks alone,
    scaled for the mean over three); all-zero gradients give ``ridged`` a zero update, whose
    weights and state are returned."""
    J = rng.normal(size=(3, 5))
    J[2] = 0.0
    update, weights, _ = run_method(exact, J)
    assert np.all(np.isfinite(weights))
    alone = reference_alone(J[:2]) * 2 / 3
    np.testing.assert_allclose(update, alone @ J[:2], rtol=1e-4, atol=1e-6)
    update, weights, state = run_method(ridged, np.zeros((3, 5)))
    np.testing.assert_array_equal(update, 0.0)
    return weights, state


def run_batches(tx, first, second=None, third=None):
    """Jitted updates over a sequence of Jacobians ``first`` (with ``second_task_grads`` /
    ``third_task_grads`` from the sequences ``second`` / ``third`` where given), compiled once:
    the flat updates, the weights, the states' ``memory`` (empty without one) and the last
    state."""
    params = {key: jnp.zeros(leaf.shape[1:]) for key, leaf in as_task_grads(first[0]).items()}
    update = jax.jit(tx.update)
    state = tx.init(params)
    outs, weights, memories = [], [], []
    for step, J in enumerate(first):
        extra = {}
        for name, batches in (("second_task_grads", second), ("third_task_grads", third)):
            if batches is not None:
                extra[name] = as_task_grads(batches[step])
        out, state = update(as_task_grads(J), state, params, **extra)
        outs.append(flat(out))
        weights.append(np.asarray(asj.task_weights(state)))
        memories.extend([np.asarray(state.memory)] if hasattr(state, "memory") else [])
    assert update._cache_size() == 1
    return np.array(outs), np.array(weights), np.array(memories), state


def assert_reaches_min_norm_weights(run_repeated, rho: float, seed: int) -> None:
    """A stochastic MGDA (MoCo without tracking, MoDo) with ``γ = 1/λ_max(G + ρI)`` on one
    Jacobian repeated reaches the min-norm weights of ``G + ρI`` (MGDA's for ``ρ = 0``);
    ``run_repeated(J, gamma) -> (flat updates, weights)``."""
    J = moderate_jacobian(np.random.default_rng(seed), 4, 7)
    G = J @ J.T
    gamma = 1.0 / np.linalg.eigvalsh(G + rho * np.eye(4)).max()
    outs, weights = run_repeated(J, gamma)
    expected = reference_min_norm_weights(G + rho * np.eye(4))
    np.testing.assert_allclose(weights[-1], expected, atol=2e-5)
    np.testing.assert_allclose(outs[-1], expected @ J, atol=2e-5 * np.abs(J).max())
    if rho == 0.0:
        mgda = mgda_weights(jnp.asarray(G, jnp.float32)).solution
        np.testing.assert_allclose(weights[-1], mgda, atol=1e-4)


def assert_bad_batch_keeps_the_weights(tx, state, rng, bad: np.ndarray) -> None:
    """A two-batch method (MoDo, SDMGrad): a non-finite ``bad`` Jacobian as either batch keeps
    the weights and the memory and flags the step as not converged; in ``task_grads`` it
    reaches the update. One compilation."""
    update = jax.jit(tx.update)
    good = as_task_grads(moderate_jacobian(rng))
    for first, second in ((as_task_grads(bad), good), (good, as_task_grads(bad))):
        out, new_state = update(first, state, None, second_task_grads=second)
        kept = (new_state.task_weights, new_state.memory)
        jax.tree.map(np.testing.assert_array_equal, kept, (state.task_weights, state.memory))
        assert not bool(new_state.solver_converged)
        assert np.all(np.isfinite(flat(out))) == (first is good)
    assert update._cache_size() == 1
