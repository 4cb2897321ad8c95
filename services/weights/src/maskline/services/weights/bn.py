"""BatchNorm re-estimation after a merge: averaged weights shift activations, so recompute the
running statistics on calibration images (the cheap fix for the variance collapse of averaged CNNs).

The TorchScript BatchNorm's momentum is a compile-time constant, so the exact cumulative average
(what `momentum=None` would give) is recovered from the running-stat updates: after a training-mode
forward, r_k = (1 - m) r_{k-1} + m b_k, hence b_k = (r_k - (1 - m) r_{k-1}) / m.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def batchnorms(module: Any) -> list[Any]:
    return [m for m in module.modules() if getattr(m, "original_name", type(m).__name__).startswith("BatchNorm")]


def reestimate(module: Any, images: Sequence[np.ndarray[Any, Any]], input_size: tuple[int, int], batch: int = 16) -> int:
    """Recompute every BatchNorm's running mean/var on `images` (H x W x 3 uint8). Returns the count."""
    import cv2

    layers = batchnorms(module)
    if not layers or not images:
        return 0
    height, width = input_size
    tensors = [torch.from_numpy(cv2.resize(i, (width, height)).astype(np.float32).transpose(2, 0, 1) / 255.0) for i in images]
    sums = {id(bn): [torch.zeros_like(bn.running_mean), torch.zeros_like(bn.running_var)] for bn in layers}
    batches = 0
    was_training = module.training
    module.train()
    with torch.no_grad():
        for start in range(0, len(tensors), batch):
            before = {id(bn): (bn.running_mean.clone(), bn.running_var.clone()) for bn in layers}
            module(torch.stack(tensors[start : start + batch]))
            for bn in layers:
                m = float(bn.momentum)
                prev_mean, prev_var = before[id(bn)]
                sums[id(bn)][0] += (bn.running_mean - (1 - m) * prev_mean) / m
                sums[id(bn)][1] += (bn.running_var - (1 - m) * prev_var) / m
            batches += 1
        for bn in layers:
            bn.running_mean.copy_(sums[id(bn)][0] / batches)
            bn.running_var.copy_(sums[id(bn)][1] / batches)
    module.train(was_training)
    return len(layers)
