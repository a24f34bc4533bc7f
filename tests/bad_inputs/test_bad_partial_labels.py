"""Partial labels: an absent task gets weight 0 and never blocks the present ones; bad masks
and bad counts fail loudly or give a documented result the state or the step reports.

One table: each case runs a small problem and either raises (type and message checked) or
returns a dict of values compared exactly (or to float32 round-off) with the expected ones.
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
from autoscale_jax import modes
from autoscale_jax.methods.mgda import mgda_weights

PRESENT = jnp.array([True, False, True])
NAN = float("nan")


def grads_and_losses(absent_value=0.0):
    """Three task gradients on one leaf; task 1 (absent) holds ``absent_value``."""
    J = np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.5]], np.float32)
    J[1] = absent_value
    losses = jnp.array([0.5, absent_value, 2.0], jnp.float32)
    return {"w": jnp.asarray(J)}, losses


def update(tx, absent_value=0.0, mask=PRESENT, **kwargs):
    grads, losses = grads_and_losses(absent_value)
    return tx.update(
        grads, tx.init(None), task_losses=losses, task_mask=mask, key=jax.random.key(0), **kwargs
    )


def mgda_on_present_tasks():
    """MGDA's weights on tasks 0 and 2 alone (the answer with task 1 excluded)."""
    grads, _ = grads_and_losses()
    J = np.asarray(grads["w"])[[0, 2]]
    return np.asarray(mgda_weights(jnp.asarray(J @ J.T)).solution)


def case_mgda_absent_task():
    out, state = update(asj.methods.mgda(3))
    w = np.asarray(state.task_weights)
    return {"weights": w, "update": np.asarray(out["w"])}


def expected_mgda_absent_task():
    a, b = mgda_on_present_tasks()
    J = np.asarray(grads_and_losses()[0]["w"])
    return {"weights": [a, 0.0, b], "update": a * J[0] + b * J[2]}


def case_absent_placeholder_never_reaches_update(name):
    """The absent task's gradient and loss are NaN placeholders: the update is the one with 0."""
    kwargs = {"estimation_steps": 2} if name == "autoscale" else {}
    tx = asj.methods.get(name, num_tasks=3, **kwargs)
    clean, _ = update(tx, 0.0)
    dirty, _ = update(tx, NAN)
    return {
        "same": np.allclose(clean["w"], dirty["w"], rtol=1e-5),
        "moves": bool(np.any(clean["w"])),
    }


def case_gramian_path(name):
    tx = asj.methods.get(name, num_tasks=3)
    grads, losses = grads_and_losses(NAN)
    J = np.nan_to_num(np.asarray(grads["w"]))
    observed = asj.ObservedGramian(jnp.asarray(J @ J.T).at[1].set(NAN).at[:, 1].set(NAN))
    weights, _state = tx.gramian_path.weights(tx.init(None), observed, losses, None, PRESENT)
    return {"absent_weight": float(weights[1]), "finite": bool(np.all(np.isfinite(weights)))}


def case_all_absent(name):
    tx = asj.methods.get(name, num_tasks=3)
    out, state = update(tx, 1.0, mask=jnp.zeros(3, bool))
    result = {"update": np.asarray(out["w"]), "weights": np.asarray(state.task_weights)}
    if hasattr(state, "gramian_zero"):
        result["gramian_zero"] = bool(state.gramian_zero)
    return result


def case_famo_absent_task():
    """All present, then task 1 absent (placeholder loss 0, which FAMO used to weight 1/ε)."""
    tx = asj.methods.famo(3)
    grads, _ = grads_and_losses(1.0)
    losses = jnp.array([0.5, 1.0, 2.0])
    _, state = tx.update(grads, tx.init(None), task_losses=losses)
    _, state = tx.update(grads, state, task_losses=losses.at[1].set(0.0), task_mask=PRESENT)
    w = np.asarray(state.task_weights)
    return {
        "absent_weight": float(w[1]),
        "present_ratio": float(w[0] / w[2]),  # c z_k / L_k, logits unmoved (δ = 0): L_2 / L_0
        "absent_history": float(state.previous_losses[1]),
    }


def case_famo_absent_at_the_first_step():
    tx = asj.methods.famo(3)
    _, state = update(tx, 0.0)
    return {
        "has_previous": np.asarray(state.has_previous),
        "absent_weight": float(state.task_weights[1]),
    }


def case_geometric_mean_absent_task():
    _, state = update(asj.methods.geometric_mean(3), 0.0)
    w = np.asarray(state.task_weights)
    return {"absent_weight": float(w[1]), "present": w[[0, 2]] / w[0]}  # ∝ 1/L_k


def train_with_one_task_never_labelled(name, num_steps=15, **kwargs):
    """multitask_train_step(task_counts=True) with task 1 never labelled; returns what moved."""
    loss_fn, params, x, y = regression_problem()

    def with_counts(p, x, y):
        losses = loss_fn(p, x, y)
        return jnp.where(PRESENT, losses, 0.0), jnp.where(PRESENT, x.shape[0], 0)

    tx = asj.methods.get(name, num_tasks=3, **kwargs)
    train = asj.multitask_train_step(with_counts, tx, optax.sgd(0.05), task_counts=True)
    step = jax.jit(train.step)
    state, start = train.init(params), params
    first = loss_fn(params, x, y)
    for i in range(num_steps):
        params, state, _ = step(params, state, x, y, key=jax.random.key(i))
    last = np.asarray(loss_fn(params, x, y))
    moved = sum(
        jax.tree.leaves(jax.tree.map(lambda p, q: float(jnp.sum(jnp.abs(p - q))), params, start))
    )
    result = {
        "present_losses_fall": bool(np.all(last[[0, 2]] < np.asarray(first)[[0, 2]])),
        "params_move": moved > 1e-3,
    }
    if name == "autoscale":  # its weights are an estimate: the absent task is reported instead
        result["never_observed"] = np.asarray(state.weighting.never_observed).tolist()
    else:
        result["absent_weight"] = float(asj.task_weights(state.weighting)[1])
    return result


def case_autoscale_never_observed(num_present=2):
    tx = asj.autoscale(3, 4, window=2)
    mask = PRESENT if num_present == 2 else jnp.zeros(3, bool)
    state = tx.init(None)
    grads, losses = grads_and_losses(0.0)
    update_fn = jax.jit(lambda s: tx.update(grads, s, task_losses=losses, task_mask=mask))
    for _ in range(4):
        _out, state = update_fn(state)
    w = np.asarray(state.task_weights)
    stats = state.window_statistics
    return {
        "never_observed": np.asarray(state.never_observed),
        "neutral": bool(np.isclose(w[1], (w[0] + w[2]) / 2, rtol=1e-5))
        if num_present
        else bool(np.all(np.isnan(w))),
        "empty": int(stats.empty),
        "skipped": int(stats.skipped),
    }


def case_autoscale_update_gives_absent_zero():
    """Warm start on the present tasks; the absent task (gradient 5s) gets 0 in the update."""
    out, _ = update(asj.autoscale(3, 4, window=2), 5.0)
    J = np.asarray(grads_and_losses(0.0)[0]["w"])
    w = np.asarray(asj.weighting.gms_weights(jnp.asarray(J @ J.T)))
    return {"update": np.asarray(out["w"]), "expected": w[0] * J[0] + w[2] * J[2]}


def linearize_counts(counts):
    loss_fn, params, x, y = regression_problem()
    fn = lambda p, x, y: (loss_fn(p, x, y), counts)  # noqa: E731
    return modes.linearize(fn, params, (x, y), task_counts=True)


def case_bad_counts_under_jit():
    loss_fn, params, x, y = regression_problem()

    def with_counts(p, x, y):
        return loss_fn(p, x, y), jnp.array([-1, 5, 5])

    train = asj.multitask_train_step(
        with_counts, asj.autoscale(3, 3), optax.sgd(0.0), task_counts=True
    )
    _, state, losses = jax.jit(train.step)(params, train.init(params), x, y)
    return {
        "loss_nan": np.isnan(np.asarray(losses)).tolist(),
        "skipped": int(state.weighting.window_statistics.skipped),
    }


def mask_update(name, mask):
    kwargs = {"estimation_steps": 2} if name == "autoscale" else {}
    tx = asj.methods.get(name, num_tasks=3, **kwargs)
    return update(tx, 0.0, mask=mask)


P = functools.partial
OK_MOVES = {"same": True, "moves": True}
TRAINS = {"present_losses_fall": True, "params_move": True, "absent_weight": 0.0}
AUTOSCALE_TRAINS = {
    "present_losses_fall": True,
    "params_move": True,
    "never_observed": [False, True, False],
}
ABSENT_ZERO = {"absent_weight": 0.0, "finite": True}

CASES = [
    # --- the absent task gets weight 0; the present tasks train (was: MGDA and FAMO put all
    # weight on it, the update was 0 / dominated by it) ---
    pytest.param(
        case_mgda_absent_task,
        equals(expected_mgda_absent_task),
        id="mgda-absent-task-is-excluded-exactly",
    ),
    pytest.param(
        P(train_with_one_task_never_labelled, "mgda"),
        equals(TRAINS),
        id="mgda-trains-the-present-tasks",
    ),
    pytest.param(
        P(train_with_one_task_never_labelled, "famo"),
        equals(TRAINS),
        id="famo-trains-the-present-tasks",
    ),
    pytest.param(
        P(train_with_one_task_never_labelled, "upgrad"),
        equals(TRAINS),
        id="upgrad-trains-the-present-tasks",
    ),
    pytest.param(
        P(train_with_one_task_never_labelled, "autoscale", estimation_steps=5, window=2),
        equals(AUTOSCALE_TRAINS),
        id="autoscale-trains-the-present-tasks",
    ),
    pytest.param(
        case_famo_absent_task,
        equals({"absent_weight": 0.0, "present_ratio": 4.0, "absent_history": 1.0}),
        id="famo-absent-task-weight-0-history-kept",
    ),
    pytest.param(
        case_famo_absent_at_the_first_step,
        equals({"has_previous": [True, False, True], "absent_weight": 0.0}),
        id="famo-absent-at-first-step-has-no-history",
    ),
    pytest.param(
        case_geometric_mean_absent_task,
        equals({"absent_weight": 0.0, "present": [1.0, 0.25]}),
        id="loss-family-absent-weight-0",
    ),
    # --- task_mask reaches every family (was: ignored by the Gramian methods) ---
    pytest.param(
        P(case_gramian_path, "mgda"), equals(ABSENT_ZERO), id="gramian-path-honours-task-mask-mgda"
    ),
    pytest.param(
        P(case_gramian_path, "nash_mtl"),
        equals(ABSENT_ZERO),
        id="gramian-path-honours-task-mask-nash",
    ),
    pytest.param(
        P(case_absent_placeholder_never_reaches_update, "mgda"),
        equals(OK_MOVES),
        id="nan-placeholder-ignored-mgda",
    ),
    pytest.param(
        P(case_absent_placeholder_never_reaches_update, "famo"),
        equals(OK_MOVES),
        id="nan-placeholder-ignored-famo",
    ),
    pytest.param(
        P(case_absent_placeholder_never_reaches_update, "autoscale"),
        equals(OK_MOVES),
        id="nan-placeholder-ignored-autoscale",
    ),
    pytest.param(
        P(case_absent_placeholder_never_reaches_update, "trimmed_mean"),
        equals(OK_MOVES),
        id="nan-placeholder-ignored-elementwise",
    ),
    pytest.param(
        P(case_absent_placeholder_never_reaches_update, "equal_weights"),
        equals(OK_MOVES),
        id="nan-placeholder-ignored-equal-weights",
    ),
    pytest.param(
        case_autoscale_update_gives_absent_zero,
        lambda run: np.testing.assert_allclose(*run().values(), rtol=1e-5),
        id="autoscale-update-weight-0-for-absent",
    ),
    # --- nothing present ---
    pytest.param(
        P(case_all_absent, "mgda"),
        equals({"update": [0.0, 0.0, 0.0], "weights": [1.0, 1.0, 1.0], "gramian_zero": True}),
        id="mgda-no-task-present-zero-update-reported",
    ),
    pytest.param(
        P(case_all_absent, "famo"),
        equals({"update": [0.0, 0.0, 0.0], "weights": [0.0, 0.0, 0.0]}),
        id="famo-no-task-present-zero-update",
    ),
    # --- AutoScale: a task never observed is reported (was: weight 1, nothing said) ---
    pytest.param(
        case_autoscale_never_observed,
        equals({"never_observed": [False, True, False], "neutral": True, "empty": 0, "skipped": 0}),
        id="autoscale-never-observed-task-flagged-neutral-weight",
    ),
    pytest.param(
        P(case_autoscale_never_observed, 0),
        equals({"never_observed": [True, True, True], "neutral": True, "empty": 4, "skipped": 0}),
        id="autoscale-no-task-ever-observed-nan-weights",
    ),
    # --- bad masks and counts (was: negative or NaN counts silently counted as absent) ---
    pytest.param(
        lambda: linearize_counts(jnp.array([-1, 3, 3])),
        raises(ValueError, r"counts must be finite and >= 0"),
        id="negative-count-concrete",
    ),
    pytest.param(
        lambda: linearize_counts(jnp.array([NAN, 3.0, 3.0])),
        raises(ValueError, r"counts must be finite and >= 0"),
        id="nan-count-concrete",
    ),
    pytest.param(
        case_bad_counts_under_jit,
        equals({"loss_nan": [True, False, False], "skipped": 1}),
        id="negative-count-under-jit-nan-loss-skipped",
    ),
    pytest.param(
        P(mask_update, "mgda", jnp.array([1, 0, 1])),
        raises(TypeError, "task_mask must be booleans"),
        id="int-mask-mgda",
    ),
    pytest.param(
        P(mask_update, "autoscale", jnp.array([1.0, 0.0, 1.0])),
        raises(TypeError, "task_mask must be booleans"),
        id="float-mask-autoscale",
    ),
    pytest.param(
        P(mask_update, "famo", jnp.array([True, False])),
        raises(ValueError, r"task_mask must have shape \(3,\)"),
        id="short-mask-famo",
    ),
    pytest.param(
        P(mask_update, "equal_weights", jnp.array([1, 1, 0])),
        raises(TypeError, "task_mask must be booleans"),
        id="int-mask-equal-weights",
    ),
]


@pytest.mark.parametrize("run, check", CASES)
def test_bad_partial_labels(run, check):
    check(run)
