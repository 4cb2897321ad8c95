"""compose's `minio` on machines that cannot pull MinIO (no registry they reach has it): moto's S3
and IAM in one process, set up from the files `maskline credentials` wrote, then enforcing them.

Each policy file `maskline-<identity>.json` becomes an IAM user of that name whose access key is its
own name and whose secret is `minio-<identity>.secret`, exactly as minio-setup.sh makes MinIO users;
the bucket and Triton's `triton/` folder are created. Only then does the server start, with IAM on
from its first request: an unknown key, a wrong secret or an action outside the user's policy is
refused as MinIO would. moto keeps everything in memory: a restarted container starts empty.

    python s3_stand_in.py --port 9000 --policies DIR --secrets DIR --bucket maskline
    python s3_stand_in.py --check http://minio:9000 --secrets DIR   # compose's minio-setup: ready?

Standard library and moto only: the image carries nothing of maskline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

#: IAM enforced from the first request: the setup below goes to moto's backends directly.
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
TRITON_README = b"Triton's model repository; infer writes it (MASKLINE_TRITON_REPOSITORY)\n"


def identities(policies: Path) -> list[str]:
    return sorted(p.stem.removeprefix("maskline-") for p in policies.glob("maskline-*.json"))


def secret_of(secrets: Path, identity: str) -> str:
    """`minio-<identity>.secret` (the credentials folder) or `minio-<identity>` (a compose secret)."""
    for name in (f"minio-{identity}.secret", f"minio-{identity}"):
        if (secrets / name).is_file():
            return (secrets / name).read_text().strip()
    raise SystemExit(f"no secret for maskline-{identity} in {secrets}")


def set_up(policies: Path, secrets: Path, bucket: str) -> list[str]:
    """The bucket, its `triton/` folder and one user per policy file; the users' names."""
    from moto.iam.models import iam_backends
    from moto.s3.models import s3_backends

    iam = iam_backends[ACCOUNT]["aws"]
    s3 = s3_backends[ACCOUNT]["aws"]
    s3.create_bucket(bucket, REGION)
    s3.put_object(bucket, "triton/README", TRITON_README)
    users = []
    for identity in identities(policies):
        user = f"maskline-{identity}"
        document = (policies / f"{user}.json").read_text()
        iam.create_user(REGION, user)
        policy = iam.create_policy(description="", path="/", policy_document=document, policy_name=user, tags=[])
        iam.attach_user_policy(policy.arn, user)
        key = iam.create_access_key(user)
        # MinIO's users sign with their own name and the secret they were given: re-key moto's
        # generated pair to that, so services and Triton use the same settings against both.
        del iam.access_keys[key.access_key_id]
        key.access_key_id = user
        key.secret_access_key = secret_of(secrets, identity)
        iam.access_keys[user] = key
        users.append(user)
    return users


def without_moto_api(app: Any) -> Any:
    """moto's own control API (`/moto-api/`: every key's secret in data.json, auth switched off by
    reset-auth, everything wiped by reset) answers without auth: nothing reaches it here."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return app(environ, start_response)

    return guarded


def serve(port: int) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = without_moto_api(DomainDispatcherApplication(create_backend_app))
    server = make_server("0.0.0.0", port, app, threaded=True, request_handler=MotoRequestHandler)
    print(f"s3 stand-in listening on :{port}", flush=True)
    server.serve_forever()


def check(url: str, secrets: Path, bucket: str, timeout_s: float) -> None:
    """Wait until the admin identity can list the bucket (what minio-setup's completion promises)."""
    import boto3

    secret = secret_of(secrets, "admin")
    client = boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="maskline-admin", aws_secret_access_key=secret, region_name=REGION
    )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            listed = client.list_objects_v2(Bucket=bucket, Prefix="triton/")
            print(f"bucket {bucket} ready: {listed.get('KeyCount', 0)} object(s) under triton/", flush=True)
            return
        except Exception as exc:  # any failure means "not yet", until the deadline
            if time.monotonic() > deadline:
                raise SystemExit(f"s3 stand-in at {url} not ready in {timeout_s:.0f} s: {exc}") from exc
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--policies", type=Path, default=Path("/setup/policies"))
    parser.add_argument("--secrets", type=Path, default=Path("/setup/secrets"))
    parser.add_argument("--bucket", default="maskline")
    parser.add_argument("--check", metavar="URL", help="wait until the server at URL serves the bucket, then exit")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.check:
        check(args.check, args.secrets, args.bucket, args.timeout)
        return 0
    users = set_up(args.policies, args.secrets, args.bucket)
    if not users:
        raise SystemExit(f"no maskline-*.json policies in {args.policies}: run `maskline credentials --out secrets`")
    print(f"bucket {args.bucket}; users: {', '.join(users)}", flush=True)
    serve(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
