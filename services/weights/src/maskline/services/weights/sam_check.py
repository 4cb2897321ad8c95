"""Check a SAM-format pair before it is registered: the encoder takes one image and gives one
embedding, the decoder has segment-anything's ONNX layout, and the two run together on a probe.

The probe: a zero image at the declared input size through the encoder, then its embedding, one
point in the middle (and SAM's padding point), an empty mask and the input size as the original
size through the decoder, which must give one mask at that size and one predicted IoU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime

from maskline.contracts.model_v1 import SAM_DECODER_INPUTS, SAM_DECODER_OUTPUTS, Preprocessing
from maskline.services.weights.modelcheck import invalid
from maskline.shared.models.store import DecoderFile


def _session(weights: bytes, part: str) -> onnxruntime.InferenceSession:
    try:
        return onnxruntime.InferenceSession(weights, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise invalid(f"the {part} is not a loadable ONNX model: {exc}") from exc


def check_sam_pair(encoder: bytes, decoder: bytes, input_size: tuple[int, int], preprocessing: Preprocessing) -> DecoderFile:
    """The decoder as registration stores it, once the pair is SAM's and runs together."""
    height, width = input_size
    if height != width or preprocessing.resize != "longest-side":
        raise invalid(
            "a SAM-format version takes a square input and preprocessing resize=longest-side (its prompts are "
            f"scaled that way); declared {height}x{width}, {preprocessing.resize}"
        )
    enc, dec = _session(encoder, "image encoder"), _session(decoder, "prompt decoder")
    inputs, outputs = enc.get_inputs(), enc.get_outputs()
    if len(inputs) != 1 or inputs[0].type != "tensor(float)":
        raise invalid(f"the image encoder must take one float image (N x 3 x H x W), not {[i.name for i in inputs]}")
    names = [o.name for o in outputs]
    embedding_name = "image_embeddings" if "image_embeddings" in names else names[0]
    declared = {i.name: i for i in dec.get_inputs()}
    missing = [n for n in SAM_DECODER_INPUTS if n not in declared]
    if missing or set(declared) - set(SAM_DECODER_INPUTS):
        raise invalid(
            f"the prompt decoder's inputs are {sorted(declared)}; segment-anything's layout is {list(SAM_DECODER_INPUTS)}"
        )
    produced = [o.name for o in dec.get_outputs()]
    if [n for n in SAM_DECODER_OUTPUTS if n not in produced]:
        raise invalid(f"the prompt decoder's outputs are {produced}; segment-anything's layout is {list(SAM_DECODER_OUTPUTS)}")
    try:
        embedding = enc.run([embedding_name], {inputs[0].name: np.zeros((1, 3, height, width), np.float32)})[0]
    except Exception as exc:
        raise invalid(f"the image encoder failed on a 1x3x{height}x{width} input: {exc}") from exc
    if embedding.ndim != 4:
        raise invalid(f"the image encoder gives {embedding.shape}, not an N x C x h x w embedding")
    mask_size = _mask_input_size(declared["mask_input"].shape, embedding.shape[2:])
    feeds: dict[str, Any] = {
        "image_embeddings": embedding.astype(np.float32),
        "point_coords": np.array([[[width / 2, height / 2], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": np.zeros((1, 1, *mask_size), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([height, width], np.float32),
    }
    try:
        masks, iou, _ = dec.run(list(SAM_DECODER_OUTPUTS), feeds)
    except Exception as exc:
        raise invalid(f"the prompt decoder does not run on the encoder's embedding {embedding.shape}: {exc}") from exc
    if masks.shape[-2:] != (height, width) or masks.shape[:2] != (1, 1) or iou.size != 1:
        raise invalid(
            f"the prompt decoder gives masks {masks.shape} and IoU {iou.shape}; one mask of {height}x{width} is expected"
        )
    return DecoderFile(decoder, inputs[0].name, embedding_name, mask_size)


def _mask_input_size(declared: list[Any], embedding: tuple[int, ...]) -> tuple[int, int]:
    """The decoder's fixed `mask_input` size, or SAM's four times the embedding's."""
    h, w = declared[-2:] if len(declared) == 4 else (None, None)
    if isinstance(h, int) and isinstance(w, int):
        return h, w
    return 4 * int(embedding[0]), 4 * int(embedding[1])
