"""The MinIO policies `maskline credentials` writes, enforced by an S3 server that evaluates IAM
policies (moto with authentication on), used through the platform's own S3 store: each identity can
read and write exactly the areas `keys.STORE_ACCESS` grants it, and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from maskline.infra.embedded.process import free_port, port_open, stop_pid, wait_until
from maskline.infra.store import policies
from maskline.shared import keys
from maskline.shared.storage import ObjectNotFound
from maskline.shared.storage.base import StoreAccessDenied
from maskline.shared.storage.minio_store import MinioStore

pytestmark = pytest.mark.integration
BUCKET = "maskline"
AREAS = (*keys.AREAS, keys.TRITON_AREA)
#: Requests the S3 server takes without authentication (the root's setup), before it enforces IAM:
#: the bucket, a user + policy + attachment + access key per identity, an object per area.
SETUP_REQUESTS = 1 + 4 * len(keys.STORE_ACCESS) + len(AREAS)


@pytest.fixture(scope="module")
def s3_with_iam() -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until(lambda: port_open(port), 30, "moto server", server)
    url = f"http://127.0.0.1:{port}"
    root = {"endpoint_url": url, "aws_access_key_id": "root", "aws_secret_access_key": "root", "region_name": "us-east-1"}
    iam, s3 = boto3.client("iam", **root), boto3.client("s3", **root)
    s3.create_bucket(Bucket=BUCKET)
    access: dict[str, tuple[str, str]] = {}
    for identity in keys.STORE_ACCESS:
        user = policies.user_name(identity)
        iam.create_user(UserName=user)
        document = json.dumps(policies.policy(identity, BUCKET))
        arn = iam.create_policy(PolicyName=user, PolicyDocument=document)["Policy"]["Arn"]
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        access[identity] = (key["AccessKeyId"], key["SecretAccessKey"])
    for area in AREAS:
        s3.put_object(Bucket=BUCKET, Key=f"{area}/t/seed", Body=b"seed")
    yield f"127.0.0.1:{port}", access
    stop_pid(server.pid)


async def attempts(store: MinioStore, area: str) -> dict[str, bool]:
    """Whether `store`'s identity could read, list and write in `area` (True) or was refused (False)."""
    results = {}
    for what, call in (
        ("read", lambda: store.get(f"{area}/t/seed")),
        ("list", lambda: store.list(f"{area}/t/")),
        ("write", lambda: store.put(f"{area}/t/new", b"x")),
    ):
        try:
            await call()
            results[what] = True
        except StoreAccessDenied:
            results[what] = False
        except ObjectNotFound:
            results[what] = True
    return results


def test_each_identity_reaches_exactly_the_areas_its_grants_name(s3_with_iam: tuple[str, dict[str, tuple[str, str]]]) -> None:
    endpoint, access = s3_with_iam

    async def everything() -> dict[tuple[str, str], dict[str, bool]]:
        found = {}
        for identity, (key, secret) in access.items():
            store = MinioStore(endpoint, key, secret, BUCKET)
            for area in AREAS:
                found[(identity, area)] = await attempts(store, area)
        return found

    for (identity, area), got in asyncio.run(everything()).items():
        granted = keys.STORE_ACCESS[identity].get(area)
        assert got["read"] == (granted is not None), (identity, area, got)
        assert got["write"] == (granted == "write"), (identity, area, got)
        # Listing a granted area works. (Listing outside them is refused by the policy's s3:prefix
        # condition in MinIO and AWS; moto does not evaluate conditions, so that is not shown here.)
        assert got["list"] or granted is None, (identity, area, got)


def test_credentials_write_a_policy_and_a_private_secret_per_identity(tmp_path: Path) -> None:
    users = policies.write(tmp_path, BUCKET)
    assert users == [policies.user_name(i) for i in keys.STORE_ACCESS]
    for identity in keys.STORE_ACCESS:
        secret = tmp_path / "credentials" / f"minio-{identity}.secret"
        assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text()) >= 32
        document = json.loads((tmp_path / "minio" / f"{policies.user_name(identity)}.json").read_text())
        assert document == policies.policy(identity, BUCKET)
    before = (tmp_path / "credentials" / "minio-infer.secret").read_text()
    policies.write(tmp_path, BUCKET)
    assert (tmp_path / "credentials" / "minio-infer.secret").read_text() == before  # kept, not rotated by accident


def test_credentials_for_compose_are_readable_by_the_images_group_only(tmp_path: Path) -> None:
    """compose bind-mounts secret files as they are on the host; the images run as 10001:10001."""
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "planted").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_text("not a secret")
    done = subprocess.run(
        [sys.executable, "-m", "maskline.cli", "credentials", "--out", str(tmp_path), "--group", "10001"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    secrets = [p for p in (tmp_path / "credentials").iterdir() if not p.is_symlink()]
    assert len(secrets) > 20
    assert all((p.stat().st_uid, p.stat().st_gid, p.stat().st_mode & 0o777) == (os.getuid(), 10001, 0o640) for p in secrets)
    assert (tmp_path / "elsewhere").stat().st_gid != 10001  # the planted link was not followed
    assert (tmp_path / "credentials").stat().st_gid != 10001 and (tmp_path / "minio").stat().st_gid != 10001
