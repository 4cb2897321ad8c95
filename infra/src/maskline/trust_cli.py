"""CLI verbs of the trust boundaries: audit trails and their verification, model sharing,
releases, and credentials for a deployment.

maskline audit JOB                          one job's records (hash and signature checked)
maskline audit verify [--checkpoint F]      the whole trail, as the auditor identity; names the first break
maskline access list | request OWNER/NAME | withdraw OWNER/NAME | grant|refuse|revoke NAME GRANTEE
maskline models release NAME:VERSION        make it `stable`: what requests naming no version run
maskline credentials --out DIR              nkey seeds, audit key and nats-server users for compose
maskline provision                          streams, buckets, bundled model (as MASKLINE_NATS_IDENTITY=admin)
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import msgspec

from maskline.cli_conventions import Verb, print_result, usage_error, verbs
from maskline.client import JsonClient
from maskline.contracts.audit_v1 import Checkpoint
from maskline.contracts.subjects import AUDITOR
from maskline.infra.embedded import credentials
from maskline.infra.embedded.settings import StackSettings
from maskline.infra.store import policies as store_policies
from maskline.shared.bus import connect
from maskline.shared.config import RuntimeSettings, load
from maskline.shared.tenants.trails import Verdict, load_public_key, verify_stream


async def _verify(settings: RuntimeSettings, public_key: Path, kept: Checkpoint | None) -> Verdict:
    bus = await connect(settings, "audit-verify", identity=AUDITOR, reconnect=False)
    try:
        return await verify_stream(bus.js, load_public_key(str(public_key)), kept)
    finally:
        await bus.close()


def audit_settings(args: argparse.Namespace) -> tuple[RuntimeSettings, Path]:
    """The auditor's connection: the embedded stack's credentials unless MASKLINE_* say otherwise."""
    stack = load(StackSettings)
    home = Path(stack.home).resolve()
    base = load(RuntimeSettings)
    if not base.nats_credentials_dir and not base.nats_nkey_file:
        base = msgspec.structs.replace(base, nats_credentials_dir=str(home / "credentials"))
    if base.nats_url == RuntimeSettings().nats_url:
        base = msgspec.structs.replace(base, nats_url=f"nats://127.0.0.1:{stack.nats_port}")
    public = Path(args.public_key) if args.public_key else home / "credentials" / credentials.AUDIT_PUBLIC_KEY
    return base, public


def cmd_audit(args: argparse.Namespace) -> int:
    if args.job != "verify":
        trail = JsonClient(args.url, api_key=args.api_key).audit(args.job)
        intact = "intact" if trail["intact"] else "BROKEN"
        events = trail.get("events", trail["records"])  # a gateway before contract 1.9: one event per record
        lines = [f"job {trail['job_id']}: {len(events)} events in {len(trail['records'])} records, chain {intact}"]
        for record in trail["records"]:
            lines.append(f"  #{record['seq']:<6} {str(record['recorded'])[:23]}")
            lines += [f"      {e['source'] or '?':<9} {e['subject']}" for e in [record, *record.get("more", [])]]
        print_result(args, trail, "\n".join(lines))
        return 0 if trail["intact"] else 1
    settings, public = audit_settings(args)
    kept = msgspec.json.decode(Path(args.checkpoint).read_bytes(), type=Checkpoint) if args.checkpoint else None
    verdict = asyncio.run(_verify(settings, public, kept))
    if args.save_checkpoint and verdict.head is not None:
        Path(args.save_checkpoint).write_bytes(msgspec.json.encode(verdict.head))
    summary = {
        "intact": verdict.intact,
        "records": verdict.records,
        "events": verdict.events,
        "checkpoints": verdict.checkpoints,
        "head": {"seq": verdict.head_seq, "hash": verdict.head_hash},
        "first_break": verdict.first_break,
        "problems": verdict.problems[:50],
    }
    if verdict.intact:
        human = (
            f"audit trail intact: {verdict.events} events in {verdict.records} records, "
            f"{verdict.checkpoints} signed checkpoints, head #{verdict.head_seq}"
        )
    else:
        human = f"audit trail BROKEN ({len(verdict.problems)} problems); first break: {verdict.first_break}"
    print_result(args, summary, human)
    return 0 if verdict.intact else 1


def _owner_and_name(text: str) -> tuple[str, str]:
    owner, sep, name = text.partition("/")
    if not sep or not owner or not name:
        raise usage_error(f"give the model as OWNER/NAME, not {text!r}")
    return owner, name


def cmd_access(args: argparse.Namespace) -> int:
    client = JsonClient(args.url, api_key=args.api_key)
    if args.action == "list":
        rows = client.access()
        lines = [f"{g['owner']}/{g['model']:<24} {g['grantee']:<16} {g['state']}" for g in rows]
        print_result(args, rows, "\n".join(lines) if lines else "no access requests or grants")
        return 0
    if args.action in ("request", "withdraw"):
        owner, name = _owner_and_name(args.model)
        grant = client.request_access(owner, name, args.note) if args.action == "request" else client.withdraw_access(owner, name)
    else:
        if not args.grantee:
            raise usage_error(f"access {args.action} needs NAME GRANTEE")
        state = {"grant": "granted", "refuse": "refused", "revoke": "revoked"}[args.action]
        grant = client.decide_access(args.model, args.grantee, state, args.note)
    print_result(args, grant, f"{grant['owner']}/{grant['model']} for {grant['grantee']}: {grant['state']}")
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    """Seeds (0600), the audit key pair and nats-server's users block; MinIO users' secrets and
    policies: for compose secrets and Kubernetes secrets."""
    out = Path(args.out).resolve()
    made = credentials.ensure(out, args.clients or "")
    (out / "nats-auth.conf").write_text(credentials.authorization(made))
    users = store_policies.write(out, args.bucket)
    if args.group is not None:
        share_with_group(out, args.group)
    print_result(
        args,
        {"folder": str(out / "credentials"), "identities": [c.identity.name for c in made], "minio_users": users},
        f"wrote {len(made)} bus credentials and {len(users)} MinIO user secrets to {out / 'credentials'}, "
        f"nats-server users to {out / 'nats-auth.conf'}, MinIO policies to {out / 'minio'}",
    )
    return 0


def share_with_group(out: Path, gid: int) -> None:
    """Each secret file readable by group `gid` (0640; owner and folders unchanged): compose
    bind-mounts secret files as they are on the host, and the images run as uid:gid 10001:10001,
    which could not read a 0600 file of root's. Links and anything not a plain file are left alone,
    so a planted link cannot make this change another file."""
    for path in (out / "credentials").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, 0o640, follow_symlinks=False)


def cmd_provision(args: argparse.Namespace) -> int:
    """Streams, buckets and the bundled public model, as the `admin` identity (a compose init container)."""
    from maskline.infra.embedded.seed import provision_and_seed

    settings = load(RuntimeSettings)
    asyncio.run(provision_and_seed(settings))
    print_result(args, {"provisioned": True}, f"provisioned streams and buckets on {settings.nats_url}")
    return 0


def _access_options(access: argparse.ArgumentParser) -> None:
    access.add_argument("model", help="request/withdraw: OWNER/NAME; grant/refuse/revoke: your model's NAME")
    access.add_argument("grantee", nargs="?", help="the tenant")
    access.add_argument("--note", default="")


def add_parsers(sub: Any) -> None:
    audit = sub.add_parser("audit", help="a job's audit trail, or `audit verify`: the whole trail (as the auditor)")
    audit.add_argument("job", help="a job id, or `verify`")
    audit.add_argument("--checkpoint", help="verify: a checkpoint kept earlier (JSON) the trail must still hold")
    audit.add_argument("--save-checkpoint", help="verify: write the newest signed checkpoint here, to keep")
    audit.add_argument("--public-key", help="verify: the audit public key (default: the stack's)")
    audit.set_defaults(run=cmd_audit)
    verbs(
        sub,
        "access",
        "share models: list, request, withdraw, grant, refuse, revoke",
        _access_options,
        {
            "list": Verb("grants and requests you are part of, as owner or grantee"),
            "request": Verb("ask an owner for access to a model (OWNER/NAME)", ("model", "note")),
            "withdraw": Verb("withdraw your request for a model (OWNER/NAME)", ("model",)),
            "grant": Verb("let a tenant use your model NAME", ("model", "grantee", "note")),
            "refuse": Verb("refuse a tenant's request for your model NAME", ("model", "grantee", "note")),
            "revoke": Verb("take a grant back: the tenant's next request is refused", ("model", "grantee", "note")),
        },
        cmd_access,
    )
    creds = sub.add_parser("credentials", help="make bus credentials and the audit key for a deployment (compose secrets)")
    creds.add_argument("--out", default="secrets")
    creds.add_argument("--clients", help="outside systems, name:tenant,...")
    creds.add_argument("--bucket", default="maskline", help="the object store's bucket the MinIO policies are for")
    creds.add_argument(
        "--group", type=int, metavar="GID", help="make the secret files readable by this group (compose: 10001, the images')"
    )
    creds.set_defaults(run=cmd_credentials)
    sub.add_parser("provision", help="create streams and buckets, register the bundled model (admin identity)").set_defaults(
        run=cmd_provision
    )
