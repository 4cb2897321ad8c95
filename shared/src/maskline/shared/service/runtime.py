"""Start, run and stop a service: config, logs, bus, streams, storage, consumers, health, drain.

Every service's `__main__` is `Runtime(name, settings).run(setup)`; `setup` registers the
service's consumers and readiness checks. Nothing here is specific to one service.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from nats.micro import add_service
from nats.micro.request import Request
from prometheus_client.registry import Collector

from maskline.contracts import subjects as table
from maskline.shared import logging as logs
from maskline.shared import tracing
from maskline.shared.bus import Bus, connect
from maskline.shared.config import RuntimeSettings
from maskline.shared.errors import HandlerError
from maskline.shared.jobs.admission import Admission, Backlog
from maskline.shared.jobs.cancels import Cancellations
from maskline.shared.jobs.gate import CommandGate
from maskline.shared.jobs.state import JobStore
from maskline.shared.operations import dlq
from maskline.shared.operations.heartbeat import Heartbeat
from maskline.shared.operations.metrics import WorkerMetrics
from maskline.shared.probes import serve_probes
from maskline.shared.provision import wait_provisioned
from maskline.shared.service.consumer import Consumer, ConsumerSpec
from maskline.shared.storage import ObjectStore, open_store
from maskline.shared.version import CODE_VERSION

ReadyCheck = Callable[[], Awaitable[bool]]
log = structlog.get_logger("runtime")


def needed_streams(service: str) -> list[str]:
    """Streams and bucket streams the service uses, per the subject table."""
    streams = {stream for stream, _, _ in table.durables_of(service)}
    streams |= {b.stream for b in table.BUCKETS if service in b.readers or service in b.writers}
    return sorted(streams)


class Runtime:
    def __init__(self, name: str, settings: RuntimeSettings) -> None:
        self.name = name
        self.settings = settings
        self.instance = settings.instance or f"{socket.gethostname()}-{os.getpid()}"
        self.started = time.time()
        self.consumers: list[Consumer[Any]] = []
        self.ready_checks: dict[str, ReadyCheck] = {}
        self.collectors: list[Collector] = []
        """A service's own Prometheus collectors, served beside the worker metrics (`/metrics`)."""
        self.status_parts: dict[str, Callable[[], Any]] = {}
        """A service's own parts of its status (infer: the models loaded in Triton)."""
        self._bus: Bus | None = None
        self._store: ObjectStore | None = None
        self.gate: CommandGate | None = None
        """Services that take commands: what each command passes (the job is its own; admission)."""
        self.cancellations: Cancellations | None = None
        """Stages of a segmentation (the readers of the `cancels` bucket) skip cancelled jobs' work."""
        self._stop = asyncio.Event()
        self.exit_code = 0

    @property
    def bus(self) -> Bus:
        assert self._bus is not None, "runtime not started"
        return self._bus

    @property
    def store(self) -> ObjectStore:
        assert self._store is not None, "runtime not started"
        return self._store

    async def start(self) -> None:
        logs.configure(self.name, self.settings.log_level, self.instance)
        tracing.configure(self.name)
        self._bus = await connect(self.settings, f"{self.name}:{self.instance}", identity=self.name)
        await wait_provisioned(self.bus.js, needed_streams(self.name))
        self._store = open_store(self.settings, self.name)
        if commands := table.commands_consumed_by(self.name):
            # Every job this service takes off the bus meets the same gate, whoever published it.
            jobs = await JobStore.opened(self.bus.js)
            pipeline = any(c.stream == "SEG" for c in commands)
            backlog = Backlog(self.bus.js) if pipeline else None
            self.gate = CommandGate(jobs, Admission.for_bus(self.settings, backlog))
            await self.gate.follow_ends(self.bus.nc, {c.stream for c in commands})
        if self.name in table.bucket("cancels").readers:
            self.cancellations = await Cancellations.opened(self.bus.js)
            await self.cancellations.follow()  # every mark so far, before any consumer takes work
        self.ready_checks.setdefault("store", self.store.ready)

    def consume(self, spec: ConsumerSpec[Any]) -> None:
        skip = self.cancellations.cancelled if self.cancellations is not None and spec.stream == "SEG" else None
        command = spec.subject.removesuffix(".*") in table.JOB_KIND_OF
        self.consumers.append(
            Consumer(
                self.bus,
                spec,
                source=self.name,
                max_deliver=self.settings.max_deliver,
                ack_wait_s=self.settings.ack_wait_s,
                skip=skip,
                store=self.store,
                gate=self.gate if command else None,
            )
        )

    async def readiness(self) -> dict[str, bool]:
        # A consumer waiting for a dependency (Triton, the object store) takes no work: not ready.
        results = {"nats": self.bus.nc.is_connected, "flowing": not any(c.stats.paused for c in self.consumers)}
        for name, check in self.ready_checks.items():
            try:
                results[name] = await asyncio.wait_for(check(), 2.0)
            except Exception:
                results[name] = False
        return results

    async def status(self) -> dict[str, Any]:
        checks = await self.readiness()
        return {
            "service": self.name,
            "instance": self.instance,
            "version": CODE_VERSION,
            "uptime_s": round(time.time() - self.started, 1),
            "ready": all(checks.values()),
            "checks": checks,
            "consumers": {c.spec.durable: dataclasses.asdict(c.stats) for c in self.consumers},
            **{name: part() for name, part in self.status_parts.items()},
        }

    async def _register_micro(self) -> Any:
        """Register with the NATS services API so `nats micro ls/info/stats` sees the fleet."""
        service = await add_service(
            self.bus.nc,
            name=f"maskline-{self.name}",
            version=CODE_VERSION,
            description=f"maskline {self.name} service",
            metadata={"instance": self.instance},
        )

        async def on_status(request: Request) -> None:
            await request.respond(msgspec.json.encode(await self.status()))

        async def on_redrive(request: Request) -> None:
            await request.respond(msgspec.json.encode(await self.reprocess_letter(request.data)))

        await service.add_endpoint(name="status", subject=f"maskline.{self.name}.status", handler=on_status)
        await service.add_endpoint(name="redrive", subject=f"maskline.{self.name}.redrive", handler=on_redrive)
        return service

    async def reprocess_letter(self, body: bytes) -> dict[str, Any]:
        """Re-run the consumer that dead-lettered `{"seq": n}` on it; the caller deletes the letter on success."""
        try:
            seq = int(msgspec.json.decode(body, type=dict[str, int])["seq"])
            _, letter = await dlq.get(self.bus.js, seq)
        except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError) as exc:
            return {"ok": False, "code": "invalid_request", "reason": f"expected {{'seq': <int>}}: {exc}"}
        except dlq.LetterNotFound as exc:
            return {"ok": False, "code": "not_found", "reason": str(exc)}
        consumer = next((c for c in self.consumers if c.spec.durable == letter.consumer), None)
        if consumer is None:
            return {"ok": False, "code": "not_found", "reason": f"{self.name} runs no consumer {letter.consumer}"}
        try:
            await consumer.reprocess(letter)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return {"ok": False, "code": "invalid_message", "reason": str(exc)}
        except HandlerError as exc:
            return {"ok": False, "code": exc.code, "reason": exc.reason}
        except Exception as exc:  # still failing: the letter stays for another try
            return {"ok": False, "code": type(exc).__name__, "reason": str(exc) or type(exc).__name__}
        return {"ok": True, "seq": seq, "consumer": letter.consumer, "subject": letter.subject}

    @property
    def stopping(self) -> asyncio.Event:
        return self._stop

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self, *extra: Awaitable[None]) -> None:
        """Run consumers (and `extra` tasks) until SIGTERM/SIGINT, then drain cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        micro = await self._register_micro()
        heartbeat = await Heartbeat.opened(self.bus.js, self.name, self.instance, self.settings.heartbeat_s)
        extra = (*extra, heartbeat.run(self.status, self._stop))
        if self.cancellations is not None:
            extra = (*extra, self.cancellations.watch(self._stop))
        if self.settings.health_port:
            metrics = WorkerMetrics(self.name, lambda: self.consumers, self.collectors)
            extra = (*extra, serve_probes(self.settings.health_port, self.readiness, self._stop, metrics.render))
        tasks = [asyncio.create_task(c.run()) for c in self.consumers] + [asyncio.ensure_future(e) for e in extra]
        log.info("service.started", consumers=[c.spec.durable for c in self.consumers])
        stopper = asyncio.create_task(self._stop.wait())
        pending: set[asyncio.Future[Any]] = {stopper, *tasks}
        while not stopper.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stopper and not t.cancelled() and t.exception()]
            for task in failed:
                log.error("service.task_failed", error=repr(task.exception()))
            if failed:
                self.exit_code = 1
                break
        self._stop.set()
        for consumer in self.consumers:
            consumer.stop()
        # Consumers finish their in-flight messages (ack or nak) before the connection drains.
        await asyncio.wait([t for t in tasks if not t.done()] or [stopper], timeout=30)
        await micro.stop()
        with contextlib.suppress(Exception):  # drained: say so, rather than turn stale
            await heartbeat.put(await self.status(), state="stopped")
        await self.bus.close()
        tracing.shutdown()  # the spans still buffered go out before the process does
        log.info("service.stopped")

    def run(self, setup: Callable[[Runtime], Awaitable[list[Awaitable[None]] | None]]) -> None:
        async def main() -> None:
            await self.start()
            extra = await setup(self) or []
            await self.serve(*extra)

        asyncio.run(main())
        if self.exit_code:
            raise SystemExit(self.exit_code)
