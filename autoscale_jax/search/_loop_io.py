"""What the streamed search reads and shows (see :mod:`autoscale_jax.search.loop`): the batch
source (an iterator or ``step -> batch``) stacked into fixed-size chunks, the progress display
and the device mesh of the candidate axis; each checked before the first step."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from autoscale_jax.checks import check_positive_int


def _signature(batch: Any) -> Any:
    leaves, tree = jax.tree.flatten(batch)
    return tree, [(tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves]


def _stack(*xs: Any) -> Any:
    """Host arrays stacked on the host (one transfer per chunk), others on the device."""
    if all(isinstance(x, np.ndarray) for x in xs):
        return np.stack(xs)
    return jnp.stack([jnp.asarray(x) for x in xs])


class Batches:
    """Batches by global step, ``step -> batch`` or the next item of an iterator that starts at
    step ``offset``; every batch must have the first one's structure, shapes and dtypes."""

    def __init__(self, batches: Any, offset: int) -> None:
        if isinstance(batches, str | bytes) or not (
            callable(batches) or isinstance(batches, Iterable)
        ):
            raise TypeError(
                "batches must be an iterator of batches (e.g. a generator; a batch is any "
                "pytree loss_fn takes) or a function step -> batch, got "
                f"{type(batches).__name__}."
            )
        self._call = batches if callable(batches) and not isinstance(batches, Iterable) else None
        self._iter = None if self._call is not None else iter(batches)
        self._next, self._first = offset, None
        self._peeked: list = []

    def peek(self) -> Any:
        """The batch of the next step, without consuming it."""
        if not self._peeked:
            self._peeked.append(self._get(self._next))
        return self._peeked[0]

    def _get(self, step: int) -> Any:
        if self._call is not None:
            return self._call(step)
        try:
            return next(self._iter)  # type: ignore[arg-type]
        except StopIteration:
            raise ValueError(
                f"batches ran out at step {step}: the search consumes one batch per step up to "
                "its last rung (report.steps); give a longer iterator (e.g. itertools.cycle "
                "over epochs) or a function step -> batch."
            ) from None

    def take(self, step: int, count: int, size: int) -> tuple[Any, jax.Array]:
        """Batches of steps ``step .. step+count-1`` stacked to ``size`` rows (the last one
        repeated) and the [size] flags of the real rows."""
        if step != self._next:
            raise ValueError(f"batches are at step {self._next}, the search asked for {step}.")
        items = [self._peeked.pop() if self._peeked else self._get(step + i) for i in range(count)]
        self._next += count
        for offset, item in enumerate(items):
            signature = _signature(item)
            if self._first is None:
                self._first = signature
            elif signature != self._first:
                raise ValueError(
                    f"the batch of step {step + offset} has leaves {signature[1]}, the first "
                    f"batch {self._first[1]}: the chunk program is compiled for one batch "
                    "layout; give equal batches (drop or pad the last, smaller one)."
                )
        items += [items[-1]] * (size - count)
        stacked = jax.tree.map(_stack, *items)
        return stacked, jnp.arange(size) < count


class Progress:
    """``update(step, text)``: a tqdm bar (``progress=None`` where tqdm is installed and stderr
    is a terminal, ``True`` wherever tqdm is installed), a callable ``fn(step, total, text)``,
    or nothing (``False``, or ``None`` elsewhere)."""

    def __init__(self, progress: Any, total: int, start: int = 0, show: bool = True) -> None:
        self._fn: Callable[[int, int, str], Any] | None = None
        self._bar: Any = None
        self._total = total
        if progress is None or progress is True:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                if progress is True:
                    raise ValueError(
                        "progress=True needs tqdm (pip install tqdm); pass a callable "
                        "progress(step, total, text) or progress=False instead."
                    ) from None
                return
            if show and (progress is True or sys.stderr.isatty()):
                self._bar = tqdm(total=total, initial=start, desc="weight search", unit="step")
        elif callable(progress):
            self._fn = progress
        elif progress is not False:
            raise TypeError(
                "progress must be None (tqdm when installed and interactive), True, False or "
                f"a callable progress(step, total, text), got {progress!r}."
            )

    def update(self, step: int, text: str) -> None:
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix_str(text, refresh=True)
        if self._fn is not None:
            self._fn(step, self._total, text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def mesh_of(devices: Any, sequential: bool) -> Mesh | None:
    """The 1-D mesh of the candidate axis (``None``: the default device)."""
    if devices is None:
        return None
    if sequential:
        raise ValueError(
            "sequential=True trains the candidates one after another on one device; it cannot "
            "shard them over devices: drop devices= or sequential=True."
        )
    if isinstance(devices, Mesh):
        if len(devices.axis_names) != 1:
            raise ValueError(
                f"devices must be a 1-D mesh (one axis for the candidates), got axes "
                f"{devices.axis_names}."
            )
        return devices
    if isinstance(devices, str) or not isinstance(devices, Sequence) or not devices:
        raise TypeError(
            "devices must be a non-empty sequence of jax devices (e.g. jax.devices()) or a 1-D "
            f"jax.sharding.Mesh, got {devices!r}."
        )
    if not all(isinstance(d, jax.Device) for d in devices) or len(set(devices)) < len(devices):
        raise ValueError(f"devices must be distinct jax devices (jax.devices()), got {devices!r}.")
    return Mesh(np.asarray(devices), ("candidates",))


def rows_for(live: int, mesh: Mesh | None) -> int:
    """``live`` rounded up to a multiple of the device count (padding rows are copies whose
    results are discarded)."""
    devices = 1 if mesh is None else mesh.devices.size
    return -(-live // devices) * devices


def place(tree: Any, mesh: Mesh | None, sharded: bool) -> Any:
    """``tree`` sharded over the mesh along its leading axis (``sharded``) or replicated."""
    if mesh is None:
        return tree
    spec = P(mesh.axis_names[0]) if sharded else P()
    return jax.device_put(tree, NamedSharding(mesh, spec))


def check_count(name: str, value: Any) -> int:
    """A positive int option."""
    return check_positive_int(name, value)


def first_batch(batches: Any) -> tuple[Any, Any]:
    """``(batches, first)``: the source with its first batch put back, and that batch."""
    if isinstance(batches, Iterable) and not callable(batches) and not isinstance(batches, str):
        iterator = iter(batches)
        first = next(iterator, None)
        if first is None:
            raise ValueError("batches is empty: give one batch per step.")
        return itertools.chain([first], iterator), first
    Batches(batches, 0)  # raises the TypeError for what is neither
    return batches, batches(0)


def loss_layout(loss_fn: Callable, params: Any, batch: Any) -> tuple[int, bool]:
    """``(K, task_counts)`` read from ``loss_fn``'s output: ``[K]`` or ``([K], [K])``."""
    out = jax.eval_shape(loss_fn, params, batch)
    counts = isinstance(out, tuple) and len(out) == 2
    shape = getattr(out[0] if counts else out, "shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(
            "loss_fn(params, batch) must return the K task losses as a vector [K], or "
            f"(losses [K], counts [K]) for partial labels, got {out!r}."
        )
    return shape[0], counts


def check_loss(loss_fn: Callable, params: Any, batch: Any, k: int, task_counts: bool) -> None:
    """Raises unless ``loss_fn(params, batch)`` gives ``[K]`` (or ``([K], [K])`` with counts)."""
    out = jax.eval_shape(loss_fn, params, batch)
    parts = out if task_counts and isinstance(out, tuple) and len(out) == 2 else (out,)
    shapes = [getattr(x, "shape", None) for x in parts]
    if len(parts) != (2 if task_counts else 1) or any(s != (k,) for s in shapes):
        want = "(losses [K], counts [K])" if task_counts else "losses [K]"
        raise ValueError(
            f"loss_fn(params, batch) must return {want} with K = num_tasks = {k} (and "
            f"task_counts=True exactly when it returns counts), got {out!r}."
        )


def check_on_record(on_record: Any, record: Any) -> None:
    """``on_record`` is a callable, given only to a search built with ``record=``."""
    if on_record is None:
        return
    if not callable(on_record):
        raise TypeError(f"on_record must be callable: on_record(step, records), got {on_record!r}.")
    if record is None:
        raise ValueError(
            "on_record receives what record(train_state, losses) returns: build the "
            "WeightSearch with record= (or drop on_record)."
        )


def first_rows(tree: Any, count: int) -> Any:
    """The first ``count`` rows of every leaf (a chunk's real steps)."""
    return jax.tree.map(lambda x: x[:count], tree)
