"""The typed client's own logic: settings from the environment, retries through its transport, decoding.
Its HTTP peer here is httpx's in-process transport; tests/e2e/test_client.py runs it against a stack."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import stamina

from maskline.client import ApiError, Client, ClientSettings
from maskline.client.retries import RetryingTransport
from maskline.client.typed import Calls
from maskline.contracts.http_v1 import JobView, MergeBody
from maskline.contracts.model_v1 import VersionRef

pytestmark = pytest.mark.unit
JOB = b'{"id":"j","kind":"model-merge","status":"completed","progress":{},"error":null,"links":{}}'


@pytest.fixture(autouse=True)
def no_waiting() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):  # the policy's attempts, without the waits
        yield


def client_with(handler: object, retries: int = 2) -> Client:
    settings = ClientSettings(url="http://gateway", retries=retries, backoff_s=0.0)
    client = Client(settings)
    inner = httpx.MockTransport(handler)  # type: ignore[arg-type]
    client.http = httpx.Client(base_url="http://gateway", transport=RetryingTransport(settings.retry_policy, inner))
    return client


def test_settings_follow_the_clis_variables() -> None:
    assert ClientSettings.from_env({"MASKLINE_PORT": "9123"}).url == "http://127.0.0.1:9123"
    assert ClientSettings.from_env({"MASKLINE_HOST": "0.0.0.0", "MASKLINE_PORT": "81"}).url == "http://127.0.0.1:81"
    settings = ClientSettings.from_env({"MASKLINE_URL": "https://gw", "MASKLINE_API_KEY": "k", "MASKLINE_CLIENT_RETRIES": "0"})
    assert (settings.url, settings.api_key, settings.retries) == ("https://gw", "k", 0)


def test_a_refusal_with_retry_after_is_retried_and_the_answer_is_typed() -> None:
    answers = iter(
        [httpx.Response(503, headers={"Retry-After": "0"}, json={"code": "overloaded"}), httpx.Response(200, content=JOB)]
    )
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return next(answers)

    job = client_with(handler).job("j")
    assert isinstance(job, JobView) and job.finished and seen == ["/v1/jobs/j", "/v1/jobs/j"]


def test_after_the_last_retry_the_problem_is_raised_with_its_code() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"code": "rate_limited", "detail": "slow down"})

    with pytest.raises(ApiError) as refused:
        client_with(handler, retries=1).job("j")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")


def test_a_connection_error_is_retried_only_when_repeating_the_call_is_safe() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200, content=JOB)

    assert client_with(handler).job("j").id == "j"  # a GET: repeated
    calls.clear()
    # A POST gets an Idempotency-Key from the transport, so it is repeated too, with the same key.
    assert client_with(handler).send(Calls.merge_models(MergeBody(models=(VersionRef("m", 1),), name="n"))).id == "j"
    assert calls == ["POST", "POST"]


def test_a_registration_still_being_checked_decodes_as_its_job() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, content=JOB)

    answer = client_with(handler).register_model(b"x", name="m", labels=["a", "b"], input_size=(8, 8))
    assert isinstance(answer, JobView)
