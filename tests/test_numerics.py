"""Accelerator numerics: the Gramian and the K-space solvers ask for full float32 matmuls.

On GPU (TF32) and TPU (bf16 passes) a default-precision float32 matmul keeps ~10 mantissa bits.
No accelerator is needed to check the request: it is in the jaxpr and the lowered HLO.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import float64, regression_problem

import autoscale_jax as asj
from autoscale_jax import metrics, weighting

HIGHEST = jax.lax.Precision.HIGHEST
K, P = 3, 7  # distinct sizes, so K-space matmuls are told apart from parameter-sized ones


def dot_generals(jaxpr):
    """Every dot_general equation of a closed jaxpr, nested jaxprs (cond, loops) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += dot_generals(inner)
    return found


def is_highest(eqn) -> bool:
    precision = eqn.params["precision"]
    return precision is not None and all(p == HIGHEST for p in precision)


def k_space(eqn) -> bool:
    """A matmul whose operands live in K-space only (no parameter-sized axis)."""
    return all(P not in v.aval.shape for v in eqn.invars)


def task_grads():
    return {"a": jnp.ones((K, P)), "b": jnp.ones((K, 2, P))}


def test_jitted_gramian_asks_for_highest_precision_in_jaxpr_and_hlo():
    fn = jax.jit(metrics.gramian)
    eqns = dot_generals(jax.make_jaxpr(fn)(task_grads()).jaxpr)
    assert len(eqns) == 2 and all(is_highest(e) for e in eqns)
    hlo = fn.lower(task_grads()).as_text()
    assert hlo.count("stablehlo.dot_general") == 2
    assert hlo.count("precision = [HIGHEST, HIGHEST]") == 2


def test_gramian_keeps_float32_for_bf16_gradients():
    grads = jax.tree.map(lambda g: g.astype(jnp.bfloat16), task_grads())
    eqns = dot_generals(jax.make_jaxpr(metrics.gramian)(grads).jaxpr)
    assert all(v.aval.dtype == jnp.float32 for e in eqns for v in e.invars)
    assert all(is_highest(e) for e in eqns)


def test_cond_guide_matmuls_are_highest():
    G = jnp.eye(K) + 0.1
    eqns = dot_generals(jax.make_jaxpr(weighting.condition_number_weights)(G).jaxpr)
    assert eqns and all(is_highest(e) for e in eqns)


@pytest.mark.parametrize("name", ["mgda", "upgrad", "cagrad", "nash_mtl", "aligned_mtl", "imtl_g"])
def test_gramian_method_solvers_ask_for_highest_precision(name):
    tx = asj.methods.get(name, num_tasks=K)
    params = {"a": jnp.zeros(P), "b": jnp.zeros((2, P))}
    state = tx.init(params)

    def update(grads, state):
        return tx.update(grads, state, params, task_losses=jnp.ones(K), key=jax.random.key(0))

    eqns = dot_generals(jax.make_jaxpr(update)(task_grads(), state).jaxpr)
    solver = [e for e in eqns if k_space(e)]
    assert solver, "expected K-space matmuls in the solver"
    assert all(is_highest(e) for e in solver), [e.params["precision"] for e in solver]


@pytest.mark.parametrize("guide", ["gms", "cond", "loss"])
def test_autoscale_trains_float64_parameters_with_float32_weights(guide):
    # Under jax_enable_x64 the Gramian and losses are float64; AutoScale's estimator state is
    # float32, and a float64 warm-start branch beside it failed lax.cond's type check.
    with float64():
        loss_fn, params, x, y = regression_problem()
        assert x.dtype == jnp.float64
        weighting = asj.autoscale(3, estimation_steps=3, window=1, guide=guide)
        train = asj.multitask_train_step(loss_fn, weighting, optax.sgd(0.01))
        step = jax.jit(train.step)
        state = train.init(params)
        for _ in range(5):  # across the phase switch
            params, state, losses = step(params, state, x, y)
        weights = asj.task_weights(state)
    assert weights.dtype == jnp.float32 and np.all(np.isfinite(weights))
    assert params["trunk"].dtype == jnp.float64 and losses.dtype == jnp.float64
    assert not bool(train.needs_task_gradients(state)) and step._cache_size() == 1
