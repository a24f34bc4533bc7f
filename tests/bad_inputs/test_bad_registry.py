"""The registry's metadata (``kind``, ``takes_heads``, ``estimation_phase``) that the bench
reads instead of method names: a wrong entry is a clear error at import (``check_info``), and
the bench's restart option follows ``estimation_phase``. A method module's own declaration
(``INFO``, read by ``_registry.declared`` when the package is imported) that cannot be
collected is a clear error naming the module and the fix."""

import sys
import types
from typing import Any, NamedTuple

import pytest

import autoscale_jax as asj
from autoscale_jax.bench.running import chunk
from autoscale_jax.bench.running.method_config import RESTART, MethodConfig
from autoscale_jax.methods._registry import check_info, declared, factories


class Case(NamedTuple):
    id: str
    run: Any
    error: type | None  # None: the defined result ``expected``
    match: Any


def _entry(name, **fields):
    return lambda: check_info(asj.methods.info(name)._replace(**fields))


def _module(name, info=None):
    """A fake method module ``autoscale_jax.methods.<name>`` with a factory ``my_factory``
    defined in it and, when given, ``INFO`` (a callable of that factory)."""
    module = types.ModuleType(f"autoscale_jax.methods.{name}")

    def my_factory(num_tasks):
        return asj.methods.pcgrad(num_tasks)

    my_factory.__module__ = module.__name__
    module.my_factory = my_factory
    if info is not None:
        module.INFO = info(my_factory)
    return lambda: declared(module)


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
    Case(
        "module-without-info",
        _module("my_method"),
        ValueError,
        r"autoscale_jax.methods.my_method declares no INFO: .* "
        r"INFO = MethodInfo\(name='my_method', factory=\.\.\., \.\.\.\) below its factory; "
        "a helper module's name starts with '_'",
    ),
    Case(
        "info-not-a-method-info",
        _module("my_method", lambda factory: {"name": "my_method", "factory": factory}),
        ValueError,
        "autoscale_jax.methods.my_method declares no INFO",
    ),
    Case(
        "info-named-after-another-module",
        _module("my_method", lambda f: asj.methods.info("pcgrad")._replace(factory=f)),
        ValueError,
        "INFO names 'pcgrad', none the module's name 'my_method': the registry name of a "
        "method equals its module's name",
    ),
    Case(
        "factory-imported-from-another-module",
        _module("my_method", lambda f: asj.methods.info("pcgrad")._replace(name="my_method")),
        ValueError,
        "my_method: its factory is defined in autoscale_jax.methods.pcgrad, not in "
        r"autoscale_jax.methods.my_method: a method module declares only the methods it "
        r"defines \(shared code lives in a private module\)",
    ),
    Case(
        "module-declares-its-own",
        lambda: [i.name for i in declared(sys.modules["autoscale_jax.methods.fixed_weights"])],
        None,
        ["fixed_weights", "equal_weights"],
    ),
    Case(
        "factory-name-taken",
        lambda: factories({"pcgrad": asj.methods.info("pcgrad")}, ["get", "pcgrad"]),
        ValueError,
        "pcgrad: its factory's name 'pcgrad' is already taken in autoscale_jax.methods: "
        "rename the factory",
    ),
    Case(
        "unknown-attribute",
        lambda: asj.methods.nash,
        AttributeError,
        r"has no attribute 'nash'; asj.methods.available\(\) lists the registered methods",
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
