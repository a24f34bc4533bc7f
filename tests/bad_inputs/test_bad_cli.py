"""Nothing silent in the benchmark CLI, its run files and its feedback: every case ends in one
line on stderr with a non-zero exit, or in a defined result (the run trained again and the
reason reported, the results written, the resume command printed).

One table: each case is a scenario that returns what it observed, compared with the expected
value. Training is faked (cli_fakes.py: a constant run per call, recorded in ``trained``) on a
two-task toy benchmark without data, so no case compiles anything; two argument errors run
``python -m autoscale_jax.bench.cli`` in a subprocess, the others run ``cli.main`` in-process
and end as the interpreter would end them.
"""

import errno
import json
import os
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from cli_fakes import TOY, Context, fake_run, fake_training, invoke, spawn

from autoscale_jax.bench import cli
from autoscale_jax.bench.experiments.baselines import single_task_baselines
from autoscale_jax.bench.running import run_store
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_store import RunStore, run_key
from autoscale_jax.bench.running.seeds import run_seeds
from autoscale_jax.bench.running.serialization import (
    json_digest,
    read_json,
    to_jsonable,
    write_json,
)

BUDGET = {"steps": 20, "batch_size": 8, "eval_every": 10}
PCGRAD = MethodConfig("pcgrad", "pcgrad")
EW = MethodConfig("ew", "equal_weights")
# The smoke suite with fake training and nothing but the baselines and EW.
SMOKE = ["bench", "--smoke", "--methods", "ew", "--grid", "0", "--no-plots"]
RESUME_HINT = "python -m autoscale_jax.bench.cli bench --smoke --methods ew --grid 0 --no-plots"
STALE = "stale: another bench version, setup or budget"
RETRAINED_STALE = {"stale": 1, "saved": 1}
POSITIVE_GRID = "a positive integer (fixed weightings to train)"


def _out(ctx):
    return str(ctx.tmp / "out")


def _runs(ctx):
    return ctx.tmp / "out" / "runs" / "toy"


# --- argument errors: one line, exit 1, before anything runs --------------------------------


def _cli(*argv, subprocess=False):
    """Runs the CLI with ``argv`` (``--out`` in the case's folder); the list of choices after
    an unknown name is left out of the lines."""

    def scenario(ctx):
        run = spawn if subprocess else invoke
        code, lines = run(ctx, [*argv, "--out", _out(ctx)])
        return code, [line.split("; choose from")[0] for line in lines]

    return scenario


def help_names_the_out_folders(ctx):
    seen = []
    for command, default in (
        ("bench", "(default: bench-out/SUITE, one folder per suite,"),
        ("study", "(default: bench-out/study)"),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.main([command, "--help"])
        seen.append((stop.value.code, default in " ".join(ctx.capsys.readouterr().out.split())))
    return seen


# --- run files: checked, reported in one line and trained again ----------------------------


def _redigest(payload):
    payload["digest"] = json_digest({k: payload[k] for k in ("format", "key", "run")})
    return payload


def _tampered(edit: Callable[[dict, Context], Any], config: MethodConfig = PCGRAD):
    """Trains ``config`` once (saved), edits its file, resumes: ``(trained on resume, report
    lines, tally)``."""

    def scenario(ctx):
        fake_training(ctx)
        folder = str(ctx.tmp / "runs")
        run_seeds(TOY, config, (0,), store=RunStore(folder, resume=True), **BUDGET)
        path = RunStore(folder).path(run_key(TOY, config, seed=0, **BUDGET))
        edited = edit(read_json(path), ctx)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(edited if isinstance(edited, str) else json.dumps(edited))
        ctx.trained.clear()
        lines = []
        store = RunStore(folder, resume=True, report=lines.append)
        run_seeds(TOY, config, (0,), store=store, **BUDGET)
        lines = [line.replace(str(ctx.tmp), "TMP") for line in lines]
        return ctx.trained, lines, dict(store.tally)

    return scenario


def _better_metrics(payload, ctx):
    payload["run"]["test_metrics"][0]["accuracy"] = 0.99
    return payload


def _other_payload(payload, ctx):
    payload["run"] = to_jsonable(fake_run(TOY, EW, seed=0, **BUDGET), strict=False)
    return payload


def _negative_count(payload, ctx):
    payload["run"]["gradient_evaluations"] = -20
    return _redigest(payload)


def _string_metric(payload, ctx):
    payload["run"]["test_metrics"][1]["mse"] = "0.01"
    return _redigest(payload)


def _copied_from_ew(payload, ctx):
    folder = str(ctx.tmp / "runs")
    return read_json(
        RunStore(folder).save(
            run_key(TOY, EW, seed=0, **BUDGET), fake_run(TOY, EW, seed=0, **BUDGET)
        )
    )


def _other_steps(payload, ctx):
    payload["key"]["steps"] = payload["run"]["steps"] = 40
    return _redigest(payload)


def _older_format(payload, ctx):
    return {"key": payload["key"], "run": payload["run"]}


def _invalid(reason):
    """What resuming a pcgrad run whose file fails a check gives: trained again, one line."""
    line = f"[autoscale-jax] invalid run file TMP/runs/toy/pcgrad__seed0.json ({reason})"
    return ["pcgrad/0"], [f"{line}: training it again"], {"invalid": 1, "saved": 1}


def edited_baseline_is_not_trusted(ctx):
    """An edited single-task run (the reference of every Δm%) is trained again: the baselines
    stay those of the real runs."""
    fake_training(ctx)
    folder = str(ctx.tmp / "runs")
    first, _ = single_task_baselines(TOY, store=RunStore(folder), **BUDGET)
    path = os.path.join(folder, "toy", "single_task_left__seed0.json")
    payload = read_json(path)
    payload["run"]["test_metrics"][0]["accuracy"] = 0.1
    write_json(path, payload, strict=False)
    ctx.trained.clear()
    store = RunStore(folder, resume=True, report=lambda line: None)
    again, _ = single_task_baselines(TOY, store=store, **BUDGET)
    return again == first, ctx.trained, dict(store.tally)


# --- files that cannot be written ----------------------------------------------------------


def folder_at_a_run_file(ctx):
    fake_training(ctx)
    (_runs(ctx) / "single_task_left__seed0.json").mkdir(parents=True)
    code, lines = invoke(ctx, [*SMOKE, "--out", _out(ctx)])
    return code, lines, ctx.trained


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", args[0])


def folder_at_results_md(ctx):
    fake_training(ctx)
    (ctx.tmp / "out" / "results.md").mkdir(parents=True)
    code, lines = invoke(ctx, [*SMOKE, "--out", _out(ctx)])
    return code, lines, ctx.trained


def disk_full_on_a_run_file(ctx):
    fake_training(ctx)
    ctx.monkeypatch.setattr(run_store, "write_json", _disk_full)
    return invoke(ctx, [*SMOKE, "--out", _out(ctx)])


def disk_full_on_results(ctx):
    fake_training(ctx)
    ctx.monkeypatch.setattr(cli, "write_json", _disk_full)
    code, lines = invoke(ctx, [*SMOKE, "--out", _out(ctx)])
    return code, lines[-1], len(os.listdir(_runs(ctx)))


def disk_full_mid_write_keeps_the_old_file(ctx):
    path = str(ctx.tmp / "run.json")
    write_json(path, {"old": 1})
    with ctx.monkeypatch.context() as patch:
        patch.setattr(os, "replace", _disk_full)
        with pytest.raises(OSError, match="No space left") as caught:
            write_json(path, {"new": 2})
    return caught.value.errno, read_json(path), sorted(os.listdir(ctx.tmp))


def concurrent_writers(ctx):
    path, errors = str(ctx.tmp / "same.json"), []

    def writer(value):
        for _ in range(100):
            try:
                write_json(path, {"value": value})
            except OSError as err:  # the shared ".partial" name made 7% of these fail
                errors.append(err)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors, read_json(path)["value"] in range(4), sorted(os.listdir(ctx.tmp))


# --- interrupted and resumed invocations, output folders -----------------------------------


def ctrl_c_saves_and_says_how_to_resume(ctx):
    fake_training(ctx, interrupt_after=2)
    code, lines = invoke(ctx, [*SMOKE, "--out", _out(ctx)])
    results = read_json(ctx.tmp / "out" / "results.json")
    return code, lines, results["interrupted"], sorted(os.listdir(_runs(ctx)))


def resume_reports_what_it_loaded_and_trained(ctx):
    fake_training(ctx)
    assert invoke(ctx, [*SMOKE, "--out", _out(ctx)])[0] == 0
    ew_before = read_json(ctx.tmp / "out" / "results.json")["benchmarks"][0]["summaries"][1]
    (_runs(ctx) / "ew__seed0.json").unlink()
    path = _runs(ctx) / "single_task_left__seed0.json"
    payload = read_json(path)
    payload["run"]["test_metrics"][0]["accuracy"] = 0.99  # a better baseline, by hand
    write_json(str(path), payload, strict=False)
    ctx.trained.clear()
    code, lines = invoke(ctx, [*SMOKE, "--resume", "--out", _out(ctx)])
    ew_after = read_json(ctx.tmp / "out" / "results.json")["benchmarks"][0]["summaries"][1]
    return code, lines, ctx.trained, ew_after["delta_m_mean"] == ew_before["delta_m_mean"]


def every_suite_has_its_own_folder(ctx):
    fake_training(ctx)
    ctx.monkeypatch.chdir(ctx.tmp)
    quick = ["bench", "--methods", "ew", "--grid", "0", "--seeds", "1", "--no-plots"]
    assert invoke(ctx, quick)[0] == 0
    before = (ctx.tmp / "bench-out" / "quick" / "results.md").read_text(encoding="utf-8")
    assert invoke(ctx, SMOKE)[0] == 0
    after = (ctx.tmp / "bench-out" / "quick" / "results.md").read_text(encoding="utf-8")
    steps = read_json(ctx.tmp / "bench-out" / "quick" / "runs" / "toy" / "ew__seed0.json")
    return sorted(os.listdir(ctx.tmp / "bench-out")), after == before, steps["run"]["steps"]


def study_ctrl_c(ctx):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    ctx.monkeypatch.setattr(cli, "weight_study", interrupted)
    code, lines = invoke(ctx, ["study", "--grid", "2", "--out", _out(ctx)])
    return code, lines, os.listdir(ctx.tmp / "out")


class Case(NamedTuple):
    id: str
    scenario: Callable[[Context], Any]
    expected: Any


def _exit1(line):
    return 1, [line]


DIGEST = "its digest does not match its content: edited or damaged"
RUN_FILE = "TMP/out/runs/toy/single_task_left__seed0.json"
CASES = [
    Case(
        "study-grid-0",
        _cli("study", "--grid", "0", subprocess=True),
        _exit1(f"autoscale-jax study: --grid must be {POSITIVE_GRID}, got 0"),
    ),
    Case(
        "unknown-benchmark",
        _cli("bench", "--benchmarks", "mnist", subprocess=True),
        _exit1("autoscale-jax bench: unknown benchmark(s) ['mnist']"),
    ),
    Case(
        "unknown-method",
        _cli("bench", "--smoke", "--methods", "autoscale"),
        _exit1("autoscale-jax bench: unknown method(s) ['autoscale']"),
    ),
    Case(
        "study-negative-seed",
        _cli("study", "--seed", "-1"),
        _exit1("autoscale-jax study: --seed must be 0 or positive, got -1"),
    ),
    Case(
        "study-unknown-benchmark",
        _cli("study", "--benchmark", "mnist"),
        _exit1("autoscale-jax study: unknown --benchmark 'mnist'"),
    ),
    Case("help-names-the-out-folders", help_names_the_out_folders, [(0, True), (0, True)]),
    Case("edited-metrics", _tampered(_better_metrics), _invalid(DIGEST)),
    Case("another-methods-payload", _tampered(_other_payload), _invalid(DIGEST)),
    Case(
        "another-methods-payload-redigested",
        _tampered(lambda p, ctx: _redigest(_other_payload(p, ctx))),
        _invalid("run.method 'ew' differs from key.method"),
    ),
    Case(
        "negative-gradient-count",
        _tampered(_negative_count),
        _invalid("run.gradient_evaluations: expected an integer >= 0, got -20"),
    ),
    Case(
        "wrong-typed-metric",
        _tampered(_string_metric),
        _invalid(
            "run.test_metrics: expected a non-empty list of {metric: number} dicts, got "
            "[{'accuracy': 0.8}, {'mse': '0.01'}]"
        ),
    ),
    Case(
        "another-runs-file-copied-in",
        _tampered(_copied_from_ew),
        _invalid("it holds ew seed 0 on toy, not pcgrad seed 0 on toy"),
    ),
    Case(
        "truncated-file",
        _tampered(lambda p, ctx: '{"format": 2, "key": '),
        _invalid("unreadable: Expecting value: line 1 column 22 (char 21)"),
    ),
    Case(
        "not-an-object", _tampered(lambda p, ctx: [p]), _invalid("expected a JSON object, got list")
    ),
    Case(
        "digest-removed",
        _tampered(lambda p, ctx: {k: v for k, v in p.items() if k != "digest"}),
        _invalid("fields ['format', 'key', 'run'], expected format, key, run and digest"),
    ),
    Case("other-budget-is-stale", _tampered(_other_steps), (["pcgrad/0"], [], RETRAINED_STALE)),
    Case("older-format-is-stale", _tampered(_older_format), (["pcgrad/0"], [], RETRAINED_STALE)),
    Case(
        "edited-baseline",
        edited_baseline_is_not_trusted,
        (True, ["single_task_left/0"], {"invalid": 1, "saved": 1, "loaded": 1}),
    ),
    Case(
        "folder-at-a-run-file",
        folder_at_a_run_file,
        (
            1,
            [
                f"autoscale-jax bench: {RUN_FILE} is not a file (a folder stands where this run "
                "file goes): remove it or choose another --out"
            ],
            [],
        ),
    ),
    Case(
        "folder-at-results-md",
        folder_at_results_md,
        (
            1,
            [
                "autoscale-jax bench: TMP/out/results.md is a folder: remove it or choose "
                "another --out"
            ],
            [],
        ),
    ),
    Case(
        "disk-full-on-a-run-file",
        disk_full_on_a_run_file,
        _exit1(f"autoscale-jax bench: cannot save run file {RUN_FILE}: No space left on device"),
    ),
    Case(
        "disk-full-on-results",
        disk_full_on_results,
        (1, "autoscale-jax bench: No space left on device: TMP/out/results.json", 3),
    ),
    Case(
        "disk-full-mid-write",
        disk_full_mid_write_keeps_the_old_file,
        (errno.ENOSPC, {"old": 1}, ["run.json"]),
    ),
    Case("concurrent-writers", concurrent_writers, ([], True, ["same.json"])),
    Case(
        "ctrl-c",
        ctrl_c_saves_and_says_how_to_resume,
        (
            130,
            [
                "[autoscale-jax] interrupted during multi_mnist: 2 runs saved in "
                "TMP/out/runs (2 trained now); results.md holds the 0 finished benchmark(s).",
                f"[autoscale-jax] resume with: {RESUME_HINT} --out TMP/out --resume",
            ],
            "multi_mnist",
            ["single_task_left__seed0.json", "single_task_right__seed0.json"],
        ),
    ),
    Case(
        "resume-says-what-it-loaded",
        resume_reports_what_it_loaded_and_trained,
        (
            0,
            [
                f"[autoscale-jax] invalid run file {RUN_FILE} ({DIGEST}): training it again",
                f"[autoscale-jax] --resume: loaded 1 run from TMP/out/runs, trained 2 (1 "
                f"missing, 0 {STALE}; 1 invalid, reported above)",
                "[autoscale-jax] wrote TMP/out/results.json, results.md and plots",
            ],
            ["single_task_left/0", "ew/0"],
            True,
        ),
    ),
    Case("suites-own-folders", every_suite_has_its_own_folder, (["quick", "smoke"], True, 800)),
    Case(
        "study-ctrl-c",
        study_ctrl_c,
        (130, ["[autoscale-jax] study interrupted: it saves no runs, nothing was written"], []),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_cli(case, tmp_path, monkeypatch, capsys):
    assert case.scenario(Context(tmp_path, monkeypatch, capsys, [])) == case.expected
