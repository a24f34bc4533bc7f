"""AutoScale, fixed and equal weights: methods on the Gramian base (methods/autoscale.py,
methods/fixed_weights.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import random_jacobian

import autoscale_jax as asj
from autoscale_jax import metrics, weighting


def stream(rng, num_steps, num_tasks=3, dim=6):
    """A fixed sequence of (task_grads, losses) with task norms differing by orders of magnitude."""
    base = random_jacobian(rng, num_tasks, dim)
    out = []
    for _ in range(num_steps):
        J = base * rng.uniform(0.8, 1.2, size=(num_tasks, 1)) + 0.05 * rng.normal(size=base.shape)
        out.append(
            (
                {"w": jnp.asarray(J, jnp.float32)},
                jnp.asarray(rng.uniform(0.5, 2, num_tasks), jnp.float32),
            )
        )
    return out


def run(tx, data, params=None):
    params = {"w": jnp.zeros(data[0][0]["w"].shape[1:])} if params is None else params
    state = tx.init(params)
    update = jax.jit(lambda g, s, losses: tx.update(g, s, params, task_losses=losses))
    outputs = []
    for grads, losses in data:
        updates, state = update(grads, state, losses)
        outputs.append(updates)
    return outputs, state, update


def reference_autoscale_weights(data, estimation_steps, window, rule):
    """Independent numpy replay of the documented algorithm (warm start, window means)."""
    grams = [np.asarray(g["w"], np.float64) @ np.asarray(g["w"], np.float64).T for g, _ in data]
    current = np.asarray(rule(jnp.asarray(grams[0], jnp.float32), data[0][1]))  # warm start
    used, window_choices = [], []
    for start in range(0, estimation_steps, window):
        stop = min(start + window, estimation_steps)
        used += [current] * (stop - start)  # window e trains with the choice of window e-1
        mean_G = np.mean(grams[start:stop], axis=0)
        mean_L = np.mean([np.asarray(loss) for _, loss in data[start:stop]], axis=0)
        current = np.asarray(rule(jnp.asarray(mean_G, jnp.float32), jnp.asarray(mean_L)))
        window_choices.append(current)
    n = len(window_choices)
    final = np.mean(window_choices[n - (n + 1) // 2 :], axis=0)
    final = final * len(final) / final.sum()
    return used, final, window_choices


def imtl_g_reference(J):
    """IMTL-G's paper closed form in float64: α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹, α_1 = 1 - Σ α_{2:K}."""
    U = J / np.linalg.norm(J, axis=1, keepdims=True)
    D, U = J[:1] - J[1:], U[:1] - U[1:]
    rest = J[0] @ U.T @ np.linalg.inv(D @ U.T)
    return np.concatenate([[1 - rest.sum()], rest])


@pytest.mark.parametrize("guide", ["gms", "loss"])
def test_autoscale_follows_the_documented_algorithm(rng, guide):
    data = stream(rng, 12)
    tx = asj.autoscale(3, estimation_steps=7, window=3, guide=guide)
    outputs, state, _ = run(tx, data)
    used, final, _ = reference_autoscale_weights(data, 7, 3, weighting.guide_rule(guide))
    for step, (updates, (grads, _)) in enumerate(zip(outputs, data, strict=True)):
        w = used[step] if step < 7 else final
        np.testing.assert_allclose(updates["w"], w @ np.asarray(grads["w"]), rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(asj.task_weights(state), final, rtol=1e-5)
    assert int(state.window_statistics.windows_closed) == 3


def test_imtl_g_explorer_trains_phase_one_with_imtl_g_and_the_guide_picks_as_before(rng):
    data = stream(rng, 10)
    tx = asj.autoscale(3, estimation_steps=7, window=3, explorer="imtl_g")
    outputs, state, update = run(tx, data)
    _, final, _ = reference_autoscale_weights(data, 7, 3, weighting.guide_rule("gms"))
    for step, (updates, (grads, _)) in enumerate(zip(outputs, data, strict=True)):
        J = np.asarray(grads["w"], np.float64)
        w = 3 * imtl_g_reference(J) if step < 7 else final
        np.testing.assert_allclose(updates["w"], w @ J, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(asj.task_weights(state), final, rtol=1e-5)
    assert update._cache_size() == 1


@pytest.mark.parametrize("aggregate", ["last_half", "mean"])
def test_linear_predictor_is_the_least_squares_line_through_the_window_log_weights(rng, aggregate):
    data = stream(rng, 26)
    tx = asj.autoscale(
        3, estimation_steps=25, window=4, predictor="linear", total_steps=200, aggregate=aggregate
    )
    _, state, _ = run(tx, data)
    _, _, choices = reference_autoscale_weights(data, 25, 4, weighting.guide_rule("gms"))
    centres = np.array([1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 24.0])  # the last window is 24 alone
    first = 3 if aggregate == "last_half" else 0
    logs = np.log(np.asarray(choices[first:], np.float64))
    line = np.polynomial.polynomial.polyfit(centres[first:], logs, 1)
    predicted = np.exp(line[0] + line[1] * 199)
    np.testing.assert_allclose(asj.task_weights(state), 3 * predicted / predicted.sum(), rtol=1e-4)


def test_the_phase_one_options_join_the_fingerprint_only_where_not_the_default():
    default = int(asj.autoscale(3, 5).init(None).config_fingerprint)
    spelled = asj.autoscale(3, 5, explorer="guide", predictor="aggregate", total_steps=None)
    assert int(spelled.init(None).config_fingerprint) == default
    others = {
        int(asj.autoscale(3, 5, explorer="imtl_g").init(None).config_fingerprint),
        int(asj.autoscale(3, 5, explorer="equal").init(None).config_fingerprint),
        int(asj.autoscale(3, 5, predictor="linear", total_steps=50).init(None).config_fingerprint),
    }
    assert default not in others and len(others) == 3


def test_after_phase_one_autoscale_equals_fixed_weights(rng):
    data = stream(rng, 10)
    params = {"w": jnp.zeros(6)}
    tx = optax.chain(asj.autoscale(3, estimation_steps=5, window=2), optax.adam(0.1))
    state = tx.init(params)
    for grads, losses in data[:5]:
        _, state = tx.update(grads, state, params, task_losses=losses)
    fixed = optax.chain(asj.fixed_weights(asj.task_weights(state)), optax.adam(0.1))
    fixed_state = (fixed.init(params)[0], state[1])  # same Adam moments at the switch
    for grads, losses in data[5:]:
        updates, state = tx.update(grads, state, params, task_losses=losses)
        expected, fixed_state = fixed.update(grads, fixed_state, params, task_losses=losses)
        np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6, atol=1e-7)


def test_phase_switch_does_not_recompile(rng):
    data = stream(rng, 8)
    _, state, update = run(
        optax.chain(asj.autoscale(3, 4, window=2, guide="cond"), optax.sgd(1.0)), data
    )
    assert update._cache_size() == 1
    assert int(state[0].step) == 8


def test_gms_guide_scaling_a_loss_scales_its_weight_inversely(rng):
    data = stream(rng, 6)
    c = 25.0
    scaled = [({"w": g["w"].at[1].multiply(c)}, loss.at[1].multiply(c)) for g, loss in data]
    _, state, _ = run(asj.autoscale(3, 6, window=3), data)
    _, state_scaled, _ = run(asj.autoscale(3, 6, window=3), scaled)
    w, ws = np.asarray(asj.task_weights(state)), np.asarray(asj.task_weights(state_scaled))
    np.testing.assert_allclose((ws[1] / ws[0]) / (w[1] / w[0]), 1 / c, rtol=1e-4)
    np.testing.assert_allclose(ws[2] / ws[0], w[2] / w[0], rtol=1e-4)


@pytest.mark.parametrize("guide", ["gms", "cond", "loss"])
def test_permuting_tasks_permutes_autoscale_weights(rng, guide):
    data = stream(rng, 6)
    perm = np.array([2, 0, 1])
    permuted = [({"w": g["w"][perm]}, loss[perm]) for g, loss in data]
    out, state, _ = run(asj.autoscale(3, 4, window=2, guide=guide), data)
    out_p, state_p, _ = run(asj.autoscale(3, 4, window=2, guide=guide), permuted)
    np.testing.assert_allclose(
        asj.task_weights(state_p), np.asarray(asj.task_weights(state))[perm], rtol=1e-5
    )
    np.testing.assert_allclose(out_p[-1]["w"], out[-1]["w"], rtol=1e-5, atol=1e-5)


def test_state_exposes_metrics_at_the_weights_used(rng):
    data = stream(rng, 1)
    _, state, _ = run(asj.autoscale(3, 5), data)
    G = metrics.gramian(data[0][0])
    w0 = weighting.gms_weights(G)  # warm start
    expected = metrics.task_metrics(G, data[0][1], w0)
    np.testing.assert_allclose(state.metrics.gradient_magnitude_similarity, 1.0, rtol=1e-5)
    for got, want in zip(state.metrics, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4)


def test_cold_start_trains_first_window_with_equal_weights(rng):
    data = stream(rng, 3)
    outputs, _, _ = run(asj.autoscale(3, 6, window=3, warm_start=False), data)
    for updates, (grads, _) in zip(outputs, data, strict=True):
        np.testing.assert_allclose(updates["w"], np.sum(np.asarray(grads["w"]), axis=0), rtol=1e-5)


def test_non_finite_samples_are_skipped_and_weights_stay_finite(rng):
    data = stream(rng, 6)
    data[0] = ({"w": data[0][0]["w"].at[0, 0].set(jnp.nan)}, data[0][1])
    data[3] = (data[3][0], data[3][1].at[2].set(jnp.inf))
    _, state, _ = run(asj.autoscale(3, 6, window=2), data)
    assert int(state.window_statistics.skipped) == 2
    assert np.all(np.isfinite(asj.task_weights(state)))
    clean = [d for i, d in enumerate(data) if i not in (0, 3)]
    # skipped samples leave every window mean unchanged: compare with the clean samples only.
    grams = [np.asarray(g["w"]) @ np.asarray(g["w"]).T for g, _ in clean]
    windows = [grams[0:1], grams[1:2], grams[2:4]]
    choices = [np.asarray(weighting.gms_weights(jnp.asarray(np.mean(w, 0)))) for w in windows]
    expected = np.mean(choices[1:], axis=0)
    np.testing.assert_allclose(asj.task_weights(state), expected * 3 / expected.sum(), rtol=1e-4)


def test_zero_gradient_task_keeps_weights_finite(rng):
    data = [({"w": g["w"].at[1].set(0.0)}, loss) for g, loss in stream(rng, 4)]
    for guide in ("gms", "cond"):
        outputs, state, _ = run(asj.autoscale(3, 4, window=2, guide=guide), data)
        assert np.all(np.isfinite(asj.task_weights(state)))
        assert np.all(np.isfinite(outputs[-1]["w"]))


def test_bad_input_gives_clear_errors():
    tx = asj.autoscale(3, 5)
    params = {"w": jnp.zeros(4)}
    state = tx.init(params)
    good = {"w": jnp.ones((3, 4))}
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        tx.update({"w": jnp.ones((2, 4))}, state, params, task_losses=jnp.ones(3))
    with pytest.raises(ValueError, match="needs the task losses"):
        tx.update(good, state, params)
    with pytest.raises(ValueError, match=r"task_losses must have shape \(3,\)"):
        tx.update(good, state, params, task_losses=jnp.ones(2))
    with pytest.raises(TypeError, match="floating-point"):
        tx.update({"w": jnp.ones((3, 4), jnp.int32)}, state, params, task_losses=jnp.ones(3))
    with pytest.raises(TypeError, match="floating-point"):
        tx.update({"w": None}, state, params, task_losses=jnp.ones(3))
    with pytest.raises(ValueError, match="at least 2"):
        asj.autoscale(1, 5)
    with pytest.raises(ValueError, match="at least 2"):
        asj.fixed_weights([1.0])
    with pytest.raises(ValueError, match="estimation_steps"):
        asj.autoscale(2, 0)
    with pytest.raises(ValueError, match="window"):
        asj.autoscale(2, 5, window=0)
    with pytest.raises(ValueError, match="Unknown guide"):
        asj.autoscale(2, 5, guide="nash")
    with pytest.raises(ValueError, match="Unknown explorer 'famo'"):
        asj.autoscale(2, 5, explorer="famo")
    with pytest.raises(ValueError, match="Unknown predictor 'quadratic'"):
        asj.autoscale(2, 5, predictor="quadratic")
    with pytest.raises(ValueError, match="total_steps"):
        asj.autoscale(2, 5, predictor="linear")
    with pytest.raises(ValueError, match="must exceed estimation_steps=5"):
        asj.autoscale(2, 5, predictor="linear", total_steps=5)
    with pytest.raises(ValueError, match="predictor='linear' only"):
        asj.autoscale(2, 5, total_steps=50)
    with pytest.raises(ValueError, match="'last_half' or 'mean', got aggregate='ema'"):
        asj.autoscale(2, 5, predictor="linear", total_steps=50, aggregate="ema")


def test_task_weights_found_in_nested_states():
    tx = optax.chain(optax.identity(), asj.fixed_weights([2.0, 1.0]), optax.adam(1e-3))
    np.testing.assert_allclose(asj.task_weights(tx.init({"w": jnp.ones(2)})), [2.0, 1.0])
    with pytest.raises(ValueError, match="No multi-task state"):
        asj.task_weights(optax.adam(1e-3).init({"w": jnp.ones(2)}))


def test_fixed_and_equal_weights():
    grads = {"w": jnp.array([[1.0, 2.0], [3.0, -1.0]])}
    params = {"w": jnp.zeros(2)}
    tx = asj.fixed_weights([0.5, 2.0])
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [6.5, -1.0])
    tx = asj.equal_weights(2)
    updates, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [4.0, 1.0])
    np.testing.assert_allclose(asj.task_weights(state), [1.0, 1.0])


def test_fixed_weights_pass_a_presummed_gradient_through_and_check_stacked_ones():
    tx = asj.fixed_weights([2.0, 1.0])
    presummed = {"w": jnp.array([7.0, 8.0])}
    assert tx.update(presummed, tx.init(None), presummed=True)[0] is presummed
    with pytest.raises(ValueError, match="leading task axis of size 2"):
        tx.update({"w": jnp.ones((3, 2))}, tx.init(None))


def test_checkpoints_of_the_transform_py_layout_restore():
    """The states keep the leaves and the configuration fingerprint they had when AutoScale
    lived in autoscale_jax/transform.py (values recorded from that code), so a checkpoint
    restored into tx.init's structure continues."""
    state = asj.autoscale(3, 5).init(None)
    layout = [(leaf.shape, str(leaf.dtype)) for leaf in jax.tree.leaves(state)]
    assert layout == [((), "int32"), ((3,), "float32"), ((22,), "float32"), ((24,), "int32")]
    assert int(state.config_fingerprint) == 352105307
    other = asj.autoscale(2, 100, guide="cond", window=5, metric_mask="shared")
    assert int(other.init(None).config_fingerprint) == 1021728918
    assert asj.fixed_weights([1.0, 2.0]).init(None)._fields == ("task_weights",)


def test_inject_hyperparams():
    grads = {"w": jnp.array([[1.0, 2.0], [3.0, -1.0]])}
    params = {"w": jnp.zeros(2)}
    tx = optax.inject_hyperparams(asj.fixed_weights)(weights=jnp.array([1.0, 1.0]))
    state = tx.init(params)
    state.hyperparams["weights"] = jnp.array([0.0, 1.0])
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [3.0, -1.0])
    np.testing.assert_allclose(asj.task_weights(state), [0.0, 1.0])

    static = ("num_tasks", "estimation_steps", "window", "warm_start", "cond_iterations")
    tx = optax.inject_hyperparams(asj.autoscale, static_args=static)(
        num_tasks=2, estimation_steps=3
    )
    state = tx.init(params)
    updates, state = jax.jit(lambda g, s: tx.update(g, s, params, task_losses=jnp.ones(2)))(
        grads, state
    )
    w = weighting.gms_weights(metrics.gramian(grads))
    np.testing.assert_allclose(updates["w"], w @ grads["w"], rtol=1e-6)
    with pytest.raises(TypeError, match="static_args"):
        optax.inject_hyperparams(asj.autoscale)(num_tasks=2, estimation_steps=3).init(params)
