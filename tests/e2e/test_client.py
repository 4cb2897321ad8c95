"""The typed clients against the real stack: sync and async, answers decoded into the gateway's views."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from maskline.client import ApiError, AsyncClient, Client, ClientSettings
from maskline.contracts import seg_v1
from maskline.contracts.http_v1 import SegmentationView
from maskline.contracts.model_v1 import ModelVersion
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import WEIGHTS

pytestmark = pytest.mark.e2e


def settings(stack: Stack) -> ClientSettings:
    return ClientSettings(url=stack.gateway_url, api_key="key-a", timeout_s=120)


def test_the_sync_client_segments_and_registers_with_typed_answers(stack: Stack, samples: Path, tmp_path: Path) -> None:
    with Client(settings(stack)) as client:
        options = seg_v1.SegmentationOptions(outputs=("mask", "regions"))
        job = client.submit((samples / "shapes-1.png").read_bytes(), filename="shapes-1.png", options=options, wait_s=60)
        assert isinstance(job, SegmentationView) and job.status == "completed" and set(job.artifacts) == {"mask", "regions"}
        assert client.status(job.id) == job
        files = client.download(job, tmp_path)
        assert files["mask"].read_bytes().startswith(b"\x89PNG")
        model = client.register_model(
            WEIGHTS.read_bytes(), name="typed-client", labels=["a", "b", "c", "d"], input_size=(128, 128)
        )
        assert isinstance(model, ModelVersion) and model.name == "typed-client"
        assert model in client.models()
        try:
            client.status("no-such-job")
        except ApiError as error:
            assert (error.status, error.code) == (404, "not_found")
        else:
            raise AssertionError("an unknown job must be a 404")


def test_the_async_client_runs_jobs_concurrently(stack: Stack, samples: Path) -> None:
    async def scenario() -> list[SegmentationView]:
        async with AsyncClient(settings(stack)) as client:
            image = (samples / "shapes-2.png").read_bytes()
            return list(await asyncio.gather(*(client.submit(image, filename="s.png", wait_s=60) for _ in range(3))))

    jobs = asyncio.run(scenario())
    assert [job.status for job in jobs] == ["completed"] * 3 and len({job.id for job in jobs}) == 3
