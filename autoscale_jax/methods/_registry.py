"""The method registry: every method's factory and what a caller must know about it.

Each public module of :mod:`autoscale_jax.methods` is a method and declares its own entry,
``INFO = MethodInfo(...)``, below its factory (a tuple of entries where one module holds more
than one method: ``fixed_weights.py`` also holds ``equal_weights``). :func:`collect` imports
every public module of the package and builds the registry from those entries, so adding a
method edits no list. Tests, the benchmark runner and the step-time benchmarks read the
registry instead of keeping their own lists of names.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, NamedTuple

from autoscale_jax.base import MultiTaskTransformation

FAMILIES = ("scalarization", "loss", "gramian", "surgery", "elementwise", "wrapper")
WEIGHT_CONVENTIONS = ("sum_to_k", "sum_to_1", "unnormalised", "as_given", "inherited", "none")
CONSTRUCTORS = ("num_tasks", "weights", "method")
KINDS = ("fixed", "guided", "smto")


class MethodInfo(NamedTuple):
    """What the registry knows about a method.

    An entry names ``name``, ``factory``, ``family`` and ``reference``; a field left ``None``
    takes its family's value or the default below (:func:`check_info` fills it in), and a
    declared value that contradicts its family is an error.

    Attributes:
      name: the registry name (equal to its module's name).
      factory: the function that builds it.
      family: ``"scalarization"`` (fixed or metric-chosen linear weights), ``"loss"`` (weights
        from losses only: one backward pass per step), ``"gramian"`` (weights from the task
        Gramian each step), ``"surgery"`` (Gramian-space gradient surgery with a random
        order), ``"elementwise"`` (acts on the stacked gradients entry by entry) or
        ``"wrapper"`` (wraps another method).
      needs_task_gradients: whether any step needs the stacked per-task gradients (AutoScale:
        during estimation only). Implied by the family (:data:`IMPLIED`: ``False`` for
        ``"loss"``, ``True`` for the gradient families); defaults to ``False`` for
        ``"scalarization"`` and ``True`` for ``"wrapper"``.
      needs_key: whether ``update`` requires ``key=``. Implied ``True`` for ``"surgery"``
        (a random order); defaults to ``False``.
      needs_losses: whether ``update`` requires ``task_losses=``. Defaults to ``True`` for
        ``"loss"``, ``False`` otherwise.
      weight_convention: how ``task_weights`` are scaled: ``"sum_to_k"``, ``"sum_to_1"``,
        ``"unnormalised"`` (no normalisation promised: the default), ``"as_given"``,
        ``"inherited"`` (a wrapper's: implied by ``"wrapper"``, no other family's) or
        ``"none"`` (no weights).
      constructor: the required argument: ``"num_tasks"`` (the default), ``"weights"`` or
        ``"method"`` (implied by ``"wrapper"``, no other family's).
      reference: the paper, ``Authors, Title, year (arXiv id)`` (required).
      extra_inputs: keyword arguments of ``update`` beyond ``task_losses`` and ``key``.
      min_tasks: the fewest tasks the method is defined for with its default options (robust
        aggregators need more than two).
      symmetric: whether permuting the tasks permutes the weights (False for PCD, whose task 0
        is the primary task).
      kind: what a comparison treats it as: ``"fixed"`` (linear scalarization with weights the
        caller gives: ``equal_weights``, ``fixed_weights``), ``"guided"`` (linear scalarization
        whose weights a metric rule sets: AutoScale, gradient-norm scaling) or ``"smto"`` (a
        specialized multi-task optimizer, the default).
      takes_heads: whether the factory takes ``heads`` (``"weighted"`` / ``"plain"``: whether
        the task heads' leaves are weighted too). ``None`` in a table entry: read from the
        factory's signature by :func:`check_info`; a declared value must agree with it.
      estimation_phase: whether the method has an estimation phase whose length is its
        ``estimation_steps`` option, ending in a phase switch where the train steps restart
        the optimizer's moments (AutoScale, ``freeze``). ``None``: read from the signature
        like ``takes_heads``.
    """

    name: str
    factory: Callable[..., MultiTaskTransformation]
    family: str
    needs_task_gradients: bool | None = None
    needs_key: bool | None = None
    needs_losses: bool | None = None
    weight_convention: str | None = None
    constructor: str | None = None
    reference: str = ""
    extra_inputs: tuple[str, ...] = ()
    min_tasks: int = 2
    symmetric: bool = True
    kind: str = "smto"
    takes_heads: bool | None = None
    estimation_phase: bool | None = None


# What a family implies: an entry may leave these out, and a declared value that differs is an
# error ("loss": weights from the losses alone; "surgery": a random order; "wrapper": wraps a
# method and keeps its weights, which no other family does).
IMPLIED: dict[str, dict[str, Any]] = {
    "scalarization": {},
    "loss": {"needs_task_gradients": False},
    "gramian": {"needs_task_gradients": True},
    "surgery": {"needs_task_gradients": True, "needs_key": True},
    "elementwise": {"needs_task_gradients": True},
    "wrapper": {"weight_convention": "inherited", "constructor": "method"},
}


def _defaults(family: str) -> dict[str, Any]:
    """The values of the fields an entry leaves ``None``: its family's (:data:`IMPLIED`), else
    these."""
    return {
        "needs_task_gradients": family == "wrapper",
        "needs_key": False,
        "needs_losses": family == "loss",
        "weight_convention": "unnormalised",
        "constructor": "num_tasks",
        **IMPLIED[family],
    }


def check_info(info: MethodInfo) -> MethodInfo:
    """Validates one entry (so a typo in the table fails at import, not in a benchmark), fills
    the fields it leaves ``None`` from its family (:data:`IMPLIED`, then the defaults of
    :class:`MethodInfo`) and ``takes_heads`` / ``estimation_phase`` from the factory's
    signature."""
    if info.family not in FAMILIES:
        raise ValueError(f"{info.name}: unknown family {info.family!r}; one of {FAMILIES}.")
    if not info.reference:
        raise ValueError(
            f"{info.name}: no reference: declare reference='Authors, Title, year (arXiv id)'."
        )
    for field, value in IMPLIED[info.family].items():
        if getattr(info, field) not in (None, value):
            raise ValueError(
                f"{info.name}: family {info.family!r} implies {field}={value!r}, but the entry "
                f"declares {getattr(info, field)!r}: leave {field} out or fix the family."
            )
    for field, value in IMPLIED["wrapper"].items():  # a wrapper's, no other family's
        if info.family != "wrapper" and getattr(info, field) == value:
            raise ValueError(
                f"{info.name}: {field}={value!r} belongs to a wrapper, but the family is "
                f"{info.family!r}: declare family='wrapper' or another {field}."
            )
    filled = {
        field: value
        for field, value in _defaults(info.family).items()
        if getattr(info, field) is None
    }
    info = info._replace(**filled)
    if info.weight_convention not in WEIGHT_CONVENTIONS:
        raise ValueError(f"{info.name}: unknown weight convention {info.weight_convention!r}.")
    if info.constructor not in CONSTRUCTORS:
        raise ValueError(f"{info.name}: unknown constructor {info.constructor!r}.")
    if info.kind not in KINDS:
        raise ValueError(f"{info.name}: unknown kind {info.kind!r}; one of {KINDS}.")
    parameters = inspect.signature(info.factory).parameters
    found = {"takes_heads": "heads", "estimation_phase": "estimation_steps"}
    for field, parameter in found.items():
        declared, actual = getattr(info, field), parameter in parameters
        if declared is not None and declared != actual:
            raise ValueError(
                f"{info.name}: {field}={declared} but its factory "
                f"{'takes' if actual else 'does not take'} {parameter!r}."
            )
    return info._replace(
        takes_heads="heads" in parameters, estimation_phase="estimation_steps" in parameters
    )


def declared(module: ModuleType) -> tuple[MethodInfo, ...]:
    """The checked entries (:func:`check_info`) a method module declares in ``INFO``.

    Raises:
      ValueError: when the module declares no ``INFO``, when none of its entries is named
        after the module, or when an entry's factory is defined in another module.
    """
    module_name = module.__name__.rsplit(".", 1)[-1]
    infos = getattr(module, "INFO", None)
    if isinstance(infos, MethodInfo):
        infos = (infos,)
    if not (isinstance(infos, tuple) and infos and all(isinstance(i, MethodInfo) for i in infos)):
        raise ValueError(
            f"{module.__name__} declares no INFO: a public module of autoscale_jax.methods is "
            f"a method and declares INFO = MethodInfo(name={module_name!r}, factory=..., ...) "
            "below its factory; a helper module's name starts with '_'."
        )
    if module_name not in {info.name for info in infos}:
        names = ", ".join(repr(info.name) for info in infos)
        raise ValueError(
            f"{module.__name__}: INFO names {names}, none the module's name {module_name!r}: "
            "the registry name of a method equals its module's name."
        )
    for info in infos:
        defined_in = getattr(info.factory, "__module__", None)
        if defined_in != module.__name__:
            raise ValueError(
                f"{info.name}: its factory is defined in {defined_in}, not in "
                f"{module.__name__}: a method module declares only the methods it defines "
                "(shared code lives in a private module)."
            )
    return tuple(check_info(info) for info in infos)


def collect(package: str, path: Iterable[str]) -> dict[str, MethodInfo]:
    """The registry: imports every public module of ``package`` (found on ``path`` by
    :func:`pkgutil.iter_modules`, names not starting with ``_``) in name order and reads its
    entries (:func:`declared`).

    Raises:
      ValueError: for a module without a valid ``INFO`` or a name declared twice.
    """
    registry: dict[str, MethodInfo] = {}
    for found in sorted(pkgutil.iter_modules(path), key=lambda found: found.name):
        if found.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{found.name}")
        for info in declared(module):
            if info.name in registry:
                raise ValueError(
                    f"method {info.name!r} is declared twice: in "
                    f"{registry[info.name].factory.__module__} and {module.__name__}."
                )
            registry[info.name] = info
    return registry


def factories(registry: dict[str, MethodInfo], reserved: Iterable[str]) -> dict[str, Callable]:
    """Each method's factory under its own name (``pcgrad``, ``dynamic_weight_average``), the
    names :mod:`autoscale_jax.methods` exports.

    Raises:
      ValueError: when a factory's name is one of ``reserved`` (the package's other names) or
        another method's factory's.
    """
    named: dict[str, Callable] = {}
    taken = set(reserved)
    for info in registry.values():
        name = info.factory.__name__
        if name in taken or name in named:
            raise ValueError(
                f"{info.name}: its factory's name {name!r} is already taken in "
                "autoscale_jax.methods: rename the factory."
            )
        named[name] = info.factory
    return named


def build(info: MethodInfo, num_tasks: int, **kwargs: Any) -> MultiTaskTransformation:
    """Builds a method for ``num_tasks`` tasks whatever its constructor takes.

    A ``"weights"`` constructor (``fixed_weights``) defaults to equal weights; a ``"method"``
    constructor (a wrapper) needs ``method=``.
    """
    if info.constructor == "weights":
        kwargs.setdefault("weights", [1.0] * num_tasks)
        return info.factory(**kwargs)
    if info.constructor == "method":
        if "method" not in kwargs:
            raise ValueError(
                f"{info.name} wraps another method: pass method=asj.methods.get(name, ...)."
            )
        return info.factory(**kwargs)
    return info.factory(num_tasks=num_tasks, **kwargs)


def markdown_table(infos: list[MethodInfo]) -> str:
    """A markdown table of methods: name, family, what a step needs, weights, reference."""
    rows = [
        "| method | family | each step needs | weights | reference |",
        "|---|---|---|---|---|",
    ]
    for info in sorted(infos, key=lambda i: (FAMILIES.index(i.family), i.name)):
        if info.family == "wrapper":
            needs = ["what the wrapped method needs"]
        elif info.family == "scalarization" and info.needs_task_gradients:
            needs = ["per-task gradients while estimating, then one backward pass"]
        else:
            needs = ["per-task gradients" if info.needs_task_gradients else "one backward pass"]
        needs += [
            name for name, flag in (("key", info.needs_key), ("losses", info.needs_losses)) if flag
        ]
        needs += [f"`{extra}`" for extra in info.extra_inputs]
        if info.min_tasks > 2:
            needs.append(f"K ≥ {info.min_tasks}")
        convention = str(info.weight_convention).replace("_", " ").replace("to k", "to K")
        rows.append(
            f"| `{info.name}` | {info.family} | {', '.join(needs)} | {convention} | "
            f"{info.reference} |"
        )
    return "\n".join(rows)
