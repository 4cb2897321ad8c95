"""`/metrics`: the platform's Prometheus metrics, then this replica's own.

The platform's view (job counters and stage histograms fed by the gateway's watch on the job-state
bucket; queue depths, dead letters and instance states read from NATS at scrape time) is the same
on every replica, so only one replica exports it at a time: the one holding the `platform-metrics`
lease (shared/lease.py; handed on within the lease's TTL when that replica stops). `sum()` over
replicas counts each job once. What each instance does itself — HTTP requests here (litestar's
Prometheus middleware, by route template), messages in the workers (shared/operations/metrics.py),
process CPU and memory everywhere — every instance exports.

Labels are bounded: a stage is a service of the system table or `triton`, an error code one of the
platform's (contracts/error_codes.py), else `other`; a forged event cannot add a series. No tenant
labels anywhere: this answers without an API key.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Controller, Response, get
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from maskline.contracts import error_codes
from maskline.contracts import subjects as table
from maskline.shared.bus import STREAMS, Bus
from maskline.shared.jobs.admission import Admission
from maskline.shared.jobs.state import JobState
from maskline.shared.lease import Lease
from maskline.shared.operations.fleet import queues
from maskline.shared.operations.heartbeat import fleet
from maskline.shared.operations.metrics import BuildInfo

#: Up to an hour: a stage of a large image with TTA, or an evaluation, takes minutes.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
STAGES = frozenset({*table.SERVICES, "triton"})


#: How long a scrape waits for one stream's info (its leader's answer).
STREAM_INFO_TIMEOUT_S = 2.0


def bounded_stage(stage: str) -> str:
    return stage if stage in STAGES else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """The platform's view: only the replica holding `lease` exports it."""
        self.own = CollectorRegistry()
        """What this replica did itself (admission): every replica exports it."""
        r = self.registry
        self.lease: Lease | None = None
        """Set by the service (None: a lone gateway, which exports the platform's view)."""
        self.jobs = Counter(
            "maskline_jobs", "Job events by family (seg, dataset, model) and state", ["family", "state"], registry=r
        )
        self.errors = Counter("maskline_errors", "Failed jobs by stage and reason code", ["stage", "code"], registry=r)
        self.stage = Histogram(
            "maskline_stage_seconds", "Time spent in each stage of a job", ["stage"], buckets=BUCKETS, registry=r
        )
        self.triton = Histogram("maskline_triton_seconds", "Triton inference call latency", buckets=BUCKETS, registry=r)
        self.pending = Gauge(
            "maskline_queue_pending", "Messages not yet delivered to a stage", ["stream", "consumer"], registry=r
        )
        self.in_flight = Gauge(
            "maskline_queue_in_flight", "Messages delivered, not yet acknowledged", ["stream", "consumer"], registry=r
        )
        self.dead_letters = Gauge("maskline_dead_letters", "Messages in the dead-letter stream", registry=r)
        self.instances = Gauge("maskline_instances", "Service instances by heartbeat state", ["service", "state"], registry=r)
        # No tenant labels anywhere: /metrics answers without an API key, and a label per tenant is
        # unbounded. Who was refused is in the logs and the audit trail.
        self.refused = Counter(
            "maskline_admission_refused",
            "Requests this replica refused by admission control",
            ["code"],
            registry=self.own,
        )
        self.backlog = Gauge("maskline_pipeline_backlog", "Messages queued for or held by the pipeline's stages", registry=r)
        self.unfinished_jobs = Gauge(
            "maskline_unfinished_jobs", "Jobs started through this replica, not finished yet", registry=self.own
        )
        self.tenants_with_jobs = Gauge(
            "maskline_tenants_with_unfinished_jobs",
            "Tenants with jobs started through this replica, not finished yet",
            registry=self.own,
        )
        self.stream_leader = Gauge(
            "maskline_stream_leader",
            "1 while the stream has a leader that answers (JetStream can store and deliver its messages), else 0",
            ["stream"],
            registry=r,
        )
        self.stream_replicas = Gauge(
            "maskline_stream_replicas",
            "The stream's copies by state: current (the leader and caught-up followers), lagging, offline",
            ["stream", "state"],
            registry=r,
        )
        self.nats_connected = Gauge(
            "maskline_nats_connected", "1 while this replica's connection to NATS is up", registry=self.own
        )
        self.paused = Gauge(
            "maskline_consumers_paused",
            "Consumers of live instances waiting for a dependency (they fetch no work meanwhile)",
            ["service", "consumer", "dependency"],
            registry=r,
        )

    @property
    def exports_platform_view(self) -> bool:
        return self.lease is None or self.lease.held

    def observe(self, state: JobState) -> None:
        """One write of a job's state: counted when it starts and when it ends (each is written once)."""
        family = table.JOB_FAMILY[state.kind]  # seg, dataset, model: from the system table
        if state.status != "requested" and not state.finished:
            return
        self.jobs.labels(family, state.status).inc()
        if state.status == "failed" and state.error is not None:
            self.errors.labels(bounded_stage(state.error.stage), error_codes.bounded(state.error.code)).inc()
        if state.status != "completed":
            return
        for stage, ms in state.timings_ms.items():
            if stage == "triton":
                self.triton.observe(ms / 1000)
            else:
                self.stage.labels(bounded_stage(stage)).observe(ms / 1000)

    async def refresh_streams(self, js: Any) -> bool:
        """Each stream's health in the NATS cluster: whether its leader answers (within
        `STREAM_INFO_TIMEOUT_S`, all streams asked at once, so a scrape during a lost quorum still
        answers in time), and its replicas' states (a lone server: one current copy). Whether every
        stream answered."""

        async def info_of(stream: str) -> Any:
            try:
                return await asyncio.wait_for(js.stream_info(stream), STREAM_INFO_TIMEOUT_S)
            except Exception:  # no leader (an election, a lost quorum) or no JetStream: nothing answers
                return None

        infos = await asyncio.gather(*(info_of(s) for s in STREAMS))
        for stream, info in zip(STREAMS, infos, strict=True):
            if info is None:
                self.stream_leader.labels(stream).set(0)
                continue
            cluster = info.cluster
            self.stream_leader.labels(stream).set(1)
            peers = (cluster.replicas or []) if cluster is not None else []
            lagging = sum(1 for p in peers if not p.offline and not p.current)
            offline = sum(1 for p in peers if p.offline)
            for state, n in (("current", 1 + len(peers) - lagging - offline), ("lagging", lagging), ("offline", offline)):
                self.stream_replicas.labels(stream, state).set(n)
        return all(info is not None for info in infos)

    async def refresh(self, js: Any) -> None:
        if not await self.refresh_streams(js):
            return  # a stream without a leader: the queues would not answer in time either; the rest keeps its last values
        for q in await queues(js, STREAMS):
            self.pending.labels(q["stream"], q["consumer"]).set(q["pending"])
            self.in_flight.labels(q["stream"], q["consumer"]).set(q["in_flight"])
        self.dead_letters.set((await js.stream_info("DLQ")).state.messages)
        counts: dict[tuple[str, str], int] = {}
        paused: dict[tuple[str, str, str], int] = {}
        for b in await fleet(js):
            service, state = str(b.get("service")), str(b["state"])
            counts[(service, state)] = counts.get((service, state), 0) + 1
            if state == "up":
                for consumer, stats in dict(b.get("consumers") or {}).items():
                    if stats.get("paused"):
                        key = (service, str(consumer), str(stats["paused"]))
                        paused[key] = paused.get(key, 0) + 1
        self.instances.clear()
        for (service, state), n in counts.items():
            self.instances.labels(service, state).set(n)
        self.paused.clear()
        for (service, consumer, dependency), n in paused.items():
            self.paused.labels(service, consumer, dependency).set(n)


#: Requests by method, route template (not the raw path: bounded) and status; paths no route
#: answers are not counted, so a scan of random URLs adds no series.
HTTP_METRICS = PrometheusConfig(
    app_name="maskline-gateway",
    prefix="maskline_http",
    group_path=True,
    exclude_unhandled_paths=True,
    exclude=["/metrics", "/health"],
    buckets=[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0],
)

# This replica's own, in the process's default registry (with litestar's HTTP metrics and the process's)
PLATFORM_VIEW = Gauge(
    "maskline_platform_view", "1 on the gateway replica that exports the platform's metrics (one at a time), else 0"
)
REGISTRY.register(BuildInfo("gateway"))


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]

    @get(summary="Prometheus metrics (no API key: scrape from inside the network)", media_type=CONTENT_TYPE_LATEST)
    async def metrics(self, platform_metrics: Metrics, admission: Admission, bus: Bus) -> Response[bytes]:
        metrics = platform_metrics
        running = admission.gauges()["running"]
        metrics.unfinished_jobs.set(sum(running.values()))
        metrics.tenants_with_jobs.set(len(running))
        PLATFORM_VIEW.set(1 if metrics.exports_platform_view else 0)
        metrics.nats_connected.set(1 if bus.nc.is_connected else 0)
        body = generate_latest(metrics.own) + generate_latest(REGISTRY)
        if metrics.exports_platform_view and bus.nc.is_connected:  # one replica at a time: never a job counted twice
            await metrics.refresh(bus.js)
            if admission.backlog is not None:
                metrics.backlog.set(await admission.backlog.size())
            body = generate_latest(metrics.registry) + body
        return Response(body, media_type=CONTENT_TYPE_LATEST)
