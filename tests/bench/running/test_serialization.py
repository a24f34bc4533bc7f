"""JSON: strict files for results, exact round trips for run files."""

import dataclasses
import json
import math

import pytest
from bench_fakes import fake_run

from autoscale_jax.bench.running.run_result import run_result_from_json
from autoscale_jax.bench.running.serialization import read_json, to_jsonable, write_json


def test_to_jsonable_makes_strict_json():
    payload = to_jsonable({"a": (1.0, math.nan), "b": {3: math.inf}})
    assert payload == {"a": [1.0, None], "b": {"3": None}}
    json.dumps(payload, allow_nan=False)


def test_a_run_round_trips_exactly_with_non_finite_values(tmp_path):
    diverged = dataclasses.replace(
        fake_run("pcgrad", seed=3),
        selection_score=-math.inf,
        validation_scores=[-math.inf, -math.inf],
        delta_m={"per_metric": math.nan, "per_task": math.nan},
    )
    path = write_json(str(tmp_path / "sub" / "run.json"), diverged, strict=False)
    loaded = run_result_from_json(read_json(path))
    assert loaded.selection_score == -math.inf and math.isnan(loaded.delta_m["per_task"])
    assert loaded.test_metrics == diverged.test_metrics
    assert isinstance(loaded.test_metrics, tuple)
    assert repr(loaded) == repr(diverged)  # every field, NaN included (NaN != NaN)


def test_strict_files_write_null_for_nan_and_leave_no_partial_file(tmp_path):
    path = write_json(str(tmp_path / "results.json"), {"x": math.nan})
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle, parse_constant=lambda c: pytest.fail(c)) == {"x": None}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
