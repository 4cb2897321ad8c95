"""Federated rounds: collect site updates for the open round, merge at all-reported or at the
deadline with a quorum, register the global model, and open the next round from it.

State lives in the `rounds` key-value bucket (one key per federation, compare-and-set), so a
crash of the merge service resumes where it was: unacknowledged updates are redelivered, and the
deadline watcher re-reads every open federation at start. Duplicate updates (same site, same
round) and late ones (for a closed round) are acknowledged and ignored, never merged twice.

A round is marked closing before its `RoundClosed` goes out, so an update that arrives once a
site could have seen that event is late, never counted. Closing is idempotent (the version is
reserved per round, the event fenced): a closer that died is replaced by the redelivery of the
update that triggered it, or by the deadline watcher once `CLOSING_RETRY_S` passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import msgspec
import structlog
from nats.js import JetStreamContext

from maskline.contracts import model_v1
from maskline.contracts.common_v1 import JobFailed
from maskline.contracts.envelope import Envelope, job_event
from maskline.services.weights.job import merge_weight_objects
from maskline.services.weights.methods import MergeOptions
from maskline.shared import keys
from maskline.shared.bus import Bus
from maskline.shared.errors import PermanentError
from maskline.shared.jobs import followups
from maskline.shared.jobs.fence import Fences, new_attempt
from maskline.shared.kv import BucketStore, compare_and_set, entries
from maskline.shared.models.access import ModelAccess, copyable_by
from maskline.shared.models.registry import ModelNotFound, ModelRegistry
from maskline.shared.models.rounds import BUCKET, federation_key
from maskline.shared.models.store import register_model
from maskline.shared.storage import ObjectNotFound, ObjectStore

#: A round marked closing this long ago whose close never finished is closed again by the watcher.
CLOSING_RETRY_S = 30.0


async def _nothing() -> None:  # a round's version is registered once per round: nothing to remove
    return None


SOURCE = "weights"
log = structlog.get_logger("rounds")


class Federation(msgspec.Struct, kw_only=True):
    tenant: str
    trace_id: str
    current: model_v1.RoundOpened
    updates: dict[str, model_v1.SiteUpdate] = {}
    closed: bool = False
    """The current round is closed (merged or failed)."""
    closing_at: float | None = None
    """When a close of the current round began (the round takes no more updates from then)."""
    ignored: dict[str, int] = {}
    """Counts of updates acknowledged but not merged: duplicate, late, unknown_site."""
    stopped: bool = False
    """Its owner stopped it: no update is taken and no further round opens."""


_decode = msgspec.json.Decoder(Federation)


def claim_round(state: Federation | None, round_: int, at: float) -> Federation | None:
    """The state with round `round_` claimed for closing at `at`, or None when it is not this caller's
    to close: another round, already closed, or claimed less than CLOSING_RETRY_S ago by another
    closer (a replica, or the first try of a redelivered update)."""
    if state is None or state.current.round != round_ or state.closed:
        return None
    if state.closing_at is not None and at - state.closing_at < CLOSING_RETRY_S:
        return None
    return msgspec.structs.replace(state, closing_at=at)


class Rounds(BucketStore):
    BUCKET = BUCKET

    def __init__(
        self, js: JetStreamContext, bus: Bus, store: ObjectStore, registry: ModelRegistry, access: ModelAccess, fences: Fences
    ) -> None:
        super().__init__(js)
        self.js, self.bus, self.store, self.registry, self.access, self.fences = js, bus, store, registry, access, fences

    async def _update(self, federation: str, change: Any) -> Federation | None:
        """Apply `change(state) -> state | None` with compare-and-set; None means no write."""
        return await compare_and_set(self.kv, federation, _decode, change)

    async def on_opened(self, env: Envelope[model_v1.RoundOpened]) -> list[Envelope[Any]]:
        opened = env.data if env.data.opened_at else msgspec.structs.replace(env.data, opened_at=env.time)
        try:  # the federation's starting model must be one its tenant may use
            base = await self.access.ref(env.tenant, opened.model)
        except ModelNotFound as exc:
            raise PermanentError(str(exc), code="model_not_found") from exc
        if not copyable_by(env.tenant, base):  # every site downloads the round's weights
            raise PermanentError(
                f"{base.owner}/{base.name} version {base.version} is shared with {env.tenant}, not theirs to hand to sites",
                code="model_not_copyable",
            )
        if opened.weights is not None and opened.weights.sha256 != base.weights.sha256:
            reason = f"the round's weights are not those of {base.name} version {base.version}"
            raise PermanentError(reason, code="weights_mismatch")

        def change(state: Federation | None) -> Federation | None:
            if state is not None and state.current.round >= opened.round:
                return None  # redelivery, or an older round
            return Federation(tenant=env.tenant, trace_id=env.trace_id, current=opened)

        await self._update(federation_key(env.tenant, env.job_id), change)
        return []

    async def on_update(self, env: Envelope[model_v1.SiteUpdate]) -> list[Envelope[Any]]:
        update = env.data
        verdict: dict[str, str] = {}

        def change(state: Federation | None) -> Federation | None:
            if state is not None and state.current.round == update.round and state.updates.get(update.site) == update:
                verdict["kind"] = "redelivered"  # this very update, again: its handler may have died closing
                return None
            if state is None or state.current.round != update.round or state.closed or state.closing_at is not None:
                kind = "late"
            elif update.site not in state.current.sites:
                kind = "unknown_site"
            elif update.site in state.updates:
                kind = "duplicate"
            else:
                state.updates[update.site] = update
                verdict["kind"] = "accepted"
                return state
            verdict["kind"] = kind
            if state is None:
                return None
            state.ignored[kind] = state.ignored.get(kind, 0) + 1
            return state

        state = await self._update(federation_key(env.tenant, env.job_id), change)
        log.info("round.update", federation=env.job_id, site=update.site, round=update.round, verdict=verdict["kind"])
        complete = state is not None and state.current.round == update.round and len(state.updates) == len(state.current.sites)
        if state is not None and complete and verdict["kind"] in ("accepted", "redelivered"):
            await self.close(env.job_id, state)
        return []

    async def on_stop(self, env: Envelope[model_v1.FederationStopRequested]) -> list[Envelope[Any]]:
        """Stop the federation: the open round takes nothing more, and no round opens after it."""
        key = federation_key(env.tenant, env.job_id)

        def change(state: Federation | None) -> Federation | None:
            if state is None:
                raise PermanentError(f"no federation {env.job_id} of {env.tenant}", code="federation_not_found")
            return None if state.stopped else msgspec.structs.replace(state, stopped=True, closed=True)

        state = await self._update(key, change)
        assert state is not None
        reason = f"stopped by {env.data.by} in round {state.current.round}" + (f": {env.data.reason}" if env.data.reason else "")
        failed = JobFailed(stage=SOURCE, code="stopped", reason=reason, subject=model_v1.FEDERATION_STOP_REQUESTED)
        return [self._event(env.job_id, state, model_v1.FAILED, failed, state.current.round)]

    async def close(self, federation: str, state: Federation) -> None:
        """Merge the received updates into the next global version (idempotent per round)."""
        opened = state.current
        key = federation_key(state.tenant, federation)
        claimed_at = time.time()
        # Claim the round before merging, with compare-and-set: one closer merges it, and from here on
        # no update gets in, so the merge takes exactly what the round holds now.
        marked = await self._update(key, lambda s: claim_round(s, opened.round, claimed_at))
        if marked is None or marked.closing_at != claimed_at:
            log.info("round.close_held_elsewhere", federation=federation, round=opened.round)
            return
        state = marked
        sites = sorted(state.updates)
        marker = keys.round_marker(state.tenant, opened.name, federation, opened.round)
        try:
            model = msgspec.json.decode(await self.store.get(marker), type=model_v1.ModelVersion)
        except ObjectNotFound:
            base = await self.access.ref(state.tenant, opened.model)
            updates = [state.updates[s] for s in sites]
            weight_keys = [u.weights.key for u in updates]
            if len(weight_keys) == 1:
                weight_keys = weight_keys * 2  # one site at quorum: its weights are the merge
            options = MergeOptions(weights=tuple(float(u.samples) for u in updates) * (2 if len(updates) == 1 else 1))
            weights, _ = await merge_weight_objects(
                self.store,
                weight_keys,
                [f"{federation}/{s}" for s in sites] * (2 if len(sites) == 1 else 1),
                opened.method,
                options,
                input_size=base.input_size,
                format=base.format,  # sites send updates in their base model's format
            )
            model = await register_model(
                self.store,
                self.registry,
                self.bus,
                name=opened.name,
                weights=weights,
                labels=base.labels,
                input_size=base.input_size,
                source=SOURCE,
                tenant=state.tenant,
                precision=base.precision,
                parent=",".join(f"{federation}/{opened.round}/{s}" for s in sites),
                description=f"federation {federation} round {opened.round}: {opened.method} of {', '.join(sites)}",
                metrics={f"{s}.{k}": v for s, u in state.updates.items() for k, v in u.metrics.items()},
                parents=[base],
                job_id=federation,
                reservation=f"{federation}-round-{opened.round}",  # one version per round, whichever replica closes it
                trace_id=state.trace_id,
                output=base.output,
                preprocessing=base.preprocessing,
                format=base.format,
            )
            await self.store.put(marker, msgspec.json.encode(model), "application/json")
        ref = model_v1.VersionRef(model.name, model.version, model.owner)
        final = opened.round >= opened.rounds
        closed = model_v1.RoundClosed(
            round=opened.round,
            model=ref,
            sites=tuple(sites),
            missing=tuple(s for s in opened.sites if s not in state.updates),
            final=final,
        )
        closing = self._event(federation, state, model_v1.ROUND_CLOSED, closed, opened.round)
        await self.fences.finish(f"round.{state.tenant}.{federation}.{opened.round}", new_attempt(), closing, _nothing)
        for command in followups.evaluation(closing, SOURCE, model, opened.evaluate_on, what=f"r{opened.round}-eval"):
            await self.bus.publish(command)  # per-round numbers on the federation's held-out set
        after = await self._update(
            key,
            lambda s: msgspec.structs.replace(s, closed=True) if s and s.current.round == opened.round else None,
        )
        if not final and not (after is not None and after.stopped):
            nxt = msgspec.structs.replace(opened, round=opened.round + 1, model=ref, opened_at=None, weights=model.weights)
            await self._publish(federation, state, model_v1.ROUND_OPENED, nxt, opened.round + 1)

    @staticmethod
    def _event(federation: str, state: Federation, type_: str, data: Any, round_: int) -> Envelope[Any]:
        return job_event(type_, SOURCE, data, tenant=state.tenant, job_id=federation, trace_id=state.trace_id, parts=(round_,))

    async def _publish(self, federation: str, state: Federation, type_: str, data: Any, round_: int) -> None:
        await self.bus.publish(self._event(federation, state, type_, data, round_))

    async def watch_deadlines(self, stopping: asyncio.Event, every_s: float = 0.5) -> None:
        """Close rounds whose deadline passed: merge with a quorum, otherwise fail the federation."""
        while not stopping.is_set():
            try:
                found = list(await entries(self.js, BUCKET))
            except Exception as exc:
                log.warning("rounds.scan_failed", error=str(exc))
                found = []
            for key in found:
                try:
                    await self._check_deadline(key)
                except Exception as exc:
                    log.error("rounds.deadline_failed", federation=key, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every_s)

    async def _check_deadline(self, key: str) -> None:
        entry = await self.kv.get(key)
        state = _decode.decode(entry.value)
        federation = key.split(".", 1)[1]
        opened = state.current
        if state.closed or opened.opened_at is None:
            return
        if state.closing_at is not None:
            if time.time() - state.closing_at > CLOSING_RETRY_S:
                await self.close(federation, state)  # its closer died: the close is idempotent
            return
        if time.time() < opened.opened_at.timestamp() + opened.deadline_s:
            return
        if len(state.updates) >= opened.quorum:
            await self.close(federation, state)
            return
        reported = f"{len(state.updates)} of {len(opened.sites)} sites reported"
        reason = f"round {opened.round}: {reported} by the deadline; quorum is {opened.quorum}"
        failed = JobFailed(stage=SOURCE, code="quorum_not_reached", reason=reason, subject=model_v1.ROUND_OPENED)
        await self._publish(federation, state, model_v1.FAILED, failed, opened.round)
        await self._update(
            key, lambda s: msgspec.structs.replace(s, closed=True) if s and s.current.round == opened.round else None
        )
