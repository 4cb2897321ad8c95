"""The NATS permissions every identity gets, derived from the subject table: least privilege by
construction (the e2e trust tests exercise them against the real server)."""

from __future__ import annotations

import pytest

from maskline.contracts import subjects as table
from maskline.infra.nats.permissions import admin, auditor, external, service

pytestmark = pytest.mark.unit


def test_no_service_may_publish_or_subscribe_everything() -> None:
    for name in table.SERVICES:
        p = service(name)
        assert ">" not in p.publish and ">" not in p.subscribe, name
        assert not any(s.startswith(("_INBOX.>", "_INBOX.*")) for s in p.subscribe), name
        assert f"_INBOX.{name}.>" in p.subscribe


def test_only_audit_writes_the_audit_trail() -> None:
    writers = [name for name in table.SERVICES if any(s.startswith("audit.v1") for s in service(name).publish)]
    assert writers == [table.AUDIT]
    assert not any(s.startswith("audit.v1") for s in external("partner", "acme").publish)
    assert not any(
        "PURGE" in s or "DELETE.AUDIT" in s or "STREAM.DELETE" in s for name in table.SERVICES for s in service(name).publish
    )


def test_each_service_publishes_exactly_what_the_table_says_it_produces() -> None:
    for name in table.SERVICES:
        domain = {s for s in service(name).publish if s.split(".")[0] in ("seg", "model", "dataset", "account")}
        assert domain == {s.filter for s in table.produced_by(name)}, name


def test_consumers_are_created_with_their_filter_and_others_durables_are_off_limits() -> None:
    ingest = service(table.INGEST)
    assert "$JS.API.CONSUMER.CREATE.SEG.ingest.seg.v1.requested.*" in ingest.publish
    assert not any("CONSUMER.CREATE.SEG.*" in s for s in ingest.publish)  # no consumer it could aim elsewhere
    gateway = service(table.GATEWAY)
    assert "$JS.API.CONSUMER.*.DLQ.audit-dlq" in gateway.publish_deny  # it lists dead letters, never audit's queue
    assert "$JS.API.STREAM.MSG.DELETE.DLQ" in gateway.publish
    fleet = [s for s in ingest.publish if s.startswith("$KV.fleet")]
    assert fleet == ["$KV.fleet.ingest.>"]  # a heartbeat only under its own name


def test_an_outside_system_is_bound_to_its_tenant() -> None:
    p = external("partner", "acme")
    domain = [s for s in p.publish if s.split(".")[0] in ("seg", "model", "dataset")]
    assert domain and all(s.endswith(".acme") for s in domain)
    assert "seg.v1.requested.acme" in domain and "seg.v1.completed.acme" not in domain
    reads = [s for s in p.subscribe if not s.startswith("_INBOX.")]
    assert "seg.v1.completed.acme" in reads and all(s.endswith(".acme") for s in reads)
    assert all(s.endswith(".acme") for s in p.publish if s.startswith("$JS.API.CONSUMER.CREATE"))
    assert "$JS.API.CONSUMER.*.SEG.ingest" in p.publish_deny  # it cannot pull from the pipeline's queues
    assert not any(s.startswith("$KV") for s in p.publish)


def test_an_outside_system_owns_its_consumers_by_name_and_sees_no_stream_information() -> None:
    p = external("partner", "acme")
    consumer_calls = [s for s in p.publish if s.startswith(("$JS.API.CONSUMER.", "$JS.ACK."))]
    for call in consumer_calls:  # every consumer it may touch is named partner-<n>, never a wildcard
        tokens = call.split(".")
        at = next(i for i, t in enumerate(tokens) if t in table.STREAMS) + 1  # ...<stream>.<name>[.<filter>]
        assert tokens[at] in table.external_consumers("partner"), call
        assert not {"*", ">"} & set(tokens[: at + 1]), call
    assert not any(s.startswith("$JS.API.STREAM.") for s in p.publish)  # every tenant's subjects and counts
    other = external("partner-1", "beta")  # names cannot collide across identities, nor with a service's durable
    assert not set(table.external_consumers("partner")) & set(table.external_consumers("partner-1"))
    durables = {durable for _, _, durable in table.all_durables()}
    assert not durables & set(table.external_consumers("partner"))
    assert all(".beta" in s for s in other.publish if s.startswith("$JS.API.CONSUMER.CREATE"))


def test_admin_provisions_and_the_auditor_only_reads_the_trail() -> None:
    assert admin().publish == {">"}
    a = auditor()
    assert all("AUDIT" in s for s in a.publish) and not any(s.startswith(("seg.", "audit.v1")) for s in a.publish)
