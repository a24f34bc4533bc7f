"""Small Flax NNX multi-task models for the offline benchmarks, and their pure loss functions.

Every model is a *shared trunk* followed by *one head per task*; ``model(inputs)`` returns a
tuple of per-task outputs. :func:`functional_model` turns a model into a pure
``apply(params, inputs)`` over a plain nested dict of parameters (``nnx.split`` +
``nnx.to_pure_dict``; ``nnx.merge`` inside the function), so optax, ``jax.jit`` and
:func:`autoscale_jax.task_value_and_grad` see an ordinary pytree:

- params ``{"trunk": ..., "heads": {0: ..., 1: ..., ...}}``; head ``k`` only feeds task ``k``,
  so its per-task gradient is zero for every other task and ``metric_mask="shared"`` (or
  :func:`trunk_mask`) keeps exactly the trunk's leaves.

Per-task losses by kind (means over the batch):

- ``"classification"``: softmax cross-entropy ``-log softmax(z)_y``;
- ``"binary"``: sigmoid cross-entropy ``-y log σ(z) - (1 - y) log(1 - σ(z))`` on one logit;
- ``"regression"`` / ``"reconstruction"``: mean squared error over all output elements.

Partial labels (``Split.masks``, e.g. MoleculeACE): ``multitask_loss_fn(..., task_counts=True)``
takes each loss as a mean over the labelled examples only and also returns the counts.

Example:
  >>> from autoscale_jax.bench import datasets
  >>> data = datasets.multi_mnist(num_train=100, num_validation=20, num_test=20)
  >>> fm = functional_model(build_model(data, seed=0))
  >>> loss_fn = multitask_loss_fn(fm.apply, data.tasks)
  >>> loss_fn(fm.params, (data.train.inputs[:8], tuple(t[:8] for t in data.train.targets)))
  Array([2.3..., 0.0...], dtype=float32)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from autoscale_jax.bench.datasets import MultiTaskDataset, TaskSpec

__all__ = [
    "FunctionalModel",
    "MultiTaskGraphNet",
    "MultiTaskMLP",
    "build_model",
    "functional_model",
    "last_shared_layer_mask",
    "masked_task_loss",
    "multitask_loss_fn",
    "predict_in_batches",
    "task_loss",
    "trunk_mask",
]

Batch = tuple[jax.Array, tuple[jax.Array, ...]]
ApplyFn = Callable[[Any, jax.Array], tuple[jax.Array, ...]]
LOSS_KINDS = ("classification", "binary", "regression", "reconstruction")
HEAD_ACTIVATIONS = (None, "sigmoid")
RECONSTRUCTION_HEADS = ("linear", "sigmoid")


def _mlp(sizes: Sequence[int], rngs: nnx.Rngs, *, final_activation: bool) -> nnx.Sequential:
    """Linear layers ``sizes[0] → sizes[1] → ...`` with ReLU between (and after, if asked)."""
    layers: list[Any] = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nnx.Linear(fan_in, fan_out, rngs=rngs))
        if final_activation or i < len(sizes) - 2:
            layers.append(jax.nn.relu)
    return nnx.Sequential(*layers)


class MultiTaskMLP(nnx.Module):
    """Hard parameter sharing: an MLP trunk ``x → h`` and one MLP head per task ``h → y_k``.

    Args:
      input_size: features per example (flattened images or feature vectors).
      output_sizes: outputs of each task head (classes, 1 logit, or regression size).
      trunk_sizes: hidden sizes of the trunk; ReLU after every trunk layer.
      head_hidden: hidden size of each head (0: a single linear layer per head).
      head_activations: one output activation per head, ``None`` (linear) or ``"sigmoid"``
        (e.g. a reconstruction head whose targets lie in [0, 1]); default all linear.
      rngs: NNX random streams for initialisation.

    Example:
      >>> model = MultiTaskMLP(784, (10, 196), rngs=nnx.Rngs(0))
      >>> [y.shape for y in model(jnp.ones((4, 784)))]
      [(4, 10), (4, 196)]
    """

    def __init__(
        self,
        input_size: int,
        output_sizes: Sequence[int],
        *,
        trunk_sizes: Sequence[int] = (256, 128),
        head_hidden: int = 0,
        head_activations: Sequence[str | None] | None = None,
        rngs: nnx.Rngs,
    ) -> None:
        activations = tuple(head_activations or (None,) * len(output_sizes))
        if len(activations) != len(output_sizes) or any(
            a not in HEAD_ACTIVATIONS for a in activations
        ):
            raise ValueError(
                f"head_activations must give one of {HEAD_ACTIVATIONS} per head, got {activations}"
            )
        self.head_activations = activations
        self.trunk = _mlp((input_size, *trunk_sizes), rngs, final_activation=True)
        hidden = (head_hidden,) if head_hidden else ()
        self.heads = nnx.List(
            [
                _mlp((trunk_sizes[-1], *hidden, size), rngs, final_activation=False)
                for size in output_sizes
            ]
        )

    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, ...]:
        features = self.trunk(inputs)
        return tuple(
            _activate(head(features), activation)
            for head, activation in zip(self.heads, self.head_activations, strict=True)
        )


def _activate(outputs: jax.Array, activation: str | None) -> jax.Array:
    return jax.nn.sigmoid(outputs) if activation == "sigmoid" else outputs


class _InteractionBlock(nnx.Module):
    """One continuous-filter convolution (SchNet): ``h_i += MLP(Σ_j W(d_ij) ⊙ (A h_j))``."""

    def __init__(self, width: int, num_radial: int, rngs: nnx.Rngs) -> None:
        # One linear layer on the radial basis (SchNet uses a two-layer filter network): the
        # filter runs on every atom pair, so it dominates the cost on a CPU.
        self.filter = nnx.Linear(num_radial, width, rngs=rngs)
        self.project = nnx.Linear(width, width, rngs=rngs)
        self.update = _mlp((width, width, width), rngs, final_activation=False)

    def __call__(self, nodes: jax.Array, radial: jax.Array, edge_mask: jax.Array) -> jax.Array:
        filters = self.filter(radial) * edge_mask[..., None]  # [B, A, A, W]
        messages = jnp.einsum("bijw,bjw->biw", filters, self.project(nodes))
        return nodes + self.update(jax.nn.silu(messages))


class MultiTaskGraphNet(nnx.Module):
    """A small message-passing net over padded molecules, then one MLP head per task.

    Input per molecule: ``[A, 5]`` atom slots (atomic number Z, x, y, z in Ångström, mask), as
    in ``datasets.qm9(representation="graph")``. Atoms are embedded from a one-hot of their
    element; edges join atoms closer than ``cutoff`` with a Gaussian radial basis of the distance
    ``exp(-γ (d - μ_r)²)`` times a cosine cutoff ``½(cos(π d / c) + 1)``; a few SchNet-style
    interaction blocks update the atoms; the trunk output is the masked sum over atoms.

    Args:
      output_sizes: outputs of each task head.
      width: atom feature size.
      num_interactions: message-passing blocks.
      num_radial: radial basis functions.
      cutoff: edge cutoff in Ångström.
      elements: atomic numbers that get an embedding (others share the last slot).
      rngs: NNX random streams.

    Reference: Schütt et al, SchNet: A continuous-filter convolutional neural network for
    modeling quantum interactions, 2017.
    """

    def __init__(
        self,
        output_sizes: Sequence[int],
        *,
        width: int = 64,
        num_interactions: int = 3,
        num_radial: int = 16,
        cutoff: float = 5.0,
        elements: Sequence[int] = (1, 6, 7, 8, 9),
        rngs: nnx.Rngs,
    ) -> None:
        self.elements = tuple(int(z) for z in elements)
        self.cutoff = float(cutoff)
        self.centres = tuple(float(c) for c in np.linspace(0.0, cutoff, num_radial))
        self.embed = nnx.Linear(len(self.elements), width, rngs=rngs)
        self.interactions = nnx.List(
            [_InteractionBlock(width, num_radial, rngs) for _ in range(num_interactions)]
        )
        self.readout = nnx.Linear(width, width, rngs=rngs)
        self.heads = nnx.List(
            [_mlp((width, width, size), rngs, final_activation=False) for size in output_sizes]
        )

    def __call__(self, inputs: jax.Array) -> tuple[jax.Array, ...]:
        numbers, positions, atom_mask = inputs[..., 0], inputs[..., 1:4], inputs[..., 4]
        one_hot = (numbers[..., None] == jnp.asarray(self.elements, inputs.dtype)).astype(
            inputs.dtype
        )
        nodes = self.embed(one_hot) * atom_mask[..., None]
        offsets = positions[:, :, None, :] - positions[:, None, :, :]
        distances = jnp.sqrt(jnp.sum(offsets**2, axis=-1) + 1e-12)
        pair_mask = atom_mask[:, :, None] * atom_mask[:, None, :]
        pair_mask = pair_mask * (1.0 - jnp.eye(inputs.shape[1], dtype=inputs.dtype))
        smooth_cutoff = 0.5 * (jnp.cos(jnp.pi * distances / self.cutoff) + 1.0)
        edge_mask = pair_mask * jnp.where(distances < self.cutoff, smooth_cutoff, 0.0)
        centres = jnp.asarray(self.centres, inputs.dtype)
        gamma = 1.0 / (centres[1] - centres[0]) ** 2
        radial = jnp.exp(-gamma * (distances[..., None] - centres) ** 2)
        for block in self.interactions:
            nodes = block(nodes, radial, edge_mask) * atom_mask[..., None]
        features = jax.nn.silu(self.readout(jnp.sum(nodes, axis=1)))
        return tuple(head(features) for head in self.heads)


def build_model(
    dataset: MultiTaskDataset, seed: int, *, reconstruction_head: str = "linear", **options: Any
) -> nnx.Module:
    """The default benchmark model for ``dataset``: an MLP for flat inputs, else a graph net.

    Args:
      dataset: the benchmark's data (input shape and task output sizes are read from it).
      seed: initialisation seed.
      reconstruction_head: ``"linear"`` or ``"sigmoid"``: the output activation of the MLP's
        reconstruction heads (a sigmoid keeps predicted pixels in (0, 1) and changes the
        gradient scale the MSE sends into the trunk, not the task).
      **options: keyword options of :class:`MultiTaskMLP` or :class:`MultiTaskGraphNet`.

    Returns:
      An NNX module returning one output per task.
    """
    output_sizes = tuple(task.num_outputs for task in dataset.tasks)
    rngs = nnx.Rngs(seed)
    inputs = dataset.train.inputs
    if reconstruction_head not in RECONSTRUCTION_HEADS:
        raise ValueError(f"reconstruction_head must be one of {RECONSTRUCTION_HEADS}")
    if inputs.ndim == 2:
        if reconstruction_head == "sigmoid":
            options["head_activations"] = tuple(
                "sigmoid" if task.kind == "reconstruction" else None for task in dataset.tasks
            )
        return MultiTaskMLP(inputs.shape[1], output_sizes, rngs=rngs, **options)
    if inputs.ndim == 3 and inputs.shape[-1] == 5:
        return MultiTaskGraphNet(output_sizes, rngs=rngs, **options)
    raise ValueError(f"No default model for inputs of shape {inputs.shape[1:]}.")


class FunctionalModel(NamedTuple):
    """A model as a pure function: ``apply(params, inputs) -> tuple of task outputs``.

    Attributes:
      apply: pure forward pass (jit- and vmap-friendly).
      params: the initial parameters as a nested dict of arrays.
    """

    apply: ApplyFn
    params: Any


def functional_model(model: nnx.Module) -> FunctionalModel:
    """Splits an NNX model into a pure ``apply`` and its parameters (a plain nested dict).

    Example:
      >>> fm = functional_model(MultiTaskMLP(4, (3, 1), rngs=nnx.Rngs(0)))
      >>> [y.shape for y in fm.apply(fm.params, jnp.ones((2, 4)))]
      [(2, 3), (2, 1)]
    """
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)

    def apply(params: Any, inputs: jax.Array) -> tuple[jax.Array, ...]:
        return nnx.merge(graphdef, params)(inputs)

    return FunctionalModel(apply, params)


def _example_losses(spec: TaskSpec, output: jax.Array, target: jax.Array) -> jax.Array:
    """Per-example losses ``[B]`` of one task (see :func:`task_loss`)."""
    if spec.kind == "classification":
        return optax.softmax_cross_entropy_with_integer_labels(output, target)
    if spec.kind == "binary":
        return optax.sigmoid_binary_cross_entropy(output[..., 0], target)
    if spec.kind in ("regression", "reconstruction"):
        return jnp.mean((output - target) ** 2, axis=tuple(range(1, output.ndim)))
    raise ValueError(f"Unknown task kind {spec.kind!r}; expected one of {LOSS_KINDS}.")


def task_loss(spec: TaskSpec, output: jax.Array, target: jax.Array) -> jax.Array:
    """The mean loss of one task over a batch, chosen by ``spec.kind``.

    Args:
      spec: the task (its ``kind`` picks the loss, see the module docstring).
      output: head output ``[B, num_outputs]``.
      target: int labels ``[B]`` (classification), 0/1 ``[B]`` (binary) or ``[B, D]``.

    Returns:
      A float32 scalar.
    """
    return _example_losses(spec, output, target).mean()


def masked_task_loss(
    spec: TaskSpec, output: jax.Array, target: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The loss of one task over the batch's labelled examples, and their count.

    An example is labelled when its float target is finite everywhere (partial-label datasets
    store NaN where there is no label) or, for classification, when its label is ``>= 0``.
    ``loss = Σ_i m_i l_i / max(Σ_i m_i, 1)``: 0 with a zero gradient when no example is
    labelled, and never NaN (unlabelled targets are replaced before the loss is taken).

    Args:
      spec, output, target: as in :func:`task_loss`.

    Returns:
      ``(loss, count)``, float32 scalars.
    """
    if spec.kind == "classification":
        mask = target >= 0
    else:
        mask = jnp.all(jnp.isfinite(target.reshape(target.shape[0], -1)), axis=1)
    safe = jnp.where(mask.reshape(mask.shape + (1,) * (target.ndim - 1)), target, 0)
    count = jnp.sum(mask, dtype=jnp.float32)
    losses = _example_losses(spec, output, safe)
    return jnp.sum(jnp.where(mask, losses, 0.0)) / jnp.maximum(count, 1.0), count


def multitask_loss_fn(
    apply: ApplyFn, tasks: Sequence[TaskSpec], *, task_counts: bool = False
) -> Callable[[Any, Batch], Any]:
    """``loss_fn(params, (inputs, targets)) -> [K]`` losses, one per task, from one forward pass.

    Args:
      apply: the pure forward pass of :func:`functional_model`.
      tasks: the dataset's task specs, in output order.
      task_counts: for partial labels (``Split.masks``): each loss is the masked mean of
        :func:`masked_task_loss` and ``loss_fn`` returns ``(losses [K], counts [K])``, the
        labelled examples per task, as ``multitask_train_step(..., task_counts=True)`` expects.

    Returns:
      A pure function suitable for :func:`autoscale_jax.multitask_train_step`.
    """
    tasks = tuple(tasks)

    def loss_fn(params: Any, batch: Batch) -> Any:
        inputs, targets = batch
        outputs = apply(params, inputs)
        triples = tuple(zip(tasks, outputs, targets, strict=True))
        if not task_counts:
            return jnp.stack([task_loss(s, y, t) for s, y, t in triples])
        losses, counts = zip(*(masked_task_loss(s, y, t) for s, y, t in triples), strict=True)
        return jnp.stack(losses), jnp.stack(counts)

    return loss_fn


def predict_in_batches(
    predict: Callable[[Any, jax.Array], tuple[jax.Array, ...]],
    params: Any,
    inputs: np.ndarray,
    batch_size: int = 1024,
) -> tuple[np.ndarray, ...]:
    """Runs a (jitted) ``predict(params, inputs)`` over ``inputs`` in slices; numpy outputs.

    Slices keep memory bounded on large splits; the last slice is zero-padded to
    ``batch_size`` so ``predict`` compiles once.
    """
    pieces: list[tuple[np.ndarray, ...]] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        padded = np.zeros((batch_size, *inputs.shape[1:]), inputs.dtype)
        padded[: len(chunk)] = chunk
        outputs = predict(params, jnp.asarray(padded))
        pieces.append(tuple(np.asarray(y)[: len(chunk)] for y in outputs))
    return tuple(np.concatenate(parts) for parts in zip(*pieces, strict=True))


def _top_level_mask(params: Any, keep: Callable[[tuple], bool]) -> Any:
    return jax.tree_util.tree_map_with_path(lambda path, _: bool(keep(path)), params)


def trunk_mask(params: Any) -> Any:
    """A pytree of bools with the structure of ``params``: True on the shared trunk's leaves.

    Pass it as ``metric_mask=`` (equivalent to ``"shared"`` for these models, but static).
    """
    return _top_level_mask(params, lambda path: path[0].key != "heads")


def last_shared_layer_mask(params: Any) -> Any:
    """True on the leaves of the trunk's last linear layer (MLP) or of the readout (graph net).

    Gradient-norm loss scaling (arXiv 2509.23915) measures task gradients on the last shared
    layer.
    """
    if "trunk" in params and "layers" in params["trunk"]:
        last = max(params["trunk"]["layers"])
        return _top_level_mask(params, lambda path: path[0].key == "trunk" and path[2].key == last)
    return _top_level_mask(params, lambda path: path[0].key == "readout")
