"""One JSON file per finished run, so an interrupted suite can resume where it stopped.

The CLI saves every run to ``<out>/runs/<benchmark>/<method>__seed<seed>.json``; with
``--resume`` a run whose file holds the same :class:`RunKey` (same benchmark setup, method,
options, seed, budget and single-task baselines) is loaded instead of trained again. A file
with another key (e.g. from a run with other ``--steps``, or scored against the baselines of
other seeds: its checkpoint selection and Δm% depend on them), or written by an older version
of the bench, is *stale*: trained again and overwritten.

A run file is trusted only when it passes two checks: its fields have the types and ranges of
:mod:`.run_schema` and agree with its key, and its ``digest`` (SHA-256 of the format, key and
run) matches its content. A file that fails either (edited by hand, damaged, another run's
payload under this name) is *invalid*: reported in one line (``report``) and trained again,
never trusted and never fatal. The digest detects edits and damage; it is no signature (whoever
edits a file can recompute it). The single-task baselines every Δm% is computed against are
runs like the others, checked the same way.

A folder (or anything but a file) at a run file's path is an error (:class:`RunStoreError`)
raised before the run trains; so is a run file that cannot be written (e.g. a full disk).
:attr:`RunStore.tally` counts what happened (``loaded``, ``missing``, ``stale``, ``invalid``,
``saved``).

Example:
  >>> store = RunStore("out/runs", resume=True)
  >>> key = run_key(bench, MethodConfig("ew", "equal_weights"), seed=0, steps=20,
  ...               batch_size=128, eval_every=10)
  >>> store.load(key) is None   # not run yet
  True
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from autoscale_jax.bench.running.benchmark import Benchmark
from autoscale_jax.bench.running.method_config import MethodConfig
from autoscale_jax.bench.running.run_loop import setup_fields
from autoscale_jax.bench.running.run_result import Baselines, RunResult, run_result_from_json
from autoscale_jax.bench.running.run_schema import run_key_problem, run_result_problem
from autoscale_jax.bench.running.serialization import (
    json_digest,
    read_json,
    to_jsonable,
    write_json,
)

__all__ = ["FORMAT", "RunKey", "RunStore", "RunStoreError", "run_key"]

# Version of the run files' layout: {"format", "key", "run", "digest"}. Files without it (or
# with another) were written by another version of the bench: stale, trained again.
FORMAT = 2


class RunStoreError(OSError):
    """A run file cannot be written, or something other than a file stands at its path."""


class RunKey(NamedTuple):
    """What makes two runs the same run.

    Attributes:
      benchmark: benchmark name.
      setup: fingerprint of the benchmark's dataset options, model options and recipe
        (learning rate, β1 / β2, schedule; the steps and batch size are fields of their own).
      method: row label.
      method_name: registry name.
      options: the method options as JSON (sorted keys).
      seed, steps, batch_size, eval_every: the seed and the budget.
      reference: fingerprint of the single-task baselines the run selected its checkpoint
        and computed its Δm% against (``""`` without baselines).
    """

    benchmark: str
    setup: str
    method: str
    method_name: str
    options: str
    seed: int
    steps: int
    batch_size: int
    eval_every: int
    reference: str = ""


def _setup_fingerprint(benchmark: Benchmark) -> str:
    """A short hash of what, besides the method, decides a run's outcome."""
    setup = (
        benchmark.name,
        sorted(benchmark.dataset_options.items()),
        sorted(benchmark.model_options.items()),
        benchmark.learning_rate,
        *benchmark.recipe.setup_fields(),  # none for the default Adam: old files stay valid
    )
    return hashlib.sha256(repr(setup).encode()).hexdigest()[:16]


def _baselines_fingerprint(baselines: Baselines | None) -> str:
    """A short hash of the baselines' metrics (``""`` for none)."""
    if baselines is None:
        return ""
    text = json.dumps([baselines.validation, baselines.test], sort_keys=True, default=float)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_key(
    benchmark: Benchmark,
    config: MethodConfig,
    *,
    seed: int,
    steps: int,
    batch_size: int,
    eval_every: int,
    baselines: Baselines | None = None,
) -> RunKey:
    """The :class:`RunKey` of training ``config`` on ``benchmark`` with this seed and budget.

    Args:
      benchmark: the benchmark.
      config: the method.
      seed, steps, batch_size, eval_every, baselines: as given to :func:`single_run.run`.

    Returns:
      The key.
    """
    fields = setup_fields(
        benchmark, config, seed=seed, steps=steps, batch_size=batch_size, eval_every=eval_every
    )
    return RunKey(
        **{**fields, "options": json.dumps(fields["options"], sort_keys=True)},
        setup=_setup_fingerprint(benchmark),
        reference=_baselines_fingerprint(baselines),
    )


def _file_name(label: str, seed: int) -> str:
    # Grid labels such as "ls[0.5,1.5]" hold brackets and commas: keep names portable.
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}__seed{seed}.json"


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# Fields of a run that must equal its key's (the options are compared as JSON text).
_SHARED_FIELDS = ("benchmark", "method", "method_name", "seed", "steps", "batch_size", "eval_every")


def _file_problem(payload: Any, key: RunKey) -> tuple[str, str] | None:
    """``("stale" | "invalid", reason)`` when the file's content cannot stand for ``key``."""
    if not isinstance(payload, dict):
        return "invalid", f"expected a JSON object, got {type(payload).__name__}"
    if payload.get("format") != FORMAT:
        return "stale", f"format {payload.get('format')!r}, this bench writes {FORMAT}"
    if set(payload) != {"format", "key", "run", "digest"}:
        return "invalid", f"fields {sorted(payload)}, expected format, key, run and digest"
    body = {name: payload[name] for name in ("format", "key", "run")}
    if payload["digest"] != json_digest(body):
        return "invalid", "its digest does not match its content: edited or damaged"
    problem = run_key_problem(payload["key"]) or run_result_problem(payload["run"])
    if problem:
        return "invalid", problem
    stored, run = RunKey(**payload["key"]), payload["run"]
    here = (key.benchmark, key.method, key.seed)
    if (stored.benchmark, stored.method, stored.seed) != here:
        return "invalid", (
            f"it holds {stored.method} seed {stored.seed} on {stored.benchmark}, not "
            f"{key.method} seed {key.seed} on {key.benchmark}"
        )
    for name in _SHARED_FIELDS:
        if run[name] != getattr(stored, name):
            return "invalid", f"run.{name} {run[name]!r} differs from key.{name}"
    if json.dumps(run["options"], sort_keys=True) != stored.options:
        return "invalid", "run.options differ from key.options"
    if stored != key:
        return "stale", "another setup, budget, options or baselines"
    return None


@dataclasses.dataclass(frozen=True)
class RunStore:
    """Finished runs as files under ``folder``.

    Attributes:
      folder: where run files go (the CLI uses ``<out>/runs``).
      resume: load finished runs; False trains every run again (files are still written).
      report: called with one line for every invalid run file (default: printed on stderr).
      tally: counts of ``loaded``, ``missing``, ``stale``, ``invalid`` and ``saved`` runs.
    """

    folder: str
    resume: bool = False
    report: Callable[[str], None] = dataclasses.field(default=_stderr_line, compare=False)
    tally: collections.Counter = dataclasses.field(
        default_factory=collections.Counter, compare=False, repr=False
    )

    def path(self, key: RunKey) -> str:
        """The file of the run ``key``."""
        return os.path.join(self.folder, key.benchmark, _file_name(key.method, key.seed))

    def load(self, key: RunKey) -> RunResult | None:
        """The finished run ``key``, or None when not resuming, absent, stale or invalid.

        Args:
          key: the run wanted.

        Returns:
          The stored :class:`RunResult` when its file holds exactly ``key`` and passes the
          schema and digest checks; an invalid file is reported (one line) and gives None.

        Raises:
          RunStoreError: when a folder or anything but a file stands at the run's path (checked
            even when not resuming, so that no run is trained and then lost).
        """
        path = self.path(key)
        if os.path.lexists(path) and not os.path.isfile(path):
            raise RunStoreError(
                f"{path} is not a file (a folder stands where this run file goes): "
                "remove it or choose another --out"
            )
        if not self.resume:
            return None
        if not os.path.exists(path):
            self.tally["missing"] += 1
            return None
        try:
            payload = read_json(path)
        except (OSError, ValueError) as err:
            problem: tuple[str, str] | None = ("invalid", f"unreadable: {err}")
        else:
            problem = _file_problem(payload, key)
        if problem is not None:
            kind, reason = problem
            self.tally[kind] += 1
            if kind == "invalid":
                self.report(
                    f"[autoscale-jax] invalid run file {path} ({reason}): training it again"
                )
            return None
        self.tally["loaded"] += 1
        return run_result_from_json(payload["run"])

    def save(self, key: RunKey, result: RunResult) -> str:
        """Writes ``result`` as the run ``key`` with its format and digest; returns the path.

        Raises:
          RunStoreError: when the file cannot be written (a folder in the way, a full disk).
        """
        body = to_jsonable({"format": FORMAT, "key": key, "run": result}, strict=False)
        path = self.path(key)
        try:
            write_json(path, {**body, "digest": json_digest(body)}, strict=False)
        except OSError as err:
            raise RunStoreError(f"cannot save run file {path}: {err.strerror or err}") from err
        self.tally["saved"] += 1
        return path
