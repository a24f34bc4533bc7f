"""Run files: what is saved is loaded back, only when resuming and only for the same run."""

from bench_fakes import fake_run_for

from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.recipe import Recipe
from autoscale_jax.bench.running.run_result import Baselines
from autoscale_jax.bench.running.run_store import RunStore, run_key
from autoscale_jax.bench.running.serialization import read_json, write_json

BUDGET = {"steps": 20, "batch_size": 8, "eval_every": 10}


def toy_benchmark(**dataset_options):
    return Benchmark(
        name="toy",
        dataset=None,  # the key depends on the setup, not on the arrays
        model_options={"trunk_sizes": (32,)},
        recipe=Recipe(),
        note="",
        dataset_options=dataset_options,
    )


def grid_point_key(benchmark, **budget):
    config = MethodConfig("ls[0.5,1.5]", "fixed_weights", {"weights": [0.5, 1.5]})
    return run_key(benchmark, config, seed=0, **{**BUDGET, **budget})


def test_a_saved_run_loads_back_only_when_resuming(tmp_path):
    key = grid_point_key(toy_benchmark())
    result = fake_run_for(key)
    path = RunStore(str(tmp_path)).save(key, result)
    assert path.endswith("toy/ls_0.5_1.5___seed0.json")  # no brackets or commas in names
    assert RunStore(str(tmp_path), resume=True).load(key) == result
    assert RunStore(str(tmp_path), resume=False).load(key) is None


def test_another_budget_or_setup_is_not_the_same_run(tmp_path):
    benchmark = toy_benchmark(image_size=14)
    key = grid_point_key(benchmark)
    store = RunStore(str(tmp_path), resume=True)
    store.save(key, fake_run_for(key))
    longer = grid_point_key(benchmark, steps=40)
    other_data = grid_point_key(toy_benchmark(image_size=20))
    assert store.path(longer) == store.path(key) == store.path(other_data)  # same file name
    assert store.load(longer) is None and store.load(other_data) is None
    assert other_data.setup != key.setup
    # Same label, other options: not the same run either.
    other_weights = MethodConfig("ls[0.5,1.5]", "fixed_weights", {"weights": [1.5, 0.5]})
    assert run_key(benchmark, other_weights, seed=0, **BUDGET) != key


def test_an_unreadable_run_file_is_reported_in_one_line_and_trained_again(tmp_path):
    key = grid_point_key(toy_benchmark())
    lines = []
    store = RunStore(str(tmp_path), resume=True, report=lines.append)
    store.save(key, fake_run_for(key))
    with open(store.path(key), "w", encoding="utf-8") as handle:
        handle.write('{"key": ')  # cut short
    assert store.load(key) is None
    (line,) = lines
    assert line.startswith(f"[autoscale-jax] invalid run file {store.path(key)} (unreadable:")
    assert line.endswith("): training it again") and "\n" not in line
    assert store.tally == {"saved": 1, "invalid": 1}


def test_runs_scored_against_other_baselines_are_not_the_same_run(tmp_path):
    # Resuming with another --seeds changes the single-task baselines every run selects its
    # checkpoint and computes its Δm% against: such a file must be trained again.
    benchmark = toy_benchmark()
    config = MethodConfig("ew", "equal_weights")
    three = Baselines(validation=({"mse": 1.0},), test=({"mse": 2.0},))
    five = Baselines(validation=({"mse": 1.0},), test=({"mse": 2.5},))
    key = run_key(benchmark, config, seed=0, baselines=three, **BUDGET)
    store = RunStore(str(tmp_path), resume=True)
    store.save(key, fake_run_for(key))
    assert store.load(key) == fake_run_for(key)
    assert store.load(run_key(benchmark, config, seed=0, baselines=five, **BUDGET)) is None
    assert store.load(run_key(benchmark, config, seed=0, **BUDGET)) is None


def test_a_run_file_of_an_older_bench_version_is_stale_counted_not_reported(tmp_path):
    key = grid_point_key(toy_benchmark())
    lines = []
    store = RunStore(str(tmp_path), resume=True, report=lines.append)
    path = store.save(key, fake_run_for(key))
    payload = read_json(path)
    del payload["key"]["reference"], payload["format"], payload["digest"]  # before digests
    write_json(path, payload, strict=False)
    assert store.load(key) is None and not lines
    assert store.tally["stale"] == 1
