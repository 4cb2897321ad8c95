"""compose's S3 stand-in (infra/podman/s3_stand_in.py), run as the container runs it: every identity
signs with its own name and the secret `maskline credentials` wrote, and gets exactly its policy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from maskline.infra.embedded.process import free_port, port_open, stop_pid, wait_until
from maskline.infra.store import policies

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "podman" / "s3_stand_in.py"


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    out = tmp_path_factory.mktemp("secrets")
    policies.write(out, "maskline")
    port = free_port()
    command = [
        sys.executable,
        str(SCRIPT),
        "--port",
        str(port),
        "--policies",
        str(out / "minio"),
        "--secrets",
        str(out / "credentials"),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: port_open(port), 30, "s3 stand-in", server)
    yield f"http://127.0.0.1:{port}", out / "credentials"
    stop_pid(server.pid)


def as_user(url: str, user: str, secret: str) -> Any:
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=user, aws_secret_access_key=secret, region_name="us-east-1")


def refusal(call: Callable[[], object]) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "allowed"


def test_each_identity_signs_with_its_name_and_secret_and_gets_only_its_policy(stand_in: tuple[str, Path]) -> None:
    url, creds = stand_in

    def client(identity: str, secret: str | None = None) -> Any:
        return as_user(url, f"maskline-{identity}", secret or (creds / f"minio-{identity}.secret").read_text().strip())

    gateway, triton = client("gateway"), client("triton")
    assert refusal(lambda: gateway.put_object(Bucket="maskline", Key="inputs/t1/a.png", Body=b"x")) == "allowed"
    assert refusal(lambda: gateway.put_object(Bucket="maskline", Key="triton/m/1/model.pt", Body=b"x")) == "AccessDenied"
    assert refusal(lambda: triton.list_objects_v2(Bucket="maskline", Prefix="triton/")) == "allowed"
    assert refusal(lambda: triton.get_object(Bucket="maskline", Key="inputs/t1/a.png")) == "AccessDenied"
    assert refusal(lambda: client("gateway", "a guessed secret").list_objects_v2(Bucket="maskline")) == "SignatureDoesNotMatch"
    assert refusal(lambda: as_user(url, "nobody", "x").list_objects_v2(Bucket="maskline")) == "InvalidAccessKeyId"
    # Triton's S3 client asks whether the bucket exists before anything else (and exits if refused).
    assert refusal(lambda: triton.head_bucket(Bucket="maskline")) == "allowed"


def test_motos_own_unauthenticated_control_api_is_not_served(stand_in: tuple[str, Path]) -> None:
    url, _ = stand_in
    for method, path in (("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset-auth"), ("POST", "/moto-api/reset")):
        assert httpx.request(method, f"{url}{path}", content=b"inf", timeout=10).status_code == 404, path


def test_the_setup_check_waits_for_the_bucket_as_compose_minio_setup_does(stand_in: tuple[str, Path]) -> None:
    url, creds = stand_in
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", url, "--secrets", str(creds), "--timeout", "10"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "bucket maskline ready: 1 object(s) under triton/" in done.stdout
