"""A region's exact pixels for Label Studio's brush tool: COCO RLE in, Label Studio RLE out.

Label Studio stores a brush mask as an RGBA image (row-major, 4 bytes per pixel) packed with
thi.ng's `rle-pack`: a 32-bit value count, the word size less one in 5 bits, four run-length bit
widths less one in 4 bits each, then per run a flag bit (1: one value repeated), 2 bits choosing
the width, the run length less one in that width, and the value in `word size` bits. The layout is
read from Label Studio's own decoder (label_studio_sdk.converter.brush.decode_rle); the tests decode
what this writes with it. A mask pixel is (255, 255, 255, 255), as the SDK's `mask2rle` writes it.

Written here rather than imported: the SDK is a large dependency for 40 lines, and its encoder
builds a Python string of '0'/'1' characters per run.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from maskline.contracts.http_v1 import Rle

WORD_BITS = 8
#: Run lengths up to 8, 16, 256 and 65536 values: the widths Label Studio's own encoder uses.
RUN_BITS = (3, 4, 8, 16)


def coco_counts(counts: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' `rleFrString`): 5 bits per
    character with a continuation bit, sign-extended, each count after the second a difference
    from the one two places before."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            char = ord(counts[position]) - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            position += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def mask_of(rle: Rle) -> NDArray[np.bool_]:
    """The region as a height x width boolean mask (COCO walks the image column by column)."""
    height, width = rle.size
    runs = np.asarray(coco_counts(rle.counts), dtype=np.int64)
    values = np.arange(len(runs)) % 2 == 1  # zeros first
    flat = np.repeat(values, runs)
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, not {height} x {width}")
    return flat.reshape(width, height).T


def label_studio_rle(mask: NDArray[np.bool_]) -> list[int]:
    """The mask as Label Studio's brush RLE (bytes as a list of ints, as its tasks carry them)."""
    pixels = mask.ravel()  # row-major, as the RGBA image Label Studio draws
    edges = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    starts = np.concatenate(([0], edges))
    lengths = np.diff(np.concatenate((starts, [pixels.size]))) * 4  # 4 channels, all the same value
    bits: list[str] = [f"{pixels.size * 4:032b}", f"{WORD_BITS - 1:05b}", *(f"{b - 1:04b}" for b in RUN_BITS)]
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        value = f"{255 if pixels[start] else 0:08b}"
        while length > 0:
            run = min(length, 1 << RUN_BITS[-1])
            width = next(i for i, b in enumerate(RUN_BITS) if run <= 1 << b)
            bits.append(f"1{width:02b}{run - 1:0{RUN_BITS[width]}b}{value}")
            length -= run
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return list(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))
