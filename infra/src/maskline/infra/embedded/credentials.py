"""Credentials of every bus identity and the audit signing key, made once per home folder.

`<home>/credentials/<identity>.nk` holds the identity's nkey seed (mode 0600); nats-server's
configuration holds only the public keys, each with the permissions the subject table gives it.
`audit-signing.key` / `audit-signing.pub` are the audit service's Ed25519 key pair.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import nkeys
from nacl.signing import SigningKey

from maskline.contracts import subjects as table
from maskline.infra.nats.permissions import for_identity

AUDIT_KEY = "audit-signing.key"
AUDIT_PUBLIC_KEY = "audit-signing.pub"
RESERVED = {*table.SERVICES, table.ADMIN, table.AUDITOR}


@dataclass(frozen=True)
class Credential:
    identity: table.Identity
    seed_file: Path
    public_key: str


def identities(clients: str = "") -> list[table.Identity]:
    """The services, the provisioner, the auditor, and the outside systems named in `clients`
    (`name:tenant,...`, e.g. `partner:tenant-a`)."""
    found = [table.Identity(name, "service") for name in table.SERVICES]
    found += [table.Identity(table.ADMIN, table.ADMIN), table.Identity(table.AUDITOR, table.AUDITOR)]
    for item in filter(None, (c.strip() for c in clients.split(","))):
        name, sep, tenant = item.partition(":")
        if not sep or not name or not tenant:
            raise ValueError(f"bus client {item!r} is not name:tenant")
        if name in RESERVED:
            raise ValueError(f"bus client name {name!r} is reserved for a platform identity")
        found.append(table.Identity(name, table.EXTERNAL, tenant=tenant))
    return found


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def credentials_dir(home: Path) -> Path:
    folder = home / "credentials"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def ensure(home: Path, clients: str = "") -> list[Credential]:
    """A seed per identity (kept if present), returned with its public key."""
    folder = credentials_dir(home)
    made = []
    for identity in identities(clients):
        path = folder / f"{identity.name}.nk"
        if not path.exists():
            _write_private(path, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        public = nkeys.from_seed(bytearray(path.read_bytes().strip())).public_key.decode()
        made.append(Credential(identity=identity, seed_file=path, public_key=public))
    ensure_audit_key(folder)
    return made


def ensure_audit_key(folder: Path) -> tuple[Path, Path]:
    private, public = folder / AUDIT_KEY, folder / AUDIT_PUBLIC_KEY
    if not private.exists():
        key = SigningKey.generate()
        _write_private(private, key.encode().hex().encode())
        public.write_text(key.verify_key.encode().hex() + "\n")
    return private, public


def authorization(credentials: list[Credential]) -> str:
    """nats-server `authorization` block: one nkey user per identity with its permissions.

    No `no_auth_user`: a client without credentials is refused."""
    users = [{"nkey": c.public_key, "permissions": for_identity(c.identity).as_config()} for c in credentials]
    return "authorization {\n  users = " + json.dumps(users, indent=2) + "\n}\n"
