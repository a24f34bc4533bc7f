"""The family bases: what every Gramian method gets from ``gramian_method`` (``heads``,
``metric_mask``, ``update_every``) and the loss base's finite guard."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from method_checks import extra_inputs

import autoscale_jax as asj
from autoscale_jax.methods import _bases

GRAMIAN = [
    name
    for name in asj.methods.available()
    if asj.methods.info(name).family in ("gramian", "surgery")
]


def trunk_and_heads(rng, num_tasks=3):
    """A shared trunk leaf and one head leaf per task (nonzero for its own task only)."""
    trunk = rng.normal(size=(num_tasks, 5)) * 10.0 ** rng.uniform(-1, 1, (num_tasks, 1))
    heads = np.zeros((num_tasks, num_tasks, 2))
    for k in range(num_tasks):
        heads[k, k] = rng.normal(size=2)
    grads = {"trunk": jnp.asarray(trunk, jnp.float32)}
    return grads | {f"head{k}": jnp.asarray(heads[:, k], jnp.float32) for k in range(num_tasks)}


@pytest.mark.parametrize("name", GRAMIAN)
def test_plain_heads_train_each_head_on_its_own_gradient(rng, name):
    grads = trunk_and_heads(rng)
    losses = jnp.asarray(rng.uniform(0.5, 2.0, 3), jnp.float32)
    key = jax.random.PRNGKey(3)
    plain = asj.methods.get(name, num_tasks=3, heads="plain")
    update, state = plain.update(
        grads, plain.init(None), task_losses=losses, key=key, **extra_inputs(name, grads)
    )
    # Heads: Σ_k g_k = each head's own task gradient, unweighted.
    for k in range(3):
        np.testing.assert_allclose(update[f"head{k}"], grads[f"head{k}"][k], rtol=1e-6)
    # Trunk: the same method measured on the trunk alone ("shared" found it automatically).
    trunk_only = {name: name == "trunk" for name in grads}
    weighted = asj.methods.get(name, num_tasks=3, metric_mask=trunk_only)
    reference, ref_state = weighted.update(
        grads, weighted.init(None), task_losses=losses, key=key, **extra_inputs(name, grads)
    )
    np.testing.assert_allclose(update["trunk"], reference["trunk"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(asj.task_weights(state), asj.task_weights(ref_state), rtol=1e-5)
    # The default weights the heads too: it differs unless every weight is 1.
    w = np.asarray(asj.task_weights(state))
    if not np.allclose(w, 1.0, rtol=1e-3):
        default, _ = weighted.update(
            grads, weighted.init(None), task_losses=losses, key=key, **extra_inputs(name, grads)
        )
        assert not all(
            np.allclose(default[f"head{k}"], update[f"head{k}"], rtol=1e-3) for k in range(3)
        )


def test_plain_heads_and_bad_heads_are_checked():
    with pytest.raises(ValueError, match="Unknown heads 'own'"):
        asj.methods.mgda(2, heads="own")
    with pytest.raises(ValueError, match="update_every must be a positive Python int"):
        asj.methods.nash_mtl(2, update_every=0)


def test_gramian_rule_proposal_is_applied_only_when_finite():
    calls = []

    def rule(G, losses, key, memory):
        calls.append(1)
        return _bases.Proposal(jnp.array([1.0, jnp.nan]) * G[0, 0], memory + 1.0, 7, True)

    tx = _bases.gramian_method(2, "test", rule, init_memory=jnp.zeros(()))
    grads = {"w": jnp.array([[1.0, 0.0], [0.0, 1.0]])}
    update, state = tx.update(grads, tx.init(None))
    # The NaN proposal is refused: previous weights (ones) applied and kept, memory kept.
    np.testing.assert_allclose(update["w"], [1.0, 1.0])
    np.testing.assert_array_equal(state.task_weights, [1.0, 1.0])
    assert float(state.memory) == 0.0 and not bool(state.solver_converged)
    assert int(state.step) == 1 and int(state.solver_iterations) == 7


def test_update_every_reuses_weights_and_offers_a_fast_path():
    def rule(G, losses, key, memory):
        return _bases.Proposal(jnp.diagonal(G), memory)

    tx = _bases.gramian_method(2, "test", rule, update_every=3)
    state = tx.init(None)
    seen = []
    for scale in (1.0, 2.0, 3.0, 4.0):
        grads = {"w": scale * jnp.eye(2)}
        assert bool(tx.fast_path.needs_task_gradients(state)) == (len(seen) % 3 == 0)
        _, state = tx.update(grads, state)
        seen.append(np.asarray(state.task_weights))
    # Solved at steps 0 and 3 only.
    np.testing.assert_allclose(seen, [[1, 1], [1, 1], [1, 1], [16, 16]])
    # A presummed gradient is accepted between solves and poisoned at a solve step.
    between, _ = tx.update(
        {"w": jnp.ones(2)}, tx.init(None)._replace(step=jnp.int32(1)), presummed=True
    )
    at_solve, _ = tx.update({"w": jnp.ones(2)}, tx.init(None), presummed=True)
    np.testing.assert_array_equal(between["w"], [1.0, 1.0])
    assert np.all(np.isnan(at_solve["w"]))


def absent_task_inputs(rng, num_tasks, placeholder):
    """Gradients and losses where task 1 is absent and holds ``placeholder`` (0 or NaN)."""
    J = rng.normal(size=(num_tasks, 6)) * 10.0 ** rng.uniform(-1, 1, (num_tasks, 1))
    J[1] = placeholder
    losses = rng.uniform(0.5, 2.0, num_tasks)
    losses[1] = placeholder
    grads = {"w": jnp.asarray(J, jnp.float32), "b": jnp.asarray(J[:, :2] * 0.5, jnp.float32)}
    return grads, jnp.asarray(losses, jnp.float32)


def build_any(name, num_tasks):
    """Every registry method for ``num_tasks`` tasks (wrappers around MGDA)."""
    kwargs = {}
    if name == "autoscale":
        kwargs = {"estimation_steps": 3}
    elif asj.methods.info(name).constructor == "method":
        kwargs = {"method": asj.methods.mgda(num_tasks)}
        if name == "freeze":
            kwargs["estimation_steps"] = 3
    return asj.methods.build_for(name, num_tasks, **kwargs)


@pytest.mark.parametrize("name", asj.methods.available())
def test_an_absent_task_gets_weight_0_and_never_blocks_the_others(name):
    """Partial labels, the rule every family shares: the absent task's gradient and loss
    (here NaN placeholders) never reach the update, the present tasks still train, and where
    the weights are the applied ones the absent task's is 0."""
    num_tasks, present = 4, jnp.array([True, False, True, True])
    tx = build_any(name, num_tasks)
    outputs = []
    for placeholder in (0.0, np.nan):
        grads, losses = absent_task_inputs(np.random.default_rng(0), num_tasks, placeholder)
        extra = extra_inputs(name, jax.tree.map(lambda g: jnp.nan_to_num(g), grads))
        out, state = tx.update(
            grads,
            tx.init(jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)),
            task_losses=losses,
            task_mask=present,
            key=jax.random.PRNGKey(0),
            **extra,
        )
        outputs.append(out)
    clean, dirty = outputs
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), clean, dirty)
    assert any(np.any(np.asarray(leaf) != 0) for leaf in jax.tree.leaves(clean)), name
    info = asj.methods.info(name)
    # Elementwise methods weight the stand-ins (see stacked_gradient_method); the
    # scalarizations' task_weights are the configured or estimated ones, not the applied.
    if info.weight_convention != "none" and info.family not in ("elementwise", "scalarization"):
        assert float(asj.task_weights(state)[1]) == 0.0, name
