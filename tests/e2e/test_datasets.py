"""Dataset expansion: upload, expand into five variants (masks nearest-neighbour), idempotent, resumable."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes

pytestmark = pytest.mark.e2e


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: JsonClient, name: str, count: int) -> None:
    rng = np.random.default_rng(5150)
    for i in range(count):
        image, mask = shapes.sample(rng, size=96)
        client.upload_dataset_file(name, "images", png(image), f"img{i}.png")
        client.upload_dataset_file(name, "masks", png(mask), f"img{i}.png")


def test_expansion_writes_every_variant_with_masks_and_a_manifest_and_is_idempotent(client: JsonClient, stack: Stack) -> None:
    upload(client, "shapes-small", 3)
    job = client.wait_job(client.expand_dataset("shapes-small", angle=90)["id"])
    assert job["status"] == "completed", job
    assert job["progress"] == {"done": 3, "total": 3, "written": 15, "skipped": 0, "outputs": 15}
    manifest = client.dataset_manifest("shapes-small-aug")
    assert len(manifest["entries"]) == 15
    view = client.dataset("shapes-small-aug")
    assert len(view["images"]) == 15 and len(view["masks"]) == 15

    home = Path(stack.home) / "objects" / "datasets" / "tenant-a"
    original = np.asarray(Image.open(home / "shapes-small" / "masks" / "img0.png"))
    rotated = np.asarray(Image.open(home / "shapes-small-aug" / "masks" / "img0__rotate.png"))
    assert (rotated == np.rot90(original)).all()  # a quarter turn moves labels exactly
    flipped = np.asarray(Image.open(home / "shapes-small-aug" / "masks" / "img0__flip.png"))
    assert (flipped == original[::-1]).all()
    blurred = np.asarray(Image.open(home / "shapes-small-aug" / "masks" / "img0__blur.png"))
    assert (blurred == original).all()  # labels are never blurred

    again = client.wait_job(client.expand_dataset("shapes-small", angle=90)["id"])
    assert again["progress"]["written"] == 0 and again["progress"]["skipped"] == 15

    # Resume: outputs lost in a crash are the only ones written again.
    (home / "shapes-small-aug" / "images" / "img1__flop.png").unlink()
    (home / "shapes-small-aug" / "images" / "img2__rotate.png").unlink()
    resumed = client.wait_job(client.expand_dataset("shapes-small", angle=90)["id"])
    assert resumed["progress"]["written"] == 2 and resumed["progress"]["skipped"] == 13
    trail = client.audit(job["id"])["events"]
    assert trail[0]["type"] == "dataset.v1.expand.requested"
    assert "dataset.v1.expand.progressed" in [r["type"] for r in trail]


def test_expanding_a_missing_dataset_is_404_and_an_empty_one_cannot_be_expanded(client: JsonClient) -> None:
    with pytest.raises(ApiError) as err:
        client.expand_dataset("never-uploaded")
    assert err.value.status == 404


def test_a_mask_that_does_not_fit_its_image_fails_the_job_with_the_reason(client: JsonClient) -> None:
    client.upload_dataset_file("bad-masks", "images", png(np.zeros((40, 40, 3), np.uint8)), "a.png")
    client.upload_dataset_file("bad-masks", "masks", png(np.zeros((20, 20), np.uint8)), "a.png")
    job = client.wait_job(client.expand_dataset("bad-masks")["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_mask" and "(20, 20)" in job["error"]["reason"]


def test_cli_uploads_and_expands_with_progress(stack: Stack, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    files = []
    for i in range(2):
        image, _ = shapes.sample(rng, size=64)
        path = tmp_path / f"c{i}.png"
        path.write_bytes(png(image))
        files.append(str(path))
    base = [sys.executable, "-m", "maskline.cli", "--url", stack.gateway_url, "--api-key", "key-a"]
    up = subprocess.run([*base, "datasets", "upload", "cli-set", *files], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    out = subprocess.run([*base, "--json", "datasets", "expand", "cli-set"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"written": 10' in out.stdout
