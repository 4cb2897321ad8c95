"""MediaPipe's own masks, computed afresh in the reference environment (`.venv-reference`, made by
`./dev test`) by `mediapipe_reference.py`; shared by the model test and the end-to-end test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PYTHON = ROOT / ".venv-reference" / "bin" / "python"
TFLITE_SITE = ROOT / ".venv-reference" / "lib" / "python3.11" / "site-packages"

Photos = dict[str, tuple[NDArray[np.uint8], NDArray[np.bool_]]]


def mediapipe_masks(folder: Path) -> Photos:
    """photo name → (RGB image, MediaPipe's person mask at probability > 0.5)."""
    assert REFERENCE_PYTHON.exists(), "the reference environment is missing: `./dev test` makes .venv-reference"
    out = folder / "reference.npz"
    subprocess.run([str(REFERENCE_PYTHON), str(Path(__file__).with_name("mediapipe_reference.py")), str(out)], check=True)
    data = np.load(out)
    names = [key.split("/", 1)[1] for key in data.files if key.startswith("image/")]
    return {name: (data[f"image/{name}"], data[f"mask/{name}"] > 0.5) for name in names}


def miou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Mean over the two classes (person, background) of intersection over union."""
    ious = [(x & y).sum() / max((x | y).sum(), 1) for x, y in ((a, b), (~a, ~b))]
    return float(np.mean(ious))
