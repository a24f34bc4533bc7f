"""The registry's metadata (``kind``, ``takes_heads``, ``estimation_phase``) that the bench
reads instead of method names: a wrong entry is a clear error at import (``check_info``), and
the bench's restart option follows ``estimation_phase``."""

from typing import Any, NamedTuple

import pytest

import autoscale_jax as asj
from autoscale_jax.bench.running import chunk
from autoscale_jax.bench.running.method_config import RESTART, MethodConfig
from autoscale_jax.methods._registry import check_info


class Case(NamedTuple):
    id: str
    run: Any
    error: type | None  # None: the defined result ``expected``
    match: Any


def _entry(name, **fields):
    return lambda: check_info(asj.methods.info(name)._replace(**fields))


def _restart_build(name):
    params = {"trunk": {"w": 1.0}, "heads": {"w": 2.0}}
    config = MethodConfig("row", name, {RESTART: False, "method": "mgda", "estimation_steps": 5})
    return lambda: chunk.method_build(config, 2, params).restart


CASES = [
    Case(
        "kind-unknown", _entry("mgda", kind="adaptive"), ValueError, "mgda: unknown kind 'adaptive'"
    ),
    Case(
        "takes-heads-declared-wrong",
        _entry("famo", takes_heads=True),
        ValueError,
        "famo: takes_heads=True but its factory does not take 'heads'",
    ),
    Case(
        "estimation-phase-declared-wrong",
        _entry("autoscale", estimation_phase=False),
        ValueError,
        "autoscale: estimation_phase=False but its factory takes 'estimation_steps'",
    ),
    Case(
        "takes-heads-filled-in",
        lambda: check_info(asj.methods.info("mgda")).takes_heads,
        None,
        True,
    ),
    Case("restart-option-on-freeze", _restart_build("freeze"), None, False),
    Case(
        "restart-option-without-a-phase",
        _restart_build("cr_mogm"),
        ValueError,
        "the option 'restart' .* with an estimation phase .*; got False on 'cr_mogm'",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_registry_metadata(case):
    if case.error is None:
        assert case.run() == case.match
    else:
        with pytest.raises(case.error, match=case.match):
            case.run()
