"""Probabilities → the .npy bytes stored for merge."""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray


def encode_npy(array: NDArray[np.generic]) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()
