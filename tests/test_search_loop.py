"""The one-call search (autoscale_jax.search.find_weights / WeightSearch) against an independent
step-by-step composition of the same design: AutoScale's phase 1 with the train step (which
restarts the moments at the switch), the candidates, validation_search per stage on stacked
batches, the survivor. Then what streaming promises: chunk memory independent of the rung
length, the sequential option, exact resumes, 8 devices, the weights-only path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from problems import regression_problem

import autoscale_jax as asj
from autoscale_jax import search

ALPHAS = (1.0, 1.5, 2.0, 2.5, 3.0)
STAGES = (search.alpha_stage(ALPHAS, (3, 7)), search.multiplier_stage((4.0,), (3,)))
OPTIONS = dict(budget=40, estimation_steps=4, window=2, stages=STAGES, chunk_size=4)
TOTAL = 4 + 7 + 3


def problem():
    loss3, params, x, y = regression_problem()

    def loss_fn(p, b):
        return loss3(p, *b)

    def batch(t):
        idx = (t * 32 + jnp.arange(32)) % 256
        return (x[idx], y[idx])

    def score(p):  # validation: scale-free losses on shifted inputs, higher is better
        return -jnp.sum(loss3(p, x[:64] + 0.1, y[:64]) / jnp.array([1.0, 100.0, 0.01]))

    return loss_fn, params, batch, score


def stacked(batch, steps):
    return jax.tree.map(lambda *b: jnp.stack(b), *[batch(t) for t in steps])


@pytest.fixture(scope="module")
def reference():
    """The design composed by hand, step by step."""
    loss_fn, params, batch, score = problem()
    opt = optax.adam(1e-2)
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 4, window=2), opt)
    state, p = train.init(params), params
    step = jax.jit(train.step)
    for t in range(4):
        p, state, _ = step(p, state, batch(t))
    w1 = asj.task_weights(state.weighting)
    first = search.validation_search(loss_fn, opt, score, rungs=(3, 7))(
        search.alpha_family(w1, ALPHAS), p, state.optimizer, stacked(batch, range(4, 11))
    )
    second = search.validation_search(loss_fn, opt, score, rungs=(3,))(
        search.task_multipliers(first.weights, (4.0,)),
        first.params,
        first.opt_state,
        stacked(batch, range(11, 14)),
    )
    return w1, first, second


@pytest.fixture(scope="module")
def found():
    loss_fn, params, batch, score = problem()
    return search.find_weights(
        loss_fn, optax.adam(1e-2), score, params, batch, progress=False, **OPTIONS
    )


def assert_trees_close(a, b, rtol=1e-5, atol=1e-7):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def test_one_call_equals_the_step_by_step_composition(found, reference):
    w1, first, second = reference
    np.testing.assert_allclose(found.report.phase_one_weights, w1, rtol=1e-5)
    np.testing.assert_allclose(found.weights, second.weights, rtol=1e-5)
    assert_trees_close(found.params, second.params)
    assert_trees_close(found.opt_state, second.opt_state)
    stage0, stage1 = found.report.stages
    assert (stage0.survivor, stage1.survivor) == (int(first.index), int(second.index))
    np.testing.assert_allclose(stage0.rung_scores, first.rung_scores, rtol=1e-5)
    np.testing.assert_allclose(stage1.rung_scores, second.rung_scores, rtol=1e-5)
    np.testing.assert_allclose(stage0.rung_losses, first.losses, rtol=1e-5)
    np.testing.assert_allclose(stage1.candidates, search.task_multipliers(first.weights, (4.0,)))
    assert (stage0.start_step, stage1.start_step, found.report.steps) == (4, 11, TOTAL)
    # K T1 + (5 x 3 + 3 x 4) + 4 x 3 backward passes; the survivor's 26 remaining steps
    assert found.report.gradient_evaluations == 12 + 27 + 12
    assert found.report.relative_cost == pytest.approx((51 + 40 - TOTAL) / 40)


def test_default_stages_are_the_bench_design():
    try:  # the bench's layout moved once (bench/running/)
        from autoscale_jax.bench.running.method_config import search_options
    except ImportError:
        from autoscale_jax.bench.method_config import search_options

    for k in (2, 3):
        options = search_options(k, 800)
        stages = search.default_stages(k, 800)
        assert stages[0].values == options["alphas"] and stages[0].rungs == options["rungs"]
        assert len(stages) == (2 if k >= 3 else 1)
        if k >= 3:
            assert stages[1].values == options["factors"]
            assert stages[1].rungs == options["refine_rungs"]


def test_chunk_memory_does_not_grow_with_the_rung_length():
    loss_fn, params, batch, score = problem()
    streamed, stacked_bytes = [], []
    for length in (8, 64):
        stage = (search.alpha_stage((1.0, 2.0, 3.0), (length,)),)
        ws = search.WeightSearch(
            loss_fn,
            optax.adam(1e-2),
            score,
            num_tasks=3,
            budget=100,
            estimation_steps=2,
            window=1,
            stages=stage,
            chunk_size=4,
            progress=False,
        )
        state = ws.run(ws.init(params), batch, max_chunks=1)  # phase 1 done: candidates live
        assert int(state.step) == 2 and state.weights.shape == (3, 3)
        memory = ws.lower_chunk(state, batch(0)).compile().memory_analysis()
        streamed.append((memory.temp_size_in_bytes, memory.argument_size_in_bytes))
        find = search.validation_search(loss_fn, optax.adam(1e-2), score, rungs=(length,))
        lowered = find.lower(
            jnp.ones((3, 3)), params, optax.adam(1e-2).init(params), stacked(batch, range(length))
        )
        stacked_bytes.append(lowered.compile().memory_analysis().argument_size_in_bytes)
    assert streamed[0] == streamed[1]
    assert stacked_bytes[1] > 7 * stacked_bytes[0] / 2  # the stacked search holds every batch


def test_sequential_gives_the_vmapped_result(found):
    loss_fn, params, batch, score = problem()
    one_by_one = search.find_weights(
        loss_fn, optax.adam(1e-2), score, params, batch, sequential=True, progress=False, **OPTIONS
    )
    np.testing.assert_allclose(one_by_one.weights, found.weights, rtol=1e-5)
    assert_trees_close(one_by_one.params, found.params)
    assert [s.survivor for s in one_by_one.report.stages] == [
        s.survivor for s in found.report.stages
    ]


def test_progress_reports_every_chunk_in_order():
    loss_fn, params, batch, score = problem()
    calls = []
    search.find_weights(
        loss_fn,
        optax.adam(1e-2),
        score,
        params,
        iter([batch(t) for t in range(14)]),
        progress=lambda *a: calls.append(a),
        **OPTIONS,
    )
    # chunks of 4: phase 1 (4), rung 3 (3), rung 4 (4), stage 2 (3)
    assert [c[0] for c in calls] == [4, 7, 11, 14] and {c[1] for c in calls} == {TOTAL}
    assert calls[0][2].startswith("phase 1") and "5 candidates" in calls[1][2]


def test_progress_true_shows_a_tqdm_bar(capsys):
    pytest.importorskip("tqdm", reason="tqdm is not installed")
    loss_fn, params, batch, score = problem()
    ws = search.WeightSearch(
        loss_fn,
        optax.adam(1e-2),
        score,
        num_tasks=3,
        progress=True,
        **{k: v for k, v in OPTIONS.items() if k != "progress"},
    )
    assert "weight search" not in capsys.readouterr().err  # no bar before the run
    ws.run(ws.init(params), batch, max_chunks=2)
    err = capsys.readouterr().err
    assert "weight search" in err and "7/14" in err and "5 candidates" in err


def test_resume_from_a_checkpoint_is_exact(found, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint", reason="orbax-checkpoint is not installed")
    loss_fn, params, batch, score = problem()

    def make():
        return search.WeightSearch(
            loss_fn, optax.adam(1e-2), score, num_tasks=3, progress=False, **OPTIONS
        )

    first = make()
    state = first.run(first.init(params), batch, max_chunks=2)  # mid stage 1: 5 live rows
    assert int(state.step) == 7 and state.weights.shape == (3, 3)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "search", state)
    checkpointer.wait_until_finished()
    again = make()  # a fresh process would build the search again
    target = again.abstract_state(params, 7)
    restored = checkpointer.restore(tmp_path / "search", target)
    resumed = again.result(again.run(restored, iter([batch(t) for t in range(7, 14)])))
    for got, want in ((resumed.params, found.params), (resumed.opt_state, found.opt_state)):
        jax.tree.map(np.testing.assert_array_equal, got, want)
    np.testing.assert_array_equal(resumed.weights, found.weights)
    np.testing.assert_array_equal(
        resumed.report.stages[0].rung_scores, found.report.stages[0].rung_scores
    )


def test_weights_only_path_trains_with_the_weighted_sum_in_a_plain_loop():
    """AutoScale's weights alone (stages=()), then Σ w_k L_k in a raw optax loop: equal to the
    library's fixed-weights step from the result's train state."""
    loss_fn, params, batch, score = problem()
    opt = optax.adam(1e-2)
    autoscale_only = search.find_weights(
        loss_fn,
        opt,
        score,
        params,
        batch,
        budget=40,
        estimation_steps=4,
        window=2,
        stages=(),
        progress=False,
    )
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 4, window=2), opt)
    state, p = train.init(params), params
    for t in range(4):
        p, state, _ = train.step(p, state, batch(t))
    w = asj.task_weights(state.weighting)
    np.testing.assert_allclose(autoscale_only.weights, w, rtol=1e-6)
    assert autoscale_only.report.gradient_evaluations == 12
    assert int(autoscale_only.opt_state[0].count) == 0  # restarted at the switch

    p, o = autoscale_only.params, autoscale_only.opt_state
    grad = jax.jit(jax.grad(lambda p, b: autoscale_only.weights @ loss_fn(p, b)))
    for t in range(4, 9):  # no library code in the loop
        updates, o = opt.update(grad(p, batch(t)), o, p)
        p = optax.apply_updates(p, updates)
    fixed = asj.multitask_train_step(loss_fn, asj.fixed_weights(autoscale_only.weights), opt)
    q, s = autoscale_only.params, autoscale_only.train_state()
    for t in range(4, 9):
        q, s, _ = fixed.step(q, s, batch(t))
    assert_trees_close(p, q, rtol=1e-5, atol=1e-6)


EIGHT = """
import json, sys
sys.path.insert(0, {tests!r})
import jax, numpy as np, optax
import test_search_loop as t
loss_fn, params, batch, score = t.problem()
runs = [t.search.find_weights(loss_fn, optax.adam(1e-2), score, params, batch, progress=False,
                              devices=devices, **t.OPTIONS) for devices in (None, jax.devices())]
diff = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))
                    / (np.abs(np.asarray(b)) + 1e-6))), runs[1].params, runs[0].params)
sharded = runs[1].report
ws = t.search.WeightSearch(loss_fn, optax.adam(1e-2), score, num_tasks=3, progress=False,
                           devices=jax.devices(), **{{k: v for k, v in t.OPTIONS.items()}})
paused = ws.run(ws.init(params), batch, max_chunks=2)  # 5 live rows padded to 8, sharded
restored = jax.device_put(jax.device_get(paused), jax.devices()[0])  # as a restore gives it
resumed = ws.result(ws.run(restored, batch))
same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(resumed.params),
                                                 jax.tree.leaves(runs[1].params)))
print(json.dumps({{"devices": len(jax.devices()), "diff": max(jax.tree.leaves(diff)),
    "weights": np.asarray(runs[1].weights).tolist(), "one": np.asarray(runs[0].weights).tolist(),
    "survivors": [s.survivor for s in sharded.stages],
    "one_survivors": [s.survivor for s in runs[0].report.stages],
    "rows": int(paused.ids.shape[0]), "resumed_exact": bool(same)}}))
"""


def test_eight_devices_equal_one_device():
    """Live counts 5, 3 and 4 are padded to 8 rows on 8 host devices; same search; a state
    paused there and put back on one device resumes to the same result exactly."""
    tests = str(Path(__file__).resolve().parent)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    done = subprocess.run(
        [sys.executable, "-c", EIGHT.format(tests=tests)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert out["survivors"] == out["one_survivors"]
    np.testing.assert_allclose(out["weights"], out["one"], rtol=1e-5)
    assert out["diff"] < 1e-5
    assert out["rows"] == 8 and out["resumed_exact"]


def test_partial_labels_absent_tasks_get_weight_zero():
    """loss_fn -> (losses, counts): task 2 is unlabelled on odd steps, where its loss is a
    placeholder with a real gradient (the mean error over every row). One fixed candidate, no
    pruning: equal to phase 1 with task_counts and a hand-written loop on Σ_k [n_k > 0] w_k L_k
    (the placeholder would move the parameters if it reached the update)."""
    _, params, batch, score = problem()

    def loss_fn(p, b):
        x, y, labelled = b
        errors = (jnp.tanh(x @ p["trunk"]) @ p["heads"] - y) ** 2
        count = jnp.sum(labelled)
        last = jnp.where(
            count > 0, jnp.sum(errors[:, 2] * labelled) / jnp.maximum(count, 1), errors[:, 2].mean()
        )
        losses = jnp.stack([errors[:, 0].mean(), errors[:, 1].mean(), last])
        return losses, jnp.stack([jnp.float32(x.shape[0])] * 2 + [count])

    def masked(t):
        x, y = batch(t)
        return x, y, jnp.full((x.shape[0],), float(t % 2 == 0))

    w = jnp.array([1.0, 0.01, 2.0])
    opt = optax.adam(1e-2)
    found = search.find_weights(
        loss_fn,
        opt,
        lambda p: score(p),
        params,
        masked,
        budget=40,
        estimation_steps=4,
        window=2,
        chunk_size=4,
        progress=False,
        stages=(search.weights_stage(w[None], (5,)),),
    )
    train = asj.multitask_train_step(loss_fn, asj.autoscale(3, 4, window=2), opt, task_counts=True)
    p, state = params, train.init(params)
    for t in range(4):
        p, state, _ = train.step(p, state, masked(t))
    o = state.optimizer

    def weighted(p, b):
        losses, counts = loss_fn(p, b)
        return jnp.sum(jnp.where(counts > 0, w * losses, 0.0))

    for t in range(4, 9):
        updates, o = opt.update(jax.grad(weighted)(p, masked(t)), o, p)
        p = optax.apply_updates(p, updates)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(found.params))
    assert_trees_close(found.params, p, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(found.weights, w)


def _record_search(restart, record=None):
    loss_fn, params, batch, score = problem()
    search_ = search.WeightSearch(
        loss_fn,
        optax.adam(1e-2),
        score,
        num_tasks=3,
        budget=40,
        estimation_steps=4,
        window=2,
        stages=STAGES[:1],
        chunk_size=3,  # phase 1 in two chunks, the second padded with two skipped steps
        restart=restart,
        record=record,
        progress=False,
    )
    return search_, params, batch


@pytest.mark.parametrize("restart", [True, False])
def test_record_gives_every_phase_one_step_and_restart_false_carries_the_moments(restart):
    search_, params, batch = _record_search(
        restart, lambda s, losses: (losses, asj.task_weights(s.weighting))
    )
    records, states = [], []
    search_.run(
        search_.init(params),
        batch,
        max_chunks=2,
        callback=states.append,
        on_record=lambda step, values: records.append((step, values)),
    )
    loss_fn, _, _, _ = problem()
    train = asj.multitask_train_step(
        loss_fn, asj.autoscale(3, 4, window=2), optax.adam(1e-2), restart_moments=restart
    )
    state, p, losses, weights = train.init(params), params, [], []
    for t in range(4):
        p, state, step_losses = jax.jit(train.step)(p, state, batch(t))
        losses.append(step_losses)
        weights.append(asj.task_weights(state.weighting))
    # The padding steps of the second chunk are dropped: 3 + 1 records, one per real step.
    assert [(step, len(values[0])) for step, values in records] == [(0, 3), (3, 1)]
    got = [np.concatenate([values[i] for _, values in records]) for i in (0, 1)]
    np.testing.assert_allclose(got[0], np.stack(losses), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.stack(weights), rtol=1e-6)
    # Stage 1 starts from phase 1's optimizer state: Adam restarted (count 0) or carried (4).
    adam = states[-1].opt_state[0]
    assert np.asarray(adam.count).tolist() == [0 if restart else 4] * len(ALPHAS)
    assert_trees_close(jax.tree.map(lambda x: x[0], states[-1].opt_state), state.optimizer)


RECORD_CASES = [
    ("record-not-callable", {"record": 3}, {}, TypeError, "record must be callable"),
    ("restart-not-bool", {"restart": "yes"}, {}, TypeError, "restart must be True or False"),
    ("on-record-without-record", {}, {"on_record": print}, ValueError, "with record="),
    ("on-record-not-callable", {"record": print}, {"on_record": 3}, TypeError, "on_record must"),
]


@pytest.mark.parametrize(
    ("build", "run", "error", "match"),
    [case[1:] for case in RECORD_CASES],
    ids=[case[0] for case in RECORD_CASES],
)
def test_record_options_are_checked_before_the_first_step(build, run, error, match):
    with pytest.raises(error, match=match):
        search_, params, batch = _record_search(build.get("restart", True), build.get("record"))
        search_.run(search_.init(params), batch, **run)
