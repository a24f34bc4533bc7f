"""AutoScale and a Gramian method on 8 host devices: data parallel and sharded parameters.

``XLA_FLAGS=--xla_force_host_platform_device_count=8`` must be set before JAX starts, so unless
this process already has 8 devices the checks run once in a subprocess that sets it; each test
then reports its own check. Every check trains the same jitted step twice, on one device and
with the inputs sharded over 8, and asserts the same weights and parameters, in float64 (float32
round-off of the two summation orders is not what these checks look for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from problems import float64

import autoscale_jax as asj

DEVICES = 8
K = 3
CHECKS: dict = {}


def check(fn):
    CHECKS[fn.__name__] = fn
    return fn


def problem(seed=0, batch=64, dim=8, hidden=16):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    x = jax.random.normal(keys[0], (batch, dim))
    y = jnp.tanh(x @ jax.random.normal(keys[1], (dim, K))) * jnp.array([1.0, 10.0, 0.1])
    params = {
        "trunk": jax.random.normal(keys[2], (dim, hidden)) / jnp.sqrt(dim),
        "heads": jax.random.normal(keys[3], (hidden, K)) / jnp.sqrt(hidden),
    }

    def loss_fn(p, x, y):
        return jnp.mean((jnp.tanh(x @ p["trunk"]) @ p["heads"] - y) ** 2, axis=0)

    return loss_fn, params, x, y


def train(tx, params, x, y, steps=8, **kwargs):
    loss_fn = problem()[0]
    trainer = asj.multitask_train_step(loss_fn, tx, optax.adam(1e-2), **kwargs)
    step = jax.jit(trainer.step)
    state = trainer.init(params)
    for i in range(steps):
        params, state, _ = step(params, state, x, y, key=jax.random.PRNGKey(i))
    return params, state


def mesh() -> Mesh:
    return Mesh(np.array(jax.devices()[:DEVICES]), ("data",))


def data_parallel(params, x, y):
    """Batch sharded over the 8 devices, parameters replicated."""
    m = mesh()
    batch = NamedSharding(m, P("data"))
    replicated = NamedSharding(m, P())
    return jax.device_put(params, replicated), jax.device_put(x, batch), jax.device_put(y, batch)


def sharded_parameters(params, x, y):
    """FSDP-like: every parameter sharded along its hidden axis; the batch sharded too."""
    m = mesh()
    specs = {"trunk": P(None, "data"), "heads": P("data", None)}
    params = {k: jax.device_put(v, NamedSharding(m, specs[k])) for k, v in params.items()}
    batch = NamedSharding(m, P("data"))
    return params, jax.device_put(x, batch), jax.device_put(y, batch)


def assert_same_training(make_tx, layout, **kwargs):
    # In float64: the 8-device program sums in another order, and float32 round-off after 8
    # steps (up to ~3e-5 relative, seen on another CPU) is not what these checks look for.
    with float64():
        _, params, x, y = problem()
        assert x.dtype == jnp.float64
        p1, s1 = train(make_tx(), params, x, y, **kwargs)
        params8, x8, y8 = layout(params, x, y)
        assert len(x8.sharding.device_set) == DEVICES
        p8, s8 = train(make_tx(), params8, x8, y8, **kwargs)
    assert len(jax.tree.leaves(p8)[0].sharding.device_set) == DEVICES
    # AutoScale's estimator keeps float32 weights by design: its rows agree to a few float32
    # units in the last place; the gradient methods' float64 weights to far less.
    rtol = max(1e-9, 16 * float(np.finfo(asj.task_weights(s1).dtype).eps))
    np.testing.assert_allclose(asj.task_weights(s8), asj.task_weights(s1), rtol=rtol)
    # A weight's round-off enters the parameters through the updates: relative to the largest
    # change training made to a leaf, not to a parameter that happens to be near zero.
    jax.tree.map(
        lambda a, b, b0: np.testing.assert_allclose(
            a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b - b0))) + 1e-12
        ),
        p8,
        p1,
        params,
    )


def autoscale(guide):
    return lambda: asj.autoscale(K, 6, window=2, guide=guide)


for _guide in ("gms", "cond", "loss"):
    for _layout in (data_parallel, sharded_parameters):

        def _check(guide=_guide, layout=_layout):
            assert_same_training(autoscale(guide), layout)

        _check.__name__ = f"autoscale_{_guide}_{_layout.__name__}"
        check(_check)


@check
def autoscale_gms_gramian_only_sharded_parameters():
    assert_same_training(autoscale("gms"), sharded_parameters, gradient_mode="gramian")


@check
def mgda_data_parallel():
    assert_same_training(lambda: asj.methods.mgda(K), data_parallel)


@check
def upgrad_sharded_parameters():
    assert_same_training(lambda: asj.methods.upgrad(K), sharded_parameters)


@check
def sharded_gramian_reduces_only_k_by_k():
    # The Gramian of sharded gradients is replicated K×K; its value equals one device's.
    _, params, x, y = problem()
    _, grads = asj.task_value_and_grad(problem()[0])(params, x, y)
    m = mesh()
    sharded = {
        "trunk": jax.device_put(grads["trunk"], NamedSharding(m, P(None, None, "data"))),
        "heads": jax.device_put(grads["heads"], NamedSharding(m, P(None, "data", None))),
    }
    G8 = jax.jit(asj.metrics.gramian)(sharded)
    np.testing.assert_allclose(G8, asj.metrics.gramian(grads), rtol=1e-6)
    hlo = jax.jit(asj.metrics.gramian).lower(sharded).compile().as_text()
    reductions = [line for line in hlo.splitlines() if " all-reduce(" in line]
    assert len(reductions) == 1 and f"= f32[{K},{K}]" in reductions[0], reductions


def run_checks() -> dict:
    """Runs every check in this process (it must have 8 devices): name -> "ok" or the error."""
    results = {}
    for name, fn in CHECKS.items():
        try:
            fn()
            results[name] = "ok"
        except Exception:  # report every failure, not only the first
            results[name] = traceback.format_exc()
    return results


@pytest.fixture(scope="module")
def results() -> dict:
    if len(jax.devices()) >= DEVICES:
        return run_checks()
    here = Path(__file__).parent
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
    }
    code = "import json, test_multi_device as t; print('RESULTS=' + json.dumps(t.run_checks()))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=here,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS=")]
    assert lines, f"the 8-device subprocess failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1][len("RESULTS=") :])


@pytest.mark.parametrize("name", list(CHECKS))
def test_on_8_devices(results, name):
    assert results[name] == "ok", results[name]
