"""The gateway's idempotency layer on a real nats-server (its claims live in a KV bucket): a POST
with a key does its work once, whatever the retries; and every POST of the real app goes through
it unless it says why not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import Headers
from litestar.handlers import HTTPRouteHandler
from litestar.types import Scope

from maskline.services.gateway.core import problems
from maskline.services.gateway.core.app import create_app
from maskline.services.gateway.core.auth import api_key
from maskline.services.gateway.core.errors import NotFound, Unavailable
from maskline.services.gateway.core.idempotent_requests import IDEMPOTENCY, NOT_NEEDED, OWN, UNKEYED, idempotent_posts, job_id_for
from maskline.services.gateway.settings import GatewaySettings
from maskline.shared.bus import Bus
from maskline.shared.jobs.idempotency import IdempotencyKeys

TENANTS = {"key-a": "tenant-a", "key-b": "tenant-b"}


async def tenant_key(scope: Scope) -> str | None:
    """Tenant keys only: the people's keys and sessions are tests/e2e/test_accounts.py's."""
    return TENANTS.get(api_key(Headers.from_scope(scope)))


class Work:
    def __init__(self) -> None:
        self.done: list[str] = []
        self.tried: list[str] = []
        self.fail_next = False
        self.refuse_next = False
        self.gate = asyncio.Event()
        self.gate.set()


def app_over(keys: IdempotencyKeys, work: Work, max_body: int = 1_000_000) -> Litestar:
    @post("/jobs", status_code=202)
    async def start(request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        await work.gate.wait()
        job_id = job_id_for(request.scope)
        work.tried.append(job_id)
        if work.fail_next:
            work.fail_next = False
            raise Unavailable("the bus is away")
        if work.refuse_next:
            work.refuse_next = False
            raise NotFound("no such model", code="model_not_found")
        work.done.append(job_id)
        return {"id": job_id, "asked": data}

    return Litestar(
        route_handlers=[start],
        middleware=[idempotent_posts(tenant_key, lambda: keys)],
        plugins=[problems.plugin()],
        request_max_body_size=max_body,
        exception_handlers=problems.catch_all(),
    )


def on_this_loop(app: Litestar) -> httpx.AsyncClient:
    """Requests served on the test's own event loop, where its NATS connection lives."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


@pytest.fixture
async def keys(bus: Bus) -> IdempotencyKeys:
    return await IdempotencyKeys.opened(bus.js)


def headers(key: str, api_key: str = "key-a") -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}


@pytest.mark.nats
async def test_a_retry_gets_the_first_answer_and_the_work_is_done_once(keys: IdempotencyKeys) -> None:
    work = Work()
    async with on_this_loop(app_over(keys, work)) as http:
        first = await http.post("/jobs", json={"n": 1}, headers=headers("k-once"))
        again = await http.post("/jobs", json={"n": 1}, headers=headers("k-once"))
        other_tenant = await http.post("/jobs", json={"n": 1}, headers=headers("k-once", api_key="key-b"))
    assert first.status_code == again.status_code == 202 and first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert work.done == [first.json()["id"], other_tenant.json()["id"]]  # keys are per tenant


@pytest.mark.nats
async def test_the_same_key_for_another_request_is_refused(keys: IdempotencyKeys) -> None:
    work = Work()
    async with on_this_loop(app_over(keys, work)) as http:
        await http.post("/jobs", json={"n": 1}, headers=headers("k-reused"))
        refused = await http.post("/jobs", json={"n": 2}, headers=headers("k-reused"))
    assert refused.status_code == 422 and refused.json()["code"] == "idempotency_key_reused"
    assert len(work.done) == 1


@pytest.mark.nats
async def test_a_retry_while_the_first_runs_is_told_to_come_back(keys: IdempotencyKeys) -> None:
    work = Work()
    work.gate.clear()
    async with on_this_loop(app_over(keys, work)) as http:
        first = asyncio.create_task(http.post("/jobs", json={"n": 1}, headers=headers("k-busy")))
        await asyncio.sleep(0.3)
        busy = await http.post("/jobs", json={"n": 1}, headers=headers("k-busy"))
        work.gate.set()
        assert (await first).status_code == 202
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_key_in_progress"
    # It is told to come back within the renewal period of the running request's claim.
    assert 1 <= int(busy.headers["retry-after"]) <= 7 and len(work.done) == 1


@pytest.mark.nats
async def test_an_answer_that_did_nothing_gives_the_key_back(keys: IdempotencyKeys) -> None:
    work = Work()
    work.fail_next = True
    async with on_this_loop(app_over(keys, work)) as http:
        down = await http.post("/jobs", json={"n": 1}, headers=headers("k-down"))
        retried = await http.post("/jobs", json={"n": 1}, headers=headers("k-down"))
    assert down.status_code == 503 and retried.status_code == 202 and len(work.done) == 1
    # The claim was handed back with its job id: the retry restarts the same job, never a second one.
    assert work.tried[0] == work.tried[1] == retried.json()["id"]


@pytest.mark.nats
async def test_a_refusal_gives_the_key_back_and_the_same_request_is_tried_afresh(keys: IdempotencyKeys) -> None:
    work = Work()
    work.refuse_next = True
    async with on_this_loop(app_over(keys, work)) as http:
        refused = await http.post("/jobs", json={"n": 1}, headers=headers("k-refused"))
        retried = await http.post("/jobs", json={"n": 1}, headers=headers("k-refused"))
    assert refused.status_code == 404 and retried.status_code == 202 and len(work.done) == 1


@pytest.mark.nats
async def test_a_body_over_the_limit_is_refused_while_read_and_claims_nothing(keys: IdempotencyKeys) -> None:
    work = Work()
    app = app_over(keys, work, max_body=1000)

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the size shows only while reading
        for _ in range(50):
            yield b"x" * 100

    async with on_this_loop(app) as http:
        refused = await http.post("/jobs", content=chunked(), headers={**headers("k-big"), "content-type": "application/json"})
        declared = await http.post(
            "/jobs", content=b"y" * 5000, headers={**headers("k-big2"), "content-type": "application/json"}
        )
        small = await http.post("/jobs", json={"n": 1}, headers=headers("k-big"))
    assert refused.status_code == declared.status_code == 413 and refused.json()["code"] == "too_large"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert small.status_code == 202 and len(work.done) == 1  # the refused request claimed nothing


@pytest.mark.nats
async def test_without_a_key_or_a_tenant_the_layer_stands_aside(keys: IdempotencyKeys) -> None:
    work = Work()
    async with on_this_loop(app_over(keys, work)) as http:
        for _ in range(2):
            await http.post("/jobs", json={"n": 1}, headers={"Authorization": "Bearer key-a"})
        await http.post("/jobs", json={"n": 1}, headers={"Idempotency-Key": "k-anon"})
    assert len(work.done) == 3


@pytest.mark.unit
def test_every_post_of_the_gateway_goes_through_the_layer_unless_it_says_why_not() -> None:
    app = create_app(SimpleNamespace(settings=GatewaySettings()))  # type: ignore[arg-type]
    posts = [
        h
        for route in app.routes
        for h in getattr(route, "route_handlers", [])
        if isinstance(h, HTTPRouteHandler) and "POST" in (h.http_methods or ())
    ]
    assert len(posts) >= 15
    opted_out = {(h.handler_name, h.opt[IDEMPOTENCY]) for h in posts if IDEMPOTENCY in h.opt}
    # The segmentation submit keeps its job in its own claim and answers a retry with the job as it
    # is now; an upload is content-addressed; a sign-in, sign-out and a new personal key keep no
    # answer (a key's answer is the key itself). Every other POST — a new one too — is covered.
    assert opted_out == {
        ("submit", OWN),
        ("upload", NOT_NEEDED),
        ("infer", UNKEYED),
        ("sign_in", NOT_NEEDED),
        ("sign_out", NOT_NEEDED),
        ("create_key", NOT_NEEDED),
    }, opted_out
