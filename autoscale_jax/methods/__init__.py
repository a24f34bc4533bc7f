"""Multi-task optimizers behind one interface.

Each method is a factory ``name(num_tasks, **hyper_parameters)`` returning a
:class:`~autoscale_jax.base.MultiTaskTransformation`: stacked task gradients in (leading task
axis K), ``task_losses=`` (and ``key=`` for random methods) as extra arguments, one combined
update out, a NamedTuple state whose ``task_weights`` field :func:`autoscale_jax.task_weights`
reads. :func:`get` builds one from its registry name and :func:`info` says what it needs
(family, per-task gradients, key, losses, weight convention, reference).

This package only collects: each public module (``pcgrad.py``, ...) is one method and declares
its own registry entry, ``INFO = MethodInfo(...)``, below its factory; at import the package
imports every module whose name does not start with ``_`` and builds the registry from those
entries (:func:`~autoscale_jax.methods._registry.collect`), and each factory is importable
from here under its own name (``asj.methods.pcgrad``). Code that methods share lives in the
private modules (``_bases``, ``_solvers``, ...): no method imports another.

Example:
  >>> tx = optax.chain(asj.methods.get("pcgrad", num_tasks=3), optax.adam(1e-3))
  >>> asj.methods.info("pcgrad").needs_key
  True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoscale_jax.base import MultiTaskTransformation
from autoscale_jax.methods._bases import GramianMethodState, Proposal
from autoscale_jax.methods._registry import MethodInfo, build, collect, factories, markdown_table

# The package's own names; the factories' names join below.
__all__ = [
    "GramianMethodState",
    "MethodInfo",
    "Proposal",
    "available",
    "build_for",
    "get",
    "info",
    "table",
]
_REGISTRY: dict[str, MethodInfo] = collect(__name__, __path__)
_FACTORIES = factories(_REGISTRY, __all__)
globals().update(_FACTORIES)  # asj.methods.pcgrad, asj.methods.dynamic_weight_average, ...


def available() -> tuple[str, ...]:
    """The names :func:`get` accepts, sorted."""
    return tuple(sorted(_REGISTRY))


def info(name: str) -> MethodInfo:
    """The registry entry of ``name`` (family, needs, weight convention, reference).

    Raises:
      ValueError: for an unknown name (the message lists the available ones).
    """
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; available: {', '.join(available())}.")
    return _REGISTRY[name]


def get(name: str, **kwargs: Any) -> MultiTaskTransformation:
    """Builds the method ``name`` with keyword hyper-parameters.

    ``fixed_weights`` takes ``weights=`` and ``freeze`` takes ``method=`` (another
    transformation) and ``estimation_steps=``; every other method takes ``num_tasks=``
    (see ``info(name).constructor``).

    Raises:
      ValueError: for an unknown name (the message lists the available ones).
    """
    return info(name).factory(**kwargs)


def table() -> str:
    """Every registered method as a markdown table (family, needs, weights, reference); the
    README and the docs show it."""
    return markdown_table(list(_REGISTRY.values()))


def build_for(name: str, num_tasks: int, **kwargs: Any) -> MultiTaskTransformation:
    """Builds ``name`` for ``num_tasks`` tasks whatever its constructor (see
    :func:`~autoscale_jax.methods._registry.build`): the form benchmarks use."""
    return build(info(name), num_tasks, **kwargs)


def __getattr__(name: str) -> Callable[..., MultiTaskTransformation]:
    """Called only for a name the package does not have.

    The factories are set at import, from the registry, so a type checker cannot see them:
    this signature tells it that ``asj.methods.<name>`` is a method factory. A mistyped name
    is an ``AttributeError`` that says where the methods are listed.

    Raises:
      AttributeError: always.
    """
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}; asj.methods.available() lists the "
        "registered methods."
    )


__all__ += sorted(_FACTORIES)
