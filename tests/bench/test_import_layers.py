"""The bench's layers (datasets -> running -> experiments -> reporting -> cli): no upward
import, no circle, at most five layers (benchmarks/import_floors.py)."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

import autoscale_jax.bench

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAYERS = ["datasets", "running", "experiments", "reporting", "cli"]


def _floors():
    spec = importlib.util.spec_from_file_location(
        "import_floors", ROOT / "benchmarks" / "import_floors.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_is_five_layers_deep_with_no_upward_import_or_circle(capsys):
    status = _floors().main(
        [
            str(ROOT / "autoscale_jax"),
            "autoscale_jax.bench",
            "--layers",
            *LAYERS,
            "--max-layers",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "layers: 5 deep: cli -> reporting -> experiments -> running -> datasets" in out
    assert "upward import" not in out and "circle" not in out


def test_an_upward_import_and_a_circle_fail(tmp_path, capsys):
    package = tmp_path / "pkg"
    for folder in ("low", "high"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "low" / "a.py").write_text("from pkg.high import b\n")
    (package / "high" / "b.py").write_text("from pkg.low import a\n")
    status = _floors().main([str(package), "pkg", "--layers", "low", "high"])
    out = capsys.readouterr().out
    assert status == 1
    assert "upward import: pkg.low.a (low) imports pkg.high.b (high)" in out
    assert "circle: pkg.high.b <-> pkg.low.a" in out


def test_the_old_module_names_find_the_moved_modules():
    from autoscale_jax.bench import grid, trainer, training

    assert trainer.__name__ == "autoscale_jax.bench.running.chunk"
    assert training.__name__ == "autoscale_jax.bench.running.single_run"
    assert grid.__name__ == "autoscale_jax.bench.experiments.grid"
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        autoscale_jax.bench.nothing  # noqa: B018


def test_python_m_autoscale_jax_bench_is_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "autoscale_jax.bench", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: autoscale-jax" in done.stdout and "{bench,study}" in done.stdout
