"""PNG bytes ⇄ numpy arrays, the one way every service does it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from maskline.contracts import formats
from maskline.contracts.model_v1 import Preprocessing

DEFAULT = Preprocessing()


def decode_rgb(data: bytes) -> NDArray[np.uint8]:
    """H x W x 3 RGB from encoded bytes (already validated by ingest)."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode image")
    return np.ascontiguousarray(bgr[..., ::-1])


def decode_mask(data: bytes) -> NDArray[np.uint8]:
    """H x W class ids from a single-channel PNG."""
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.ndim != 2:
        raise ValueError("a mask must be a single-channel image of class ids")
    return np.asarray(mask, dtype=np.uint8)


def decode_bgr(data: bytes) -> NDArray[np.uint8]:
    """H x W x 3 in OpenCV's BGR order: no channel-swap copy of a large image."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("cannot decode image")
    return np.asarray(bgr, dtype=np.uint8)


def encode_pixels(bgr: NDArray[np.uint8]) -> bytes:
    """An image's pixels in the `formats.PIXELS` layout (H x W x 3 uint8, BGR, as .npy)."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"pixels are H x W x 3 uint8, not {bgr.shape} {bgr.dtype}")
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(bgr), allow_pickle=False)
    return out.getvalue()


def load_bgr(data: bytes, content_type: str) -> NDArray[np.uint8]:
    """H x W x 3 BGR of a stored image: `formats.PIXELS` read as they are, anything else decoded."""
    if content_type == formats.PIXELS:
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"stored pixels are {array.shape} {array.dtype}, not H x W x 3 uint8")
        return np.asarray(array)
    return decode_bgr(data)


def load_rgb(data: bytes, content_type: str) -> NDArray[np.uint8]:
    """H x W x 3 RGB of a stored image (see `load_bgr`)."""
    return np.ascontiguousarray(load_bgr(data, content_type)[..., ::-1])


def encode_probabilities(probs: NDArray[np.floating[Any]]) -> bytes:
    """Class scores in the `formats.PROBABILITIES` layout (C x H x W float16, as .npy)."""
    out = io.BytesIO()
    np.save(out, np.asarray(probs, dtype=np.float16), allow_pickle=False)
    return out.getvalue()


def decode_probabilities(data: bytes) -> NDArray[np.float32]:
    """C x H x W float32 of stored `formats.PROBABILITIES`."""
    return np.asarray(np.load(io.BytesIO(data), allow_pickle=False), dtype=np.float32)


def encode_label_map(labels: NDArray[np.uint8]) -> bytes:
    """Object index per pixel in the `formats.LABEL_MAP` layout (H x W uint8, as .npy)."""
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(labels, dtype=np.uint8), allow_pickle=False)
    return out.getvalue()


def decode_label_map(data: bytes) -> NDArray[np.uint8]:
    """H x W uint8 of a stored `formats.LABEL_MAP`."""
    labels = np.load(io.BytesIO(data), allow_pickle=False)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"a label map is H x W uint8, not {labels.shape} {labels.dtype}")
    return np.asarray(labels)


def encode_png(array: NDArray[np.uint8], *, bgr: bool = False) -> bytes:
    """PNG-encode a mask (H x W) or an RGB image (H x W x 3; `bgr` when it is in OpenCV's order).

    OpenCV with the RLE strategy: about 2x faster than Pillow on noisy photos, and smaller.
    """
    ordered = array[..., ::-1] if array.ndim == 3 and not bgr else array
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(ordered), params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return bytes(encoded.tobytes())


@dataclass(frozen=True)
class ModelInput:
    """The network's input and where the image lies in it (the rest is letterbox padding)."""

    batch: NDArray[np.float32]
    """N x 3 x H x W, normalised as the model declares; N > 1 only for tiles."""
    content: tuple[int, int, int, int]
    """(top, left, height, width) of the image inside the (stitched) input: crop the output to it,
    and the mask has the image's own aspect again."""
    tiles: tuple[tuple[int, int], ...] = ()
    """`tile`: (top, left) of each window of `batch` on the canvas of `canvas` size."""
    canvas: tuple[int, int] = (0, 0)


def prepare(data: bytes, size: tuple[int, int], how: Preprocessing = DEFAULT) -> ModelInput:
    """Decode, bring to (height, width) = `size` (stretched, letterboxed or cut into tiles),
    normalise, N x 3 x H x W.

    The one preprocessing of the platform: infer serves with it and quantize calibrates with it."""
    return prepare_image(Image.open(io.BytesIO(data)).convert("RGB"), size, how)


def prepare_pixels(data: bytes, content_type: str, size: tuple[int, int], how: Preprocessing = DEFAULT) -> ModelInput:
    """`prepare` of a stored image: `formats.PIXELS` without decoding (the same pixels as decoding
    the upload: ingest decoded it losslessly, or with Pillow as `prepare` does), anything else decoded."""
    if content_type != formats.PIXELS:
        return prepare(data, size, how)
    return prepare_image(Image.fromarray(load_rgb(data, content_type), "RGB"), size, how)


def prepare_image(image: Image.Image, size: tuple[int, int], how: Preprocessing = DEFAULT) -> ModelInput:
    """`prepare` of an RGB image already in memory."""
    height, width = size
    if how.resize == "tile":
        return _tiles(_normalised(image, how), size, how.overlap)
    content = (0, 0, height, width)
    if how.resize == "longest-side":
        return _longest_side(image, size, how)
    if how.resize == "letterbox":
        ratio = min(width / image.width, height / image.height)
        inner = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        top, left = (height - inner[1]) // 2, (width - inner[0]) // 2
        canvas = Image.new("RGB", (width, height), (how.pad,) * 3)
        canvas.paste(image.resize(inner, Image.Resampling.BILINEAR) if inner != image.size else image, (left, top))
        image, content = canvas, (top, left, inner[1], inner[0])
    elif image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return ModelInput(batch=_normalised(image, how)[None], content=content)


def longest_side_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) with the longer side scaled to `side`, rounded as segment-anything's
    `ResizeLongestSide.get_preprocess_shape` does (prompt coordinates scale with it)."""
    scale = side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _longest_side(image: Image.Image, size: tuple[int, int], how: Preprocessing) -> ModelInput:
    """Segment-Anything's preprocessing: the longer side to the input's, bilinear (Pillow), then
    normalised and padded with zeros at the bottom and right."""
    height, width = size
    inner_h, inner_w = longest_side_shape(image.height, image.width, max(height, width))
    if (inner_w, inner_h) != image.size:
        image = image.resize((inner_w, inner_h), Image.Resampling.BILINEAR)
    batch = np.zeros((1, 3, height, width), np.float32)
    batch[0, :, :inner_h, :inner_w] = _normalised(image, how)
    return ModelInput(batch=batch, content=(0, 0, inner_h, inner_w))


def _normalised(image: Image.Image, how: Preprocessing) -> NDArray[np.float32]:
    """3 x H x W float32: channel order, scale, mean and standard deviation as declared."""
    array = np.asarray(image, dtype=np.float32)
    if how.channels == "bgr":
        array = array[..., ::-1]
    array = array * np.float32(how.scale)
    if how.mean != DEFAULT.mean or how.std != DEFAULT.std:
        array = (array - np.asarray(how.mean, np.float32)) / np.asarray(how.std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)


def _starts(length: int, window: int, overlap: float) -> list[int]:
    """Window offsets along one axis: a regular stride, the last window flush with the end."""
    if length <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def _tiles(chw: NDArray[np.float32], size: tuple[int, int], overlap: float) -> ModelInput:
    """Cut a normalised image into input-sized windows; an image smaller than a window is padded."""
    _, h, w = chw.shape
    height, width = size
    canvas = (max(h, height), max(w, width))
    if canvas != (h, w):
        padded = np.zeros((3, *canvas), np.float32)
        padded[:, :h, :w] = chw
        chw = padded
    tiles = tuple((top, left) for top in _starts(canvas[0], height, overlap) for left in _starts(canvas[1], width, overlap))
    batch = np.stack([chw[:, top : top + height, left : left + width] for top, left in tiles])
    return ModelInput(batch=np.ascontiguousarray(batch), content=(0, 0, h, w), tiles=tiles, canvas=canvas)


def stitch(prepared: ModelInput, scores: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """C x H x W of the image's own part: tiles' scores averaged where they overlap (float32), or the
    one output cropped to the content box (a view in the scores' own type: no copy on the hot path)."""
    top, left, height, width = prepared.content
    if not prepared.tiles:
        return scores[0, :, top : top + height, left : left + width]
    classes, th, tw = scores.shape[1:]
    total = np.zeros((classes, *prepared.canvas), np.float32)
    count = np.zeros(prepared.canvas, np.float32)
    for (y, x), tile in zip(prepared.tiles, scores, strict=True):
        total[:, y : y + th, x : x + tw] += tile
        count[y : y + th, x : x + tw] += 1.0
    return (total / count)[:, top : top + height, left : left + width]


def to_model_input(data: bytes, size: tuple[int, int], how: Preprocessing = DEFAULT) -> NDArray[np.float32]:
    """Only the batch of `prepare` (calibration, evaluation: the padding does not matter there)."""
    return prepare(data, size, how).batch
