"""The bench method autoscale_search: phase 1, the search, the survivor; its cost accounting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bench_tiny import BUDGET, STEPS, tiny_benchmark, tiny_report

from autoscale_jax import search
from autoscale_jax.bench.running import search_run
from autoscale_jax.bench.running.method_config import (
    SEARCH_METHOD,
    MethodConfig,
    default_methods,
    search_options,
)
from autoscale_jax.bench.running.run_store import RunStore, run_key
from autoscale_jax.bench.running.seeds import run_seeds

ESTIMATION, RUNGS = 5, (5, 12)


def _config():
    options = search_options(2, STEPS)
    options.update(estimation_steps=ESTIMATION, window=5, rungs=RUNGS)
    return MethodConfig("autoscale_search", SEARCH_METHOD, options)


def test_search_options_cost_at_most_twice_equal_weights():
    for k in (2, 3):
        options = search_options(k, 800)
        extra = 0
        end = options["estimation_steps"]
        for rungs in (options["rungs"], options.get("refine_rungs")):
            if rungs:
                count = len(options["alphas"]) if extra == 0 else 1 + k
                extra += search.search_cost(count, rungs, options["keep"]) - rungs[-1]
                end += rungs[-1]
        evaluations = k * options["estimation_steps"] + (800 - options["estimation_steps"]) + extra
        assert end <= 0.5 * 800 and evaluations <= 2 * 800
    assert SEARCH_METHOD in [c.label for c in default_methods(2, 800)]


def test_search_run_accounts_for_every_gradient_evaluation(tmp_path):
    bench, baselines = tiny_benchmark(), tiny_report().baselines
    store = RunStore(str(tmp_path), resume=True, report=pytest.fail)
    (result,) = run_seeds(bench, _config(), (0,), baselines=baselines, store=store, **BUDGET)
    # Its run file passes the schema and digest checks: a resumed suite loads it.
    key = run_key(bench, _config(), seed=0, baselines=baselines, **BUDGET)
    assert store.load(key) is not None and store.tally == {"missing": 1, "saved": 1, "loaded": 1}
    k, alphas = bench.num_tasks, len(_config().options["alphas"])
    search_steps = search.search_cost(alphas, RUNGS)
    counts = search.halving_counts(alphas, len(RUNGS))
    assert search_steps == counts[0] * 5 + counts[1] * 7
    end = ESTIMATION + RUNGS[-1]
    assert result.gradient_evaluations == k * ESTIMATION + search_steps + (STEPS - end)
    (stage,) = result.extras["stages"]
    assert stage["start_step"] == ESTIMATION and stage["rungs"] == list(RUNGS)
    scores = np.asarray(stage["rung_scores"], np.float64)
    assert [int(np.sum(np.isfinite(row))) for row in scores] == list(counts)
    assert stage["survivor"] == int(np.nanargmax(scores[-1]))
    np.testing.assert_allclose(stage["weights"], stage["candidates"][stage["survivor"]])
    # α = 1 is the phase-1 (gms) pick itself: the first candidate is the weights phase 1 ended on.
    np.testing.assert_allclose(stage["candidates"][0], result.weights[(ESTIMATION - 1)], rtol=1e-5)
    # From the end of phase 1 the run trains with the survivor's weights, scored on validation
    # from the end of the search on (every eval_every steps after it).
    assert result.validation_steps == [end, 20, 30]
    assert result.selected_step in result.validation_steps
    np.testing.assert_allclose(result.weights[-1], stage["weights"], rtol=1e-6)
    survivor_score = scores[-1, stage["survivor"]]
    np.testing.assert_allclose(survivor_score, result.validation_scores[0], atol=1e-3)
    assert result.wall_time_s > 0 and result.delta_m is not None


def test_search_run_refuses_a_search_longer_than_the_budget():
    options = dict(_config().options, rungs=(20, 40))
    with pytest.raises(ValueError, match="budget"):
        search_run.run(tiny_benchmark(), MethodConfig("s", SEARCH_METHOD, options), **BUDGET)


@pytest.mark.parametrize("fresh", [True, False])
def test_search_starts_from_a_fresh_optimizer_state_unless_told_not_to(monkeypatch, fresh):
    # The bench runs the public WeightSearch; the state after its first chunk (phase 1, one
    # chunk) holds the candidates' optimizer state as stage 1 starts.
    seen = []
    run = search.WeightSearch.run

    def recording(self, state, batches, *, callback=None, **kwargs):
        def record(state):
            seen.append(state)
            return callback(state)

        return run(self, state, batches, callback=record, **kwargs)

    monkeypatch.setattr(search.WeightSearch, "run", recording)
    options = dict(_config().options, fresh_optimizer=fresh)
    search_run.run(tiny_benchmark(), MethodConfig("s", SEARCH_METHOD, options), **BUDGET)
    assert int(seen[0].step) == ESTIMATION
    (adam_state, _) = seen[0].opt_state
    # A fresh Adam has seen no step and holds no moment; the carried one holds phase 1's.
    assert set(np.asarray(adam_state.count).tolist()) == {0 if fresh else ESTIMATION}
    moments = np.concatenate([np.ravel(m) for m in jax.tree.leaves(adam_state.nu)])
    assert (np.max(np.abs(moments)) == 0.0) == fresh


def test_a_search_that_did_not_pick_by_score_fails_the_run_loudly(monkeypatch):
    # Every candidate's validation score is NaN: the bench must not keep going with the first
    # candidate's (possibly NaN) parameters as if it had won. Other rungs than _config()'s: a
    # search of its own (searches are cached on the benchmark by their options).
    monkeypatch.setattr(search_run, "_score_fn", lambda *_: lambda p: jnp.float32(jnp.nan))
    options = dict(_config().options, rungs=(4, 12))
    with pytest.raises(search.SearchError, match="did not pick by score"):
        search_run.run(tiny_benchmark(), MethodConfig("s", SEARCH_METHOD, options), **BUDGET)
