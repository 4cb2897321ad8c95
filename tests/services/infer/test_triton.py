"""The infer service's Triton adapter against a real tritonserver (Python backend, explicit model control)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskline.contracts.model_v1 import ModelVersion
from maskline.infra.embedded.seed import starter_files
from maskline.models.starter import shapes
from maskline.services.infer.settings import InferSettings
from maskline.services.infer.triton import ModelLoadFailed, Triton
from maskline.shared.images import to_model_input
from maskline.shared.storage import make_ref
from maskline.shared.storage.filesystem import FilesystemStore

pytestmark = [pytest.mark.triton, pytest.mark.integration]


def version(name: str, weights: bytes, labels: tuple[str, ...], size: tuple[int, int]) -> ModelVersion:
    return ModelVersion(
        name=name, version=1, labels=labels, input_size=size, weights=make_ref(f"models/{name}/1/model.pt", weights, "x")
    )


async def test_starter_model_loads_on_demand_and_segments_a_known_image(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    weights, manifest = starter_files()
    model = version("starter", weights, tuple(manifest["labels"]), (128, 128))  # type: ignore[arg-type]
    await store.put(model.weights.key, weights)
    triton = Triton(InferSettings(triton_url=url, triton_repository=str(repository)), store)
    try:
        assert await triton.ready()
        assert not await triton.client.is_model_ready("starter", "1")
        await triton.ensure_loaded(model)
        assert await triton.client.is_model_ready("starter", "1")
        assert (repository / "starter" / "1" / "model.pt").read_bytes() == weights

        image, truth = shapes.sample(np.random.default_rng(321), size=128)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        probs = await triton.infer(model, to_model_input(buf.getvalue(), (128, 128)))
        assert probs.shape == (1, 4, 128, 128) and probs.dtype == np.float16
        assert np.allclose(probs.astype(np.float32).sum(axis=1), 1.0, atol=1e-2)
        assert (probs[0].argmax(axis=0) == truth).mean() > 0.97

        batch = np.concatenate([to_model_input(buf.getvalue(), (128, 128))] * 3)
        assert (await triton.infer(model, batch)).shape == (3, 4, 128, 128)
    finally:
        await triton.close()


async def test_a_broken_model_file_is_a_permanent_load_failure(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    model = version("broken", b"not torchscript", ("a", "b"), (32, 32))
    await store.put(model.weights.key, b"not torchscript")
    triton = Triton(InferSettings(triton_url=url, triton_repository=str(repository)), store)
    try:
        with pytest.raises(ModelLoadFailed, match="broken"):
            await triton.ensure_loaded(model)
    finally:
        await triton.close()
