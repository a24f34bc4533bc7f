"""The search's inputs: each bad one gives a clear error before the first step, or a defined
result that the SearchResult reports (which candidate survives, ``nonfinite``, ``ok``)."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from autoscale_jax import search

# A linear model with two tasks: loss_fn(params, indices) -> [2]; batches are index rows.
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)
Y = X @ jnp.array([[1.0, -2.0], [0.5, 3.0]])
PARAMS = {"w": jnp.zeros((2, 2))}
SGD = optax.sgd(0.1)
STATE = SGD.init(PARAMS)
BATCHES = jnp.tile(jnp.arange(4), (4, 1))  # 4 steps of 4 samples
CANDS = jnp.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0]])
NAN = float("nan")


def loss_fn(params, batch):
    return jnp.mean((X[batch] @ params["w"] - Y[batch]) ** 2, axis=0)


def score(params):
    return -jnp.sum(loss_fn(params, jnp.arange(8)))


def stacked(tree, count=3):
    return jax.tree.map(lambda x: jnp.stack([x] * count), tree)


def halving(candidates=CANDS, *, score_fn=score, params=PARAMS, opt_state=STATE, **kwargs):
    """An eager successive_halving on the linear problem; keyword overrides."""
    batches = kwargs.pop("batches", BATCHES)
    loss, optimizer = kwargs.pop("loss", loss_fn), kwargs.pop("optimizer", SGD)
    kwargs = {"rungs": (2, 4), **kwargs}
    args = (loss, optimizer, score_fn, candidates, params, opt_state, batches)
    return search.successive_halving(*args, **kwargs)


def train(weights=CANDS, *, params=None, opt_state=None, batches=BATCHES, **kwargs):
    count = (jnp.shape(weights)[0] if jnp.ndim(weights) == 2 else 0) or 3
    params = stacked(PARAMS, count) if params is None else params
    opt_state = stacked(STATE, count) if opt_state is None else opt_state
    loss, optimizer = kwargs.pop("loss", loss_fn), kwargs.pop("optimizer", SGD)
    return search.train_candidates(loss, optimizer, weights, params, opt_state, batches)


def find(candidates=CANDS, *, score_fn=score, **kwargs):
    return search.validation_search(loss_fn, SGD, score_fn, rungs=(2, 4), **kwargs)(
        candidates, PARAMS, STATE, BATCHES
    )


def nan_score(params):
    return jnp.nan * jnp.sum(params["w"])


def score_nan_for(index, value=jnp.nan):
    """``value`` for the candidate trained 4 steps with CANDS[index], the ordinary score
    otherwise (told apart by its parameters). Unchanged, the ranking is 2 > 1 > 0."""
    target = train()[0]["w"][index]  # the 4-step trajectory; the search's last rung is 4 steps

    def score_fn(params):
        hit = jnp.allclose(params["w"], target, atol=1e-6)
        return jnp.where(hit, value, score(params))

    return score_fn


def compiled_all_nan():
    fn = search.validation_search(loss_fn, SGD, nan_score, rungs=(2, 4))
    return fn.lower(CANDS, PARAMS, STATE, BATCHES).compile()(CANDS, PARAMS, STATE, BATCHES)


class Raises(NamedTuple):
    error: type
    match: str
    result: dict | None = None  # fields of the SearchError's result


class Result(NamedTuple):
    fields: dict  # SearchResult field -> expected value; "rows_nan": rows that are all NaN


def nan_rows(array):
    return [i for i, row in enumerate(np.asarray(array)) if np.all(np.isnan(row))]


CASES: list[Any] = [
    # halving_counts / search_cost: counts, keep, rungs
    ("count-float", lambda: search.halving_counts(2.5, 2), Raises(ValueError, "num_candidates")),
    ("count-zero", lambda: search.halving_counts(0, 2), Raises(ValueError, "num_candidates")),
    ("rungs-count-bool", lambda: search.halving_counts(4, True), Raises(ValueError, "num_rungs")),
    (
        "keep-above-1",
        lambda: search.halving_counts(4, 2, 1.5),
        Raises(ValueError, r"keep .*\(0, 1\]"),
    ),
    ("keep-zero", lambda: search.halving_counts(4, 2, 0.0), Raises(ValueError, r"keep .*\(0, 1\]")),
    (
        "keep-negative",
        lambda: search.search_cost(4, (2,), -0.5),
        Raises(ValueError, "keep must lie"),
    ),
    ("keep-nan", lambda: search.halving_counts(4, 2, NAN), Raises(ValueError, "keep must lie")),
    (
        "keep-string",
        lambda: search.halving_counts(4, 2, "0.5"),
        Raises(TypeError, "keep must be a number"),
    ),
    (
        "rungs-float",
        lambda: search.search_cost(4, (10.5, 20)),
        Raises(TypeError, "integer step counts"),
    ),
    ("rungs-empty", lambda: search.search_cost(4, ()), Raises(ValueError, "rungs is empty")),
    ("rungs-decreasing", lambda: search.search_cost(4, (20, 10)), Raises(ValueError, "increasing")),
    (
        "rungs-zero",
        lambda: search.search_cost(4, (0, 10)),
        Raises(ValueError, "increasing positive"),
    ),
    (
        "rungs-scalar",
        lambda: search.search_cost(4, 10),
        Raises(TypeError, "sequence of step counts"),
    ),
    # alpha_weights
    (
        "G-vector",
        lambda: search.alpha_weights(jnp.ones(3), 1.0),
        Raises(ValueError, "square Gramian"),
    ),
    (
        "G-nan",
        lambda: search.alpha_weights(jnp.diag(jnp.array([1.0, NAN])), 1.0),
        Raises(ValueError, "finite Gramian"),
    ),
    (
        "G-negative-diagonal",
        lambda: search.alpha_weights(jnp.diag(jnp.array([1.0, -1.0])), 1.0),
        Raises(ValueError, "non-negative diagonal"),
    ),
    (
        "alpha-vector",
        lambda: search.alpha_weights(jnp.eye(2), jnp.ones(2)),
        Raises(ValueError, "alpha must be a scalar"),
    ),
    (
        "alpha-nan",
        lambda: search.alpha_weights(jnp.eye(2), NAN),
        Raises(ValueError, "alpha must be finite"),
    ),
    (
        "eps-negative",
        lambda: search.alpha_weights(jnp.eye(2), 1.0, eps=-1.0),
        Raises(ValueError, r"eps must .*\[0, 1\)"),
    ),
    (
        "G-nan-traced",
        lambda: jax.jit(search.alpha_weights)(jnp.diag(jnp.array([1.0, NAN])), 1.0)[None],
        Result({"rows_nan": [0]}),
    ),
    # alpha_family
    (
        "gms-zero",
        lambda: search.alpha_family(jnp.array([0.0, 1.0]), (0.0, 1.0)),
        Raises(ValueError, "gms_weights must hold finite positive"),
    ),
    (
        "gms-negative",
        lambda: search.alpha_family(jnp.array([-1.0, 1.0]), (1.0,)),
        Raises(ValueError, "gms_weights must hold finite positive"),
    ),
    (
        "gms-nan",
        lambda: search.alpha_family(jnp.array([NAN, 1.0]), (1.0,)),
        Raises(ValueError, "gms_weights must hold finite positive"),
    ),
    (
        "gms-2d",
        lambda: search.alpha_family(jnp.ones((2, 2)), (1.0,)),
        Raises(ValueError, "gms_weights must be a non-empty vector"),
    ),
    (
        "gms-one-task",
        lambda: search.alpha_family(jnp.ones(1), (1.0,)),
        Raises(ValueError, "K >= 2"),
    ),
    (
        "alphas-empty",
        lambda: search.alpha_family(jnp.ones(2), ()),
        Raises(ValueError, "alphas must be a non-empty vector"),
    ),
    (
        "alphas-nan",
        lambda: search.alpha_family(jnp.ones(2), (1.0, NAN)),
        Raises(ValueError, "alphas must hold finite"),
    ),
    (
        "alphas-repeat",
        lambda: search.alpha_family(jnp.ones(2), (1.0, 1.0)),
        Raises(ValueError, "alphas repeat"),
    ),
    (
        "alphas-overflow",
        lambda: search.alpha_family(jnp.array([0.5, 1.5]), (1.0, -500.0)),
        Raises(ValueError, "overflow float32"),
    ),
    (
        "gms-zero-traced",
        lambda: jax.jit(search.alpha_family, static_argnums=1)(jnp.array([0.0, 1.0]), (0.0, 1.0)),
        Result({"rows_nan": [0, 1]}),
    ),
    # task_multipliers
    (
        "factor-one",
        lambda: search.task_multipliers(jnp.ones(3), (1.0, 4.0)),
        Raises(ValueError, "differ from 1"),
    ),
    (
        "factor-zero",
        lambda: search.task_multipliers(jnp.ones(3), (0.0,)),
        Raises(ValueError, "factors must hold finite positive"),
    ),
    (
        "factor-negative",
        lambda: search.task_multipliers(jnp.ones(3), (-2.0,)),
        Raises(ValueError, "factors must hold finite positive"),
    ),
    (
        "factor-nan",
        lambda: search.task_multipliers(jnp.ones(3), (NAN,)),
        Raises(ValueError, "factors must hold finite positive"),
    ),
    (
        "factors-empty",
        lambda: search.task_multipliers(jnp.ones(3), ()),
        Raises(ValueError, "factors must be a non-empty vector"),
    ),
    (
        "factors-repeat",
        lambda: search.task_multipliers(jnp.ones(3), (4.0, 4.0)),
        Raises(ValueError, "factors repeat"),
    ),
    (
        "factors-pair-k2",
        lambda: search.task_multipliers(jnp.ones(2), (4.0, 0.25)),
        Raises(ValueError, "pair f, 1/f"),
    ),
    (
        "centre-zero",
        lambda: search.task_multipliers(jnp.array([0.0, 1.0, 1.0]), (4.0,)),
        Raises(ValueError, "weights must hold finite positive"),
    ),
    (
        "centre-2d",
        lambda: search.task_multipliers(jnp.ones((1, 3)), (4.0,)),
        Raises(ValueError, "weights must be a non-empty vector"),
    ),
    # train_candidates
    (
        "train-weights-vector",
        lambda: train(jnp.ones(2)),
        Raises(ValueError, r"weights must be a matrix \[num_candidates, K\]"),
    ),
    ("train-weights-nan", lambda: train(CANDS.at[1, 0].set(NAN)), Raises(ValueError, "row 1 is")),
    (
        "train-weights-negative",
        lambda: train(CANDS.at[2, 1].set(-1.0)),
        Raises(ValueError, "finite and >= 0"),
    ),
    (
        "train-weights-zero-row",
        lambda: train(CANDS.at[0].set(0.0)),
        Raises(ValueError, "positive entry in every row"),
    ),
    (
        "train-weights-empty",
        lambda: train(jnp.ones((0, 2))),
        Raises(ValueError, "at least one of each"),
    ),
    (
        "train-params-no-axis",
        lambda: train(params=PARAMS),
        Raises(ValueError, "params needs a leading candidate axis of size 3"),
    ),
    (
        "train-state-no-axis",
        lambda: train(opt_state=optax.adam(0.1).init(PARAMS), optimizer=optax.adam(0.1)),
        Raises(ValueError, "opt_state does not match"),
    ),
    ("train-zero-steps", lambda: train(batches=BATCHES[:0]), Raises(ValueError, "hold 0 steps")),
    (
        "train-ragged-steps",
        lambda: train(batches=(BATCHES, BATCHES[:2])),
        Raises(ValueError, "same leading step axis"),
    ),
    (
        "train-loss-k-mismatch",
        lambda: train(jnp.ones((3, 3))),
        Raises(ValueError, "K = 3 task losses"),
    ),
    (
        "train-loss-scalar",
        lambda: train(loss=lambda p, b: jnp.sum(loss_fn(p, b))),
        Raises(ValueError, r"float vector \[2\]"),
    ),
    (
        "train-optimizer-factory",
        lambda: train(optimizer=optax.sgd),
        Raises(TypeError, "optax transformation"),
    ),
    (
        "train-loss-not-callable",
        lambda: train(loss="mse"),
        Raises(TypeError, "loss_fn must be callable"),
    ),
    # successive_halving: arguments
    (
        "search-candidates-3d",
        lambda: halving(CANDS[None]),
        Raises(ValueError, "candidates must be a matrix"),
    ),
    (
        "search-candidates-k-mismatch",
        lambda: halving(jnp.ones((3, 3))),
        Raises(ValueError, "K = 3 task losses"),
    ),
    (
        "search-candidates-nan",
        lambda: halving(CANDS.at[0, 0].set(NAN)),
        Raises(ValueError, "candidates must be finite"),
    ),
    (
        "search-batches-short",
        lambda: halving(rungs=(2, 6)),
        Raises(ValueError, "hold 4 steps .* last rung needs 6"),
    ),
    (
        "search-batches-none",
        lambda: halving(batches=None),
        Raises(ValueError, "batches holds no arrays"),
    ),
    (
        "search-rungs-float",
        lambda: halving(rungs=(1.5, 4)),
        Raises(TypeError, "integer step counts"),
    ),
    ("search-keep-above-1", lambda: halving(keep=2.0), Raises(ValueError, "keep must lie")),
    (
        "search-score-vector",
        lambda: halving(score_fn=lambda p: loss_fn(p, BATCHES[0])),
        Raises(ValueError, "score_fn.* one real scalar"),
    ),
    (
        "search-score-not-callable",
        lambda: halving(score_fn=None),
        Raises(TypeError, "score_fn must be callable"),
    ),
    (
        "search-state-stacked",
        lambda: halving(optimizer=optax.adam(0.1), opt_state=stacked(optax.adam(0.1).init(PARAMS))),
        Raises(ValueError, "without a candidate axis"),
    ),
    (
        "search-params-nan",
        lambda: halving(params={"w": jnp.full((2, 2), NAN)}),
        Raises(ValueError, "params hold NaN"),
    ),
    (
        "search-params-int",
        lambda: halving(params={"w": jnp.zeros((2, 2), jnp.int32)}),
        Raises(TypeError, "float array"),
    ),
    # successive_halving: non-finite scores and parameters at run time
    ("search-clean", lambda: halving(), Result({"ok": True, "nonfinite": [False, False]})),
    (
        "search-every-score-nan",
        lambda: halving(score_fn=nan_score),
        Raises(
            search.SearchError, "did not pick by score", {"ok": False, "nonfinite": [True, True]}
        ),
    ),
    (
        "search-winner-score-nan",
        lambda: halving(score_fn=score_nan_for(2), rungs=(4,)),
        Result({"index": 1, "ok": True, "nonfinite": [False]}),
    ),
    (
        "search-score-plus-inf-ranks-last",
        lambda: halving(score_fn=score_nan_for(2, jnp.inf), rungs=(4,)),
        Result({"index": 1, "ok": True}),
    ),
    (
        "search-nan-params-never-survive",
        lambda: halving(CANDS.at[0].set(1e30), score_fn=lambda p: 0.0, rungs=(4,)),
        Result({"index": 1, "ok": True}),
    ),
    (
        "search-all-params-nan",
        lambda: halving(CANDS * 1e30, score_fn=lambda p: 0.0, rungs=(4,)),
        Raises(search.SearchError, "may hold NaN parameters", {"ok": False, "index": 0}),
    ),
    (
        "jit-search-nan-candidate-never-survives",
        lambda: jax.jit(halving)(CANDS.at[0, 0].set(NAN)),
        Result({"ok": True, "index_in": [1, 2]}),
    ),
    # validation_search
    (
        "find-every-score-nan",
        lambda: find(score_fn=nan_score),
        Raises(search.SearchError, "did not pick by score", {"ok": False}),
    ),
    (
        "find-compiled-every-score-nan",
        compiled_all_nan,
        Result({"ok": False, "nonfinite": [True, True]}),
    ),
    (
        "find-candidates-negative",
        lambda: find(CANDS.at[1, 1].set(-1.0)),
        Raises(ValueError, "candidates must be finite and >= 0"),
    ),
    (
        "find-rungs-float",
        lambda: search.validation_search(loss_fn, SGD, score, rungs=(2.0, 4)),
        Raises(TypeError, "integer step counts"),
    ),
    (
        "find-keep-zero",
        lambda: search.validation_search(loss_fn, SGD, score, rungs=(4,), keep=0),
        Raises(ValueError, "keep must lie"),
    ),
]


@pytest.mark.parametrize(("run", "expect"), [pytest.param(r, e, id=i) for i, r, e in CASES])
def test_bad_search_input(run, expect):
    if isinstance(expect, Raises):
        with pytest.raises(expect.error, match=expect.match) as info:
            run()
        if expect.result is not None:
            result = info.value.result
            for name, value in expect.result.items():
                np.testing.assert_array_equal(np.asarray(getattr(result, name)), value)
        return
    out = run()
    for name, value in expect.fields.items():
        if name == "index_in":
            assert int(out.index) in value
        elif name == "rows_nan":
            assert nan_rows(out) == value
            assert np.all(
                np.isfinite(np.asarray(out)[[i for i in range(len(out)) if i not in value]])
            )
        else:
            np.testing.assert_array_equal(np.asarray(getattr(out, name)), value)
