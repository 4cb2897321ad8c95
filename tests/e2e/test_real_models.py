"""Real models through the whole stack: the bundled person model (ONNX) on real photos agrees with
MediaPipe; a user's ONNX model with named outputs; letterboxed masks in the original geometry; the
out-of-domain signal."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskline.client import JsonClient
from maskline.models import person, starter
from maskline.shared.images.codec import encode_png
from tests.models.reference import mediapipe_masks, miou

pytestmark = pytest.mark.e2e


def mask_of(client: JsonClient, job: dict[str, object]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.artifact(str(job["id"]), "mask"))))


def test_the_person_model_agrees_with_mediapipe_through_the_stack(client: JsonClient, tmp_path: Path) -> None:
    photos = mediapipe_masks(tmp_path)
    scores = {}
    for name in ("astronaut", "camera", "grace_hopper", "camera_landscape"):
        image, expected = photos[name]
        job = client.submit(encode_png(image), wait=90, model="person-selfie")
        assert job["status"] == "completed", job
        assert (job["width"], job["height"]) == (image.shape[1], image.shape[0])
        scores[name] = miou(mask_of(client, job) == 1, expected)
        assert job["confidence"]["mean_probability"] > 0.9
    assert np.mean(list(scores.values())) >= 0.98, scores


class TwoHeads(torch.nn.Module):
    """A user's network with two named outputs; `out` holds bright-vs-dark logits (exact, testable)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bright = (x.mean(dim=1, keepdim=True) > 0.5).float()
        scores = torch.cat([1.0 - bright, bright], dim=1) * 10.0
        return scores[:, :1] * 0.0, scores


def onnx_file(tmp_path: Path, size: tuple[int, int]) -> Path:
    path = tmp_path / "two-heads.onnx"
    torch.onnx.export(
        TwoHeads(),
        (torch.zeros(1, 3, *size),),
        str(path),
        input_names=["pixels"],
        output_names=["aux", "out"],
        dynamic_axes={"pixels": {0: "n"}, "aux": {0: "n"}, "out": {0: "n"}},
        dynamo=False,
    )
    return path


def test_a_users_onnx_model_with_named_outputs_is_registered_and_served(client: JsonClient, tmp_path: Path) -> None:
    path = onnx_file(tmp_path, (64, 96))
    model = client.register_model(path, name="bright-onnx", labels=["dark", "bright"], input_size=(64, 96), output="out")
    assert (model["format"], model["output"]["name"]) == ("onnx", "out")
    assert model["weights"]["key"].endswith(".onnx")
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, 48:] = 230
    job = client.submit(encode_png(image), wait=90, model="bright-onnx", version=model["version"])
    assert job["status"] == "completed", job
    assert (mask_of(client, job) == (image.mean(axis=2) > 127)).all()


def test_letterboxed_masks_come_back_in_the_original_geometry(client: JsonClient, tmp_path: Path) -> None:
    """A wide dark image with one bright square, letterboxed into a square input padded bright: the
    padding never reaches the mask, and the square is where it was (a wrong crop would shift it)."""
    path = onnx_file(tmp_path, (96, 96))
    described = {"output": "out", "preprocessing": {"resize": "letterbox", "pad": 255}}
    model = client.register_model(path, name="bright-letterbox", labels=["dark", "bright"], input_size=(96, 96), **described)
    assert model["preprocessing"]["resize"] == "letterbox"
    image = np.zeros((120, 360, 3), np.uint8)
    image[30:90, 200:260] = 255
    job = client.submit(encode_png(image), wait=90, model="bright-letterbox", version=model["version"])
    assert job["status"] == "completed", job
    mask = mask_of(client, job)
    truth = image.mean(axis=2) > 127
    assert mask.shape == truth.shape
    assert ((mask == 1) == truth).mean() > 0.995


def test_the_confidence_tells_a_photo_from_the_shapes_the_starter_knows(client: JsonClient) -> None:
    photo = (person.FOLDER / "samples" / "astronaut.jpg").read_bytes()
    outside = client.submit(photo, filename="astronaut.jpg", wait=90, model="shapes-unet")
    inside = client.submit((starter.SAMPLES / "shapes-1.png").read_bytes(), wait=90, model="shapes-unet")
    assert outside["status"] == inside["status"] == "completed"
    assert outside["confidence"]["uncertain_fraction"] > 0.1  # flagged as low confidence
    assert inside["confidence"]["uncertain_fraction"] < 0.03
    assert inside["confidence"]["mean_probability"] > 0.98 > outside["confidence"]["mean_probability"]
    regions = client.artifact(outside["id"], "regions")
    assert b'"confidence"' in regions


def test_tiled_inference_runs_a_large_image_at_native_resolution(client: JsonClient, tmp_path: Path) -> None:
    """More windows than Triton's batch limit (they go in several requests), stitched back exactly."""
    path = onnx_file(tmp_path, (64, 64))
    described = {"output": "out", "preprocessing": {"resize": "tile", "overlap": 0.25}}
    model = client.register_model(path, name="bright-tiles", labels=["dark", "bright"], input_size=(64, 64), **described)
    image = np.zeros((200, 330, 3), np.uint8)
    image[20:60, 30:300] = 240
    image[120:190, 150:170] = 240
    job = client.submit(encode_png(image), wait=90, model="bright-tiles", version=model["version"])
    assert job["status"] == "completed", job
    assert (mask_of(client, job) == (image.mean(axis=2) > 127)).all()


class DictOutput(torch.nn.Module):
    """torchvision's segmentation models return {"out": ..., "aux": ...}: bright-vs-dark in "out"."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bright = (x.mean(dim=1, keepdim=True) > 0.5).float()
        scores = torch.cat([1.0 - bright, bright], dim=1)
        return {"aux": 1.0 - scores, "out": scores}


def test_a_dict_output_torchscript_model_serves_the_declared_key(client: JsonClient, tmp_path: Path) -> None:
    path = tmp_path / "dict.pt"
    torch.jit.script(DictOutput()).save(str(path))
    model = client.register_model(
        path, name="dict-out", labels=["dark", "bright"], input_size=(64, 96), output="out", output_kind="probabilities"
    )
    assert model["output"] == {"name": "out", "kind": "probabilities"}
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, 48:] = 230
    job = client.submit(encode_png(image), wait=90, model="dict-out", version=model["version"])
    assert job["status"] == "completed", job
    assert (mask_of(client, job) == (image.mean(axis=2) > 127)).all()  # "out", not the inverted "aux"
