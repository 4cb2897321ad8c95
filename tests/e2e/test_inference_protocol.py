"""The Open Inference Protocol on the gateway, spoken by Triton's own HTTP client (`tritonclient`):
metadata, readiness, and inference with the binary-data extension and in plain JSON, behind the
same API keys and tenancy, each inference a job in the audit trail."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image
from tritonclient.utils import InferenceServerException

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack

pytestmark = pytest.mark.e2e


def auth() -> dict[str, str]:
    """A fresh dict per call: tritonclient writes its binary-data header into the one it is given."""
    return {"Authorization": "Bearer key-a"}


def test_tritonclient_segments_through_the_gateway(stack: Stack, client: JsonClient, samples: Path) -> None:
    oip = triton_http.InferenceServerClient(stack.gateway_url.removeprefix("http://"), network_timeout=180.0)
    assert oip.is_server_live(headers=auth()) and oip.is_server_ready(headers=auth())
    assert oip.is_model_ready("shapes-unet", headers=auth())
    metadata = oip.get_model_metadata("shapes-unet", headers=auth())
    assert metadata["inputs"][0]["name"] == "IMAGE" and {o["name"] for o in metadata["outputs"]} == {"MASK", "REGIONS"}

    png = (samples / "shapes-1.png").read_bytes()
    reference = client.submit(png, wait=120)
    expected = np.asarray(Image.open(io.BytesIO(client.artifact(reference["id"], "mask"))))

    # an encoded file as BYTES, binary data both ways
    image = triton_http.InferInput("IMAGE", [1], "BYTES")
    image.set_data_from_numpy(np.array([png], dtype=np.object_), binary_data=True)
    outputs = [
        triton_http.InferRequestedOutput("MASK", binary_data=True),
        triton_http.InferRequestedOutput("REGIONS", binary_data=True),
    ]
    result = oip.infer("shapes-unet", [image], outputs=outputs, headers=auth())
    mask = result.as_numpy("MASK")
    assert mask.dtype == np.uint8 and np.array_equal(mask, expected)
    regions = result.as_numpy("REGIONS")[0]
    assert b'"regions"' in regions
    job = result.get_response()["parameters"]["job_id"]
    trail = client.audit(job)
    assert trail["intact"] and "seg.v1.completed" in {r["type"] for r in trail["events"]}

    # raw RGB pixels as UINT8 [H, W, 3], all in JSON
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    image = triton_http.InferInput("IMAGE", list(pixels.shape), "UINT8")
    image.set_data_from_numpy(pixels, binary_data=False)
    result = oip.infer(
        "shapes-unet", [image], outputs=[triton_http.InferRequestedOutput("MASK", binary_data=False)], headers=auth()
    )
    assert np.array_equal(result.as_numpy("MASK").reshape(expected.shape), expected)

    # pinned version, unknown model, other tenants, no key
    assert oip.get_model_metadata("shapes-unet", "1", headers=auth())["versions"] == ["1"]
    with pytest.raises(InferenceServerException, match="shapes-unet-nope"):
        oip.get_model_metadata("shapes-unet-nope", headers=auth())
    with pytest.raises(InferenceServerException) as refused:
        oip.get_model_metadata("shapes-unet")
    assert refused.value.status() == "401"
    oip.close()
