"""Two source images per example, overlaid: the construction MultiMNIST and MultiFashion share.

Source items are split into disjoint pools before pairing; each example puts one item top-left
and another 8 pixels lower and further right on a 36x36 canvas (pixelwise max), then
box-resamples the canvas. Task 0 classifies the left item; task 1 reconstructs the right item
(``"classify_reconstruct"``) or classifies it (``"classify_both"``);
``"classify_reconstruct_classify"`` has three tasks: classify the left item, reconstruct the
right one and classify the right one (K = 3, two CE losses next to one MSE).

Reference: Sabour et al, Dynamic Routing Between Capsules, 2017.
"""

from __future__ import annotations

import functools
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from autoscale_jax.bench.datasets._common import (
    MultiTaskDataset,
    Split,
    TaskSpec,
    check_positive,
    freeze_split,
    read_only,
)

DIGIT_SIZE = 28
_PAIR_SHIFT = 4  # Sabour et al. shift each digit by up to 4 pixels: 28 + 2 * 4 = 36.
_CANVAS_SIZE = DIGIT_SIZE + 2 * _PAIR_SHIFT
_PAIR_VARIANTS = ("classify_reconstruct", "classify_both", "classify_reconstruct_classify")


def _box_resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Matrix ``R [out, in]`` of area (box) resampling: each output pixel averages the input
    pixels it covers, weighted by overlap, so ``R @ image @ R.T`` is anti-aliased for any ratio.
    """
    scale = in_size / out_size
    out_lo = (np.arange(out_size) * scale)[:, None]
    out_hi = out_lo + scale
    in_lo = np.arange(in_size)[None, :]
    overlap = np.clip(np.minimum(out_hi, in_lo + 1) - np.maximum(out_lo, in_lo), 0.0, None)
    return overlap / scale


def _resample_images(images: np.ndarray, out_size: int) -> np.ndarray:
    """Resamples ``[N, S, S]`` images to ``[N, out_size, out_size]`` with box filtering."""
    resample = _box_resample_matrix(images.shape[-1], out_size).astype(np.float32)
    return np.matmul(np.matmul(resample, images), resample.T)


def _overlay_pairs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Pixelwise max of ``left`` placed top-left and ``right`` bottom-right on a 36x36 canvas."""
    canvas = np.zeros((left.shape[0], _CANVAS_SIZE, _CANVAS_SIZE), np.float32)
    canvas[:, :DIGIT_SIZE, :DIGIT_SIZE] = left
    offset = 2 * _PAIR_SHIFT
    canvas[:, offset:, offset:] = np.maximum(canvas[:, offset:, offset:], right)
    return canvas


def _draw_pairs(pool: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``[count, 2]`` source indices (left, right) drawn with replacement from ``pool``; the two
    digits of a pair always differ."""
    size = pool.shape[0]
    left = rng.integers(0, size, count)
    right = (left + rng.integers(1, size, count)) % size
    return np.stack([pool[left], pool[right]], axis=1)


def _pair_tasks(variant: str, reconstruction_size: int, item: str) -> tuple[TaskSpec, ...]:
    left = TaskSpec(f"left_{item}", "classification", 10, ("accuracy",), (True,))
    if variant == "classify_both":
        return left, TaskSpec(f"right_{item}", "classification", 10, ("accuracy",), (True,))
    size = reconstruction_size * reconstruction_size
    image = TaskSpec(f"right_{item}_image", "reconstruction", size, ("mse",), (False,))
    if variant == "classify_reconstruct_classify":
        return left, image, TaskSpec(f"right_{item}", "classification", 10, ("accuracy",), (True,))
    return left, image


def _pair_split(
    images: np.ndarray,
    labels: np.ndarray,
    pairs: np.ndarray,
    *,
    variant: str,
    image_size: int,
    reconstruction_size: int,
    flatten: bool,
) -> Split:
    left, right = images[pairs[:, 0]], images[pairs[:, 1]]
    inputs = _resample_images(_overlay_pairs(left, right), image_size)
    inputs = inputs.reshape(len(pairs), -1) if flatten else inputs[..., None]
    left_label = labels[pairs[:, 0]].astype(np.int32)
    right_label = labels[pairs[:, 1]].astype(np.int32)
    if variant == "classify_both":
        targets: tuple[np.ndarray, ...] = (left_label, right_label)
    else:
        image = _resample_images(right, reconstruction_size).reshape(len(pairs), -1)
        targets = (left_label, image)
        if variant == "classify_reconstruct_classify":
            targets = (*targets, right_label)
    return freeze_split(np.ascontiguousarray(inputs, np.float32), targets)


def build_pairs_dataset(
    *,
    name: str,
    item: str,
    images: np.ndarray,
    labels: np.ndarray,
    pools: tuple[np.ndarray, np.ndarray, np.ndarray],
    options: PairOptions,
    rng: np.random.Generator,
    source: str,
) -> MultiTaskDataset:
    """Pairs items within each (disjoint) pool and renders the three splits.

    Args:
      name: the dataset's name.
      item: what an item is called in task names and the description ("digit", "item").
      images: ``[M, 28, 28]`` source items in [0, 1].
      labels: their ``[M]`` classes.
      pools: disjoint source indices of the train, validation and test items.
      options: the loader's checked options (:func:`pair_options`); its seed has seeded ``rng``.
      rng: draws the pairs.
      source: where the items come from (for the description).

    Returns:
      A read-only :class:`MultiTaskDataset`.
    """
    variant, image_size, reconstruction_size = (
        options.variant,
        options.image_size,
        options.reconstruction_size,
    )
    sizes = (options.num_train, options.num_validation, options.num_test)
    pairs = tuple(_draw_pairs(pool, count, rng) for pool, count in zip(pools, sizes, strict=True))
    render = functools.partial(
        _pair_split,
        images,
        labels,
        variant=variant,
        image_size=image_size,
        reconstruction_size=reconstruction_size,
        flatten=options.flatten,
    )
    train, validation, test = (render(p) for p in pairs)
    input_shape = f"{image_size**2}" if options.flatten else f"{image_size}, {image_size}, 1"
    second = (
        f"task 1 = class of the right {item} (int32 [N])"
        if variant == "classify_both"
        else f"task 1 = right {item} image resampled to {reconstruction_size}x"
        f"{reconstruction_size}, flattened, values in [0, 1] "
        f"(float32 [N, {reconstruction_size**2}], MSE)"
    )
    if variant == "classify_reconstruct_classify":
        second += f"; task 2 = class of the right {item} (int32 [N], accuracy)"
    description = (
        f"{name} ({variant}) from {source}. Source items are split into disjoint train/"
        f"validation/test pools ({', '.join(str(len(p)) for p in pools)} items) before pairing, "
        f"so no item appears in two splits. Each example puts one item top-left and another "
        f"bottom-right on a {_CANVAS_SIZE}x{_CANVAS_SIZE} canvas (pixelwise max) and resamples "
        f"it to {image_size}x{image_size}; inputs float32 [N, {input_shape}] in [0, 1]. "
        f"Task 0 = class of the left {item} (int32 [N], accuracy); {second}. "
        f"Examples: {sizes[0]} train / {sizes[1]} validation / {sizes[2]} test."
    )
    extras = MappingProxyType(
        {
            "variant": variant,
            "image_shape": (image_size, image_size),
            "reconstruction_shape": (reconstruction_size, reconstruction_size),
            "source_pools": tuple(read_only(np.sort(p)) for p in pools),
            "source_pairs": MappingProxyType(
                {
                    split: read_only(p)
                    for split, p in zip(("train", "validation", "test"), pairs, strict=True)
                }
            ),
        }
    )
    tasks = _pair_tasks(variant, reconstruction_size, item)
    return MultiTaskDataset(name, tasks, train, validation, test, description, extras)


class PairOptions(NamedTuple):
    """The checked, normalised options of a pairs loader (hashable: the loaders' cache key).

    Attributes: as the arguments of :func:`~autoscale_jax.bench.datasets.multi_mnist`.
    """

    variant: str
    num_train: int
    num_validation: int
    num_test: int
    image_size: int
    reconstruction_size: int
    flatten: bool
    seed: int


def pair_options(
    variant: str,
    num_train: int,
    num_validation: int,
    num_test: int,
    image_size: int,
    reconstruction_size: int,
    flatten: bool,
    seed: int,
) -> PairOptions:
    """The loader's arguments, checked and normalised (ints, a bool).

    Raises:
      ValueError: for an unknown variant, a non-positive size or an image too large.
    """
    if variant not in _PAIR_VARIANTS:
        raise ValueError(f"variant must be one of {_PAIR_VARIANTS}, got {variant!r}")
    check_positive(
        image_size=image_size,
        reconstruction_size=reconstruction_size,
        num_train=num_train,
        num_validation=num_validation,
        num_test=num_test,
    )
    if image_size > _CANVAS_SIZE or reconstruction_size > DIGIT_SIZE:
        raise ValueError(
            f"image_size must be <= {_CANVAS_SIZE} and reconstruction_size <= {DIGIT_SIZE}"
        )
    return PairOptions(
        variant,
        int(num_train),
        int(num_validation),
        int(num_test),
        int(image_size),
        int(reconstruction_size),
        bool(flatten),
        int(seed),
    )
