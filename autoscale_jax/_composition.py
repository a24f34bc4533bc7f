"""Where the multi-task part sits in an optax composition, observed while an update is traced.

A multi-task transformation must be the first gradient transformation of a chain (its input
has the task axis) and an optimizer must follow it (its output is the combined *gradient*:
``optax.apply_updates`` on it would climb the loss). optax cannot say where a transformation
sits, so the callers that know what the chain should receive open a :class:`Scope` while they
call it:

- the train steps (:mod:`autoscale_jax.train`, :mod:`autoscale_jax.flax`), whose placeholder
  gradients are the parameters and whose multi-task part must take the loss VJP;
- the wrappers of :mod:`autoscale_jax.accumulation`, which call their inner chain with stacked
  task gradients and must hold the optimizer themselves (they return zero updates on the steps
  they skip).

Every multi-task update reports to the innermost open scope (:func:`started`,
:func:`finished`); the scope refuses, at trace time, a part that did not receive the scope's
input unchanged (something before it), a second multi-task part, and a multi-task part inside
``optax.apply_if_finite`` or ``optax.MultiSteps`` (both look at the placeholder, not at the
gradients). Nothing is observed when no scope is open (a raw ``update`` call).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import jax
import optax

_LOCAL = threading.local()  # .scopes: the open scopes, innermost last (traces may use threads)

# optax wrappers that decide from the incoming gradients, which the train steps replace with a
# placeholder: (state type, field holding the inner state, the fix).
_OPTAX_DECIDERS = (
    (
        optax.ApplyIfFiniteState,
        "inner_state",
        "optax.apply_if_finite cannot wrap the multi-task part: it checks the gradients it "
        "receives, which in a train step are a placeholder (the parameters), so a NaN step "
        "would go through. Wrap the whole chain in autoscale_jax.accumulation.apply_if_finite"
        "(tx, max_consecutive_errors) instead.",
    ),
    (
        optax.MultiStepsState,
        "inner_opt_state",
        "optax.MultiSteps around the multi-task part accumulates placeholder gradients: use "
        "autoscale_jax.multi_steps(tx, every_k, num_tasks) around the whole chain, or "
        "optax.chain(method, optax.MultiSteps(optimizer, every_k)).",
    ),
)


def same_leaves(a: Any, b: Any) -> bool:
    """Whether two pytrees hold the very same leaf objects (no transformation in between)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        x is y for x, y in zip(leaves_a, leaves_b, strict=True)
    )


def _nodes(tree: Any) -> Iterator[Any]:
    """Every tuple (NamedTuple), list and mapping node of a state tree, outermost first."""
    yield tree
    if isinstance(tree, tuple | list):
        children: Any = tree
    elif hasattr(tree, "items") and hasattr(tree, "values"):
        children = tree.values()
    else:
        return
    for child in children:
        yield from _nodes(child)


def _contains(tree: Any, target: Any) -> bool:
    """Whether ``target`` (a transformation's state) lies inside ``tree``: its arrays are
    arrays of ``tree``; a state without arrays is found by identity or by its own type."""
    leaves = jax.tree.leaves(target)
    if leaves:
        present = {id(leaf) for leaf in jax.tree.leaves(tree)}
        return all(id(leaf) in present for leaf in leaves)
    own_type = type(target) not in (tuple, list, dict, optax.EmptyState)
    return any(node is target or (own_type and type(node) is type(target)) for node in _nodes(tree))


class Scope:
    """What one caller learns about the multi-task part(s) of the chain it calls.

    Attributes:
      where: the argument being checked, for the messages (e.g. ``"`weighting`"``).
      expected: what the chain receives; its first transformation must see these very leaves.
      outer_state: the chain's state (to find optax wrappers around the multi-task part).
      seen: multi-task parts met at this level (nested ones, e.g. a method inside
        ``asj.methods.freeze``, report to the part that holds them).
      consumed: the part took the loss VJP (``update(..., loss_vjp=...)``).
      output: the update the outermost multi-task part returned.
      holds_optimizer: the part is a wrapper that must hold the optimizer (``asj.multi_steps``,
        ``asj.accumulation.apply_if_finite``); its name.
    """

    def __init__(self, where: str, expected: Any, outer_state: Any = None) -> None:
        self.where, self.expected, self.outer_state = where, expected, outer_state
        self.seen, self.depth, self.consumed = 0, 0, False
        self.output: Any = None
        self.holds_optimizer: str | None = None

    def started(self, updates: Any, state: Any, consumer: bool) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        self.seen += 1
        if self.seen > 1:
            raise ValueError(
                f"{self.where} holds two multi-task transformations of autoscale_jax: the "
                "second would recompute (or re-combine) the gradients and drop the first's "
                "combination. Keep one multi-task part, first in the chain."
            )
        self.consumed = consumer
        if self.outer_state is not None:
            for state_type, field, fix in _OPTAX_DECIDERS:
                for node in _nodes(self.outer_state):
                    if isinstance(node, state_type) and _contains(getattr(node, field), state):
                        raise ValueError(f"{self.where}: {fix}")
        if not same_leaves(updates, self.expected):
            raise ValueError(
                f"{self.where}: the multi-task transformation must be the first gradient "
                "transformation of the chain (its input has the task axis), but another "
                "transformation changed the gradients before it (e.g. optax.adam or "
                "optax.clip_by_global_norm placed first, or a wrapper such as optax.masked). "
                "Put it first: optax.chain(asj.autoscale(...), optax.clip_by_global_norm(...), "
                "optax.adam(...))."
            )

    def finished(self, output: Any) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.output = output

    def check_holds_optimizer(self, output: Any) -> None:
        """For a wrapper: its inner chain has a multi-task part and transforms its output."""
        if not self.seen:
            raise ValueError(
                f"{self.where} holds no multi-task transformation of autoscale_jax: pass a "
                "chain that starts with one, e.g. optax.chain(asj.autoscale(...), "
                "optax.adam(...))."
            )
        if same_leaves(output, self.output) and self.holds_optimizer is None:
            raise ValueError(
                f"{self.where} must hold the optimizer after the multi-task part (e.g. "
                "optax.chain(asj.autoscale(...), optax.adam(...))): it returns zero updates "
                "on the steps it skips, and an optimizer placed after it would still move "
                "the parameters on them (momentum); without any optimizer the update is the "
                "combined gradient itself, which optax.apply_updates would climb."
            )

    def check_train_step(self, combined: Any, optimizer_given: bool) -> None:
        """For a train step: the chain's final update ``combined`` and the ``optimizer`` arg."""
        if not self.consumed:
            raise TypeError(
                "No multi-task transformation of autoscale_jax received the task losses' VJP: "
                f"{self.where} must be one (e.g. asj.autoscale(...)) or a chain/wrapper whose "
                "first gradient transformation is one."
            )
        after = not same_leaves(combined, self.output)
        if self.holds_optimizer is not None and (after or optimizer_given):
            raise ValueError(
                f"{self.holds_optimizer} must wrap the whole chain, optimizer included, and "
                f"be all of {self.where}: an optimizer outside it would step on the zero "
                "updates of the steps it skips. Pass it as the weighting, with optimizer=None."
            )
        if after and optimizer_given:
            raise ValueError(
                f"optimizer is given, but {self.where} already transforms the multi-task "
                "part's output (e.g. optax.chain(asj.autoscale(...), optax.adam(...))): the "
                "optimizer would apply twice. Pass the whole chain as the weighting and "
                "optimizer=None, or only the multi-task part as the weighting."
            )
        if not after and not optimizer_given and self.holds_optimizer is None:
            raise ValueError(
                f"No optimizer after the multi-task part of {self.where}: its output is the "
                "combined gradient, which optax.apply_updates would climb (gradient ascent). "
                "Pass optimizer=optax.sgd(...) / optax.adam(...), or chain one after it."
            )


@contextlib.contextmanager
def scope(where: str, expected: Any, outer_state: Any = None) -> Iterator[Scope]:
    """Opens a :class:`Scope` for the updates traced inside the block."""
    opened = Scope(where, expected, outer_state)
    _scopes().append(opened)
    try:
        yield opened
    finally:
        _scopes().pop()


def _scopes() -> list[Scope]:
    if not hasattr(_LOCAL, "scopes"):
        _LOCAL.scopes = []
    return _LOCAL.scopes


def started(updates: Any, state: Any, consumer: bool) -> None:
    """Called by every multi-task update on entry (``consumer``: it took the loss VJP)."""
    if _scopes():
        _scopes()[-1].started(updates, state, consumer)


def finished(result: tuple[Any, Any]) -> tuple[Any, Any]:
    """Called by every multi-task update with its ``(updates, state)``; returns it."""
    if _scopes():
        _scopes()[-1].finished(result[0])
    return result


def holds_optimizer(name: str) -> None:
    """A wrapper that holds the optimizer marks itself in the caller's scope (before it
    reports :func:`finished`)."""
    if _scopes():
        _scopes()[-1].holds_optimizer = name
