"""Zero Gramians, AutoScale's estimator results and small numeric inputs: each gives a clear
error or a documented result the state reports, never a silent equal or one-hot weighting.

One table: each case raises (type and message checked) or returns a dict of values compared
exactly (or to float32 round-off) with the expected ones.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem
from table_checks import equals, raises

import autoscale_jax as asj
from autoscale_jax import weighting

NAN = float("nan")
# Two tasks, each with its own head leaf and no shared leaf: the "shared" Gramian is zero.
HEADS_ONLY = {"h0": jnp.array([[1.0, 2.0], [0.0, 0.0]]), "h1": jnp.array([[0.0, 0.0], [3.0, 1.0]])}
TWO = {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}


def jit_updates(tx, grads, losses_seq, state=None):
    state = tx.init(None) if state is None else state
    fn = jax.jit(lambda s, losses: tx.update(grads, s, task_losses=losses))
    for losses in losses_seq:
        out, state = fn(state, jnp.asarray(losses, jnp.float32))
    return out, state, fn


def autoscale_no_shared_leaf():
    tx = asj.autoscale(2, 3, window=1, metric_mask="shared")
    _, state, _ = jit_updates(tx, HEADS_ONLY, [[1.0, 2.0]] * 3)
    stats = state.window_statistics
    return {
        "degenerate": int(stats.degenerate),
        "weights_nan": np.isnan(np.asarray(state.task_weights)).tolist(),
        "never_observed": np.asarray(state.never_observed).tolist(),
    }


def autoscale_zero_then_usable():
    """A zero Gramian at step 0 (e.g. zero-initialised heads) is counted, not trained on."""
    tx = asj.autoscale(2, 3, window=3)
    state = tx.init(None)
    zero = {"w": jnp.zeros((2, 2))}
    _, state = tx.update(zero, state, task_losses=jnp.ones(2))
    warm = np.asarray(state.task_weights)
    for _ in range(2):
        _, state = tx.update(TWO, state, task_losses=jnp.ones(2))
    return {
        "weights_after_zero_step": warm,
        "degenerate": int(state.window_statistics.degenerate),
        "final": np.asarray(state.task_weights),
    }


def gramian_method_no_shared_leaf(name):
    tx = asj.methods.get(name, num_tasks=2, metric_mask="shared")
    out, state = tx.update(HEADS_ONLY, tx.init(None), task_losses=jnp.ones(2))
    return {
        "gramian_zero": bool(state.gramian_zero),
        "converged": bool(state.solver_converged),
        "weights": np.asarray(state.task_weights),
        "h1": np.asarray(out["h1"]),  # task 1's head trains (MGDA's one-hot gave it 0)
    }


def mgda_zero_gramian_keeps_last_weights():
    tx = asj.methods.mgda(2)
    _, state = tx.update(TWO, tx.init(None))
    good = np.asarray(state.task_weights)
    _, state = tx.update({"w": jnp.zeros((2, 2))}, state)
    return {"kept": np.asarray(state.task_weights) - good, "zero": bool(state.gramian_zero)}


def split_problem():
    """A trunk and one head leaf per task: the heads share no parameter."""
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(keys[0], (16, 3))
    y = jax.random.normal(keys[1], (16, 2))
    params = {
        "trunk": jax.random.normal(keys[2], (3, 4)),
        "h0": jax.random.normal(keys[3], (4,)),
        "h1": jnp.ones(4),
    }
    representation = lambda p, x, y: jnp.tanh(x @ p["trunk"])  # noqa: E731

    def heads(p, z, x, y):
        return jnp.stack(
            [jnp.mean((z @ p["h0"] - y[:, 0]) ** 2), jnp.mean((z @ p["h1"] - y[:, 1]) ** 2)]
        )

    return asj.SplitLoss(representation, heads), params, x, y


def last_layer_heads_share_nothing(name):
    loss_fn, params, x, y = split_problem()
    kwargs = {"estimation_steps": 2, "window": 1} if name == "autoscale" else {}
    tx = asj.methods.get(name, num_tasks=2, **kwargs)
    train = asj.multitask_train_step(loss_fn, tx, optax.sgd(0.01), gradient_mode="last_layer")
    state = train.init(params)
    step = jax.jit(train.step)
    for _ in range(2):
        params, state, _ = step(params, state, x, y)
    if name == "autoscale":
        stats = state.weighting.window_statistics
        return {
            "degenerate": int(stats.degenerate),
            "nan": bool(np.all(np.isnan(state.weighting.task_weights))),
        }
    return {
        "gramian_zero": bool(state.weighting.gramian_zero),
        "weights": np.asarray(state.weighting.task_weights),
    }


def loss_guide(losses_seq, jit=True):
    tx = asj.autoscale(2, 2, window=2, guide="loss")
    if not jit:
        return tx.update(TWO, tx.init(None), task_losses=jnp.asarray(losses_seq[0]))
    _, state, _ = jit_updates(tx, TWO, losses_seq)
    return {
        "degenerate": int(state.window_statistics.degenerate),
        "weights": np.asarray(state.task_weights),
    }


def sampled(num_sampled):
    loss_fn, params, x, y = regression_problem()
    train = asj.multitask_train_step(
        loss_fn,
        asj.methods.upgrad(3),
        optax.sgd(0.01),
        gradient_mode="sampled",
        num_sampled_tasks=num_sampled,
    )
    _, state, _ = jax.jit(train.step)(params, train.init(params), x, y, key=jax.random.key(0))
    return {"finite": bool(np.all(np.isfinite(asj.task_weights(state.weighting))))}


def restored(saved_kwargs, kwargs, jit=False):
    """A state made by autoscale(**saved_kwargs), two steps in, updated by autoscale(**kwargs)."""
    saved = asj.autoscale(**saved_kwargs)
    _, state, _ = jit_updates(saved, TWO, [[1.0, 2.0]] * 2)
    tx = asj.autoscale(**kwargs)
    if not jit:
        return tx.update(TWO, state, task_losses=jnp.ones(2))
    _, state, _ = jit_updates(tx, TWO, [[1.0, 2.0]], state)
    return {
        "mismatch": bool(state.config_mismatch),
        "nan": np.isnan(np.asarray(state.task_weights)).tolist(),
    }


def restored_fast_path(saved_kwargs, kwargs):
    saved = asj.autoscale(**saved_kwargs)
    _, state, _ = jit_updates(saved, TWO, [[1.0, 2.0]] * 3)
    return asj.autoscale(**kwargs).fast_path.weights(state, jnp.ones(2), None)


def old_layout_state():
    tx = asj.autoscale(2, 3)
    state = tx.init(None)
    floats, ints = state.phase_one_records
    return tx.update(
        TWO, state._replace(phase_one_records=(floats, ints[:-2])), task_losses=jnp.ones(2)
    )


def fingerprints():
    make = lambda **kw: asj.autoscale(2, 5, **kw).init(None).config_fingerprint  # noqa: E731
    return {"same": int(make()) == int(make()), "differs": int(make()) != int(make(window=3))}


def phase_switch_with_check():
    tx = asj.autoscale(2, 2, window=1)
    _, state, fn = jit_updates(tx, TWO, [[1.0, 2.0]] * 4)
    return {"compiled": fn._cache_size(), "mismatch": bool(state.config_mismatch)}


P = functools.partial
BASE = {"num_tasks": 2, "estimation_steps": 4}
ZERO_G = {"gramian_zero": True, "converged": False, "weights": [1.0, 1.0], "h1": [3.0, 1.0]}

CASES = [
    # --- a zero Gramian is not taken at face value (was: equal or one-hot weights, silently) ---
    pytest.param(
        autoscale_no_shared_leaf,
        equals({"degenerate": 3, "weights_nan": [True, True], "never_observed": [True, True]}),
        id="autoscale-shared-mask-no-shared-leaf-nan-weights",
    ),
    pytest.param(
        autoscale_zero_then_usable,
        equals({"weights_after_zero_step": [1.0, 1.0], "degenerate": 1, "final": [4 / 3, 2 / 3]}),
        id="autoscale-zero-gramian-sample-counted-not-used",
    ),
    pytest.param(
        P(gramian_method_no_shared_leaf, "mgda"),
        equals(ZERO_G),
        id="mgda-shared-mask-no-shared-leaf-reported",
    ),
    pytest.param(
        P(gramian_method_no_shared_leaf, "upgrad"),
        equals(ZERO_G),
        id="upgrad-shared-mask-no-shared-leaf-reported",
    ),
    pytest.param(
        P(gramian_method_no_shared_leaf, "cagrad"),
        equals(ZERO_G),
        id="cagrad-shared-mask-no-shared-leaf-reported",
    ),
    pytest.param(
        mgda_zero_gramian_keeps_last_weights,
        equals({"kept": [0.0, 0.0], "zero": True}),
        id="mgda-zero-gramian-keeps-last-weights",
    ),
    pytest.param(
        P(last_layer_heads_share_nothing, "mgda"),
        equals({"gramian_zero": True, "weights": [1.0, 1.0]}),
        id="mgda-last-layer-heads-share-nothing",
    ),
    pytest.param(
        P(last_layer_heads_share_nothing, "autoscale"),
        equals({"degenerate": 2, "nan": True}),
        id="autoscale-last-layer-heads-share-nothing",
    ),
    # --- guide="loss" needs non-negative losses (was: |L̄| taken silently) ---
    pytest.param(
        P(loss_guide, [[-1.0, 2.0]], jit=False),
        raises(ValueError, "needs non-negative task_losses"),
        id="loss-guide-negative-loss-concrete",
    ),
    pytest.param(
        P(loss_guide, [[-1.0, 2.0], [1.0, 3.0]]),
        equals({"degenerate": 1, "weights": [1.5, 0.5]}),
        id="loss-guide-negative-loss-jit-counted",
    ),
    pytest.param(
        P(loss_guide, [[0.0, 0.0], [0.0, 0.0]]),
        equals({"degenerate": 2, "weights": [NAN, NAN]}),
        id="loss-guide-all-zero-losses-no-estimate",
    ),
    pytest.param(
        lambda: weighting.loss_balance_weights(jnp.array([-1.0, 2.0])),
        raises(ValueError, "needs non-negative losses"),
        id="loss-balance-weights-negative-concrete",
    ),
    pytest.param(
        lambda: {"w": jax.jit(weighting.loss_balance_weights)(jnp.array([-1.0, 2.0]))},
        equals({"w": [NAN, NAN]}),
        id="loss-balance-weights-negative-jit-nan",
    ),
    pytest.param(
        lambda: {"w": weighting.loss_balance_weights(jnp.array([1.0, 3.0, 0.0]))},
        equals({"w": [1.5, 0.5, 1.0]}),
        id="loss-balance-weights-zero-loss-neutral",
    ),
    # --- NumPy integers are ints (was: np.int64(2) refused) ---
    pytest.param(P(sampled, np.int64(2)), equals({"finite": True}), id="sampled-numpy-int64"),
    pytest.param(
        P(sampled, np.bool_(True)),
        raises(ValueError, "num_sampled_tasks, a Python or NumPy int >= 2"),
        id="sampled-numpy-bool-refused",
    ),
    pytest.param(
        P(sampled, 2.0),
        raises(ValueError, "num_sampled_tasks, a Python or NumPy int >= 2"),
        id="sampled-float-refused",
    ),
    # --- a checkpoint restored into another configuration (was: continued silently) ---
    pytest.param(
        P(restored, BASE, BASE | {"estimation_steps": 6}),
        raises(ValueError, "another configuration"),
        id="state-other-estimation-steps-concrete",
    ),
    pytest.param(
        P(restored, BASE, BASE | {"guide": "cond"}, jit=True),
        equals({"mismatch": True, "nan": [True, True]}),
        id="state-other-guide-jit-flagged",
    ),
    pytest.param(
        P(restored, BASE, BASE | {"window": 2}, jit=True),
        equals({"mismatch": True, "nan": [True, True]}),
        id="state-other-window-jit-flagged",
    ),
    pytest.param(
        P(
            restored_fast_path,
            BASE | {"estimation_steps": 2},
            BASE | {"estimation_steps": 2, "aggregate": "last"},
        ),
        raises(ValueError, "another configuration"),
        id="state-other-aggregate-fast-path",
    ),
    pytest.param(
        P(restored, BASE, BASE | {"num_tasks": 3}),
        raises(ValueError, "num_tasks=3"),
        id="state-other-num-tasks",
    ),
    pytest.param(
        old_layout_state,
        raises(ValueError, "another version of autoscale_jax"),
        id="state-of-an-older-layout",
    ),
    pytest.param(
        P(restored, BASE, BASE, jit=True),
        equals({"mismatch": False, "nan": [False, False]}),
        id="state-same-configuration-continues",
    ),
    pytest.param(
        fingerprints, equals({"same": True, "differs": True}), id="fingerprint-deterministic"
    ),
    pytest.param(
        phase_switch_with_check,
        equals({"compiled": 1, "mismatch": False}),
        id="phase-switch-one-compilation",
    ),
]


@pytest.mark.parametrize("run, check", CASES)
def test_bad_gramian(run, check):
    check(run)
