"""The one consumer loop every service uses: durable pull consumer, ack/nak/term, dead letters.

Delivery is at least once. A handler receives a decoded envelope and returns the events that
follow from it; the runtime publishes them (de-duplicated by id) and only then acks. Faults:

- `RetryableError` or an unexpected exception: `nak` with a growing delay, until `max_deliver`;
- `PermanentError`, an undecodable message, an unknown contract major, or an envelope whose
  tenant is not the one its subject carries (a forged claim): `term`;
- either way a message given up on becomes a `DeadLetter` on `dlq.<consumer>` and, when its job
  is known, a `JobFailed` event on the domain's `failed` subject. The queue moves on.

Dead letters are re-processed by the consumer that gave up on them (`reprocess`), on an
operator's request once the cause is fixed: no one else needs the right to publish its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind

from maskline.contracts import subjects as table
from maskline.contracts.common_v1 import DeadLetter, JobFailed, ModelRef
from maskline.contracts.envelope import Envelope, major, next_event, now
from maskline.shared import references, tracing
from maskline.shared.bus import BUS_UNAVAILABLE, MSG_ID, Bus, tenant_token
from maskline.shared.errors import DeadlineExceeded, DependencyUnavailable, HandlerError, PermanentError, public_reason
from maskline.shared.jobs.admission import Refused
from maskline.shared.jobs.gate import CommandGate, JobTaken
from maskline.shared.storage import ObjectStore

T = TypeVar("T")
Handler = Callable[[Envelope[T]], Awaitable[Sequence[Envelope[Any]]]]

BACKOFF_S = (0.5, 2.0, 5.0, 15.0, 30.0)
#: How long one pull request waits for a message: long when idle (an idle consumer costs the bus a
#: request every few seconds, not every second), short when busy (what is waiting comes at once).
IDLE_FETCH_S = 5.0
BUSY_FETCH_S = 1.0
#: Retries of a message held while a dependency is down (the last one repeats).
HOLD_S = (1.0, 2.0, 5.0, 10.0)
#: The bus failing under a handler's publish is an outage too.
SUPPORTED_MAJOR = "1"

log = structlog.get_logger("consumer")
#: Which delivery of its message a handler is running (1: the first): a handler may skip a check that
#: only a redelivery needs.
delivery: ContextVar[int] = ContextVar("delivery", default=1)


@dataclass(frozen=True)
class ConsumerSpec(Generic[T]):
    """What to consume and how: one per (service, subject)."""

    durable: str
    stream: str
    subject: str
    """The filter: `<type>.*` (every tenant of one event type) or a whole stream's `<family>.v1.>`."""
    payload: type[T]
    handler: Handler[T]
    failure_subject: str | None = None
    """Event type of the `JobFailed` published when this consumer gives up on a job (e.g. `seg.v1.failed`)."""
    concurrency: int = 4

    @classmethod
    def for_subject(
        cls, service: str, type_: str, handler: Handler[T], *, failure: str | None = None, concurrency: int = 4
    ) -> ConsumerSpec[T]:
        """The durable the subject table gives `service` on `type_`, with the table's payload type."""
        entry = table.subject(type_)
        durable = table.consumer_of(type_, service).durable
        payload: Any = entry.payload
        return cls(durable, entry.stream, entry.filter, payload, handler, failure, concurrency)


@dataclass
class ConsumerStats:
    processed: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    """Messages of cancelled jobs, acknowledged without work."""
    held: int = 0
    """Messages that waited for a dependency to come back (none of their deliveries used up)."""
    busy_s: float = 0.0
    last_error: str = ""
    last_error_tenant: str = ""
    """Whose message `last_error` is about: only that tenant (and operators) may read it (it names jobs, keys, URLs)."""
    paused: str = ""
    """The dependency this consumer waits for (it fetches nothing meanwhile); empty when flowing."""


def expired(env: Envelope[Any]) -> bool:
    return env.deadline is not None and now() > env.deadline


@dataclass
class Consumer(Generic[T]):
    bus: Bus
    spec: ConsumerSpec[T]
    source: str
    max_deliver: int = 5
    ack_wait_s: float = 10.0
    hold_s: tuple[float, ...] = HOLD_S
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    skip: Callable[[str, str], bool] | None = None
    """(tenant, job id) → the job's queued work is to be skipped (its tenant cancelled it)."""
    store: ObjectStore | None = None
    """Where the objects that events name are checked (references.check_message)."""
    gate: CommandGate | None = None
    """A consumer of commands: what each passes before its handler (commands.py)."""

    def __post_init__(self) -> None:
        references.plan_for(self.spec.payload)  # a payload naming stored bytes without a rule: refuse to start
        self._decoder = msgspec.json.Decoder(Envelope[self.spec.payload])  # type: ignore[name-defined]
        self._header_decoder = msgspec.json.Decoder(Envelope[msgspec.Raw])
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._resumed = asyncio.Event()

    async def run(self) -> None:
        spec = self.spec
        config = ConsumerConfig(
            name=spec.durable,
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            # Short, and kept alive by in-progress signals while a handler works: a message held by a
            # worker that died is redelivered within seconds, not minutes.
            ack_wait=self.ack_wait_s,
            # The runtime counts deliveries itself so that the last one is dead-lettered, not dropped.
            max_deliver=-1,
            max_ack_pending=max(64, spec.concurrency * 4),
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=spec.subject,
        )
        # Create, or bring an existing durable to this configuration (e.g. a new ack wait), then bind.
        await self.bus.js.add_consumer(spec.stream, config=config)
        psub = await self.bus.js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        slots = asyncio.Semaphore(spec.concurrency)
        idle = True
        while not self._stopping.is_set():
            if self.stats.paused:  # a dependency is down: take no new work until it is back
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._resumed.wait(), 0.5)
                continue
            await slots.acquire()
            free = 1
            while not slots.locked():
                await slots.acquire()
                free += 1
            # Idle (the last pull came back short): one lingering request for one message, so each
            # message costs one pull request. Busy: ask for every free slot at once (what waits comes
            # in one answer). nats-py asks twice for a batch (at once, then lingering) when nothing waits.
            want = 1 if idle else free
            try:
                msgs = await self._fetch(psub, want, IDLE_FETCH_S if idle else BUSY_FETCH_S)
            except (TimeoutError, NatsTimeoutError):
                msgs = []
            except Exception as exc:  # connection trouble: keep the loop alive, nats-py reconnects
                log.warning("consumer.fetch_failed", consumer=spec.durable, error=str(exc))
                msgs = []
                await asyncio.sleep(0.5)
            idle = len(msgs) < want
            for _ in range(free - len(msgs)):
                slots.release()
            for msg in msgs:
                task = asyncio.create_task(self._guarded(msg, slots))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.wait(self._tasks)

    async def _fetch(self, psub: Any, want: int, timeout: float) -> list[Msg]:
        """Up to `want` messages, waiting at most `timeout` — or none at once when the consumer stops
        (a long idle wait must not hold up a shutdown)."""
        fetch = asyncio.ensure_future(psub.fetch(want, timeout=timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not fetch.done():
            fetch.cancel()  # a message the server still hands to it comes back after the ack wait
            return []
        return list(fetch.result())

    def stop(self) -> None:
        self._stopping.set()

    async def _guarded(self, msg: Msg, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(msg)
        except Exception:  # never let one message kill the loop; it will be redelivered
            log.exception("consumer.unhandled", consumer=self.spec.durable, subject=msg.subject)
        finally:
            slots.release()

    async def handle(self, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered
        try:
            env = self._decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            peek = self._peek(msg)
            # Fail the job of the tenant whose subject it came on, never the one the message claims.
            claimed = msgspec.structs.replace(peek, tenant=tenant_token(msg.subject)) if peek else None
            await self._give_up(msg, claimed, "invalid_message", f"cannot decode {msg.subject}: {exc}")
            return
        if env.tenant != (owner := tenant_token(msg.subject)):
            # The subject's tenant is what the publisher's credential allows; the envelope is a claim.
            reason = f"envelope claims tenant {env.tenant!r} but arrived on {msg.subject}, which is tenant {owner!r}'s"
            await self._give_up(msg, msgspec.structs.replace(env, tenant=owner), "tenant_mismatch", reason)
            return
        if major(env.version) != SUPPORTED_MAJOR:
            reason = f"contract version {env.version} is not supported on {msg.subject} (speaks {SUPPORTED_MAJOR}.x)"
            await self._give_up(msg, env, "unsupported_version", reason)
            return
        with (
            structlog.contextvars.bound_contextvars(job_id=env.job_id, trace_id=env.trace_id, subject=msg.subject),
            tracing.tracer.start_as_current_span(
                f"{self.spec.durable} {env.type}",
                context=tracing.parent_context(env.traceparent, env.trace_id, env.job_id),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": msg.subject,
                    "messaging.consumer.group.name": self.spec.durable,
                    "messaging.message.id": env.id,
                    "messaging.delivery_count": deliveries,
                    "maskline.job_id": env.job_id,
                    "maskline.tenant": env.tenant,
                },
            ),
        ):
            if expired(env):
                await self._give_up(msg, env, DeadlineExceeded.code, f"the job's deadline {env.deadline} passed")
                return
            if self.skip is not None and self.skip(env.tenant, env.job_id):
                await msg.ack()
                self.stats.skipped += 1
                log.info("message.skipped", reason="cancelled")
                return
            if self.gate is not None and not await self._through_gate(msg, env, deliveries):
                return
            if deliveries > self.max_deliver:
                await self._give_up(msg, env, "max_deliveries", f"gave up after {deliveries - 1} deliveries")
                return
            await self._process(msg, env, deliveries)

    async def _through_gate(self, msg: Msg, env: Envelope[T], deliveries: int) -> bool:
        """Whether a command goes on to its handler; if not, it has been answered here."""
        assert self.gate is not None
        try:
            verdict = await self.gate.verdict(env, deliveries)
        except JobTaken as exc:  # dead-lettered, but the job it names is not failed: it is someone else's
            await self._give_up(msg, env, exc.code, exc.reason, fail_job=False)
            return False
        except Refused as exc:  # nothing to re-drive: the job fails with the reason, publish again later
            await self._give_up(msg, env, exc.code, exc.reason, dead_letter=False)
            return False
        except BUS_UNAVAILABLE as exc:
            log.warning("message.gate_unavailable", error=repr(exc))
            await msg.nak(delay=HOLD_S[0])
            return False
        if verdict == "skip":
            await msg.ack()
            self.stats.skipped += 1
            log.info("message.skipped", reason="job_finished")
            return False
        return True

    async def _process(self, msg: Msg, env: Envelope[T], deliveries: int) -> None:
        started = time.perf_counter()
        delivery.set(deliveries)
        keepalive = asyncio.create_task(self._keep_in_progress(msg))
        try:
            await self._run_handler(env)
            await msg.ack()
            self.stats.processed += 1
        except PermanentError as exc:
            await self._give_up(msg, env, exc.code, exc.reason, model=exc.model)
        except DependencyUnavailable as exc:
            await self._hold(msg, env, exc, deliveries)
        except Exception as exc:  # RetryableError and anything unexpected: retry with back-off
            code = exc.code if isinstance(exc, HandlerError) else type(exc).__name__
            reason = exc.reason if isinstance(exc, HandlerError) else str(exc) or type(exc).__name__
            self._note_error(reason, env.tenant)
            if deliveries >= self.max_deliver:
                model = exc.model if isinstance(exc, HandlerError) else None
                await self._give_up(msg, env, code, f"{reason} (after {deliveries} deliveries)", model=model)
                return
            delay = BACKOFF_S[min(deliveries - 1, len(BACKOFF_S) - 1)]
            self.stats.retried += 1
            log.warning("message.retry", code=code, reason=reason, deliveries=deliveries, delay_s=delay)
            await msg.nak(delay=delay)
        finally:
            keepalive.cancel()
            self.stats.busy_s += time.perf_counter() - started

    async def _run_handler(self, env: Envelope[T]) -> None:
        # Every object the message names, checked by its contract rule before the handler sees it.
        verified = await references.check_message(self.store, self.spec.payload, env.data, env.tenant)
        with references.checked(verified):
            outputs = await self.spec.handler(env)
        try:  # together: one write to the socket, the acknowledgements awaited at once
            await asyncio.gather(*(self.bus.publish(out) for out in outputs))
        except BUS_UNAVAILABLE as exc:
            raise DependencyUnavailable(f"publishing failed: {exc!r}", dependency="bus") from exc

    async def _hold(self, msg: Msg, env: Envelope[T], error: DependencyUnavailable, deliveries: int) -> None:
        """A dependency is down: pause the consumer and keep this message (in-progress signals keep it
        ours) until the handler succeeds, fails for good, or the job's deadline passes."""
        self.stats.held += 1
        attempt = 0
        while not self._stopping.is_set():
            self._pause(error, env.tenant)
            self._resumed.clear()
            with contextlib.suppress(TimeoutError):  # another message getting through wakes us early
                await asyncio.wait_for(self._resumed.wait(), self.hold_s[min(attempt, len(self.hold_s) - 1)])
            attempt += 1
            if expired(env):
                await self._give_up(msg, env, DeadlineExceeded.code, f"the job's deadline {env.deadline} passed")
                return
            try:
                await self._run_handler(env)
            except DependencyUnavailable as again:
                error = again
                continue
            except PermanentError as exc:
                await self._give_up(msg, env, exc.code, exc.reason, model=exc.model)
                return
            except Exception as exc:  # a fault of its own: the normal, counted retry
                code = exc.code if isinstance(exc, HandlerError) else type(exc).__name__
                log.warning("message.retry", code=code, reason=str(exc), deliveries=deliveries)
                await msg.nak(delay=BACKOFF_S[min(deliveries - 1, len(BACKOFF_S) - 1)])
                return
            await msg.ack()
            self.stats.processed += 1
            self._resume()
            return
        await msg.nak()  # shutting down: another instance takes it at once (a redelivery, not a failure)

    def _pause(self, error: DependencyUnavailable, tenant: str) -> None:
        if self.stats.paused != error.dependency:
            log.warning("consumer.paused", consumer=self.spec.durable, dependency=error.dependency, reason=error.reason)
        self.stats.paused = error.dependency
        self._note_error(error.reason, tenant)

    def _note_error(self, reason: str, tenant: str) -> None:
        self.stats.last_error, self.stats.last_error_tenant = reason, tenant

    def _resume(self) -> None:
        if self.stats.paused:
            log.info("consumer.resumed", consumer=self.spec.durable, dependency=self.stats.paused)
        self.stats.paused = ""
        self._resumed.set()

    async def reprocess(self, letter: DeadLetter) -> None:
        """Run the handler once more on a dead letter of this consumer (its cause fixed) and publish
        what it returns. Raises what the handler raises; the caller keeps the letter then."""
        env = self._decoder.decode(letter.data)
        if major(env.version) != SUPPORTED_MAJOR or env.tenant != tenant_token(letter.subject):
            raise PermanentError(f"dead letter on {letter.subject} can never be processed", code="invalid_message")
        with structlog.contextvars.bound_contextvars(job_id=env.job_id, trace_id=env.trace_id, subject=letter.subject):
            await self._run_handler(env)
        self.stats.processed += 1

    async def _keep_in_progress(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.ack_wait_s / 3)
                await msg.in_progress()

    def _peek(self, msg: Msg) -> Envelope[msgspec.Raw] | None:
        try:
            return self._header_decoder.decode(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return None

    async def _give_up(
        self,
        msg: Msg,
        env: Envelope[Any] | None,
        code: str,
        reason: str,
        *,
        dead_letter: bool = True,
        fail_job: bool = True,
        model: ModelRef | None = None,
    ) -> None:
        """Dead-letter the message, fail its job if known, and terminate it so the queue moves on."""
        reason = public_reason(reason)
        self.stats.failed += 1
        self._note_error(reason, env.tenant if env is not None else tenant_token(msg.subject))
        job_id = env.job_id if env else None
        if dead_letter:
            self.stats.dead_lettered += 1
            log.error("message.dead_lettered", code=code, reason=reason, subject=msg.subject, job_id=job_id)
            await self._dead_letter(msg, code, reason)
        else:
            log.warning("message.refused", code=code, reason=reason, subject=msg.subject, job_id=job_id)
        if fail_job and env is not None and self.spec.failure_subject:
            reason_data = JobFailed(stage=self.spec.durable, code=code, reason=reason, subject=msg.subject, model=model)
            failed = next_event(env, self.spec.failure_subject, self.source, reason_data)
            await self.bus.publish(failed)
        await msg.term()

    async def _dead_letter(self, msg: Msg, code: str, reason: str) -> None:
        meta = msg.metadata
        letter = DeadLetter(
            consumer=self.spec.durable,
            stream=meta.stream,
            stream_seq=meta.sequence.stream,
            subject=msg.subject,
            deliveries=meta.num_delivered,
            code=code,
            reason=reason,
            data=msg.data,
            headers=dict(msg.headers or {}),
        )
        letter_id = f"dlq:{self.spec.durable}:{meta.stream}:{meta.sequence.stream}"
        await self.bus.js.publish(f"dlq.{self.spec.durable}", msgspec.json.encode(letter), headers={MSG_ID: letter_id})
