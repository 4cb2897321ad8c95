"""Models within a memory budget: the versions unused the longest are unloaded first, pinned and
busy ones never; a version unloaded is loaded again when asked for (against a real tritonserver)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from maskline.contracts.model_v1 import ModelVersion
from maskline.infra.embedded.seed import starter_files
from maskline.models.starter import shapes
from maskline.services.infer.budget import Resident, evictions
from maskline.services.infer.settings import InferSettings
from maskline.services.infer.triton import Triton, TritonBudgetMetrics
from maskline.shared.images.codec import encode_png, to_model_input
from maskline.shared.storage import make_ref
from maskline.shared.storage.filesystem import FilesystemStore

MiB = 1024 * 1024


def resident(version: int, last_used: float, *, size: int = 2 * MiB, pinned: bool = False, in_use: bool = False) -> Resident:
    return Resident(name="o.m", version=version, size=size, last_used=last_used, pinned=pinned, in_use=in_use)


@pytest.mark.unit
def test_the_least_recently_used_go_first_until_the_new_one_fits() -> None:
    loaded = [resident(1, 30.0), resident(2, 10.0), resident(3, 20.0)]
    assert [r.version for r in evictions(loaded, 2 * MiB, 6 * MiB)] == [2]
    assert [r.version for r in evictions(loaded, 4 * MiB, 6 * MiB)] == [2, 3]
    assert evictions(loaded, 0, 6 * MiB) == []  # it fits already


@pytest.mark.unit
def test_pinned_and_busy_versions_stay_even_over_budget() -> None:
    loaded = [resident(1, 1.0, pinned=True), resident(2, 2.0, in_use=True), resident(3, 3.0)]
    assert [r.version for r in evictions(loaded, 2 * MiB, 4 * MiB)] == [3]  # still over: the load goes ahead


def starter_version(version: int, weights: bytes, labels: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        name="budget",
        owner="o",
        version=version,
        labels=labels,
        input_size=(128, 128),
        weights=make_ref(f"models/o/budget/{version}/model.pt", weights, "x"),
    )


@pytest.mark.triton
@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_more_versions_than_the_budget_holds_are_all_served(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    weights, manifest = starter_files()
    versions = [starter_version(v, weights, manifest.labels) for v in (1, 2, 3, 4)]
    for model in versions:
        await store.put(model.weights.key, weights)
    # two versions' files (1.93 MiB each) fit in 5 MiB, three do not
    triton = Triton(InferSettings(triton_url=url, triton_repository=str(repository), triton_memory_budget_mb=5), store)
    pinned: set[int] = set()

    async def is_pinned(name: str, version: int) -> bool:
        return name == "o.budget" and version in pinned

    triton.is_pinned = is_pinned
    image = to_model_input(encode_png(shapes.sample(np.random.default_rng(3), 128)[0]), (128, 128))

    async def serve(model: ModelVersion) -> float:
        async with triton.using(model):
            loaded = await triton.ensure_loaded(model)
            probs = await triton.infer(model, image)
        assert probs.shape == (1, 4, 128, 128)
        return loaded

    async def ready() -> list[int]:
        return [m.version for m in versions if await triton.client.is_model_ready("o.budget", str(m.version))]

    try:
        for _ in range(120):
            if await triton.ready():
                break
            await asyncio.sleep(0.5)
        assert await serve(versions[0]) > 0 and await serve(versions[1]) > 0
        assert await ready() == [1, 2]
        assert await serve(versions[0]) == 0.0  # loaded: no load time; and now v2 is the least recently used
        assert await serve(versions[2]) > 0
        assert await ready() == [1, 3] and not (repository / "o.budget" / "2").exists()

        again = await serve(versions[1])  # unloaded, asked for again: loaded again transparently
        assert again > 0 and await ready() == [2, 3]
        report = triton.report()
        assert report["unloads"] == 2 and report["loaded_bytes"] <= 5 * MiB
        assert [(v["version"], v["pinned"]) for v in report["loaded"]] == [(2, False), (3, False)]

        pinned.add(3)  # an alias of `triton_pinned_aliases` serves v3: never unloaded, though older
        await serve(versions[3])
        assert await ready() == [3, 4]
        async with triton.using(versions[3]):  # busy: stays, though the least recently used
            await serve(versions[0])
        assert await ready() == [1, 3, 4]  # pinned and busy fill it: this load went over budget
        assert triton.report()["over_budget_loads"] == 1

        metrics = {m.name: m.samples[0].value for m in TritonBudgetMetrics(triton).collect()}
        assert metrics["maskline_triton_loaded_versions"] == 3 and metrics["maskline_triton_budget_bytes"] == 5 * MiB
        assert metrics["maskline_triton_unloads"] == 3 and metrics["maskline_triton_loads"] == 6
    finally:
        await triton.close()
