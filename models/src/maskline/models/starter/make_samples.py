"""Write the bundled sample images (and their true masks) from fixed seeds.

python -m maskline.models.starter.make_samples
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from maskline.models.starter import shapes

SAMPLES = {"shapes-1": 11, "shapes-2": 23, "shapes-3": 42}


def main() -> None:
    folder = Path(__file__).parent / "samples"
    folder.mkdir(exist_ok=True)
    for name, seed in SAMPLES.items():
        image, mask = shapes.sample(np.random.default_rng(seed), size=256)
        Image.fromarray(image).save(folder / f"{name}.png")
        Image.fromarray(mask).save(folder / f"{name}.mask.png")


if __name__ == "__main__":
    main()
