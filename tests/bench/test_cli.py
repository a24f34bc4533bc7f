"""The autoscale-jax CLI: the smoke suite writes its files; --resume; the study; errors."""

import json
import os
import shutil
import subprocess
import sys
import types

import pytest

from autoscale_jax.bench import cli
from autoscale_jax.bench.running import single_run
from autoscale_jax.bench.running.run_schema import run_key_problem, run_result_problem
from autoscale_jax.bench.running.serialization import json_digest, read_json

# Smoke suite: 2 single-task runs, 3 grid points, EW and AutoScale (gms), one seed.
SMOKE_RUN_FILES = 7
# What differs between two runs of the same suite: the clock.
TIMINGS = {
    "argv",
    "wall_time_s",
    "chunk_times_s",
    "compile_time_s",
    "mean_wall_time_s",
    "time_vs_ew",
    "timing_caveat",
}


def strict_json(path):
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    with open(path, encoding="utf-8") as handle:
        return json.load(handle, parse_constant=reject)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    assert cli.main(["bench", "--smoke", "--out", str(out)]) == 0
    return out


def test_smoke_suite_writes_json_markdown_and_plots(smoke_dir):
    results = strict_json(smoke_dir / "results.json")
    assert results["suite"] == "smoke" and results["skipped"] == {}
    (report,) = results["benchmarks"]
    methods = [row["method"] for row in report["summaries"]]
    assert methods == ["single_task", "ls_grid", "ew", "autoscale_gms"]
    for row in report["summaries"]:
        assert set(row["delta_m_mean"]) == {"per_metric", "per_task"}
    autoscale = next(r for r in report["runs"] if r["method"] == "autoscale_gms")
    assert autoscale["gradient_evaluations"] > autoscale["steps"]  # phase 1 took K passes
    markdown = (smoke_dir / "results.md").read_text(encoding="utf-8")
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    for method in methods:
        assert sum(row.startswith(f"| {method} |") for row in table_rows) == 1, method
    assert "Δm% per-metric" in markdown and "Δm% per-task" in markdown
    # Every run file (AutoScale's phase-1 traces included) passes its schema and digest checks.
    for path in (smoke_dir / "runs" / "multi_mnist").iterdir():
        payload = read_json(str(path))
        assert run_key_problem(payload["key"]) is None
        assert run_result_problem(payload["run"]) is None
        assert payload["digest"] == json_digest({k: payload[k] for k in ("format", "key", "run")})
    for name in ("weights", "metrics", "delta_m_vs_cost", "delta_m_vs_weight_ratio"):
        path = smoke_dir / f"multi_mnist_{name}.png"
        assert path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_findings_compare_autoscale_with_ew_and_the_grid(smoke_dir):
    markdown = (smoke_dir / "results.md").read_text(encoding="utf-8")
    assert "EW vs grid-searched LS" in markdown
    assert "autoscale_gms: Δm" in markdown and "(ls_grid " in markdown and "difference" in markdown


def test_the_report_prints_the_recipe_every_row_trained_with(smoke_dir):
    (report,) = strict_json(smoke_dir / "results.json")["benchmarks"]
    assert report["recipe"]["learning_rate"] == 1e-3 and report["recipe"]["steps"] == 40
    assert report["selection"]["runs"] == SMOKE_RUN_FILES
    markdown = (smoke_dir / "results.md").read_text(encoding="utf-8")
    recipe = "Recipe (every row): Adam lr 0.001 (β1 0.9, β2 0.999), constant, 40 steps × batch 64."
    assert recipe in markdown
    assert f"of {SMOKE_RUN_FILES} runs (" in markdown  # the share of early checkpoints


def test_smoke_runs_are_too_short_to_time_and_the_report_says_so(smoke_dir):
    markdown = (smoke_dir / "results.md").read_text(encoding="utf-8")
    assert "**Timing caveat:** 7 of 7 runs were timed over less than 1 s or 50 steps" in markdown
    (report,) = strict_json(smoke_dir / "results.json")["benchmarks"]
    assert report["timing_caveat"].startswith("7 of 7 runs")


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_resume_trains_only_the_missing_run_and_gives_the_same_results(
    smoke_dir, tmp_path, monkeypatch
):
    out = tmp_path / "resumed"
    shutil.copytree(smoke_dir, out)
    runs = out / "runs" / "multi_mnist"
    assert len(list(runs.iterdir())) == SMOKE_RUN_FILES
    (runs / "autoscale_gms__seed0.json").unlink()
    trained = []
    train = single_run.run

    def counting_run(benchmark, config, **options):
        trained.append((config.label, options["seed"]))
        return train(benchmark, config, **options)

    monkeypatch.setattr(single_run, "run", counting_run)
    with pytest.warns(UserWarning, match="mostly noise"):
        assert cli.main(["bench", "--smoke", "--resume", "--no-plots", "--out", str(out)]) == 0
    assert trained == [("autoscale_gms", 0)]
    assert (runs / "autoscale_gms__seed0.json").is_file()
    resumed = without_timings(strict_json(out / "results.json"))
    first = without_timings(strict_json(smoke_dir / "results.json"))
    assert first.pop("run_files") == {"saved": SMOKE_RUN_FILES}
    assert resumed.pop("run_files") == {"loaded": SMOKE_RUN_FILES - 1, "missing": 1, "saved": 1}
    assert resumed == first


def test_first_seed_runs_the_tuning_seeds_and_keeps_them_apart_from_the_reported_ones(tmp_path):
    args = ["bench", "--smoke", "--methods", "ew", "--grid", "0", "--no-plots"]
    assert cli.main([*args, "--first-seed", "100", "--seeds", "2", "--out", str(tmp_path)]) == 0
    (report,) = strict_json(tmp_path / "results.json")["benchmarks"]
    assert report["budget"]["seeds"] == [100, 101]
    assert {run["seed"] for run in report["runs"]} == {100, 101}
    names = sorted(os.listdir(tmp_path / "runs" / "multi_mnist"))
    assert names and all(name.endswith(("__seed100.json", "__seed101.json")) for name in names)


def test_study_writes_json_markdown_and_scatter(tmp_path):
    args = ["study", "--grid", "3", "--steps", "20", "--out", str(tmp_path)]
    assert cli.main(args) == 0
    study = strict_json(tmp_path / "study.json")
    assert len(study["weights"]) == 3 and len(study["delta_m"]) == 3
    for rho in study["spearman"].values():
        assert rho is None or -1.0 <= rho <= 1.0
    markdown = (tmp_path / "study.md").read_text(encoding="utf-8")
    assert "Spearman" in markdown and "condition_number" in markdown
    assert (tmp_path / "study.png").stat().st_size > 1000


def test_unknown_method_is_an_error_listing_the_choices(tmp_path):
    with pytest.raises(SystemExit, match="unknown method"):
        cli.main(["bench", "--smoke", "--methods", "nope", "--out", str(tmp_path)])
    assert not os.path.exists(tmp_path / "results.json")


def test_module_entry_point_prints_usage_without_a_command():
    completed = subprocess.run(
        [sys.executable, "-m", "autoscale_jax.bench.cli"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2
    assert "bench" in completed.stdout and "study" in completed.stdout


def test_a_benchmark_with_its_own_methods_runs_only_those(monkeypatch):
    from bench_tiny import tiny_benchmark

    from autoscale_jax.bench.experiments.suites import QM9_METHODS, SUITES
    from autoscale_jax.bench.running.run_store import RunStore

    seen = {}

    def fake_run_benchmark(bench, configs, **kwargs):
        seen["labels"], seen["grid"] = [c.label for c in configs], kwargs["weight_grid"]
        return types.SimpleNamespace(budget={})

    monkeypatch.setattr(cli, "load_benchmark", lambda name, **options: tiny_benchmark())
    monkeypatch.setattr(cli, "run_benchmark", fake_run_benchmark)
    (qm9,) = [s for s in SUITES["full"].benchmarks if s.name == "qm9"]
    args = cli.build_parser().parse_args(["bench", "--suite", "full"])
    cli._run_spec(qm9, SUITES["full"], args, RunStore("unused"))
    # Its own rows (EW always), not every registered method; its 20-point grid.
    assert set(seen["labels"]) == (set(QM9_METHODS) - {"ls_grid"}) | {"ew"}
    assert len(seen["grid"]) == qm9.grid_size == 20
