"""Merging registered model versions over the bus into a new, deployable version."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.infra.compose.smoke import site_model
from maskline.infra.embedded.stack import Stack
from maskline.models import person
from maskline.models.starter import shapes
from tests.services.weights.test_onnx_weights import perturbed as onnx_site

pytestmark = pytest.mark.e2e


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


#: A 'site' model: the starter with small noise on every weight, as if fine-tuned elsewhere (the
#: compose smoke tests make theirs the same way).
perturbed = site_model


def test_merge_two_site_models_with_bn_reestimation_then_segment_with_the_result(
    client: JsonClient, stack: Stack, tmp_path: Path
) -> None:
    labels, size = list(shapes.LABELS), (128, 128)
    a = client.register_model(perturbed(tmp_path, 1), name="site-a", labels=labels, input_size=size)
    b = client.register_model(perturbed(tmp_path, 2), name="site-b", labels=labels, input_size=size)
    rng = np.random.default_rng(31)
    for i in range(20):
        client.upload_dataset_file("calib", "images", png(shapes.sample(rng, 128)[0]), f"c{i}.png")
    job = client.merge_models(
        [("site-a", a["version"]), ("site-b", b["version"])], name="merged", method="avg", bn_dataset="calib"
    )
    assert job["kind"] == "model-merge"
    done = client.wait_job(job["id"], timeout=120)
    assert done["status"] == "completed", done
    version = int(done["links"]["model"].rsplit("/", 1)[1])
    model = client.http.get(done["links"]["model"]).json()
    assert model["parent"] == f"tenant-a/site-a/{a['version']},tenant-a/site-b/{b['version']}"
    assert model["owner"] == "tenant-a" and model["upstream"] == [] and len(model["lineage"]) == 2
    assert "avg merge" in model["description"] and "BN re-estimation" in model["description"]

    image, truth = shapes.sample(np.random.default_rng(4242), size=128)
    result = client.submit(png(image), wait=90, model="merged", version=version)
    assert result["status"] == "completed", result
    mask = np.asarray(Image.open(io.BytesIO(client.artifact(result["id"], "mask"))))
    assert (mask == truth).mean() > 0.95
    types = [r["type"] for r in client.audit(job["id"])["events"]]
    assert types[0] == "model.v1.merge.requested" and "model.v1.merged" in types


def test_models_of_different_architectures_are_refused_with_the_reason(client: JsonClient, tmp_path: Path) -> None:
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    path = tmp_path / "tiny.pt"
    torch.jit.script(Tiny()).save(str(path))
    tiny = client.register_model(path, name="tiny", labels=list(shapes.LABELS), input_size=(128, 128))
    job = client.merge_models([("shapes-unet", 1), ("tiny", tiny["version"])], name="nope")
    done = client.wait_job(job["id"], timeout=60)
    assert done["status"] == "failed"
    assert done["error"]["code"] == "incompatible_models"
    assert "key" in done["error"]["reason"] and "tiny/" in done["error"]["reason"]
    with pytest.raises(ApiError) as err:
        client.merge_models([("shapes-unet", 1), ("no-such-model", 1)], name="nope")
    assert err.value.status == 404


def test_cli_merges_with_weights(stack: Stack) -> None:
    base = [sys.executable, "-m", "maskline.cli", "--url", stack.gateway_url, "--api-key", "key-a", "--json"]
    out = subprocess.run(
        [
            *base,
            "models",
            "merge",
            "shapes-unet:1",
            "shapes-unet:1",
            "--name",
            "weighted-cli",
            "--method",
            "weighted",
            "--weights-by",
            "300,100",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["status"] == "completed"


def test_two_onnx_site_models_merge_into_a_served_onnx_version(client: JsonClient, tmp_path: Path) -> None:
    paths = []
    for seed in (1, 2):
        paths.append(tmp_path / f"person-{seed}.onnx")
        paths[-1].write_bytes(onnx_site(seed))
    described = {"labels": ["background", "person"], "input_size": (256, 256)}
    a = client.register_model(paths[0], name="person-a", **described)
    b = client.register_model(paths[1], name="person-b", **described)
    assert a["format"] == b["format"] == "onnx"
    done = client.wait_job(
        client.merge_models([("person-a", a["version"]), ("person-b", b["version"])], name="person-ab")["id"], 120
    )
    assert done["status"] == "completed", done
    merged = client.http.get(done["links"]["model"]).json()
    assert merged["format"] == "onnx" and merged["weights"]["key"].endswith(".onnx")
    photo = (person.FOLDER / "samples" / "astronaut.jpg").read_bytes()
    result = client.submit(photo, filename="astronaut.jpg", wait=90, model="person-ab", version=merged["version"])
    assert result["status"] == "completed", result
    assert 0.4 < (np.asarray(Image.open(io.BytesIO(client.artifact(result["id"], "mask")))) == 1).mean() < 0.7
    mixed = client.wait_job(client.merge_models([("person-a", a["version"]), ("site-a", 1)], name="mixed")["id"], 120)
    assert mixed["status"] == "failed" and "mix TorchScript and ONNX" in mixed["error"]["reason"]
