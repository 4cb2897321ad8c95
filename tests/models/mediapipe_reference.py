"""MediaPipe's own person masks for real photos, written for the agreement test.

Runs in the reference environment (`.venv-reference`: mediapipe 0.10.14 and its runtime, apart from
the project's environment because it needs protobuf < 5). Writes `images` (RGB uint8) and
`masks` (MediaPipe's person probability, float32, image size) per photo into one .npz file.

    .venv-reference/bin/python tests/models/mediapipe_reference.py OUT.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import numpy as np
from mediapipe.python.solutions import selfie_segmentation
from PIL import Image
from skimage import data


def photos() -> dict[str, np.ndarray]:
    """Real photos of people that ship in installed wheels, and non-square crops of them."""
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    camera = np.repeat(data.camera()[..., None], 3, axis=2)
    astronaut = data.astronaut()
    grace = np.asarray(Image.open(hopper).convert("RGB"))
    return {
        "astronaut": astronaut,
        "camera": camera,
        "grace_hopper": grace,
        "astronaut_portrait": astronaut[:, 64:400],
        "camera_landscape": camera[96:416],
        "grace_hopper_flipped": grace[:, ::-1].copy(),
    }


def main(out: str) -> None:
    images = photos()
    masks = {}
    with selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter:
        for name, image in images.items():
            masks[name] = segmenter.process(np.ascontiguousarray(image)).segmentation_mask.astype(np.float32)
    np.savez_compressed(out, **{f"image/{k}": v for k, v in images.items()}, **{f"mask/{k}": v for k, v in masks.items()})


if __name__ == "__main__":
    main(sys.argv[1])
