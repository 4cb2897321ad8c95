"""The one retry policy of every client (maskline.client.retries), over httpx's in-process transport:
what is retried, with which key, after how long. tests/e2e/test_idempotency.py runs it through a
proxy that loses answers, against a real stack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import stamina

from maskline.client.retries import (
    AsyncRetryingTransport,
    RetryableAnswer,
    RetryingTransport,
    RetryPolicy,
    backoff,
    retry_after_s,
)

pytestmark = pytest.mark.unit
POLICY = RetryPolicy(attempts=3, wait_initial_s=0.0, wait_max_s=5.0)


@pytest.fixture(autouse=True)
def no_waiting() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def recording(answers: list[httpx.Response | Exception]) -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return seen, httpx.MockTransport(handler)


def test_a_post_gets_one_key_that_every_retry_carries() -> None:
    seen, inner = recording([httpx.Response(502), httpx.ConnectError("reset"), httpx.Response(202, json={})])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        assert http.post("http://gw/v1/merges", json={}).status_code == 202
    keys = {request.headers["idempotency-key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1 and len(keys.pop()) == 32


def test_the_callers_own_key_is_kept() -> None:
    seen, inner = recording([httpx.Response(503), httpx.Response(200, json={})])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        http.post("http://gw/v1/models/m/1/replay", headers={"Idempotency-Key": "mine"})
    assert [request.headers["idempotency-key"] for request in seen] == ["mine", "mine"]


def test_a_patch_without_a_key_is_never_repeated() -> None:
    seen, inner = recording([httpx.ConnectError("reset")])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http, pytest.raises(httpx.ConnectError):
        http.patch("http://gw/v1/thing", json={})
    assert len(seen) == 1 and "idempotency-key" not in seen[0].headers


def test_a_key_in_progress_is_waited_for_but_other_conflicts_are_answers() -> None:
    in_progress = httpx.Response(409, headers={"Retry-After": "1"}, json={"code": "idempotency_key_in_progress"})
    seen, inner = recording([in_progress, httpx.Response(200, json={"id": "r"})])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        assert http.post("http://gw/v1/segmentations/j/replay").json() == {"id": "r"}
    assert len(seen) == 2
    seen, inner = recording([httpx.Response(409, json={"code": "job_not_completed"})])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        assert http.post("http://gw/v1/segmentations/j/replay").status_code == 409
    assert len(seen) == 1


def test_the_last_refusal_is_the_answer_after_the_last_attempt() -> None:
    seen, inner = recording([httpx.Response(429, headers={"Retry-After": "0"}, json={"code": "rate_limited"})] * 3)
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        answer = http.get("http://gw/v1/jobs/j")
    assert answer.status_code == 429 and answer.json()["code"] == "rate_limited" and len(seen) == 3


def test_retry_after_sets_the_wait_capped_and_a_connection_error_backs_off() -> None:
    hook = backoff(POLICY)
    answer = httpx.Response(503, headers={"Retry-After": "2"}, request=httpx.Request("GET", "http://gw/"))
    assert hook(RetryableAnswer(answer, retry_after_s(answer))) == 2.0
    later = httpx.Response(429, headers={"Retry-After": "600"}, request=httpx.Request("GET", "http://gw/"))
    assert hook(RetryableAnswer(later, retry_after_s(later))) == POLICY.wait_max_s
    assert hook(httpx.ConnectError("x")) is True and hook(ValueError("a bug")) is False
    dated = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_s(dated) == 0.0  # a date in the past: at once
    no_zone = httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"})
    assert retry_after_s(no_zone) == 0.0  # a date without a zone is UTC, not a crash
    assert retry_after_s(httpx.Response(503)) is None


def test_the_async_transport_follows_the_same_policy() -> None:
    seen, inner = recording([httpx.Response(504), httpx.Response(202, json={})])

    async def call() -> int:
        async with httpx.AsyncClient(transport=AsyncRetryingTransport(POLICY, inner)) as http:  # type: ignore[arg-type]
            return (await http.post("http://gw/v1/quantizations", json={})).status_code

    assert asyncio.run(call()) == 202
    assert len(seen) == 2 and seen[0].headers["idempotency-key"] == seen[1].headers["idempotency-key"]


def test_a_body_that_cannot_be_sent_again_is_sent_once() -> None:
    seen, inner = recording([httpx.Response(503)])

    def generated() -> Iterator[bytes]:
        yield b"part"

    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        answer = http.put("http://gw/v1/datasets/d/images/a.png", content=generated())
    assert answer.status_code == 503 and len(seen) == 1  # the real refusal, not StreamConsumed


def test_a_conflict_that_only_mentions_the_code_is_an_answer() -> None:
    other = httpx.Response(409, json={"code": "job_not_completed", "detail": "not idempotency_key_in_progress"})
    seen, inner = recording([other])
    with httpx.Client(transport=RetryingTransport(POLICY, inner)) as http:
        assert http.post("http://gw/v1/segmentations/j/replay").status_code == 409
    assert len(seen) == 1
