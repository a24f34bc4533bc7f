"""The method registry and the contract every registered method keeps, plus cross-method facts:
the two-task equivalence of arXiv 2505.10347 and the CAGrad paper's 2-D toy. The registry is
collected from the method modules' own ``INFO`` entries, and no method module imports another."""

import ast
import importlib
import inspect
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from method_checks import build_registered as build
from method_checks import extra_inputs, task_data

import autoscale_jax as asj
from autoscale_jax.bench.datasets import toy
from autoscale_jax.methods import _registry

INFOS = [asj.methods.info(name) for name in asj.methods.available()]
WITH_WEIGHTS = [i.name for i in INFOS if i.weight_convention != "none"]
# Deterministic methods whose weights belong to tasks (fixed weights belong to positions).
EQUIVARIANT = [
    i.name for i in INFOS if i.symmetric and not i.needs_key and i.constructor == "num_tasks"
]


def test_registry_lists_every_method_with_valid_metadata():
    names = asj.methods.available()
    assert len(names) == len(set(names)) and list(names) == sorted(names)
    for info in INFOS:
        # File names equal registry names (equal_weights lives beside fixed_weights).
        module = info.factory.__module__
        file_name = "fixed_weights" if info.name == "equal_weights" else info.name
        assert module.endswith("." + file_name), module
        assert info.reference, info.name
        if info.family == "loss":
            assert not info.needs_task_gradients, info.name
        if info.family in ("gramian", "surgery", "elementwise"):
            assert info.needs_task_gradients, info.name
    with pytest.raises(ValueError, match=r"Unknown method 'nash'.*available: aligned_mtl"):
        asj.methods.get("nash", num_tasks=2)
    assert asj.methods.pcgrad(num_tasks=2).init(None).task_weights.shape == (2,)


METHODS_DIR = pathlib.Path(asj.methods.__file__).parent
PUBLIC_MODULES = sorted(p.stem for p in METHODS_DIR.glob("*.py") if not p.stem.startswith("_"))


def test_registry_is_what_the_method_modules_declare():
    """Every public module declares its methods in INFO; the registry holds exactly those, and
    each factory is exported under its own name."""
    declared = {}
    for stem in PUBLIC_MODULES:
        module = importlib.import_module(f"autoscale_jax.methods.{stem}")
        for info in _registry.declared(module):
            declared[info.name] = info
            assert getattr(asj.methods, info.factory.__name__) is info.factory, info.name
            assert info.factory.__name__ in asj.methods.__all__, info.name
    assert sorted(declared) == list(asj.methods.available())
    assert declared == {name: asj.methods.info(name) for name in declared}
    assert len(PUBLIC_MODULES) == len(declared) - 1  # fixed_weights.py also holds equal_weights


def _public_sibling_imports(source: str, stem: str) -> list[str]:
    """The public method modules that the source of module ``stem`` imports (absolute or
    relative)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "autoscale_jax.methods" if node.level else (node.module or "")
            if node.level and node.module:
                base += "." + node.module
            modules = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            inside = parts[:2] == ["autoscale_jax", "methods"] and len(parts) > 2
            if inside and parts[2] in PUBLIC_MODULES and parts[2] != stem:
                found.append(parts[2])
    return sorted(set(found))


def test_no_method_module_imports_another():
    """Shared code lives in the private modules (``_bases``, ``_solvers``, ...), so every method
    sits one floor over its helpers and reads on its own."""
    offenders = {
        stem: imported
        for stem in PUBLIC_MODULES
        if (imported := _public_sibling_imports((METHODS_DIR / f"{stem}.py").read_text(), stem))
    }
    assert offenders == {}
    # The check sees every form of a sibling import (the ones this change removed included).
    for source in (
        "from autoscale_jax.methods.moco import project_to_simplex",
        "from autoscale_jax.methods import moco",
        "from .moco import moco",
        "import autoscale_jax.methods.moco",
    ):
        assert _public_sibling_imports(source, "modo") == ["moco"], source
    assert _public_sibling_imports("from autoscale_jax.methods import _bases", "modo") == []


# A fake method module: a factory (PCGrad under another name) and its INFO.
FAKE_METHOD = """
import autoscale_jax as asj

_ENTRY = asj.methods.info("pcgrad")._replace(takes_heads=None)  # check_info fills it in


def {factory}(num_tasks):
    return asj.methods.pcgrad(num_tasks)


"""


def test_collect_reads_public_modules_and_refuses_a_name_declared_twice(tmp_path, monkeypatch):
    package = tmp_path / "fake_methods_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "alpha.py").write_text(
        FAKE_METHOD.format(factory="alpha")
        + "INFO = _ENTRY._replace(name='alpha', factory=alpha)\n"
    )
    (package / "_helper.py").write_text("SHARED = 1\n")  # private: never imported
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = _registry.collect("fake_methods_pkg", [str(package)])
        assert list(registry) == ["alpha"]
        assert registry["alpha"].takes_heads is False  # filled in from the signature
        assert "fake_methods_pkg._helper" not in sys.modules
        (package / "beta.py").write_text(
            FAKE_METHOD.format(factory="beta")
            + "def another_alpha(num_tasks):\n    return beta(num_tasks)\n\n"
            + "INFO = (_ENTRY._replace(name='beta', factory=beta),\n"
            + "        _ENTRY._replace(name='alpha', factory=another_alpha))\n"
        )
        with pytest.raises(
            ValueError,
            match=r"method 'alpha' is declared twice: in fake_methods_pkg\.alpha and "
            r"fake_methods_pkg\.beta",
        ):
            _registry.collect("fake_methods_pkg", [str(package)])
    finally:
        for name in [m for m in sys.modules if m.startswith("fake_methods_pkg")]:
            del sys.modules[name]


@pytest.mark.parametrize("name", asj.methods.available())
def test_metadata_matches_behaviour(rng, name):
    """needs_key / needs_losses / needs_task_gradients say what the method really requires."""
    info = asj.methods.info(name)
    tx = build(name, 3)
    params = {"w": jnp.zeros(6)}
    grads, losses = task_data(rng, 3)
    extra = extra_inputs(name, grads)
    key = jax.random.PRNGKey(0)
    tx.update(grads, tx.init(params), params, task_losses=losses, key=key, **extra)
    if info.needs_key:
        with pytest.raises(ValueError, match="key"):
            tx.update(grads, tx.init(params), params, task_losses=losses, **extra)
    if info.needs_losses:
        with pytest.raises(ValueError, match="task losses"):
            tx.update(grads, tx.init(params), params, key=key, **extra)
    fast_path = tx.fast_path
    if info.constructor == "method":
        return  # a wrapper needs what its inner method needs
    if not info.needs_task_gradients:
        assert fast_path is not None and fast_path.needs_task_gradients(tx.init(params)) is False
    elif fast_path is not None:  # AutoScale, freeze and update_every methods: first step needs them
        assert bool(fast_path.needs_task_gradients(tx.init(params)))


@pytest.mark.parametrize("name", asj.methods.available())
def test_contract_jit_once_shapes_and_weights(rng, name):
    tx = build(name, 3)
    params = {"w": jnp.zeros(6)}

    @jax.jit
    def update(g, s, losses, key, extra):
        return tx.update(g, s, params, task_losses=losses, key=key, **extra)

    state = tx.init(params)
    for step in range(4):  # crosses the phase switch of autoscale and freeze
        grads, losses = task_data(rng, 3)
        updates, state = update(
            grads, state, losses, jax.random.PRNGKey(step), extra_inputs(name, grads)
        )
        assert updates["w"].shape == (6,)
        assert np.all(np.isfinite(updates["w"]))
        # The state keeps its tree and shapes across steps (no growth, no dtype drift).
        assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))
        jax.tree.map(
            lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(name),
            state,
            tx.init(params),
        )
    assert update._cache_size() == 1
    if name in WITH_WEIGHTS:
        weights = asj.task_weights(state)
        assert weights.shape == (3,) and np.all(np.isfinite(weights))
    else:
        with pytest.raises(ValueError, match="task_weights"):
            asj.task_weights(state)


@pytest.mark.parametrize("name", asj.methods.available())
def test_contract_initial_state_can_be_donated(name):
    # jax.jit(step, donate_argnums=(0, 1)) refuses a state whose leaves share a buffer.
    state = build(name, 3).init({"w": jnp.zeros(6)})
    leaves = [x for x in jax.tree.leaves(state) if isinstance(x, jax.Array) and x.size > 0]
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(pointers)) == len(pointers)


@pytest.mark.parametrize("name", [i.name for i in INFOS if i.constructor == "num_tasks"])
def test_contract_rejects_bad_input(name):
    with pytest.raises(ValueError, match="at least"):
        build(name, 1)
    if asj.methods.info(name).min_tasks > 2:
        with pytest.raises(ValueError):
            build(name, asj.methods.info(name).min_tasks - 1)
    tx = build(name, 3)
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.ones((2, 4))}
    with pytest.raises(ValueError, match="leading task axis of size 3"):
        tx.update(
            grads,
            tx.init(params),
            params,
            task_losses=jnp.ones(3),
            key=jax.random.PRNGKey(0),
            **extra_inputs(name, {"w": jnp.ones((3, 4))}),
        )


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_permuting_tasks_permutes_weights_and_keeps_the_update(rng, name):
    grads, losses = task_data(rng, 3)
    perm = np.array([2, 0, 1])
    params = {"w": jnp.zeros(6)}
    permuted = {"w": grads["w"][perm]}
    tx = build(name, 3)
    out, state = tx.update(
        grads, tx.init(params), params, task_losses=losses, **extra_inputs(name, grads)
    )
    out_p, state_p = tx.update(
        permuted, tx.init(params), params, task_losses=losses[perm], **extra_inputs(name, permuted)
    )
    np.testing.assert_allclose(
        out_p["w"], out["w"], rtol=2e-3, atol=1e-4 * float(jnp.abs(out["w"]).max())
    )
    if name in WITH_WEIGHTS:
        w, w_p = np.asarray(asj.task_weights(state)), np.asarray(asj.task_weights(state_p))
        np.testing.assert_allclose(w_p, w[perm], rtol=2e-3, atol=1e-5 * np.abs(w).max())


@pytest.mark.parametrize("name", ["cagrad", "nash_mtl", "imtl_g", "edm", "famo"])
def test_two_tasks_equal_norms_and_losses_give_equal_weights(name):
    # arXiv 2505.10347, App. A.4: with two tasks of equal gradient norms and equal losses these
    # methods reduce to equal weights (up to a common scale).
    grads = {"w": jnp.array([[1.0, 0.0, 0.5], [-0.6, 0.8, 0.5]])}  # both norms sqrt(1.25)
    params = {"w": jnp.zeros(3)}
    tx = build(name, 2)
    state = tx.init(params)
    for loss in (1.0, 0.8, 0.6):  # equal losses that decrease alike, for FAMO's logit updates
        _, state = tx.update(grads, state, params, task_losses=jnp.array([loss, loss]))
    w = np.asarray(asj.task_weights(state))
    assert w[0] > 0
    np.testing.assert_allclose(w[1], w[0], rtol=1e-4)


def toy_endpoints(name: str, steps: int) -> np.ndarray:
    """Adam (lr 1e-3, as in the CAGrad paper) from every toy start, all starts vmapped."""
    tx = optax.chain(build(name, 2), optax.adam(1e-3))
    grad_fn = asj.task_value_and_grad(toy.toy_losses)

    def run(x0):
        def body(carry, key):
            x, state = carry
            losses, task_grads = grad_fn(x)
            updates, state = tx.update(task_grads, state, x, task_losses=losses, key=key)
            return (optax.apply_updates(x, updates), state), None

        keys = jax.random.split(jax.random.PRNGKey(0), steps)
        return jax.lax.scan(body, (x0, tx.init(x0)), keys)[0][0]

    return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(toy.TOY_STARTS)))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mgda", "cagrad", "nash_mtl", "imtl_g"])
def test_toy_methods_end_on_the_pareto_set(name):
    ends = toy_endpoints(name, steps=100_000)
    stationarity = [float(toy.pareto_stationarity(jnp.asarray(x))) for x in ends]
    # From the starts the stationarity is 0.07 to 5.4; on the Pareto set it is 0.
    assert max(stationarity) < 5e-3, stationarity


@pytest.mark.slow
def test_toy_equal_weights_can_stall_off_the_pareto_set():
    ends = toy_endpoints("equal_weights", steps=100_000)
    stationarity = [float(toy.pareto_stationarity(jnp.asarray(x))) for x in ends]
    assert max(stationarity) > 0.5, stationarity


def _update_once(tx, grads, losses, name, step=0, **kwargs):
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:], g.dtype), grads)
    return tx.update(
        grads,
        tx.init(params),
        params,
        task_losses=losses,
        key=jax.random.PRNGKey(step),
        **extra_inputs(name, grads),
        **kwargs,
    )


@pytest.mark.parametrize("name", asj.methods.available())
def test_contract_ignores_unknown_extra_arguments(rng, name):
    """optax's convention: extra keyword arguments a transformation does not know are ignored."""
    grads, losses = task_data(rng, 3)
    plain, plain_state = _update_once(build(name, 3), grads, losses, name)
    extra, extra_state = _update_once(
        build(name, 3), grads, losses, name, some_other_input=jnp.ones(5), step_size=0.1
    )
    jax.tree.map(np.testing.assert_array_equal, plain, extra)
    jax.tree.map(np.testing.assert_array_equal, plain_state, extra_state)


def _injected(name: str, num_tasks: int):
    """``optax.inject_hyperparams`` over the registered factory, with its static arguments."""
    info = asj.methods.info(name)
    if name == "autoscale":
        kwargs = {"num_tasks": num_tasks, "estimation_steps": 2, "window": 1}
    elif info.constructor == "method":
        kwargs = {"method": asj.methods.get("famo", num_tasks=num_tasks)}
        if name == "freeze":
            kwargs["estimation_steps"] = 2
    elif info.constructor == "weights":
        kwargs = {"weights": jnp.arange(1.0, num_tasks + 1)}
    else:
        kwargs = {"num_tasks": num_tasks}
    # Float hyper-parameters are injected (traced); counts, flags, names and the method a
    # wrapper wraps stay static, as a user would declare them.
    signature = inspect.signature(info.factory).parameters.values()
    static = tuple(
        p.name
        for p in signature
        if p.name != "weights" and (p.name in kwargs or not isinstance(p.default, float))
    )
    return optax.inject_hyperparams(info.factory, static_args=static)(**kwargs)


@pytest.mark.parametrize("name", asj.methods.available())
def test_contract_inject_hyperparams(rng, name):
    """Wrapped in inject_hyperparams every method gives the updates and weights of the bare
    method, across the phase switch of autoscale and freeze, compiled once."""
    direct, injected = build(name, 3), _injected(name, 3)
    params = {"w": jnp.zeros(6)}

    def make_update(tx):
        return jax.jit(
            lambda g, s, losses, key, extra: tx.update(
                g, s, params, task_losses=losses, key=key, **extra
            )
        )

    update_d, update_i = make_update(direct), make_update(injected)
    state_d, state_i = direct.init(params), injected.init(params)
    for step in range(4):
        grads, losses = task_data(rng, 3)
        args = (losses, jax.random.PRNGKey(step), extra_inputs(name, grads))
        out_d, state_d = update_d(grads, state_d, *args)
        out_i, state_i = update_i(grads, state_i, *args)
        np.testing.assert_allclose(out_i["w"], out_d["w"], rtol=1e-5, atol=1e-7)
    if name in WITH_WEIGHTS:
        np.testing.assert_allclose(asj.task_weights(state_i), asj.task_weights(state_d), rtol=1e-6)
    assert update_i._cache_size() == 1


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", asj.methods.available())
def test_contract_preserves_the_gradient_dtype(rng, name, dtype):
    """The update keeps each gradient leaf's dtype; the state keeps its tree, shapes and dtypes
    (whatever the gradients' dtype) over steps that cross the phase switch."""
    tx = build(name, 3)
    params = {"w": jnp.zeros(6, dtype), "b": jnp.zeros((2,), jnp.float32)}
    initial = tx.init(params)
    state = initial
    update = jax.jit(
        lambda g, s, losses, key, extra: tx.update(
            g, s, params, task_losses=losses, key=key, **extra
        )
    )
    for step in range(3):
        grads, losses = task_data(rng, 3)
        grads = {"w": grads["w"].astype(dtype), "b": jnp.ones((3, 2), jnp.float32)}
        out, state = update(
            grads, state, losses, jax.random.PRNGKey(step), extra_inputs(name, grads)
        )
        assert out["w"].dtype == dtype and out["b"].dtype == jnp.float32, name
        assert out["w"].shape == (6,) and out["b"].shape == (2,)
        assert np.all(np.isfinite(np.asarray(out["w"], np.float32)))
        assert jax.tree.structure(state) == jax.tree.structure(initial)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(initial), strict=True):
            assert (a.shape, a.dtype) == (b.shape, b.dtype), name
    assert update._cache_size() == 1
