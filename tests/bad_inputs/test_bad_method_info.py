"""A method's registry entry (``MethodInfo``, checked by ``_registry.check_info``) declares only
what its family does not imply. A field it leaves out takes the family's value or the default
(a defined result; every registered method's filled entry is pinned as it stood when the
defaults came in, so a change of the defaults cannot move one); a declared value that
contradicts the family is a clear error at import naming the method, the field and the fix.

One table: each case raises (type and message checked) or returns the entry's summary: family,
G/K/L for needs task gradients / key / losses, weight convention, constructor.
"""

from typing import Any, NamedTuple

import pytest

import autoscale_jax as asj
from autoscale_jax.methods import _registry


class Case(NamedTuple):
    id: str
    run: Any
    error: type | None  # None: the defined result ``match``
    match: str


def _summary(info: _registry.MethodInfo) -> str:
    flags = (("G", info.needs_task_gradients), ("K", info.needs_key), ("L", info.needs_losses))
    needs = "".join(letter for letter, flag in flags if flag) or "-"
    return f"{info.family} {needs} {info.weight_convention} {info.constructor}"


def _check(family, **fields):
    entry = _registry.MethodInfo(name="m", factory=asj.methods.pcgrad, family=family, **fields)
    return _registry.check_info(entry)


def _filled(family):
    return lambda: _summary(_check(family, reference="R"))


def _registered(name):
    return lambda: _summary(asj.methods.info(name))


# Every registered entry, filled (a new method needs no row here).
PINNED = {
    "aligned_mtl": "gramian G unnormalised num_tasks",
    "auto_lambda": "elementwise G unnormalised num_tasks",
    "autoscale": "scalarization GL sum_to_k num_tasks",
    "cagrad": "gramian G unnormalised num_tasks",
    "config": "gramian G unnormalised num_tasks",
    "cosmos": "loss L unnormalised num_tasks",
    "cr_mogm": "wrapper G inherited method",
    "db_mtl": "elementwise GL unnormalised num_tasks",
    "dualproj": "gramian G unnormalised num_tasks",
    "dwa": "loss L sum_to_k num_tasks",
    "edm": "gramian G sum_to_1 num_tasks",
    "equal_weights": "scalarization - sum_to_k num_tasks",
    "excess_mtl": "elementwise G sum_to_k num_tasks",
    "fairgrad": "gramian G unnormalised num_tasks",
    "famo": "loss L sum_to_1 num_tasks",
    "fixed_weights": "scalarization - as_given weights",
    "freeze": "wrapper GL inherited method",
    "geometric_mean": "loss L unnormalised num_tasks",
    "graddrop": "elementwise GK none num_tasks",
    "gradient_norm_scaling": "gramian G unnormalised num_tasks",
    "gradnorm": "gramian GL sum_to_k num_tasks",
    "gradvac": "surgery GK unnormalised num_tasks",
    "imtl_g": "gramian G sum_to_1 num_tasks",
    "imtl_l": "loss L unnormalised num_tasks",
    "krum": "gramian G sum_to_1 num_tasks",
    "mgda": "gramian G sum_to_1 num_tasks",
    "moco": "elementwise G sum_to_1 num_tasks",
    "modo": "gramian G sum_to_1 num_tasks",
    "nash_mtl": "gramian G unnormalised num_tasks",
    "pbi": "loss L unnormalised num_tasks",
    "pcd": "gramian G unnormalised num_tasks",
    "pcgrad": "surgery GK unnormalised num_tasks",
    "rlw": "loss K sum_to_k num_tasks",
    "scale_invariant": "loss L unnormalised num_tasks",
    "sdmgrad": "gramian G sum_to_1 num_tasks",
    "stch": "loss L unnormalised num_tasks",
    "trimmed_mean": "elementwise G none num_tasks",
    "uncertainty_weighting": "loss L unnormalised num_tasks",
    "upgrad": "gramian G unnormalised num_tasks",
}

FILLED = {
    "scalarization": "scalarization - unnormalised num_tasks",
    "loss": "loss L unnormalised num_tasks",
    "gramian": "gramian G unnormalised num_tasks",
    "surgery": "surgery GK unnormalised num_tasks",
    "elementwise": "elementwise G unnormalised num_tasks",
    "wrapper": "wrapper G inherited method",
}
# (id, the entry's family and fields, the error's message)
CONFLICTS = [
    (
        "loss-with-task-gradients",
        {"family": "loss", "needs_task_gradients": True},
        "m: family 'loss' implies needs_task_gradients=False, but the entry declares True: "
        "leave needs_task_gradients out or fix the family",
    ),
    (
        "gramian-without-task-gradients",
        {"family": "gramian", "needs_task_gradients": False},
        "m: family 'gramian' implies needs_task_gradients=True",
    ),
    (
        "surgery-without-key",
        {"family": "surgery", "needs_key": False},
        "m: family 'surgery' implies needs_key=True",
    ),
    (
        "wrapper-with-num-tasks",
        {"family": "wrapper", "constructor": "num_tasks"},
        "m: family 'wrapper' implies constructor='method'",
    ),
    (
        "inherited-weights-outside-a-wrapper",
        {"family": "gramian", "weight_convention": "inherited"},
        "m: weight_convention='inherited' belongs to a wrapper, but the family is 'gramian': "
        "declare family='wrapper' or another weight_convention",
    ),
    (
        "no-reference",
        {"family": "gramian", "reference": ""},
        r"m: no reference: declare reference='Authors, Title, year \(arXiv id\)'",
    ),
    ("unknown-family", {"family": "gradient"}, "m: unknown family 'gradient'; one of"),
]

CASES = [
    *(Case(f"registered-{name}", _registered(name), None, row) for name, row in PINNED.items()),
    *(Case(f"{family}-filled", _filled(family), None, row) for family, row in FILLED.items()),
    *(
        Case(id, lambda fields=fields: _check(**{"reference": "R", **fields}), ValueError, match)
        for id, fields, match in CONFLICTS
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_method_info(case):
    if case.error is None:
        assert case.run() == case.match
    else:
        with pytest.raises(case.error, match=case.match):
            case.run()
