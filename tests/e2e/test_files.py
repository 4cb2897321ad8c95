"""The tenant file manager over HTTP and the CLI: list with sizes and dates, download, delete; a
model version still served is not deleted; nothing outside the tenant's folders is reachable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS, shapes
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


def test_list_download_and_delete_inputs_and_results(client: JsonClient, other_tenant: JsonClient) -> None:
    job = client.submit(png_bytes(shapes.sample(np.random.default_rng(21), 96)[0]), wait=60)
    assert job["status"] == "completed"
    listing = client.files("outputs")
    mine = {f["path"]: f for f in listing["files"] if f["path"].startswith(job["id"])}
    # Outputs live under the attempt that made them (outputs/<tenant>/<job>/<attempt>/...).
    mask = next(p for p in mine if p.endswith("/mask.png"))
    assert {mask.replace("mask.png", n) for n in ("overlay.png", "regions.json")} <= set(mine)
    assert mine[mask]["size"] > 0 and mine[mask]["modified"].startswith("20")
    assert client.download_file("outputs", mask) == client.artifact(job["id"], "mask")
    assert not any(f["path"].startswith(job["id"]) for f in other_tenant.files("outputs")["files"])
    with pytest.raises(ApiError) as err:
        other_tenant.download_file("outputs", mask)
    assert err.value.status == 404
    inputs = [f["path"] for f in client.files("inputs")["files"] if f["path"].startswith(job["id"])]
    assert inputs
    client.delete_file("inputs", inputs[0])
    assert inputs[0] not in [f["path"] for f in client.files("inputs")["files"]]


@pytest.mark.parametrize("path", ["..%2F..%2Fmodels%2Fx", "a/../../b", "%2Fetc%2Fpasswd"])
def test_paths_cannot_leave_the_tenant_folder(client: JsonClient, path: str) -> None:
    response = client.http.get(f"/v1/files/outputs/{path}")
    assert response.status_code in (404, 422)
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_served_model_version_is_not_deleted(client: JsonClient) -> None:
    labels, size = list(shapes.LABELS), (128, 128)
    first = client.register_model(WEIGHTS, name="fm-model", labels=labels, input_size=size)
    with pytest.raises(ApiError) as err:
        client.delete_file("models", f"fm-model/{first['version']}")
    assert err.value.status == 409 and err.value.problem["code"] == "model_in_service"
    assert "still served" in err.value.problem["detail"]
    second = client.register_model(WEIGHTS, name="fm-model", labels=labels, input_size=size)
    with pytest.raises(ApiError) as err:  # still what unpinned requests run: the alias `stable` names it
        client.delete_file("models", f"fm-model/{first['version']}")
    assert err.value.status == 409 and "alias stable" in err.value.problem["detail"]
    client.release_model("fm-model", second["version"])
    models = {f["path"] for f in client.files("models")["files"]}
    assert {f"fm-model/{first['version']}", f"fm-model/{second['version']}"} <= models
    assert "shapes-unet/1" not in models  # the seeded model belongs to the platform, not to this tenant
    assert client.download_file("models", f"fm-model/{first['version']}") == WEIGHTS.read_bytes()
    client.delete_file("models", f"fm-model/{first['version']}")
    assert [m["version"] for m in client.models() if m["name"] == "fm-model" and m["owner"] == "tenant-a"] == [second["version"]]
    with pytest.raises(ApiError) as err:
        client.delete_file("models", "shapes-unet/1")
    assert err.value.status == 404


def test_cli_files_services_and_dlq(stack: Stack, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "maskline.cli", "--url", stack.gateway_url, "--api-key", "key-a"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)

    image = tmp_path / "one.png"
    image.write_bytes(png_bytes(shapes.sample(np.random.default_rng(22), 96)[0]))
    submitted = run("--json", "submit", str(image), "--out", str(tmp_path / "out"))
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "completed" and Path(job["files"]["mask"]).exists()
    got = run("get", job["id"], "--out", str(tmp_path / "again"))
    assert got.returncode == 0 and "mask" in got.stdout
    status = run("status", job["id"])
    assert status.returncode == 0 and "completed" in status.stdout
    audit = run("audit", job["id"])
    assert audit.returncode == 0 and "chain intact" in audit.stdout and "seg.v1.requested" in audit.stdout
    listing = run("files", "list", "--area", "outputs")
    assert listing.returncode == 0 and f"{job['id']}/" in listing.stdout and "/mask.png" in listing.stdout
    services = run("services")
    assert "infer" in services.stdout and "dead letters:" in services.stdout
    dlq = run("--json", "dlq", "list")
    assert dlq.returncode == 0 and isinstance(json.loads(dlq.stdout), list)
