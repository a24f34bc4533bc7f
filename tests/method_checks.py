"""Checks shared by the method test modules.

A helper module, not a test module: method tests import their shared checks from here and
never from each other (the solvers' float64 references are in solver_references.py).

Loss-space methods: the fast-path train step equals the optax chain, presummed equals stacked,
the weights ignore the gradients, permuting tasks permutes the weights. Gradient-space
methods: one compilation over steps and a NaN gradient that reaches the update but not the
state. Solver-based methods: one jitted update on a fixed Jacobian, task permutation, a
flagged NaN step. Registry-wide: every method built alike, its extra inputs. Plus float64
numpy optimizers used as independent references. The checks two sibling methods share are in
sibling_checks.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import as_task_grads, random_jacobian
from problems import float64

import autoscale_jax as asj


def gramian32(J: np.ndarray) -> jax.Array:
    """The float32 Gramian of ``J``, computed in float64."""
    return jnp.asarray(np.asarray(J, np.float64) @ np.asarray(J, np.float64).T, jnp.float32)


def make_problem(num_tasks=3, seed=0, num_samples=32, dim=5, hidden=8):
    """A shared trunk with one head per task; positive MSE losses of very different scales."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    x = jax.random.normal(keys[0], (num_samples, dim))
    scales = 10.0 ** jnp.linspace(-1.0, 1.0, num_tasks)
    y = jnp.tanh(x @ jax.random.normal(keys[1], (dim, num_tasks))) * scales
    params = {
        "trunk": jax.random.normal(keys[2], (dim, hidden)) / jnp.sqrt(dim),
        "bias": jnp.zeros((hidden,)),
        "heads": jax.random.normal(keys[3], (hidden, num_tasks)) / jnp.sqrt(hidden),
    }

    def loss_fn(p, x, y):
        pred = jnp.tanh(x @ p["trunk"] + p["bias"]) @ p["heads"]
        return jnp.mean((pred - y) ** 2, axis=0)

    return loss_fn, params, x, y


def assert_fast_path_matches_chain(method_factory, num_steps=5, with_key=False, lr=0.05):
    """``multitask_train_step`` (one VJP when the fast path allows) == ``optax.chain``.

    Both run in float64: the fast path sums ``Σ_k w_k g_k`` inside one VJP, the chain after K
    VJPs, and in float32 that order alone moved results by up to ~3e-5 on another CPU.
    """
    with float64():
        loss_fn, params, x, y = make_problem()
        keys = jax.random.split(jax.random.PRNGKey(1), num_steps)
        keys = keys if with_key else [None] * num_steps
        train = asj.multitask_train_step(loss_fn, method_factory(), optax.sgd(lr))
        step = jax.jit(train.step)
        state = train.init(params)
        chain = optax.chain(method_factory(), optax.sgd(lr))
        chain_state = chain.init(params)
        chain_params = params
        grad_fn = asj.task_value_and_grad(loss_fn)

        @jax.jit
        def chain_step(chain_params, chain_state, key):
            chain_losses, task_grads = grad_fn(chain_params, x, y)
            updates, chain_state = chain.update(
                task_grads, chain_state, chain_params, task_losses=chain_losses, key=key
            )
            return optax.apply_updates(chain_params, updates), chain_state, chain_losses

        for key in keys:
            params, state, losses = step(params, state, x, y, key=key)
            chain_params, chain_state, chain_losses = chain_step(chain_params, chain_state, key)
            assert losses.dtype == jnp.float64
            # A method that keeps float32 weights agrees to a few float32 ulps, else far closer.
            rtol = max(1e-9, 16 * float(np.finfo(asj.task_weights(state).dtype).eps))
            np.testing.assert_allclose(losses, chain_losses, rtol=rtol)
            np.testing.assert_allclose(
                asj.task_weights(state), asj.task_weights(chain_state), rtol=rtol, atol=1e-12
            )
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12),
            params,
            chain_params,
        )
        assert step._cache_size() == 1
        return asj.task_weights(state)


def loss_sequence(rng, num_tasks, num_steps, low=0.1, high=5.0):
    return [rng.uniform(low, high, num_tasks).astype(np.float32) for _ in range(num_steps)]


def gradient_sequence(rng, num_tasks, num_steps, dim=6):
    return [as_task_grads(random_jacobian(rng, num_tasks, dim)) for _ in range(num_steps)]


def run_updates(method, grads_seq, losses_seq, keys=None, jit=True):
    """Runs ``update`` over a sequence; returns the combined updates, weights and final state."""
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:], jnp.float32), grads_seq[0])
    state = method.init(params)
    update = jax.jit(method.update) if jit else method.update
    keys = keys if keys is not None else [None] * len(grads_seq)
    combined, weights = [], []
    for grads, losses, key in zip(grads_seq, losses_seq, keys, strict=True):
        extra = {} if key is None else {"key": key}
        out, state = update(grads, state, params, task_losses=losses, **extra)
        combined.append(out)
        weights.append(np.asarray(asj.task_weights(state)))
    if jit:
        assert update._cache_size() == 1, "the update recompiled for new values"
    return combined, np.array(weights), state


def assert_weights_ignore_gradients(method_factory, num_tasks=3, num_steps=5, keys=None):
    """Loss-space methods: the same losses with other gradients give the same weights."""
    rng = np.random.default_rng(3)
    losses = loss_sequence(rng, num_tasks, num_steps)
    _, weights_a, _ = run_updates(
        method_factory(), gradient_sequence(rng, num_tasks, num_steps), losses, keys
    )
    other = [
        jax.tree.map(lambda g: 100.0 * g[::-1], grads)
        for grads in gradient_sequence(rng, num_tasks, num_steps)
    ]
    _, weights_b, _ = run_updates(method_factory(), other, losses, keys)
    np.testing.assert_array_equal(weights_a, weights_b)
    return weights_a


def assert_permutation_equivariant(method_factory, num_tasks=4, num_steps=5, losses_seq=None):
    """Permuting the tasks permutes the weights and leaves the combined update unchanged."""
    rng = np.random.default_rng(4)
    grads_seq = gradient_sequence(rng, num_tasks, num_steps)
    losses_seq = losses_seq or loss_sequence(rng, num_tasks, num_steps)
    perm = np.roll(np.arange(num_tasks), 1)
    combined, weights, _ = run_updates(method_factory(), grads_seq, losses_seq)
    permuted_grads = [jax.tree.map(lambda g: g[perm], grads) for grads in grads_seq]
    permuted_losses = [losses[perm] for losses in losses_seq]
    combined_p, weights_p, _ = run_updates(method_factory(), permuted_grads, permuted_losses)
    np.testing.assert_allclose(weights_p, weights[:, perm], rtol=1e-5, atol=1e-7)
    for a, b in zip(combined, combined_p, strict=True):
        jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5), a, b)


def assert_presummed_matches_stacked(method_factory, num_tasks=3, num_steps=4, keys=None):
    """``update(Σ w g, presummed=True)`` with the fast-path weights == the stacked update."""
    rng = np.random.default_rng(5)
    grads_seq = gradient_sequence(rng, num_tasks, num_steps)
    losses_seq = loss_sequence(rng, num_tasks, num_steps)
    keys = keys if keys is not None else [None] * num_steps
    stacked = method_factory()
    presummed = method_factory()
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads_seq[0])
    state_s, state_p = stacked.init(params), presummed.init(params)
    for grads, losses, key in zip(grads_seq, losses_seq, keys, strict=True):
        out_s, state_s = stacked.update(grads, state_s, params, task_losses=losses, key=key)
        w = presummed.fast_path.weights(state_p, jnp.asarray(losses), key)
        summed = asj.weighted_sum(grads, w)
        out_p, state_p = presummed.update(
            summed, state_p, params, task_losses=losses, key=key, presummed=True
        )
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), out_s, out_p)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), state_s, state_p)
    assert presummed.fast_path.needs_task_gradients(state_p) is False


LOSS_SPACE_CHECKS = ("fast_path", "presummed", "weights_ignore_gradients", "permutation")


def check_loss_space_contract(check, method_factory, *, random=False):
    """Runs one of ``LOSS_SPACE_CHECKS`` on ``method_factory(num_tasks)``.

    ``random``: the method draws its weights from ``key`` (then the fast-path, presummed and
    gradient-independence checks get keys; task permutation does not apply).
    """
    keys = list(jax.random.split(jax.random.PRNGKey(2), 5)) if random else None
    if check == "fast_path":
        weights = assert_fast_path_matches_chain(lambda: method_factory(3), with_key=random)
        assert not np.allclose(weights, weights[0]), "the weights never moved off equal"
    elif check == "presummed":
        assert_presummed_matches_stacked(
            lambda: method_factory(3), keys=keys[:4] if random else None
        )
    elif check == "weights_ignore_gradients":
        assert_weights_ignore_gradients(lambda: method_factory(3), keys=keys)
    elif check == "permutation":
        assert not random, "random weights are not permutation-equivariant"
        assert_permutation_equivariant(lambda: method_factory(4))
    else:
        raise ValueError(f"unknown check {check!r}")


def assert_needs_task_gradients(method_factory):
    """Gradient-norm methods: no fast path, ``presummed=True`` and missing losses rejected."""
    tx = method_factory(2)
    assert tx.fast_path is None
    params = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="presummed"):
        tx.update({"w": jnp.ones(2)}, tx.init(params), params, presummed=True)
    with pytest.raises(ValueError, match="task losses"):
        tx.update({"w": jnp.ones((2, 2))}, tx.init(params), params)


class NumpyAdam:
    """Adam (Kingma & Ba) in float64 with torch-style L2 weight decay, as a reference."""

    def __init__(self, lr, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.weight_decay, self.b1, self.b2, self.eps = lr, weight_decay, b1, b2, eps
        self.m = self.v = 0.0
        self.t = 0

    def step(self, x, grad):
        grad = grad + self.weight_decay * x
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad**2
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class NumpySGD:
    def __init__(self, lr):
        self.lr = lr

    def step(self, x, grad):
        return x - self.lr * grad


def numpy_optimizer(name, lr):
    """A fresh float64 reference optimizer: ``"sgd"`` or ``"adam"``."""
    return NumpySGD(lr) if name == "sgd" else NumpyAdam(lr)


def flat(update: dict) -> np.ndarray:
    return np.concatenate([np.asarray(update["a"]).ravel(), np.asarray(update["b"]).ravel()])


def assert_compiles_once_and_survives_nan(tx, num_tasks: int, rng) -> None:
    """Jitted update: one compilation over several steps; a NaN gradient reaches the update but
    leaves the weights and the method's memory as they were and flags the step as not
    converged (shared by the projection-method test modules)."""
    update = jax.jit(lambda g, s, k: tx.update(g, s, key=k))
    state = tx.init(None)
    for step in range(3):
        J = random_jacobian(rng, num_tasks, 6)
        _, state = update(as_task_grads(J), state, jax.random.key(step))
    assert update._cache_size() == 1
    J = random_jacobian(rng, num_tasks, 6)
    J[1, 2] = np.nan
    out, new_state = update(as_task_grads(J), state, jax.random.key(9))
    assert update._cache_size() == 1
    assert np.isnan(flat(out)).any()
    if isinstance(state, asj.methods.GramianMethodState):
        kept = (new_state.task_weights, new_state.memory), (state.task_weights, state.memory)
        jax.tree.map(np.testing.assert_array_equal, *kept)
        assert not bool(new_state.solver_converged)
    else:
        jax.tree.map(np.testing.assert_array_equal, new_state, state)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_state))


# Solver-based methods (MGDA, CAGrad, Nash-MTL, UPGrad, FairGrad, EDM, ...): one jitted update
# on a fixed Jacobian, task permutation, one compilation and a flagged NaN step.
_JITTED_UPDATES: dict = {}


def run_method(tx, J: np.ndarray, **kwargs) -> tuple[np.ndarray, np.ndarray, object]:
    """One jitted update on the two-leaf pytree of ``J``: (flat update, weights, state).

    The jitted update is cached per transformation, so reusing one ``tx`` across calls (with
    the same shapes) compiles once.
    """
    if tx not in _JITTED_UPDATES:
        _JITTED_UPDATES[tx] = jax.jit(tx.update)
    update, state = _JITTED_UPDATES[tx](as_task_grads(J), tx.init(None), **kwargs)
    return flat(update), np.asarray(asj.task_weights(state), np.float64), state


def assert_permutes_with_tasks(tx, J: np.ndarray, rtol: float = 1e-4) -> np.ndarray:
    """Permuting the tasks permutes the weights and leaves the update unchanged (up to
    ``rtol`` of the largest entry); returns the weights."""
    perm = np.roll(np.arange(len(J)), 1)
    update, weights, _ = run_method(tx, J)
    update_p, weights_p, _ = run_method(tx, J[perm])
    np.testing.assert_allclose(weights_p, weights[perm], rtol=rtol, atol=rtol * weights.max())
    np.testing.assert_allclose(update_p, update, rtol=rtol, atol=rtol * np.abs(update).max())
    return weights


def assert_compiles_once_and_flags_nan(tx, num_tasks: int, rng, **kwargs) -> None:
    """Jitted update compiles once over new values; a NaN gradient reaches the update, keeps
    the previous (finite) weights and flags the solve as not converged."""
    update = jax.jit(lambda g, s: tx.update(g, s, **kwargs))
    state = tx.init(None)
    for _ in range(3):
        _, state = update(as_task_grads(random_jacobian(rng, num_tasks, 6)), state)
        assert bool(state.solver_converged)
    assert update._cache_size() == 1
    J = random_jacobian(rng, num_tasks, 6)
    J[1, 2] = np.nan
    out, new_state = update(as_task_grads(J), state)
    assert update._cache_size() == 1
    assert np.isnan(flat(out)).any()
    np.testing.assert_array_equal(new_state.task_weights, state.task_weights)
    assert not bool(new_state.solver_converged)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(new_state))


def reference_uncertainty(losses_seq, optimizer, sign=-1.0):
    """float64: weights exp(sign s) applied, then s ← step(s, sign (exp(sign s) L - 1))."""
    s = np.zeros(len(losses_seq[0]))
    weights = []
    for losses in losses_seq:
        w = np.exp(sign * s)
        weights.append(w)
        s = optimizer.step(s, sign * (w * np.asarray(losses, np.float64) - 1.0))
    return np.array(weights), s


# Registry-wide helpers (the contract tests and the family tests build every method alike).
def build_registered(name: str, num_tasks: int) -> asj.MultiTaskTransformation:
    """Every registered method with default hyper-parameters (wrappers wrap FAMO)."""
    info = asj.methods.info(name)
    if name == "autoscale":
        return asj.methods.get(name, num_tasks=num_tasks, estimation_steps=2, window=1)
    if info.constructor == "method":
        inner = asj.methods.get("famo", num_tasks=num_tasks)
        if name == "freeze":
            return asj.methods.get(name, method=inner, estimation_steps=2)
        return asj.methods.get(name, method=inner)
    if info.constructor == "weights":
        return asj.methods.get(name, weights=jnp.arange(1.0, num_tasks + 1))
    return asj.methods.get(name, num_tasks=num_tasks)


def task_data(rng, num_tasks, dim=6):
    grads = {"w": jnp.asarray(random_jacobian(rng, num_tasks, dim), jnp.float32)}
    return grads, jnp.asarray(rng.uniform(0.5, 2.0, num_tasks), jnp.float32)


def extra_inputs(name: str, grads: dict) -> dict:
    """The documented extra ``update`` inputs a method needs, derived from ``grads``."""
    wanted = asj.methods.info(name).extra_inputs
    extra = {}
    if "second_task_grads" in wanted:
        extra["second_task_grads"] = jax.tree.map(lambda g: 0.5 * g + 0.1, grads)
    if "validation_grads" in wanted:
        extra["validation_grads"] = jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)
    return extra
