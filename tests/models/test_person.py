"""The bundled person model agrees with MediaPipe's own runtime on real photos of people, and its
conversion is reproducible.

MediaPipe runs in the reference environment (`.venv-reference`, made by `./dev test`): its masks
are computed afresh by `mediapipe_reference.py` for every session, not stored.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from numpy.typing import NDArray

from maskline.models import person
from maskline.services.merge.render import mask_at
from maskline.shared.images.codec import encode_png, to_model_input
from tests.models.reference import TFLITE_SITE, Photos, mediapipe_masks, miou

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Photos:
    return mediapipe_masks(tmp_path_factory.mktemp("mediapipe"))


def platform_mask(probs: NDArray[np.float32], image: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """What the platform returns: merge's upsampling and arg-max of the served probabilities."""
    mask, _ = mask_at(np.ascontiguousarray(probs.transpose(1, 2, 0)), image.shape[1], image.shape[0])
    return mask == 1


def run_torchscript(path: Path, batch: NDArray[np.float32]) -> NDArray[np.float32]:
    model = torch.jit.load(str(path)).eval()
    with torch.inference_mode():
        return torch.softmax(model(torch.from_numpy(batch)), dim=1)[0].numpy()


def run_onnx(path: Path, batch: NDArray[np.float32]) -> NDArray[np.float32]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"image": batch})[0])
    return torch.softmax(logits, dim=1)[0].numpy()


@pytest.mark.parametrize("runner", [run_torchscript, run_onnx], ids=["torchscript", "onnx"])
def test_agrees_with_mediapipe_on_real_photos(reference: Photos, runner) -> None:  # type: ignore[no-untyped-def]
    path = person.WEIGHTS if runner is run_torchscript else person.ONNX
    scores = {}
    for name, (image, expected) in reference.items():
        batch = to_model_input(encode_png(image), (256, 256))  # the platform's own preprocessing
        scores[name] = miou(platform_mask(runner(path, batch), image), expected)
    print({k: round(v, 4) for k, v in scores.items()}, file=sys.stderr)
    assert {"astronaut", "camera", "grace_hopper"} <= scores.keys()
    assert np.mean(list(scores.values())) >= 0.98, scores
    assert min(scores.values()) >= 0.97, scores


def test_conversion_is_reproducible(tmp_path: Path) -> None:
    """Converting MediaPipe's file again gives a network with the bundled one's outputs."""
    tflite = TFLITE_SITE / person.TFLITE_MEMBER
    subprocess.run(
        [sys.executable, "-m", "maskline.models.person.convert", "--tflite", str(tflite), "--out", str(tmp_path)], check=True
    )
    batch = np.random.default_rng(0).random((2, 3, 256, 256), dtype=np.float32)
    for bundled, fresh in ((person.WEIGHTS, tmp_path / "model.pt"),):
        with torch.inference_mode():
            a = torch.jit.load(str(bundled))(torch.from_numpy(batch))
            b = torch.jit.load(str(fresh))(torch.from_numpy(batch))
        assert torch.equal(a, b)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    bundled_session = onnxruntime.InferenceSession(str(person.ONNX), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"image": batch})[0], bundled_session.run(None, {"image": batch})[0])
