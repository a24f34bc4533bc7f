"""PCD: against a float64 numpy reimplementation (moving-average scales, the QP by enumeration
of active sets, the rescaling), the paper's two-task closed form, the secondary-progress
guarantee, the special cases and the scale invariances."""

import importlib
import itertools
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import as_task_grads, random_jacobian
from method_checks import (
    assert_compiles_once_and_flags_nan,
    assert_compiles_once_and_survives_nan,
    flat,
)

import autoscale_jax as asj
from autoscale_jax.methods.pcd import pcd

pcd_module = importlib.import_module("autoscale_jax.methods.pcd")

pcd_weights = jax.jit(pcd_module.pcd_weights)  # eager while-loops are slow


def reference_qp(G: np.ndarray, tau: float) -> np.ndarray | None:
    """min ½|d - g_1|² s.t. g_jᵀd ≥ τ|g_j|² (j ≥ 2), as [1, μ] with d = Σ w_i g_i, or None when
    infeasible: the first active set A (by size) whose equality system has μ_A ≥ 0 and satisfies
    every other constraint is the KKT point, which is optimal for this strictly convex QP."""
    Gs, b = G[1:, 1:], tau * np.diag(G)[1:] - G[1:, 0]
    scale = np.max(np.diag(G))
    for size in range(len(b) + 1):
        for active in itertools.combinations(range(len(b)), size):
            idx = list(active)
            mu = np.zeros(len(b))
            if idx:
                block = Gs[np.ix_(idx, idx)]
                if np.linalg.cond(block) > 1e10:
                    continue
                mu[idx] = np.linalg.solve(block, b[idx])
            if mu.min() >= -1e-12 and np.all(Gs @ mu - b >= -1e-10 * scale):
                return np.concatenate([[1.0], mu])
    return None


class ReferencePCD:
    """Algorithm 1 of the paper in float64, one call per step."""

    def __init__(self, tau: float, beta: float = 0.999, eps: float = 1e-8):
        self.tau, self.beta, self.eps = tau, beta, eps
        self.ema, self.count = None, 0

    def __call__(self, J: np.ndarray) -> np.ndarray:
        G = J @ J.T
        self.ema = (0 if self.ema is None else self.beta * self.ema) + (1 - self.beta) * np.diag(G)
        self.count += 1
        s = 1 / np.sqrt(self.ema / (1 - self.beta**self.count) + self.eps)
        w = reference_qp(G * np.outer(s, s), self.tau)
        w = np.eye(len(J))[0] if w is None else w
        direction = (w * s) @ J
        return direction * np.sqrt(G[0, 0]) / np.linalg.norm(direction)


def run_steps(tx, jacobians):
    """Jitted updates threading the state: (flat updates, weights, final state)."""
    update = jax.jit(tx.update)
    state, updates, weights = tx.init(None), [], []
    for J in jacobians:
        out, state = update(as_task_grads(J), state)
        updates.append(flat(out))
        weights.append(np.asarray(asj.task_weights(state), np.float64))
    return np.array(updates), np.array(weights), state


def unit_weights(G: np.ndarray, tau: float) -> np.ndarray:
    """``pcd_weights`` at the first step with ε = 0: every gradient normalised to norm 1."""
    scales = 1 / np.sqrt(np.diag(G))
    return np.asarray(pcd_weights(jnp.asarray(G, jnp.float32), jnp.asarray(scales), tau).weights)


@pytest.mark.parametrize(
    ("num_tasks", "dim", "tau", "eps"), [(3, 6, 0.02, 1e-8), (4, 7, 0.3, 0.5), (3, 2, 0.1, 1e-8)]
)
def test_matches_float64_reference_over_steps(rng, num_tasks, dim, tau, eps):
    # (a large eps makes the bias correction matter: it is common to all tasks otherwise)
    base = random_jacobian(rng, num_tasks, dim)
    jacobians = [base * rng.uniform(0.5, 2.0) + 0.3 * rng.normal(size=base.shape) for _ in range(5)]
    tx = pcd(num_tasks, tau=tau, beta=0.9, eps=eps)
    updates, weights, state = run_steps(tx, jacobians)
    reference = ReferencePCD(tau, beta=0.9, eps=eps)
    for J, update, w in zip(jacobians, updates, weights, strict=True):
        expected = reference(J)
        atol = 1e-4 * np.linalg.norm(J[0])
        np.testing.assert_allclose(update, expected, rtol=1e-3, atol=atol)
        np.testing.assert_allclose(w @ J, expected, rtol=1e-3, atol=atol)
    np.testing.assert_allclose(state.memory.sq_norm_ema, reference.ema, rtol=1e-5)
    assert int(state.memory.count) == 5 and bool(state.solver_converged)


def test_two_task_closed_form(rng):
    # Cor. 4.6: d̃ = ĝ_1 + max(0, τ - cos) ĝ_2 for unit ĝ (first step, ε = 0), |d| = |g_1|
    for tau in (0.0, 0.02, 0.5, 1.0):
        J = random_jacobian(rng, 2, 5)
        units = J / np.linalg.norm(J, axis=1, keepdims=True)
        direction = units[0] + max(0.0, tau - units[0] @ units[1]) * units[1]
        expected = direction * np.linalg.norm(J[0]) / np.linalg.norm(direction)
        updates, _, _ = run_steps(pcd(2, tau=tau, eps=0.0), [J])
        np.testing.assert_allclose(updates[0], expected, rtol=1e-4, atol=1e-5 * np.abs(J[0]).max())


@pytest.mark.parametrize("tau", [0.0, 0.02, 0.3])
def test_every_secondary_gets_its_share_of_progress(rng, tau):
    conflicts = 0
    for _ in range(10):
        J = random_jacobian(rng, 4, 6)
        G = J @ J.T
        conflicts += np.any(G[0, 1:] < 0)
        weights = unit_weights(G, tau)
        update = weights @ J
        np.testing.assert_allclose(np.linalg.norm(update), np.linalg.norm(J[0]), rtol=1e-4)
        # normalised: ĝ_jᵀ d̃ ≥ τ with d̃ = d |d̃| / |g_1| and d̃ = ĝ_1 + Σ μ_j ĝ_j
        units = J / np.linalg.norm(J, axis=1, keepdims=True)
        solution = pcd_weights(
            jnp.asarray(G, jnp.float32), jnp.asarray(1 / np.sqrt(np.diag(G))), tau
        )
        mu = np.asarray(solution.multipliers, np.float64)
        direction = units[0] + mu @ units[1:]
        slack = units[1:] @ direction - tau
        assert np.all(slack >= -1e-4) and np.all(mu >= 0)
        np.testing.assert_allclose(mu * slack, 0.0, atol=1e-4)  # complementary slackness
        expected = direction * np.linalg.norm(J[0]) / np.linalg.norm(direction)
        np.testing.assert_allclose(update, expected, rtol=1e-3, atol=1e-5 * np.abs(update).max())
    assert conflicts >= 5


def test_degenerate_secondaries_are_exact(rng):
    # proportional, opposite and positively dependent secondaries, with more secondaries than
    # dimensions: singular working sets, which the solve must skip
    checked = infeasible = 0
    for case in range(60):
        J = random_jacobian(rng, 5, 3 if case % 3 == 0 else 6)
        J[2] = rng.uniform(-2.0, 2.0) * J[1] if case % 2 else J[2]
        J[4] = rng.uniform(0.1, 2.0) * J[1] + rng.uniform(0.1, 2.0) * J[3]
        tau = [0.0, 0.02, 0.3][(case // 3) % 3]
        G = J @ J.T
        w = reference_qp(G / np.outer(np.sqrt(np.diag(G)), np.sqrt(np.diag(G))), tau)
        weights = unit_weights(G, tau)
        if w is None:  # incompatible: PCD follows the primary
            infeasible += 1
            np.testing.assert_allclose(weights, np.eye(5)[0], atol=1e-6)
            continue
        direction = (w / np.sqrt(np.diag(G))) @ J
        if np.linalg.norm(direction) < 1e-6 * np.linalg.norm(J[0]) / np.sqrt(G[0, 0]):
            continue  # d̃ = 0 (see test_cancelling_direction_gives_a_zero_update)
        checked += 1
        expected = direction * np.linalg.norm(J[0]) / np.linalg.norm(direction)
        np.testing.assert_allclose(weights @ J, expected, rtol=1e-3, atol=1e-4 * np.abs(J[0]).max())
    assert checked >= 30 and infeasible >= 3


def test_feasible_primary_is_followed():
    # Cor. 4.3: when g_1 already gives every secondary its share, d = g_1
    J = np.array([[1.0, 0.5, 0.0], [0.8, 0.0, 0.6], [0.3, 1.0, -0.2]])
    np.testing.assert_allclose(unit_weights(J @ J.T, 0.02), [1.0, 0.0, 0.0], atol=1e-6)


def test_incompatible_constraints_are_dropped(rng):
    g1, g2 = rng.normal(size=6), rng.normal(size=6)
    J = np.stack([g1, g2, -2.0 * g2])  # opposite secondaries: no d gives both progress τ > 0
    G = J @ J.T
    _, weights, state = run_steps(pcd(3, tau=0.1), [J])
    assert not bool(state.memory.feasible) and bool(state.solver_converged)
    np.testing.assert_allclose(weights[0], [1.0, 0.0, 0.0], atol=1e-6)
    # with τ = 0 they are compatible: d is g_1 projected onto the orthogonal complement of g_2
    update = unit_weights(G, 0.0) @ J
    projected = g1 - (g1 @ g2) / (g2 @ g2) * g2
    expected = projected * np.linalg.norm(g1) / np.linalg.norm(projected)
    np.testing.assert_allclose(update, expected, rtol=1e-4, atol=1e-5)


def test_cancelling_direction_gives_a_zero_update():
    # τ = 0: the feasible cone {d_1 ≤ -|d_2|} is the polar of g_1's side, so d̃ = 0 exactly
    J = np.array([[1.0, 0.0], [-1.0, 1.0], [-2.0, -2.0]])
    updates, weights, _ = run_steps(pcd(3, tau=0.0), [J])
    np.testing.assert_array_equal(weights[0], 0.0)
    np.testing.assert_array_equal(updates[0], 0.0)


def test_zero_primary_halts_but_the_average_moves(rng):
    J = random_jacobian(rng, 3, 5)
    J[0] = 0.0
    updates, weights, state = run_steps(pcd(3), [J])
    np.testing.assert_array_equal(updates[0], 0.0)
    np.testing.assert_array_equal(weights[0], 0.0)
    assert int(state.memory.count) == 1
    np.testing.assert_allclose(state.memory.sq_norm_ema, 0.001 * np.sum(J**2, axis=1), rtol=1e-5)


def test_scale_invariances(rng):
    jacobians = [random_jacobian(rng, 3, 6) for _ in range(4)]
    tx = pcd(3, tau=0.2, eps=0.0)
    updates, weights, _ = run_steps(tx, jacobians)
    # a secondary task rescaled at every step: the update does not change
    rescaled = [J * np.array([[1.0], [1e-3], [1.0]]) for J in jacobians]
    np.testing.assert_allclose(run_steps(tx, rescaled)[0], updates, rtol=1e-4, atol=1e-6)
    # all tasks rescaled together: the weights do not change, the update scales
    for factor in (1e-2, 50.0):
        scaled_updates, scaled_weights, _ = run_steps(tx, [factor * J for J in jacobians])
        np.testing.assert_allclose(scaled_weights, weights, rtol=1e-4)
        np.testing.assert_allclose(scaled_updates, factor * updates, rtol=1e-4, atol=1e-6)


def test_secondaries_permute_the_primary_stays(rng):
    J = random_jacobian(rng, 4, 7)
    perm = np.array([0, 3, 1, 2])
    tx = pcd(4, tau=0.1)
    update, weights, _ = run_steps(tx, [J])
    update_p, weights_p, _ = run_steps(tx, [J[perm]])
    np.testing.assert_allclose(weights_p[0], weights[0][perm], rtol=1e-4)
    np.testing.assert_allclose(update_p, update, rtol=1e-4, atol=1e-6)
    # but the primary matters: swapping it changes the update
    _, _, state = run_steps(tx, [J[[1, 0, 2, 3]]])
    assert not np.allclose(np.asarray(state.task_weights)[[1, 0, 2, 3]], weights[0])


def test_tau_can_be_injected(rng):
    J = random_jacobian(rng, 3, 6)
    tx = optax.inject_hyperparams(pcd, static_args=("num_tasks",))(num_tasks=3, tau=0.0)
    update = jax.jit(tx.update)
    _, state = update(as_task_grads(J), tx.init(None))
    state.hyperparams["tau"] = jnp.asarray(0.3, jnp.float32)
    _, state = update(as_task_grads(J), state)
    assert update._cache_size() == 1
    # the moving average does not depend on τ: two steps at τ = 0.3 give the same weights
    expected = run_steps(pcd(3, tau=0.3), [J, J])[1][-1]
    np.testing.assert_allclose(asj.task_weights(state), expected, rtol=1e-4)


def test_jit_compiles_once_and_nan_keeps_the_average(rng):
    assert_compiles_once_and_flags_nan(pcd(3), 3, rng)
    assert_compiles_once_and_survives_nan(pcd(3), 3, rng)


def test_rejects_bad_arguments():
    for kwargs, message in [
        ({"tau": -0.1}, "tau must be >= 0"),
        ({"tau": 1.5}, "tau must be <= 1"),
        ({"beta": 1.0}, "beta must be < 1"),
        ({"beta": -0.5}, "beta must be >= 0"),
        ({"eps": -1e-8}, "eps must be >= 0"),
        ({"rtol": 0.0}, "rtol must be > 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            pcd(2, **kwargs)
    with pytest.raises(ValueError, match="at most 16 tasks"):
        pcd(17)


def test_many_tasks_inside_a_training_loop_finish():
    # Vmapped over its 2^(K-1) working sets, K = 14 deadlocked XLA:CPU inside lax.scan (2 cores,
    # jaxlib 0.10): the bench's Yeast-14 hung. A subprocess, so a hang fails instead of blocking.
    program = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, autoscale_jax as asj
        K = 14
        tx = asj.methods.pcd(K)
        params = {"w": jnp.zeros(30)}
        grads = {"w": jax.random.normal(jax.random.PRNGKey(0), (K, 30))}
        def body(state, i):
            updates, state = tx.update(grads, state, params, task_losses=jnp.ones(K) + i)
            return state, updates["w"]
        _, out = jax.jit(lambda s: jax.lax.scan(body, s, jnp.arange(3.0)))(tx.init(params))
        assert bool(jnp.all(jnp.isfinite(out))), out
        """
    )
    done = subprocess.run([sys.executable, "-c", program], timeout=240, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
