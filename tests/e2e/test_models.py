"""Registering a user's own TorchScript segmentation model (API and CLI) and segmenting with it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack

pytestmark = pytest.mark.e2e


class BrightnessSegmenter(torch.nn.Module):
    """A user's model: class 1 where the image is bright, else background (exact, so testable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x.mean(dim=1, keepdim=True) > 0.5).float()
        return torch.cat([1.0 - bright, bright], dim=1) * 10.0


def scripted(tmp_path: Path) -> Path:
    path = tmp_path / "bright.pt"
    torch.jit.script(BrightnessSegmenter()).save(str(path))
    return path


def half_bright_png() -> tuple[bytes, np.ndarray]:
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    image[:, 48:] = 230
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue(), (image.mean(axis=2) > 127).astype(np.uint8)


def test_register_a_user_model_then_segment_with_it(client: JsonClient, tmp_path: Path) -> None:
    model = client.register_model(scripted(tmp_path), name="bright", labels=["dark", "bright"], input_size=(64, 96))
    assert model["name"] == "bright" and model["version"] >= 1
    assert model["weights"]["key"].startswith(f"models/tenant-a/bright/{model['version']}/model-")
    listed = {(m["name"], m["version"]) for m in client.models()}
    assert ("bright", model["version"]) in listed and ("shapes-unet", 1) in listed

    data, truth = half_bright_png()
    job = client.submit(data, wait=90, model="bright", version=model["version"])
    assert job["status"] == "completed", job
    assert job["model"]["name"] == "bright"
    mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
    assert (mask == truth).all()


def test_register_refuses_a_file_that_is_not_a_segmentation_model(client: JsonClient, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torchscript")
    with pytest.raises(ApiError) as err:
        client.register_model(junk, name="junk", labels=["a", "b"], input_size=(32, 32))
    assert err.value.status == 422
    assert "TorchScript" in err.value.problem["detail"]
    with pytest.raises(ApiError) as err:  # right file, wrong number of classes
        client.register_model(scripted(tmp_path), name="bright3", labels=["a", "b", "c"], input_size=(32, 32))
    assert "expected (1, 3, 32, 32)" in err.value.problem["detail"]


def test_cli_registers_and_lists_models(stack: Stack, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "maskline.cli", "--url", stack.gateway_url, "--api-key", "key-a"]
    out = subprocess.run(
        [
            *base,
            "models",
            "register",
            "--weights",
            str(scripted(tmp_path)),
            "--name",
            "bright-cli",
            "--labels",
            "dark,bright",
            "--input-size",
            "64,96",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "registered bright-cli version 1" in out.stdout
    listing = subprocess.run([*base, "models", "list"], capture_output=True, text=True, timeout=60)
    assert "bright-cli" in listing.stdout
