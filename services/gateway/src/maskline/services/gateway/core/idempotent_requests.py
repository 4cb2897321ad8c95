"""Idempotency-Key for every POST, in one layer that a new endpoint cannot skip.

A POST that carries `Idempotency-Key` is claimed (per tenant and key, with a fingerprint of the
method, path, query, content type and body) before its handler runs. Its answer is kept with the
claim and sent again, marked `Idempotent-Replayed: true`, to any later request with the same key
and the same request. So a client that retries after a proxy answered 502 *after* forwarding — or
after its own connection broke — never starts a second merge, quantization, evaluation, replay...

- the same key, a different request: 422 `idempotency_key_reused`;
- the same key while the first request still runs: 409 `idempotency_key_in_progress` with
  Retry-After (the first request keeps its claim fresh while it waits, so it is never taken over;
  every write of the claim checks its revision, so a request that lost it cannot undo another's);
- a 2xx answer is kept; a 4xx gives the key back (nothing started; the same request would be
  refused again); a 5xx or a refusal to come back later (408, 409, 425, 429) hands the claim back
  *with its job id*: the retry takes it over at once and restarts the same job, never a second one.
- a body over the route's limit is refused (413) while it is read, before anything is claimed.

A handler that reads the job id for its work from `fresh_job_id` (app.py) gets the one kept in the
claim: a request retried after the gateway died mid-way restarts the same job, and the bus drops
the duplicate by its message id.

Handlers that do their own key handling say so with `opt={IDEMPOTENCY: OWN}` (the segmentation
submit: its retry is answered with the job as it is now), POSTs that change nothing with
`opt={IDEMPOTENCY: NOT_NEEDED}`, and the Open Inference Protocol's `infer` with `UNKEYED` (its
clients send no key, and its answer is the mask itself, too large to keep);
tests/services/gateway/test_idempotent_requests.py lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from litestar.types.asgi_types import HTTPRequestEvent

from maskline.contracts.envelope import new_job_id
from maskline.services.gateway.core.errors import (
    BadRequest,
    Conflict,
    GatewayError,
    PayloadTooLarge,
    Unavailable,
    Unprocessable,
)
from maskline.services.gateway.core.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE
from maskline.shared.jobs.idempotency import (
    LEASE_S,
    MAX_ANSWER_BYTES,
    MAX_KEY_LENGTH,
    Answer,
    ClaimLost,
    IdempotencyKeys,
    KeyInProgress,
    KeyReused,
    fingerprint,
)

#: Route option: how a POST handler stands to Idempotency-Key (absent: this layer handles it).
IDEMPOTENCY = "idempotency"
OWN = "own"
NOT_NEEDED = "not-needed"
UNKEYED = "unkeyed-protocol"
#: Scope key of the job id kept in the claim (read by the `fresh_job_id` dependency).
JOB_ID_SCOPE_KEY = "maskline.job_id"
REPLAYED_HEADER = "idempotent-replayed"
#: Answers that did nothing and ask the caller to come back: a retry with the key must do the work.
NOT_KEPT = frozenset({408, 409, 425, 429})
#: What this layer answers itself (the OpenAPI document of every POST through it: openapi.py); its
#: claims are kept on the bus.
REFUSALS = (
    BadRequest.coded("invalid_idempotency_key")
    + Conflict.coded("idempotency_key_in_progress", retry_after=True)
    + Conflict.coded("idempotency_answer_not_kept")
    + Unprocessable.coded("idempotency_key_reused")
    + PayloadTooLarge.coded("too_large")
    + Unavailable.coded("bus_unavailable")
)


def layered(handler: BaseRouteHandler | None, method: str) -> bool:
    """Whether this layer answers for requests of `method` to `handler` (a POST that does not opt out)."""
    opted_out = handler is not None and handler.opt.get(IDEMPOTENCY) in (OWN, NOT_NEEDED, UNKEYED)
    return method.upper() == "POST" and not opted_out


def job_id_for(scope: Mapping[str, Any]) -> str:
    """The job id a request starts: the one its idempotency claim keeps, else a new one."""
    return str(scope.get(JOB_ID_SCOPE_KEY) or new_job_id())


def checked_key(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= MAX_KEY_LENGTH:
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key")
    return value


def idempotent_posts(
    claimant_of: Callable[[Scope], Awaitable[str | None]], keys: Callable[[], IdempotencyKeys]
) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware (app.py): `claimant_of` tells whose keys a request's is among (the tenant's,
    or one person's: auth.Identities.claimant_of); `keys` is read at each request."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or not layered(scope.get("route_handler"), scope["method"]):
                await app(scope, receive, send)
                return
            headers = Headers.from_scope(scope)
            key = headers.get("idempotency-key")
            tenant = await claimant_of(scope) if key is not None else None
            if key is None or tenant is None:  # no key: nothing to keep; no tenant: the handler answers 401
                await app(scope, receive, send)
                return
            try:
                await _answer_once(app, scope, receive, send, keys(), tenant, checked_key(key), headers)
            except GatewayError as refused:  # answered here, so the outer layers (metrics, headers) see it
                await _send_problem(send, refused)

        return middleware

    return wrap


async def _answer_once(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    keys: IdempotencyKeys,
    tenant: str,
    key: str | None,
    headers: Headers,
) -> None:
    assert key is not None
    handler = scope.get("route_handler")
    limit = handler.resolve_request_max_body_size() if isinstance(handler, HTTPRouteHandler) else None
    read = await _buffered(receive, headers, limit)
    if read is None:
        return  # the client went away before its request was whole: nothing to claim or do
    body, replay_body = read
    query = scope.get("query_string", b"")
    print_ = fingerprint(b"POST", scope["path"].encode(), query, headers.get("content-type", "").encode(), body)
    try:
        outcome = await keys.claim(tenant, key, print_, new_job_id())
    except KeyReused as exc:
        raise Unprocessable(str(exc), code="idempotency_key_reused") from exc
    except KeyInProgress as exc:
        raise Conflict(str(exc), code="idempotency_key_in_progress", retry_after_s=exc.retry_after_s) from exc
    if not outcome.fresh:
        if outcome.answer is None:
            raise Conflict(
                "this Idempotency-Key's request was done, but its answer was too large to keep: look the job up instead",
                code="idempotency_answer_not_kept",
            )
        await _send_again(send, outcome.answer)
        return
    cast(dict[str, Any], scope)[JOB_ID_SCOPE_KEY] = outcome.job_id
    answer = _Recorder(send)
    claim = _Claim(keys, tenant, key, print_, outcome.job_id, outcome.revision)
    keep_fresh = asyncio.create_task(claim.keep_fresh())
    try:
        await app(scope, replay_body, answer.send)
    finally:
        keep_fresh.cancel()
        await asyncio.wait([keep_fresh])  # never swallows a cancellation of this request itself
        await claim.settle(answer)


class _Claim:
    """This request's claim of its key: renewed while it runs, settled by its answer."""

    def __init__(self, keys: IdempotencyKeys, tenant: str, key: str, print_: str, job_id: str, revision: int) -> None:
        self.keys, self.tenant, self.key, self.print_, self.job_id, self.revision = keys, tenant, key, print_, job_id, revision
        self.lost = False

    async def keep_fresh(self) -> None:
        while not self.lost:
            await asyncio.sleep(LEASE_S / 3)
            try:
                self.revision = await self.keys.refresh(self.tenant, self.key, self.print_, self.job_id, self.revision)
            except ClaimLost:
                self.lost = True  # another request took it over: what it writes stands
            except Exception:
                pass

    async def settle(self, answer: _Recorder) -> None:
        if self.lost:
            return
        with contextlib.suppress(Exception):  # the bus may be what failed: then the lease runs out instead
            if answer.complete and 200 <= answer.status < 300:
                await self.keys.complete(self.tenant, self.key, self.print_, self.job_id, answer.answer(), self.revision)
            elif answer.complete and 400 <= answer.status < 500 and answer.status not in NOT_KEPT:
                await self.keys.release(self.tenant, self.key)  # refused before any work: the same request is refused again
            else:
                await self.keys.hand_back(self.tenant, self.key, self.print_, self.job_id, self.revision)


async def _buffered(receive: Receive, headers: Headers, limit: int | None) -> tuple[bytes, Receive] | None:
    """The whole body (the fingerprint needs it) and a `receive` that hands it on as it came; None
    when the client went away. Over `limit` (the route's), refused as it is read."""
    declared = headers.get("content-length", "")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", code="too_large")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes", code="too_large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    del chunks
    given = False

    async def replay() -> ReceiveMessage:
        nonlocal given
        if not given:
            given = True
            return HTTPRequestEvent(type="http.request", body=body, more_body=False)
        return await receive()

    return body, replay


async def _send_problem(send: Send, refused: GatewayError) -> None:
    """A refusal of this layer as problem+json (problems.py renders the handlers' own)."""
    problem = {
        "type": PROBLEM_TYPE + refused.code,
        "title": refused.title,
        "status": refused.status,
        "detail": refused.detail,
        "code": refused.code,
    }
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode())]
    if refused.retry_after_s is not None:
        headers.append((b"retry-after", str(max(1, math.ceil(refused.retry_after_s))).encode()))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(problem).encode(), "more_body": False})


async def _send_again(send: Send, answer: Answer) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    headers.append((REPLAYED_HEADER.encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


class _Recorder:
    """Passes the answer on while keeping a copy, up to `MAX_ANSWER_BYTES`."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.complete = False
        self.too_large = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in message.get("headers", [])]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.too_large = self.too_large or len(self.body) > MAX_ANSWER_BYTES
            if self.too_large:
                self.body.clear()
            self.complete = not message.get("more_body", False)
        await self._send(message)

    def answer(self) -> Answer | None:
        """The answer to keep (None when too large: a replay then says so)."""
        return None if self.too_large else Answer(status=self.status, headers=self.headers, body=bytes(self.body))
