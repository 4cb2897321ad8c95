"""MinIO users and policies from the object-store grants (`keys.STORE_ACCESS`): one user per
identity (`maskline-<identity>`), its secret in a 0600 file, and an IAM policy that lets it list,
read or write only the areas of the bucket its grants name. `maskline credentials` writes them;
compose's `minio-setup` (infra/helm/maskline/files/minio-setup.sh) and the Helm chart's setup job load them with `mc`.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from maskline.shared import keys

READ = ["s3:GetObject"]
WRITE = [*READ, "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]


def user_name(identity: str) -> str:
    return f"maskline-{identity}"


def policy(identity: str, bucket: str) -> dict[str, Any]:
    """The IAM policy document of `identity` in `bucket` (AWS policy grammar, as MinIO reads it)."""
    grants = keys.STORE_ACCESS[identity]
    statements: list[dict[str, Any]] = []
    if grants:
        # The client asks where the bucket is before anything else, and Triton's S3 client asks
        # whether it exists (HEAD): refused, Triton exits at start. Seen with the S3 stand-in (moto
        # checks s3:HeadBucket); AWS checks s3:ListBucket for HEAD, and MinIO was not available to
        # check. Listing is limited to its areas.
        statements.append(
            {
                "Sid": "Locate",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:HeadBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            }
        )
        statements.append(
            {
                "Sid": "ListOwnAreas",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
                "Condition": {"StringLike": {"s3:prefix": [f"{area}/*" for area in sorted(grants)]}},
            }
        )
    for need, actions in (("read", READ), ("write", WRITE)):
        areas = sorted(area for area, granted in grants.items() if granted == need)
        if areas:
            statements.append(
                {
                    "Sid": f"{need.capitalize()}Objects",
                    "Effect": "Allow",
                    "Action": actions,
                    "Resource": [f"arn:aws:s3:::{bucket}/{area}/*" for area in areas],
                }
            )
    if not statements:  # an identity with no grant (audit) still gets a valid, empty-handed policy
        statements.append({"Sid": "Nothing", "Effect": "Deny", "Action": ["s3:*"], "Resource": [f"arn:aws:s3:::{bucket}/*"]})
    return {"Version": "2012-10-17", "Statement": statements}


def write(out: Path, bucket: str) -> list[str]:
    """`out/minio/<user>.json` (policies) and `out/credentials/minio-<identity>.secret` (kept if
    present, mode 0600) for every identity with grants; returns the user names."""
    policies, creds = out / "minio", out / "credentials"
    policies.mkdir(parents=True, exist_ok=True)
    creds.mkdir(parents=True, exist_ok=True)
    users = []
    for identity in keys.STORE_ACCESS:
        name = user_name(identity)
        (policies / f"{name}.json").write_text(json.dumps(policy(identity, bucket), indent=2) + "\n")
        secret = creds / f"minio-{identity}.secret"
        if not secret.exists():
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(30))
        users.append(name)
    return users
