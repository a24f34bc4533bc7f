"""Gradient modes: the Gramian without K×P arrays, representation / last-layer Gramians, task
sampling, and training every Gramian-based method through them."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import shapes_in_jaxpr

import autoscale_jax as asj
from autoscale_jax import jacobian, metrics, modes, weighting

K = 4


def problem(seed=0, num_tasks=K, dtype=jnp.float32, batch=32, dim=6, hidden=10):
    """A two-layer trunk, a shared last layer, and one linear head per task (different scales)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    params = {
        "trunk": jax.random.normal(keys[0], (dim, hidden), dtype) / jnp.sqrt(dim),
        "last": jax.random.normal(keys[1], (hidden, hidden), dtype) / jnp.sqrt(hidden),
        "heads": jax.random.normal(keys[2], (num_tasks, hidden), dtype) / jnp.sqrt(hidden),
    }
    x = jax.random.normal(keys[3], (batch, dim), dtype)
    scales = (10.0 ** jnp.linspace(-1, 1, num_tasks)).astype(dtype)
    y = jnp.tanh(x @ jax.random.normal(keys[4], (dim, num_tasks), dtype)) * scales

    def representation(p, x, y):
        return jnp.tanh(x @ p["trunk"])

    def heads(p, z, x, y):
        h = jnp.tanh(z @ p["last"])
        return jnp.mean((h @ p["heads"].T - y) ** 2, axis=0)

    return asj.SplitLoss(representation, heads), params, x, y


def stacked_gramian(loss_fn, params, x, y, mask=None):
    _, grads = asj.task_value_and_grad(loss_fn)(params, x, y)
    return metrics.gramian(grads, mask)


@pytest.fixture
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("chunk_size", [None, 1, 3, K])
@pytest.mark.parametrize("mask", [None, "shared", "tree", "predicate"])
def test_gramian_only_equals_the_stacked_gramian_in_float64(float64, chunk_size, mask):
    loss_fn, params, x, y = problem(dtype=jnp.float64)
    mask = {
        "tree": {"trunk": True, "last": False, "heads": True},
        "predicate": lambda path, leaf: path[0].key != "heads",
    }.get(mask, mask)
    _, observed = asj.task_gramian(loss_fn, metric_mask=mask, chunk_size=chunk_size)(params, x, y)
    expected = stacked_gramian(loss_fn, params, x, y, mask)
    assert observed.gramian.dtype == jnp.float64
    np.testing.assert_allclose(observed.gramian, expected, rtol=1e-12, atol=1e-14)


def test_gramian_only_equals_the_stacked_gramian_to_float32_round_off(float64):
    loss_fn, params, x, y = problem(seed=1)
    _, observed = jax.jit(asj.task_gramian(loss_fn))(params, x, y)
    params64 = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    reference = stacked_gramian(loss_fn, params64, x.astype(jnp.float64), y.astype(jnp.float64))
    scale = float(jnp.max(jnp.abs(reference)))
    np.testing.assert_allclose(observed.gramian, reference, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("mode", ["gramian", "representation", "last_layer"])
def test_modes_never_hold_the_stacked_trunk_gradients(mode):
    loss_fn, params, x, y = problem()
    stacked = (K, *params["trunk"].shape)
    shapes = shapes_in_jaxpr(asj.task_gramian(loss_fn, mode=mode), params, x, y)
    assert stacked not in shapes
    assert stacked in shapes_in_jaxpr(asj.task_gramian(loss_fn, mode="stacked"), params, x, y)


def test_representation_gramian_is_the_gramian_of_gradients_wrt_z(float64):
    loss_fn, params, x, y = problem(dtype=jnp.float64)
    z = loss_fn.representation(params, x, y)
    per_task = jax.jacrev(lambda r: loss_fn.heads(params, r, x, y))(z)  # [K, batch, hidden]
    expected = per_task.reshape(K, -1) @ per_task.reshape(K, -1).T
    _, observed = asj.task_gramian(loss_fn, mode="representation")(params, x, y)
    np.testing.assert_allclose(observed.gramian, expected, rtol=1e-12)


def test_last_layer_gramian_is_the_stacked_gramian_of_the_last_shared_layer(float64):
    loss_fn, params, x, y = problem(dtype=jnp.float64)
    last_only = {"trunk": False, "last": True, "heads": False}
    _, observed = asj.task_gramian(loss_fn, mode="last_layer", metric_mask=last_only)(params, x, y)
    expected = stacked_gramian(loss_fn, params, x, y, last_only)
    np.testing.assert_allclose(observed.gramian, expected, rtol=1e-12)
    # Default "shared": the heads' leaves that several tasks move (here "last", and "heads",
    # one [K, hidden] leaf); the trunk is not differentiated at all.
    _, observed = asj.task_gramian(loss_fn, mode="last_layer")(params, x, y)
    heads_part = {"trunk": False, "last": True, "heads": True}
    expected = stacked_gramian(loss_fn, params, x, y, heads_part)
    np.testing.assert_allclose(observed.gramian, expected, rtol=1e-12)


def test_sampled_gramian_is_unbiased_over_keys():
    loss_fn, params, x, y = problem(seed=2)
    full = np.asarray(stacked_gramian(loss_fn, params, x, y), np.float64)
    measure = asj.task_gramian(loss_fn, mode="sampled", num_sampled_tasks=2)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    observed = jax.jit(jax.vmap(lambda k: measure(params, x, y, key=k)[1]))(keys)
    estimates = np.asarray(jax.vmap(asj.ObservedGramian.unbiased)(observed), np.float64)
    masks = np.asarray(observed.task_mask)
    assert np.all(masks.sum(axis=1) == 2)
    # Each observed entry is the exact Gramian entry (the sample only chooses which ones).
    pairs = masks[:, :, None] & masks[:, None, :]
    raw = np.asarray(observed.gramian, np.float64)
    np.testing.assert_allclose(
        np.where(pairs, raw, 0), np.where(pairs, full, 0), rtol=1e-5, atol=1e-6 * full.max()
    )
    # Horvitz-Thompson: E[Ĝ] = G, checked against 4.5 standard errors per entry.
    mean = estimates.mean(axis=0)
    stderr = estimates.std(axis=0) / np.sqrt(len(keys))
    assert np.all(np.abs(mean - full) <= 4.5 * stderr + 1e-6 * np.abs(full).max())
    # Inclusion frequencies match π: m/K on the diagonal, m(m-1)/(K(K-1)) off it.
    np.testing.assert_allclose(masks.mean(axis=0), 2 / K, atol=0.03)


def test_autoscale_sampled_window_means_equal_the_full_gramian():
    # With a constant Gramian, every entry's window mean over the samples that saw it is that
    # entry: AutoScale in sampled mode picks exactly the full-Gramian weights.
    rng = np.random.default_rng(0)
    J = rng.normal(size=(6, 9)) * 10 ** rng.uniform(-1, 1, (6, 1))
    G = jnp.asarray(J @ J.T, jnp.float32)
    losses = jnp.ones(6)
    for guide in ("gms", "cond"):
        tx = asj.autoscale(6, estimation_steps=40, window=40, guide=guide, warm_start=False)
        state = tx.init(None)
        step = jax.jit(tx.gramian_path.weights)
        for i in range(40):
            _, mask, inclusion = jacobian.sample_tasks(jax.random.PRNGKey(i), 6, 3)
            pairs = mask[:, None] & mask[None, :]
            observed = asj.ObservedGramian(jnp.where(pairs, G, 0.0), mask, inclusion)
            _, state = step(state, observed, losses, None, None)
        assert np.all(np.asarray(state.window_statistics.gramian_count) == 0)  # window closed
        expected = weighting.guide_rule(guide)(G, losses)
        np.testing.assert_allclose(asj.task_weights(state), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("warm_start", "explorer"), [(True, "guide"), (False, "guide"), (True, "imtl_g")]
)
def test_autoscale_prior_weights_are_the_weights_it_trains_with(warm_start, explorer):
    # Where AutoScale declares its weights known before the Gramian, the Gramian path must
    # return exactly them, through window ends, skipped (NaN) samples and the phase switch.
    rng = np.random.default_rng(1)
    tx = asj.autoscale(3, estimation_steps=7, window=3, warm_start=warm_start, explorer=explorer)
    state, known_steps = tx.init(None), []
    for i in range(10):
        J = rng.normal(size=(3, 5)) * 10 ** rng.uniform(-1, 1, (3, 1))
        G = jnp.asarray(J @ J.T if i != 4 else np.full((3, 3), np.nan), jnp.float32)
        known, prior = tx.gramian_path.prior_weights(state)
        weights, state = tx.gramian_path.weights(state, asj.ObservedGramian(G), jnp.ones(3))
        if known:
            known_steps.append(i)
            np.testing.assert_array_equal(prior, weights)
        else:  # warm start: step 0 trains with its own Gramian's weights (an explorer: all
            # of phase 1 but the NaN step 4, where it trains with the guide's weights)
            assert not np.allclose(prior, weights) or i == 4
    first = {"guide": 1 if warm_start else 0, "imtl_g": 7}[explorer]
    assert known_steps == list(range(first, 10))


def run(loss_fn, params, x, y, weighting_, steps, **kwargs):
    train = asj.multitask_train_step(loss_fn, weighting_, optax.adam(1e-2), **kwargs)
    step = jax.jit(train.step)
    state = train.init(params)
    for i in range(steps):
        params, state, _ = step(params, state, x, y, key=jax.random.PRNGKey(i))
    return params, state, step


GRAMIAN_METHODS = {
    "mgda": lambda: asj.methods.mgda(K),
    "upgrad": lambda: asj.methods.upgrad(K),
    "cagrad": lambda: asj.methods.cagrad(K),
    "imtl_g": lambda: asj.methods.imtl_g(K),
    "pcgrad": lambda: asj.methods.pcgrad(K),
    "nash_mtl every 2": lambda: asj.methods.nash_mtl(K, update_every=2),
    "autoscale gms": lambda: asj.autoscale(K, 4, window=2),
    "autoscale cond": lambda: asj.autoscale(K, 4, window=2, guide="cond"),
    "autoscale loss": lambda: asj.autoscale(K, 4, window=2, guide="loss"),
    "autoscale no warm start": lambda: asj.autoscale(K, 4, window=2, warm_start=False),
    "autoscale imtl_g explorer, linear predictor": lambda: asj.autoscale(
        K, 4, window=2, explorer="imtl_g", predictor="linear", total_steps=6
    ),
}


@pytest.mark.parametrize("name", list(GRAMIAN_METHODS))
def test_gramian_mode_trains_like_the_stacked_mode(name):
    loss_fn, params, x, y = problem(seed=3)
    make = GRAMIAN_METHODS[name]
    p_stacked, s_stacked, _ = run(loss_fn, params, x, y, make(), 6)
    p_gramian, s_gramian, step = run(loss_fn, params, x, y, make(), 6, gradient_mode="gramian")
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_gramian, p_stacked
    )
    np.testing.assert_allclose(
        asj.task_weights(s_gramian), asj.task_weights(s_stacked), rtol=1e-5, atol=1e-6
    )
    assert step._cache_size() == 1  # one compilation, across AutoScale's phase switch too


def test_gramian_mode_inside_a_chain_with_a_shared_mask():
    loss_fn, params, x, y = problem(seed=4)
    tx = lambda: optax.chain(asj.autoscale(K, 3, metric_mask="shared"), optax.sgd(0.1))  # noqa: E731
    a = asj.multitask_train_step(loss_fn, tx())
    b = asj.multitask_train_step(loss_fn, tx(), gradient_mode="gramian", chunk_size=2)
    pa, sa, pb, sb = params, a.init(params), params, b.init(params)
    for _ in range(4):
        pa, sa, _ = jax.jit(a.step)(pa, sa, x, y)
        pb, sb, _ = jax.jit(b.step)(pb, sb, x, y)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), pa, pb)


def assert_sgd_step_on_weighted_losses(new_params, params, loss_fn, x, y, weights, atol):
    """``new_params`` is one SGD step (lr 0.1) on ``∇ Σ w_k L_k`` from ``params``."""
    grads = jax.grad(lambda p: loss_fn(p, x, y) @ weights)(params)
    jax.tree.map(
        lambda n, p, g: np.testing.assert_allclose(n, p - 0.1 * g, rtol=1e-5, atol=atol),
        new_params,
        params,
        grads,
    )


@pytest.mark.parametrize("mode", ["representation", "last_layer"])
def test_representation_modes_use_the_rule_of_their_gramian_and_one_vjp(mode):
    loss_fn, params, x, y = problem(seed=5)
    _, state, _ = run(loss_fn, params, x, y, asj.methods.mgda(K), 1, gradient_mode=mode)
    _, observed = asj.task_gramian(loss_fn, mode=mode)(params, x, y)
    method = asj.methods.mgda(K)
    expected, _ = method.gramian_path.weights(method.init(params), observed, None, None, None)
    np.testing.assert_allclose(asj.task_weights(state), expected, rtol=1e-5, atol=1e-6)
    # The update is ∇ Σ w_k L_k through trunk and heads: compare with plain SGD on it.
    train = asj.multitask_train_step(
        loss_fn, asj.methods.mgda(K), optax.sgd(0.1), gradient_mode=mode
    )
    new_params, _, _ = train.step(params, train.init(params), x, y)
    assert_sgd_step_on_weighted_losses(new_params, params, loss_fn, x, y, expected, atol=1e-7)


def test_sampled_mode_trains_autoscale_and_methods():
    loss_fn, params, x, y = problem(seed=6, num_tasks=6)
    for tx in (asj.autoscale(6, 4, window=2), asj.methods.upgrad(6)):
        p, state, step = run(
            loss_fn, params, x, y, tx, 6, gradient_mode="sampled", num_sampled_tasks=3
        )
        assert np.all(np.isfinite(asj.task_weights(state)))
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(p))
        assert step._cache_size() == 1


def test_mode_errors_are_clear():
    loss_fn, params, x, y = problem()
    plain = lambda p, x, y: loss_fn(p, x, y)  # noqa: E731
    with pytest.raises(ValueError, match="Unknown gradient_mode"):
        asj.multitask_train_step(loss_fn, asj.methods.mgda(K), gradient_mode="fast")
    with pytest.raises(TypeError, match="SplitLoss"):
        asj.multitask_train_step(plain, asj.methods.mgda(K), gradient_mode="representation")
    with pytest.raises(ValueError, match="num_sampled_tasks"):
        asj.multitask_train_step(loss_fn, asj.methods.mgda(K), gradient_mode="sampled")
    train = asj.multitask_train_step(
        loss_fn, asj.methods.mgda(K), optax.sgd(0.1), gradient_mode="sampled", num_sampled_tasks=2
    )
    with pytest.raises(ValueError, match="key"):
        train.step(params, train.init(params), x, y)
    for tx in (asj.methods.graddrop(K), asj.methods.mgda(K, heads="plain")):
        train = asj.multitask_train_step(loss_fn, tx, optax.sgd(0.1), gradient_mode="gramian")
        with pytest.raises(ValueError, match="gradient_mode='stacked'"):
            train.step(params, train.init(params), x, y, key=jax.random.PRNGKey(0))


def _mode_options(mode):
    """The options a registered mode reads (a mode's contract test passes them)."""
    return {"num_sampled_tasks": 2} if "num_sampled_tasks" in modes.MODES[mode].options else {}


@pytest.mark.parametrize("mode", modes.GRADIENT_MODES)
def test_every_registered_mode_follows_the_protocol(float64, mode):
    found = modes.MODES[mode]
    assert found.name == mode and isinstance(found.exact, bool)
    assert importlib.import_module(f"autoscale_jax.modes.{mode}").MODE is found
    assert (mode in modes.EXACT_MODES) == found.exact
    loss_fn, params, x, y = problem(dtype=jnp.float64)
    key = jax.random.key(0)
    measure = asj.task_gramian(loss_fn, mode=mode, **_mode_options(mode))
    losses, observed = measure(params, x, y, key=key)
    np.testing.assert_allclose(losses, loss_fn(params, x, y), rtol=1e-12)
    G = np.asarray(observed.gramian)
    assert G.shape == (K, K)
    np.testing.assert_allclose(G, G.T, rtol=1e-12, atol=1e-14)
    if found.exact:
        expected = stacked_gramian(loss_fn, params, x, y)
        np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-14)
    # A train step in the mode: the update is the VJP of the weights the method chose.
    train = asj.multitask_train_step(
        loss_fn, asj.methods.mgda(K), optax.sgd(0.1), gradient_mode=mode, **_mode_options(mode)
    )
    new_params, state, _ = train.step(params, train.init(params), x, y, key=key)
    weights = asj.task_weights(state)
    assert_sgd_step_on_weighted_losses(new_params, params, loss_fn, x, y, weights, atol=1e-9)


def test_mode_registry_errors_name_the_mode_and_the_fix():
    loss_fn, params, x, y = problem()
    unknown = r"Unknown gradient_mode 'fast'; choose one of \('stacked'"
    with pytest.raises(ValueError, match=unknown):
        modes.linearize(loss_fn, params, (x, y), mode="fast")
    only_sampled = "num_sampled_tasks is only used with gradient_mode='sampled'"
    with pytest.raises(ValueError, match=only_sampled):
        modes.check_mode("gramian", loss_fn, 2, None)


def test_partial_labels_add_no_sample_of_an_absent_task():
    loss_fn, params, x, y = problem(seed=7)
    present = jnp.array([True, False, True, True])

    def with_counts(p, x, y, present):
        losses = loss_fn(p, x, y)
        counts = jnp.where(present, x.shape[0], 0)
        return jnp.where(present, losses, 0.0), counts  # an absent task: loss and gradient 0

    def stacked_reference():
        _, grads = asj.task_value_and_grad(
            functools.partial(with_counts, present=present), has_aux=True
        )(params, x, y)
        return metrics.gramian(grads)

    for mode in ("stacked", "gramian"):
        train = asj.multitask_train_step(
            with_counts,
            asj.autoscale(K, 10, window=5),
            optax.sgd(0.0),
            gradient_mode=mode,
            task_counts=True,
        )
        state = train.init(params)
        step = jax.jit(train.step)
        state = step(params, state, x, y, present)[1]
        state = step(params, state, x, y, jnp.ones(K, bool))[1]
        stats = state.weighting.window_statistics
        counts = np.asarray(stats.gramian_count)
        np.testing.assert_array_equal(counts[1], [1, 1, 1, 1])  # only the step with the task
        np.testing.assert_array_equal(counts[0], [2, 1, 2, 2])
        np.testing.assert_array_equal(np.asarray(stats.loss_count), [2, 1, 2, 2])
        assert np.all(np.isfinite(asj.task_weights(state.weighting)))
        # Step 0's warm start: the absent task has the neutral weight (mean of the others').
        G0 = stacked_reference()
        w0 = weighting.gms_weights(G0)
        np.testing.assert_allclose(w0[1], np.mean(np.asarray(w0)[[0, 2, 3]]), rtol=1e-5)


@pytest.mark.slow
def test_partial_labels_keep_every_method_finite():
    loss_fn, params, x, y = problem(seed=8)

    def with_counts(p, x, y, present):
        return jnp.where(present, loss_fn(p, x, y), 0.0), jnp.where(present, 3, 0)

    absent = jnp.array([True, False, True, True])
    for name in asj.methods.available():
        info = asj.methods.info(name)
        if info.constructor != "num_tasks" or info.extra_inputs or info.min_tasks > K:
            continue
        kwargs = {"estimation_steps": 2, "window": 1} if name == "autoscale" else {}
        tx = asj.methods.get(name, num_tasks=K, **kwargs)
        train = asj.multitask_train_step(with_counts, tx, optax.sgd(1e-3), task_counts=True)
        p, state = params, train.init(params)
        for i in range(2):  # the task is absent, then back
            present = absent if i == 0 else jnp.ones(K, bool)
            p, state, _ = train.step(p, state, x, y, present, key=jax.random.PRNGKey(i))
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(p)), name
        try:
            weights = asj.task_weights(state.weighting)
        except ValueError:
            continue  # a method without weights
        assert np.all(np.isfinite(weights)), name
