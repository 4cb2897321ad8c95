"""Idempotency-Key, as the IETF draft (draft-ietf-httpapi-idempotency-key-header) specifies it.

A key is claimed in the `idempotency` bucket with compare-and-set before anything is stored or
published, together with a fingerprint of the request. Then:

- the same key with the same request: the same job, nothing uploaded or published again;
- the same key with a different request: refused (422);
- the same key while the first request is still being processed: refused (409), never a mixed
  upload — the claim is exclusive;
- a claim left `pending` by a crashed gateway is taken over after `LEASE_S`; a live request keeps
  its claim fresh (`refresh`), however long it waits for its job.

The segmentation route keeps the job in its claim and answers a retry with the job as it is now;
every other job-starting request goes through the gateway's idempotency layer, which keeps the
first answer (`Answer`) and sends it again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from maskline.shared.kv import BucketStore

BUCKET = "idempotency"
MAX_KEY_LENGTH = 255
#: A pending claim older than this belongs to a request that died (or lost the bus before it could
#: give the key back); a retry may take it over, republishing with the same message id.
LEASE_S = 20.0


#: The largest answer kept for a replay: job views and model versions are a few kB.
MAX_ANSWER_BYTES = 256 * 1024


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP answer as it was sent, to send again to a retry with the same key."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Claim(msgspec.Struct, kw_only=True):
    fingerprint: str
    job_id: str
    state: Literal["pending", "done"]
    since: float
    answer: Answer | None = None


class KeyReused(ValueError):
    """The key was used before for a different request (HTTP 422)."""


class KeyInProgress(RuntimeError):
    """A request with this key is still being processed (HTTP 409); come back after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ClaimLost(RuntimeError):
    """The claim changed under its owner (taken over after its lease ran out): it is no longer ours."""


@dataclass(frozen=True)
class Outcome:
    job_id: str
    fresh: bool
    """True: this request owns the key and must do the work; False: replay the earlier job."""
    answer: Answer | None = None
    """The first request's answer, where it was kept (`complete(answer=...)`)."""
    revision: int = 0
    """The claim's revision when this request took it: every later write checks it is still ours."""


def fingerprint(*parts: bytes) -> str:
    return fingerprint_of(*(hashlib.sha256(part).digest() for part in parts))


def fingerprint_of(*digests: bytes) -> str:
    """`fingerprint` of parts whose sha256 digests the caller has already (an upload's: hashed once)."""
    digest = hashlib.sha256()
    for part in digests:
        digest.update(part)
    return digest.hexdigest()


_decoder = msgspec.json.Decoder(Claim)


class IdempotencyKeys(BucketStore):
    BUCKET = BUCKET

    def __init__(self, js: JetStreamContext) -> None:
        super().__init__(js)

    @staticmethod
    def _key(tenant: str, key: str) -> str:
        return f"{tenant}.{hashlib.sha256(key.encode()).hexdigest()[:40]}"

    async def claim(self, tenant: str, key: str, print_: str, job_id: str) -> Outcome:
        kv_key = self._key(tenant, key)
        mine = msgspec.json.encode(Claim(fingerprint=print_, job_id=job_id, state="pending", since=time.time()))
        for _ in range(10):
            try:
                return Outcome(job_id=job_id, fresh=True, revision=await self.kv.create(kv_key, mine))
            except (KeyWrongLastSequenceError, KeyNotFoundError):  # taken; or its read-back lost a failover race
                pass
            try:
                entry = await self.kv.get(kv_key)
            except (KeyNotFoundError, NotFoundError):
                continue  # expired or released in between: try to create again
            held = _decoder.decode(entry.value)
            if held.fingerprint != print_:
                raise KeyReused("this Idempotency-Key was already used for a different request")
            if held.state == "done":
                return Outcome(job_id=held.job_id, fresh=False, answer=held.answer)
            left_s = LEASE_S - (time.time() - held.since)
            if left_s > 0:
                raise KeyInProgress(
                    "a request with this Idempotency-Key is still being processed; retry later",
                    retry_after_s=min(left_s, LEASE_S / 3),  # it is renewed every LEASE_S / 3 while it runs
                )
            try:  # the first request died mid-way (or gave the key back): take its claim over, with its job id
                taken = msgspec.json.encode(Claim(fingerprint=print_, job_id=held.job_id, state="pending", since=time.time()))
                revision = await self.kv.update(kv_key, taken, last=entry.revision)
                return Outcome(job_id=held.job_id, fresh=True, revision=revision)
            except KeyWrongLastSequenceError:
                continue
        raise KeyInProgress("this Idempotency-Key is contended; retry later")

    async def _write(self, tenant: str, key: str, claim: Claim, revision: int | None) -> int:
        """Write our claim; with `revision`, only while it is still ours (else `ClaimLost`)."""
        kv_key, value = self._key(tenant, key), msgspec.json.encode(claim)
        if revision is None:
            return int(await self.kv.put(kv_key, value))
        try:
            return int(await self.kv.update(kv_key, value, last=revision))
        except KeyWrongLastSequenceError as exc:
            raise ClaimLost(f"the claim of {kv_key} was taken over") from exc

    async def complete(
        self, tenant: str, key: str, print_: str, job_id: str, answer: Answer | None = None, revision: int | None = None
    ) -> None:
        done = Claim(fingerprint=print_, job_id=job_id, state="done", since=time.time(), answer=answer)
        await self._write(tenant, key, done, revision)

    async def refresh(self, tenant: str, key: str, print_: str, job_id: str, revision: int) -> int:
        """Renew a pending claim's lease while its request is alive, however long it waits; the new
        revision, or `ClaimLost` when another request took it over."""
        mine = Claim(fingerprint=print_, job_id=job_id, state="pending", since=time.time())
        return await self._write(tenant, key, mine, revision)

    async def hand_back(self, tenant: str, key: str, print_: str, job_id: str, revision: int) -> None:
        """The request did not finish its work (a 5xx, a refusal to come back later): the next retry
        takes the claim over at once, with its job id, so work already started is not started twice."""
        await self._write(tenant, key, Claim(fingerprint=print_, job_id=job_id, state="pending", since=0.0), revision)

    async def release(self, tenant: str, key: str) -> None:
        """Give the key back when the request failed before anything was published."""
        await self.kv.delete(self._key(tenant, key))
