"""Large weights: streamed to the store past the request limit, checksum verified, refused over the
model limit with a problem that names it."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.shared.images.codec import encode_png
from tests.e2e.conftest import MAX_MODEL, MAX_UPLOAD

pytestmark = pytest.mark.e2e


class Heavy(torch.nn.Module):
    """Bright-vs-dark logits, carrying 300 MB of weights that take part in the result."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(75_000_000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = (x.mean(dim=1, keepdim=True) > 0.5).float() + self.bank[:1].view(1, 1, 1, 1)
        return torch.cat([1.0 - bright, bright], dim=1) * 10.0


def test_a_300_mb_model_streams_in_registers_and_serves(client: JsonClient, tmp_path: Path) -> None:
    path = tmp_path / "heavy.pt"
    torch.jit.script(Heavy()).save(str(path))
    size = path.stat().st_size
    assert size > 300_000_000 >= 100 * MAX_UPLOAD
    seen: list[int] = []
    model = client.register_model(
        path, name="heavy", labels=["dark", "bright"], input_size=(32, 48), progress=lambda sent, total: seen.append(sent)
    )
    assert model["weights"]["size"] == size
    assert seen[-1] == size and len(seen) > 100  # the progress callback followed the stream
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, 24:] = 230
    job = client.submit(encode_png(image), wait=120, model="heavy", version=model["version"])
    assert job["status"] == "completed", job
    mask = np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))
    assert (mask == (image.mean(axis=2) > 127)).all()


def test_weights_over_the_model_limit_are_refused_before_they_are_read(stack: Stack) -> None:
    """The declared length alone decides: the answer comes after 1 KiB of a declared 400 MB."""
    url = urlsplit(stack.gateway_url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    connection.putrequest("PUT", f"/v1/models/weights/{'0' * 64}")
    connection.putheader("Authorization", "Bearer key-a")
    connection.putheader("Content-Length", str(MAX_MODEL + 1))
    connection.endheaders(b"x" * 1024)
    response = connection.getresponse()
    assert response.status == 413
    problem = json.loads(response.read())
    connection.close()
    assert problem["code"] == "model_too_large"
    assert str(MAX_MODEL) in problem["detail"] and "MASKLINE_MAX_MODEL_BYTES" in problem["detail"]


def test_weights_that_do_not_match_their_sha256_are_refused_and_dropped(client: JsonClient, stack: Stack) -> None:
    body = b"some weights" * 1000
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    with httpx.Client(base_url=stack.gateway_url, timeout=30, headers={"Authorization": "Bearer key-a"}) as session:
        response = session.put(f"/v1/models/weights/{wrong}", content=body)
        assert response.status_code == 422 and response.json()["code"] == "checksum_mismatch"
        form = {"name": "ghost", "labels": "a,b", "input_height": "32", "input_width": "32"}
        registered = session.post("/v1/models", data=form, files={"weights_sha256": (None, wrong)})
    assert registered.status_code == 422 and registered.json()["code"] == "input_missing"
