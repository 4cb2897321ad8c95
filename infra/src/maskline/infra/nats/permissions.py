"""NATS permissions of every identity, derived from the subject table (`contracts/subjects.py`).

A service may publish the subjects it produces and its own dead letters; use the JetStream API
of its own durable consumers, of the buckets it reads or writes and of the streams it reads; and
subscribe to its own inbox. Nothing else. An outside system may publish the documented commands
and read the results of its own tenant only.

Wherever an identity needs short-lived consumers with generated names on a stream (listings,
trails, an outside system's ordered consumer), it may not touch the durables that other
identities run on that stream: those are denied by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from maskline.contracts import subjects as table

JS = "$JS.API"


@dataclass
class Permissions:
    publish: set[str] = field(default_factory=set)
    publish_deny: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)
    subscribe_deny: set[str] = field(default_factory=set)
    responses: bool = False
    """May answer requests (the services API): publish to the reply subject of a request received."""

    def as_config(self) -> dict[str, Any]:
        """The `permissions` block of a user in nats-server's configuration."""
        config: dict[str, Any] = {
            "publish": {"allow": sorted(self.publish)},
            "subscribe": {"allow": sorted(self.subscribe)},
        }
        if self.publish_deny:
            config["publish"]["deny"] = sorted(self.publish_deny)
        if self.subscribe_deny:
            config["subscribe"]["deny"] = sorted(self.subscribe_deny)
        if self.responses:
            config["allow_responses"] = True
        return config


def inbox(identity: str) -> str:
    return f"_INBOX.{identity}.>"


def _durable(p: Permissions, stream: str, durable: str, filter_subject: str) -> None:
    """Create (with exactly this filter), inspect, pull from and acknowledge one durable consumer."""
    p.publish |= {
        f"{JS}.STREAM.INFO.{stream}",
        f"{JS}.CONSUMER.CREATE.{stream}.{durable}.{filter_subject}",
        f"{JS}.CONSUMER.INFO.{stream}.{durable}",
        f"{JS}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    }


def _others_durables(p: Permissions, identity: str, streams: Iterable[str]) -> None:
    """Deny every API call on durables that other identities run on these streams."""
    for owner, stream, durable in table.all_durables():
        if owner == identity or stream not in streams:
            continue
        p.publish_deny |= {
            f"{JS}.CONSUMER.*.{stream}.{durable}",
            f"{JS}.CONSUMER.*.{stream}.{durable}.>",
            f"{JS}.CONSUMER.*.*.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        }


def _short_lived_readers(p: Permissions, stream: str, filter_subject: str = ">") -> None:
    """Consumers with generated names (no acknowledgements) that read `filter_subject` of `stream`."""
    p.publish |= {
        f"{JS}.STREAM.INFO.{stream}",
        f"{JS}.CONSUMER.CREATE.{stream}.*.{filter_subject}",
        f"{JS}.CONSUMER.INFO.{stream}.*",
        f"{JS}.CONSUMER.MSG.NEXT.{stream}.*",
    }


def _bucket(p: Permissions, identity: str, bucket: table.Bucket) -> None:
    stream = bucket.stream
    if identity in bucket.readers or identity in bucket.writers:
        p.publish |= {
            f"{JS}.STREAM.INFO.{stream}",
            f"{JS}.STREAM.MSG.GET.{stream}",
            f"{JS}.DIRECT.GET.{stream}",
            f"{JS}.DIRECT.GET.{stream}.>",
        }
    if identity in bucket.readers:
        _short_lived_readers(p, stream, f"$KV.{bucket.name}.>")
    if identity in bucket.writers:
        p.publish.add(f"$KV.{bucket.name}.{identity}.>" if bucket.own_prefix else f"$KV.{bucket.name}.>")


def service(name: str) -> Permissions:
    p = Permissions(subscribe={inbox(name), "$SRV.>", f"maskline.{name}.>"}, responses=True)
    for s in table.produced_by(name):
        p.publish.add(s.filter)
        # A publish acknowledged as a duplicate is checked against the message the stream holds (bus.py).
        p.publish.add(f"{JS}.STREAM.MSG.GET.{s.stream}")
    durables = table.durables_of(name)
    for stream, durable, filter_subject in durables:
        _durable(p, stream, durable, filter_subject)
        p.publish.add(f"dlq.{durable}")
    for bucket in table.BUCKETS:
        _bucket(p, name, bucket)
    reads = table.READS.get(name, ())
    for stream in reads:
        _short_lived_readers(p, stream)
        p.publish.add(f"{JS}.STREAM.MSG.GET.{stream}")
    _others_durables(p, name, reads)
    if name == table.AUDIT:
        p.publish |= set(table.AUDIT_SUBJECTS) | {"dlq.audit"}
    if name in table.WATCH_BACKLOG:  # admission control reads the stages' queue lengths, in one listing
        p.publish |= {f"{JS}.CONSUMER.LIST.{stream}" for stream, _ in table.BACKLOG_STAGES}
    if name in table.ASKS_FLEET:
        p.publish |= {"$SRV.INFO", "$SRV.PING", "maskline.*.status", "maskline.*.redrive"}
        p.publish |= {f"{JS}.CONSUMER.LIST.{s}" for s in table.STREAMS} | {f"{JS}.STREAM.INFO.{s}" for s in table.STREAMS}
        # Dead letters are removed once their consumer re-processed them (the gateway asks it to).
        p.publish.add(f"{JS}.STREAM.MSG.DELETE.DLQ")
    for stream in {s.stream for s in table.commands_consumed_by(name)}:
        # Admission counts a tenant's unfinished jobs: the service hears each job's end (core NATS).
        p.subscribe |= {s.filter for s in table.job_ends(stream)}
    if durables:
        # A consumer re-processes its own dead letters on request: it reads them from the DLQ stream.
        p.publish |= {f"{JS}.STREAM.INFO.DLQ", f"{JS}.STREAM.MSG.GET.DLQ"}
    return p


def admin() -> Permissions:
    """Provisioning: streams, buckets and the bundled models. Never a running service."""
    return Permissions(publish={">"}, subscribe={">"}, responses=True)


def auditor() -> Permissions:
    p = Permissions(subscribe={inbox(table.AUDITOR)})
    _short_lived_readers(p, "AUDIT")
    p.publish.add(f"{JS}.STREAM.MSG.GET.AUDIT")
    return p


def external(name: str, tenant: str) -> Permissions:
    """An outside system bound to `tenant`: its commands in, its results out, through its own inbox.

    It reads its results through consumers it owns: only the names `table.external_consumers(name)`,
    each created with a filter on its own tenant's subjects. It may not touch any other consumer
    (another identity's, a service's) nor ask for stream information (which would list every
    tenant's subjects and counts)."""
    p = Permissions(subscribe={inbox(name)})
    owned = table.external_consumers(name)
    readable: set[str] = set()
    for s in table.SUBJECTS:
        if s.external_publish:
            p.publish.add(s.wire(tenant))
        if s.external_read:
            p.subscribe.add(s.wire(tenant))
            p.publish |= {f"{JS}.CONSUMER.CREATE.{s.stream}.{consumer}.{s.wire(tenant)}" for consumer in owned}
            readable.add(s.stream)
    for stream in readable:
        for consumer in owned:
            p.publish |= {
                f"{JS}.CONSUMER.INFO.{stream}.{consumer}",
                f"{JS}.CONSUMER.DELETE.{stream}.{consumer}",
                f"{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                f"$JS.ACK.{stream}.{consumer}.>",
            }
    _others_durables(p, name, readable)
    p.responses = True  # flow-control replies of its push consumers
    return p


def for_identity(identity: table.Identity) -> Permissions:
    if identity.role == table.EXTERNAL:
        assert identity.tenant is not None
        return external(identity.name, identity.tenant)
    if identity.role == table.ADMIN:
        return admin()
    if identity.role == table.AUDITOR:
        return auditor()
    return service(identity.name)
