"""One retry policy for every client of the HTTP API (typed, async, JSON, the CLI), as httpx transports.

- Every POST carries an `Idempotency-Key` (a new one per call unless the caller gave one): the
  gateway keeps the first answer and sends it again to a retry, so a call retried after a proxy's
  502 — sent after the gateway had already started the job — never starts a second one.
- Only what is safe is retried: GET, HEAD, PUT, DELETE, and requests with an Idempotency-Key.
- Retried: a broken connection, 502/503/504 from a proxy or a gateway without its bus, 429, and
  409 `idempotency_key_in_progress` (the first attempt still runs). An answer's `Retry-After`
  sets the wait; otherwise exponential backoff with jitter.
- The waiting is stamina's (a well-kept wrapper of tenacity: jitter, caps on attempts and time,
  `stamina.set_testing` for tests), not a loop of our own. stamina reports each retry to its hooks:
  by default structlog or logging (and a Prometheus counter when prometheus_client is installed);
  a program chooses otherwise with `stamina.instrumentation.set_on_retry_hooks` (the CLI: stderr).
- A body is sent again only when it can be: bytes, a multipart form, or an iterable that starts
  afresh on every iteration (`FileChunks`); a generator or an open file is sent once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import stamina

RETRY_STATUS = frozenset({429, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IN_PROGRESS = "idempotency_key_in_progress"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    """Tries in all, the first included: enough to outwait a claim left by a gateway that died
    (its lease, 20 s, at the Retry-After of about 7 s that an in-progress key answers)."""
    wait_initial_s: float = 0.5
    wait_max_s: float = 30.0
    """The longest wait between tries, a `Retry-After` included."""
    wait_jitter_s: float = 1.0
    """Up to this much is added at random to each backoff, so that clients refused together do not return together."""
    timeout_s: float = 300.0
    """All tries of one call together."""


class RetryableAnswer(Exception):
    """An answer that asks to be tried again; carries how long to wait, if it said."""

    def __init__(self, response: httpx.Response, wait_s: float | None) -> None:
        super().__init__(f"the gateway answered {response.status_code}")
        self.response = response
        self.wait_s = wait_s


def with_idempotency_key(request: httpx.Request) -> None:
    """A POST gets a key before its first try, so every retry carries the same one."""
    if request.method == "POST" and "idempotency-key" not in request.headers:
        request.headers["Idempotency-Key"] = uuid.uuid4().hex


def safe_to_repeat(request: httpx.Request) -> bool:
    return (request.method in SAFE_METHODS or "idempotency-key" in request.headers) and body_replays(request)


def body_replays(request: httpx.Request) -> bool:
    """Whether the request's body can be sent again as it was (a consumed generator cannot)."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream) or type(stream).__name__ == "MultipartStream":
        return True  # bytes; a multipart form (httpx seeks its files back to the start)
    source = getattr(stream, "_stream", None)  # httpx's (Async)IteratorByteStream over what the caller gave
    if source is None:
        return False
    try:
        return iter(source) is not source  # an iterable that starts afresh (FileChunks), not an iterator
    except TypeError:
        return aiter(source) is not source


def retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP dates are in UTC
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def asks_for_retry(response: httpx.Response) -> bool:
    """Whether an answer asks to be tried again; a 409's body must have been read (it is short)."""
    if response.status_code in RETRY_STATUS:
        return True
    # A 409 is retried only when it says the same key's first request still runs.
    if response.status_code != 409:
        return False
    try:
        problem = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(problem, dict) and problem.get("code") == IN_PROGRESS


def backoff(policy: RetryPolicy) -> Callable[[Exception], bool | float]:
    """stamina's backoff hook: whether to retry, or how long to wait (an answer's Retry-After)."""

    def hook(exc: Exception) -> bool | float:
        if isinstance(exc, RetryableAnswer):
            return True if exc.wait_s is None else min(exc.wait_s, policy.wait_max_s)
        return isinstance(exc, httpx.TransportError)

    return hook


def _retrying(policy: RetryPolicy) -> Any:
    """stamina's loop of attempts (a private type), usable with `for` and `async for`."""
    return stamina.retry_context(
        on=backoff(policy),
        attempts=policy.attempts,
        timeout=policy.timeout_s,
        wait_initial=policy.wait_initial_s,
        wait_max=policy.wait_max_s,
        wait_jitter=policy.wait_jitter_s,
    )


class RetryingTransport(httpx.BaseTransport):
    """Wraps a transport (httpx.HTTPTransport by default) with the policy above."""

    def __init__(self, policy: RetryPolicy | None = None, inner: httpx.BaseTransport | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with_idempotency_key(request)
        if not safe_to_repeat(request):
            return self.inner.handle_request(request)
        try:
            for attempt in _retrying(self.policy):
                with attempt:
                    response = self.inner.handle_request(request)
                    if response.status_code == 409:
                        response.read()
                    if asks_for_retry(response) and attempt.num < self.policy.attempts:
                        response.read()
                        response.close()
                        raise RetryableAnswer(response, retry_after_s(response))
                    return response
        except RetryableAnswer as exc:  # out of time: the last refusal is the answer
            return exc.response
        raise AssertionError("unreachable: stamina raises or the block returns")

    def close(self) -> None:
        self.inner.close()


class AsyncRetryingTransport(httpx.AsyncBaseTransport):
    """The asyncio twin of `RetryingTransport`."""

    def __init__(self, policy: RetryPolicy | None = None, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with_idempotency_key(request)
        if not safe_to_repeat(request):
            return await self.inner.handle_async_request(request)
        try:
            async for attempt in _retrying(self.policy):
                with attempt:
                    response = await self.inner.handle_async_request(request)
                    if response.status_code == 409:
                        await response.aread()
                    if asks_for_retry(response) and attempt.num < self.policy.attempts:
                        await response.aread()
                        await response.aclose()
                        raise RetryableAnswer(response, retry_after_s(response))
                    return response
        except RetryableAnswer as exc:
            return exc.response
        raise AssertionError("unreachable: stamina raises or the block returns")

    async def aclose(self) -> None:
        await self.inner.aclose()
