"""A dataset's labelled images as training tensors, prepared exactly as serving prepares them.

Each image goes through `codec.prepare` with the model's own preprocessing (stretched or
letterboxed to its input size, normalised as it declares); its mask is brought to the same place
with nearest-neighbour resizing, and what the letterbox padded is marked `IGNORE` so that no loss
or score counts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from maskline.contracts.model_v1 import Preprocessing
from maskline.shared.images.codec import decode_mask, prepare

#: The label of pixels that are not part of the image (letterbox padding): never trained on or scored.
IGNORE = 255
#: Preprocessings a network can be trained with here: one input per image (tiles and
#: Segment-Anything's longest side are served differently).
TRAINABLE_RESIZES = ("stretch", "letterbox")


@dataclass(frozen=True)
class Examples:
    images: torch.Tensor
    """N x 3 x H x W float32, normalised as the model declares."""
    masks: torch.Tensor
    """N x H x W uint8 (a byte a pixel: the loss takes int64 batch by batch): a class id per pixel,
    `IGNORE` outside the image."""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, indices: list[int]) -> Examples:
        return Examples(self.images[indices], self.masks[indices])

    def to(self, device: torch.device) -> Examples:
        return Examples(self.images.to(device), self.masks.to(device))


def example(
    image: bytes, mask: bytes, size: tuple[int, int], how: Preprocessing
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """One image as the network's input and its mask at the input's size (ValueError: a bad mask)."""
    prepared = prepare(image, size, how)
    truth = decode_mask(mask)
    top, left, height, width = prepared.content
    canvas = np.full(size, IGNORE, np.uint8)
    canvas[top : top + height, left : left + width] = np.asarray(
        Image.fromarray(truth).resize((width, height), Image.Resampling.NEAREST)
    )
    return prepared.batch[0], canvas


def examples(pairs: list[tuple[bytes, bytes]], size: tuple[int, int], how: Preprocessing, classes: int) -> Examples:
    """Every pair prepared (ValueError: a mask that cannot be read, or a class id the model has not)."""
    images, masks = zip(*(example(image, mask, size, how) for image, mask in pairs), strict=True)
    stacked = np.stack(masks)
    labelled = stacked[stacked != IGNORE]
    if labelled.size and int(labelled.max()) >= classes:
        raise ValueError(f"a mask has class id {int(labelled.max())}; the model has {classes} labels")
    return Examples(torch.from_numpy(np.stack(images)), torch.from_numpy(stacked))


def split(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices: a seeded shuffle, `share` of it held out (at least one image
    when the share is above zero, and never every image)."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(count)]
    held = min(count - 1, math.ceil(count * share)) if share > 0 else 0
    return sorted(order[held:]), sorted(order[:held])
