"""The one-call search's inputs (find_weights, WeightSearch, the stages): every argument is
checked before the first step with an error naming it; what only the run can reveal (an
iterator that runs out, a batch of another shape, phase 1 without a usable sample, a score
that is never finite) raises when it happens, naming the step and the fix."""

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh
from table_checks import raises

from autoscale_jax import search

X = jnp.asarray(np.random.default_rng(0).normal(size=(16, 2)), jnp.float32)
Y = X @ jnp.array([[1.0, -2.0], [0.5, 3.0]])
PARAMS = {"trunk": jnp.eye(2), "head": jnp.ones((2, 2))}
ADAM = optax.adam(1e-2)
STAGE = (search.alpha_stage((1.0, 2.0), (2,)),)
SMALL = dict(budget=20, estimation_steps=2, window=1, stages=STAGE, progress=False)


def loss_fn(params, batch):
    return jnp.mean((X[batch] @ params["trunk"] @ params["head"] - Y[batch]) ** 2, axis=0)


def score(params):
    return -jnp.sum(loss_fn(params, jnp.arange(16)))


def batch(t):
    return (t * 4 + jnp.arange(4)) % 16


def find(*, loss=loss_fn, optimizer=ADAM, score_fn=score, params=PARAMS, batches=batch, **kw):
    return search.find_weights(loss, optimizer, score_fn, params, batches, **{**SMALL, **kw})


def weight_search(**kw):
    options = {**SMALL, "num_tasks": 2, **kw}
    return search.WeightSearch(loss_fn, ADAM, score, **options)


def own_params_loss(params, b):  # no leaf shared by the two tasks: phase 1 has no sample
    return jnp.stack([jnp.sum(params["a"] ** 2), jnp.sum(params["b"] ** 2)]) + 0.0 * b[0]


def changing_shape(t):
    return jnp.arange(4) if t < 3 else jnp.arange(3)


class Case(NamedTuple):
    id: str
    run: Any
    check: Any


CASES = [
    Case(
        "loss_fn not callable", lambda: find(loss=3), raises(TypeError, "loss_fn must be callable")
    ),
    Case(
        "optimizer factory",
        lambda: find(optimizer=optax.adam),
        raises(TypeError, "not the factory optax.adam"),
    ),
    Case(
        "score_fn not callable",
        lambda: find(score_fn=None),
        raises(TypeError, "score_fn must be callable"),
    ),
    Case(
        "budget zero", lambda: find(budget=0), raises(ValueError, "budget must be a positive int")
    ),
    Case(
        "budget float",
        lambda: find(budget=20.0),
        raises(ValueError, "budget must be a positive int"),
    ),
    Case(
        "chunk_size zero",
        lambda: find(chunk_size=0),
        raises(ValueError, "chunk_size must be a positive int"),
    ),
    Case(
        "estimation_steps negative",
        lambda: find(estimation_steps=-1),
        raises(ValueError, "estimation_steps must be"),
    ),
    Case(
        "design over budget",
        lambda: find(budget=3),
        raises(ValueError, "take 4 steps, more than budget = 3"),
    ),
    Case("unknown guide", lambda: find(guide="bogus"), raises(ValueError, "guide")),
    Case(
        "one Stage, not a sequence",
        lambda: find(stages=STAGE[0]),
        raises(TypeError, "stages must be a sequence of Stage"),
    ),
    Case(
        "stage not a Stage",
        lambda: find(stages=[(1.0, 2.0)]),
        raises(TypeError, r"stages\[0\] must be a Stage"),
    ),
    Case(
        "alphas repeat",
        lambda: find(stages=(search.alpha_stage((1.0, 1.0), (2,)),)),
        raises(ValueError, "alphas repeat a value"),
    ),
    Case(
        "rungs decreasing",
        lambda: search.alpha_stage((1.0, 2.0), (4, 2)),
        raises(ValueError, "rungs must be increasing"),
    ),
    Case(
        "rungs float",
        lambda: search.alpha_stage((1.0, 2.0), (2.5,)),
        raises(TypeError, "rungs must hold integer step counts"),
    ),
    Case(
        "keep zero",
        lambda: search.multiplier_stage((4.0,), (2,), keep=0),
        raises(ValueError, r"keep must lie in \(0, 1\]"),
    ),
    Case(
        "factor one",
        lambda: find(stages=(search.multiplier_stage((1.0,), (2,)),)),
        raises(ValueError, "factors must differ from 1"),
    ),
    Case(
        "weights width",
        lambda: find(stages=(search.weights_stage(np.ones((2, 3)), (2,)),)),
        raises(ValueError, r"stages\[0\] has candidates for 3 tasks"),
    ),
    Case(
        "weights negative",
        lambda: search.weights_stage([[1.0, -1.0]], (2,)),
        raises(ValueError, "candidates must be finite and >= 0"),
    ),
    Case(
        "devices a string",
        lambda: find(devices="cpu"),
        raises(TypeError, "devices must be a non-empty sequence"),
    ),
    Case(
        "devices repeated",
        lambda: find(devices=[jax.devices()[0]] * 2),
        raises(ValueError, "devices must be distinct"),
    ),
    Case(
        "devices and sequential",
        lambda: find(devices=jax.devices(), sequential=True),
        raises(ValueError, "drop devices= or sequential=True"),
    ),
    Case(
        "2-D mesh",
        lambda: find(devices=Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))),
        raises(ValueError, "1-D mesh"),
    ),
    Case(
        "progress a string",
        lambda: find(progress="yes"),
        raises(TypeError, "progress must be None"),
    ),
    Case(
        "sequential not a bool",
        lambda: find(sequential="yes"),
        raises(TypeError, "sequential must be True or False"),
    ),
    Case(
        "batches an int",
        lambda: find(batches=3),
        raises(TypeError, "batches must be an iterator of batches"),
    ),
    Case("batches empty", lambda: find(batches=[]), raises(ValueError, "batches is empty")),
    Case(
        "iterator runs out",
        lambda: find(batches=iter([batch(t) for t in range(3)])),
        raises(ValueError, "batches ran out at step 3"),
    ),
    Case(
        "batch shape changes",
        lambda: find(batches=changing_shape),
        raises(ValueError, "the batch of step 3 has leaves"),
    ),
    Case(
        "loss scalar",
        lambda: find(loss=lambda p, b: jnp.sum(loss_fn(p, b))),
        raises(ValueError, r"must return the K task losses as a vector \[K\]"),
    ),
    Case(
        "one task",
        lambda: find(loss=lambda p, b: loss_fn(p, b)[:1]),
        raises(ValueError, "num_tasks must be >= 2"),
    ),
    Case(
        "score a vector",
        lambda: find(score_fn=lambda p: loss_fn(p, jnp.arange(4))),
        raises(ValueError, "must return one real scalar"),
    ),
    Case(
        "int params",
        lambda: find(params={"trunk": jnp.eye(2, dtype=jnp.int32), "head": PARAMS["head"]}),
        raises(TypeError, "every leaf of params must be a float array"),
    ),
    Case(
        "NaN params",
        lambda: find(params={"trunk": jnp.full((2, 2), jnp.nan), "head": PARAMS["head"]}),
        raises(ValueError, "params hold NaN or inf"),
    ),
    Case(
        "num_tasks not the loss's",
        lambda: weight_search(num_tasks=3).run(weight_search(num_tasks=3).init(PARAMS), batch),
        raises(ValueError, "K = num_tasks = 3"),
    ),
    Case(
        "task_counts without counts",
        lambda: weight_search(task_counts=True).run(weight_search().init(PARAMS), batch),
        raises(ValueError, "task_counts=True exactly when"),
    ),
    Case(
        "result before the end",
        lambda: weight_search().result(weight_search().init(PARAMS)),
        raises(ValueError, "the search is at step 0 of 4"),
    ),
    Case(
        "max_chunks zero",
        lambda: weight_search().run(weight_search().init(PARAMS), batch, max_chunks=0),
        raises(ValueError, "max_chunks must be a positive int"),
    ),
    Case(
        "callback not callable",
        lambda: weight_search().run(weight_search().init(PARAMS), batch, callback=1),
        raises(TypeError, "callback must be callable"),
    ),
    Case(
        "phase 1 without a sample",
        lambda: find(
            loss=own_params_loss,
            score_fn=lambda p: -jnp.sum(p["a"]),
            params={"a": jnp.ones(2), "b": jnp.ones(2)},
        ),
        raises(ValueError, "stage 0 starts from non-finite weights"),
    ),
    Case(
        "score never finite",
        lambda: find(score_fn=lambda p: jnp.nan * jnp.sum(p["head"])),
        raises(search.SearchError, "did not pick by score"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_search_loop_input(case):
    case.check(case.run)


def test_cases_have_unique_ids():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(list(itertools.chain(ids))) == 40
