"""The schema of a run file: what each field of a :class:`RunKey` and a :class:`RunResult` must
hold, checked before a stored run is trusted.

Each check returns ``None`` for a valid value or a short reason naming the first bad field;
nothing raises, so a bad file is reported and trained again instead of ending the invocation.

Example:
  >>> run_key_problem(["toy", 0])
  'key: expected a JSON object, got list'
  >>> field_problem("gradient_evaluations", -3, "count")
  'gradient_evaluations: expected an integer >= 0, got -3'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from autoscale_jax.bench.running.run_result import RunResult

__all__ = ["field_problem", "run_key_problem", "run_result_problem"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any) -> bool:
    return _number(value) and math.isfinite(value) and value >= 0


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(check(v) for v in value)


def _dict_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: (
        isinstance(value, dict) and all(isinstance(k, str) and check(v) for k, v in value.items())
    )


def _metric_dicts(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0 and all(_dict_of(_number)(v) for v in value)


def _delta_m(value: Any) -> bool:
    return value is None or (_dict_of(_number)(value) and set(value) == {"per_metric", "per_task"})


# kind: (test, what the reader is told was expected)
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "count": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "positive": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "number": (_number, "a number"),
    "seconds": (_seconds, "a finite number >= 0"),
    "options": (_dict_of(lambda v: isinstance(v, str)), "a dict of strings"),
    "metric_dicts": (_metric_dicts, "a non-empty list of {metric: number} dicts"),
    "delta_m": (_delta_m, 'null or {"per_metric": number, "per_task": number}'),
    "numbers": (_list_of(_number), "a list of numbers"),
    "seconds_list": (_list_of(_seconds), "a list of finite numbers >= 0"),
    "steps_list": (_list_of(lambda v: _integer(v) and v >= 0), "a list of integers >= 0"),
    "weights": (
        lambda v: v is None or _list_of(_list_of(_number))(v),
        "null or a list of lists of numbers",
    ),
    "rows": (_list_of(_list_of(_number)), "a list of lists of numbers"),
    "traces": (_dict_of(_list_of(_number)), "a dict of lists of numbers"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
}

_KEY_FIELDS = {
    "benchmark": "text",
    "setup": "text",
    "method": "text",
    "method_name": "text",
    "options": "text",
    "seed": "count",
    "steps": "positive",
    "batch_size": "positive",
    "eval_every": "positive",
    "reference": "text",
}

_RUN_FIELDS = {
    "benchmark": "text",
    "method": "text",
    "method_name": "text",
    "options": "options",
    "seed": "count",
    "steps": "positive",
    "batch_size": "positive",
    "eval_every": "positive",
    "selected_step": "count",
    "selection_score": "number",
    "validation_metrics": "metric_dicts",
    "test_metrics": "metric_dicts",
    "delta_m": "delta_m",
    "wall_time_s": "seconds",
    "chunk_times_s": "seconds_list",
    "compile_time_s": "seconds",
    "gradient_evaluations": "count",
    "weight_steps": "steps_list",
    "weights": "weights",
    "estimator_steps": "steps_list",
    "estimator_metrics": "traces",
    "probe_steps": "steps_list",
    "probe_metrics": "traces",
    "validation_steps": "steps_list",
    "validation_scores": "numbers",
    "train_losses": "rows",
    "extras": "object",
}
assert set(_RUN_FIELDS) == {f.name for f in dataclasses.fields(RunResult)}


def field_problem(name: str, value: Any, kind: str) -> str | None:
    """Why ``value`` is not a valid ``kind`` (see the table in this module), or None."""
    check, expected = _KINDS[kind]
    if check(value):
        return None
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return f"{name}: expected {expected}, got {shown}"


def _fields_problem(payload: Any, fields: Mapping[str, str], what: str) -> str | None:
    if not isinstance(payload, dict):
        return f"{what}: expected a JSON object, got {type(payload).__name__}"
    missing, unknown = sorted(set(fields) - set(payload)), sorted(set(payload) - set(fields))
    if missing:
        return f"{what}: missing field(s) {missing}"
    if unknown:
        return f"{what}: unknown field(s) {unknown}"
    for name, kind in fields.items():
        problem = field_problem(f"{what}.{name}", payload[name], kind)
        if problem:
            return problem
    return None


def run_key_problem(payload: Any) -> str | None:
    """Why ``payload`` is not a valid :class:`~run_store.RunKey` dict, or None."""
    return _fields_problem(payload, _KEY_FIELDS, "key")


def run_result_problem(payload: Any) -> str | None:
    """Why ``payload`` is not a valid :class:`RunResult` dict, or None.

    Beyond each field's type and range: the two metric lists have one dict per task each, the
    selected step is within the run, and every trace has one value per recorded step.
    """
    problem = _fields_problem(payload, _RUN_FIELDS, "run")
    if problem:
        return problem
    tasks = len(payload["test_metrics"])
    if len(payload["validation_metrics"]) != tasks:
        found = len(payload["validation_metrics"])
        return f"run.validation_metrics: {found} tasks, test_metrics has {tasks}"
    if payload["selected_step"] > payload["steps"]:
        return f"run.selected_step: {payload['selected_step']} is past steps={payload['steps']}"
    pairs = [("validation_scores", payload["validation_scores"], "validation_steps")]
    if payload["weights"] is not None:
        pairs.append(("weights", payload["weights"], "weight_steps"))
    pairs += [(f"probe_metrics.{n}", v, "probe_steps") for n, v in payload["probe_metrics"].items()]
    pairs += [
        (f"estimator_metrics.{n}", v, "estimator_steps")
        for n, v in payload["estimator_metrics"].items()
    ]
    for name, values, steps in pairs:
        if len(values) != len(payload[steps]):
            return f"run.{name}: {len(values)} values for {len(payload[steps])} {steps}"
    return None
