"""One JSON file per finished run, so an interrupted suite can resume where it stopped.

The CLI saves every run to ``<out>/runs/<benchmark>/<method>__seed<seed>.json``; with
``--resume`` a run whose file holds the same :class:`RunKey` (same benchmark setup, method,
options, seed, budget and single-task baselines) is loaded instead of trained again. A file
with another key (e.g. from a run with other ``--steps``, or scored against the baselines of
other seeds: its checkpoint selection and Δm% depend on them) is trained again and
overwritten.

Example:
  >>> store = RunStore("out/runs", resume=True)
  >>> key = run_key(bench, MethodConfig("ew", "equal_weights"), seed=0, steps=20,
  ...               batch_size=128, eval_every=10)
  >>> store.load(key) is None   # not run yet
  True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import warnings
from typing import NamedTuple

from autoscale_jax.bench.benchmark import Benchmark
from autoscale_jax.bench.method_config import MethodConfig, json_options
from autoscale_jax.bench.run_result import Baselines, RunResult, run_result_from_json
from autoscale_jax.bench.serialization import read_json, write_json

__all__ = ["RunKey", "RunStore", "run_key"]


class RunKey(NamedTuple):
    """What makes two runs the same run.

    Attributes:
      benchmark: benchmark name.
      setup: fingerprint of the benchmark's dataset options, model options and learning rate.
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
      seed, steps, batch_size, eval_every, baselines: as given to :func:`training.run`.

    Returns:
      The key.
    """
    return RunKey(
        benchmark=benchmark.name,
        setup=_setup_fingerprint(benchmark),
        method=config.label,
        method_name=config.name,
        options=json.dumps(json_options(config.options), sort_keys=True),
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        reference=_baselines_fingerprint(baselines),
    )


def _file_name(label: str, seed: int) -> str:
    # Grid labels such as "ls[0.5,1.5]" hold brackets and commas: keep names portable.
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}__seed{seed}.json"


@dataclasses.dataclass(frozen=True)
class RunStore:
    """Finished runs as files under ``folder``.

    Attributes:
      folder: where run files go (the CLI uses ``<out>/runs``).
      resume: load finished runs; False trains every run again (files are still written).
    """

    folder: str
    resume: bool = False

    def path(self, key: RunKey) -> str:
        """The file of the run ``key``."""
        return os.path.join(self.folder, key.benchmark, _file_name(key.method, key.seed))

    def load(self, key: RunKey) -> RunResult | None:
        """The finished run ``key``, or None when not resuming, absent, stale or unreadable.

        Args:
          key: the run wanted.

        Returns:
          The stored :class:`RunResult` when its file holds exactly ``key``.
        """
        path = self.path(key)
        if not self.resume or not os.path.isfile(path):
            return None
        try:
            payload = read_json(path)
            if set(payload["key"]) != set(RunKey._fields):
                return None  # written by another version of the bench: train again
            if RunKey(**payload["key"]) != key:
                return None  # another setup or budget under the same name: train again
            return run_result_from_json(payload["run"])
        except (ValueError, KeyError, TypeError) as err:
            warnings.warn(f"ignoring unreadable run file {path}: {err}", stacklevel=2)
            return None

    def save(self, key: RunKey, result: RunResult) -> str:
        """Writes ``result`` as the run ``key``; returns the file's path."""
        return write_json(self.path(key), {"key": key, "run": result}, strict=False)
