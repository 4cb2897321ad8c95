"""Image bytes → the float tensor a model expects."""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def to_model_input(png: bytes, size: tuple[int, int]) -> NDArray[np.float32]:
    """Decode, resize to (height, width) = `size`, scale to [0, 1], layout 1 x 3 x H x W."""
    height, width = size
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    return np.ascontiguousarray(array.transpose(2, 0, 1)[None])


def encode_npy(array: NDArray[np.generic]) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()
