"""The infer service's Triton adapter against a real tritonserver (Python backend, explicit model control)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import msgspec
import numpy as np
import onnxruntime
import pytest
import torch
import tritonclient.http.aio as triton_http
from moto.server import ThreadedMotoServer
from PIL import Image
from tritonclient.http import InferInput, InferRequestedOutput

from maskline.contracts.model_v1 import ModelOutput, ModelVersion
from maskline.infra.embedded.process import free_port, stop_pid
from maskline.infra.embedded.seed import starter_files
from maskline.infra.embedded.triton import start_triton
from maskline.models import person
from maskline.models.starter import shapes
from maskline.services.infer.settings import InferSettings
from maskline.services.infer.triton import ModelLoadFailed, Triton
from maskline.shared.images.codec import to_model_input
from maskline.shared.storage import make_ref
from maskline.shared.storage.filesystem import FilesystemStore
from maskline.shared.storage.minio_store import MinioStore

pytestmark = [pytest.mark.triton, pytest.mark.integration]


def version(name: str, weights: bytes, labels: tuple[str, ...], size: tuple[int, int]) -> ModelVersion:
    return ModelVersion(
        name=name, version=1, labels=labels, input_size=size, weights=make_ref(f"models/{name}/1/model.pt", weights, "x")
    )


async def test_starter_model_loads_on_demand_and_segments_a_known_image(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    weights, manifest = starter_files()
    model = version("starter", weights, manifest.labels, (128, 128))
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


async def test_an_onnx_version_is_served_through_onnx_runtime(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    """The bundled person model, as ONNX: same probabilities as ONNX Runtime run directly, batched."""
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    weights = person.ONNX.read_bytes()
    model = msgspec.structs.replace(version("person", weights, person.LABELS, (256, 256)), format="onnx")
    await store.put(model.weights.key, weights)
    triton = Triton(InferSettings(triton_url=url, triton_repository=str(repository)), store)
    try:
        await triton.ensure_loaded(model)
        assert (repository / "person" / "1" / "model.onnx").read_bytes() == weights
        photo = (person.FOLDER / "samples" / "astronaut.jpg").read_bytes()
        batch = to_model_input(photo, (256, 256))
        probs = await triton.infer(model, np.concatenate([batch] * 3))
        assert probs.shape == (3, 2, 256, 256)
        session = onnxruntime.InferenceSession(weights, providers=["CPUExecutionProvider"])
        expected = torch.softmax(torch.from_numpy(session.run(None, {"image": batch})[0]), dim=1).numpy()
        assert np.abs(probs[0].astype(np.float32) - expected[0]).max() < 2e-3
        assert 0.4 < (probs[0, 1] > 0.5).mean() < 0.7  # the astronaut fills about half of the photo
    finally:
        await triton.close()


class DictSegmenter(torch.nn.Module):
    """torchvision's segmentation models return {"out": ..., "aux": ...}."""

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = torch.cat([image[:, :1], 1 - image[:, :1]], dim=1)
        return {"aux": scores * 0, "out": scores}


async def test_a_dict_output_and_probabilities_are_taken_as_declared(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(DictSegmenter()), buffer)
    weights = buffer.getvalue()
    model = msgspec.structs.replace(
        version("dictseg", weights, ("background", "thing"), (16, 16)), output=ModelOutput(name="out", kind="probabilities")
    )
    await store.put(model.weights.key, weights)
    triton = Triton(InferSettings(triton_url=url, triton_repository=str(repository)), store)
    try:
        await triton.ensure_loaded(model)
        batch = np.zeros((1, 3, 16, 16), np.float32)
        batch[0, 0, :8] = 0.75
        probs = (await triton.infer(model, batch)).astype(np.float32)
        # "out", not "aux"; no softmax: the declared probabilities come back as they are
        assert np.allclose(probs[0, 0, :8], 0.75) and np.allclose(probs[0, 1, :8], 0.25)
        assert np.allclose(probs[0, 0, 8:], 0.0) and np.allclose(probs[0, 1, 8:], 1.0)
    finally:
        await triton.close()


def test_the_model_repository_can_live_in_the_object_store_read_by_triton_over_s3(tmp_path: Path) -> None:
    """infer writes a version into an S3 repository through its object store; a tritonserver that
    shares no folder with it loads it from there (compose and Kubernetes run them on different nodes)."""
    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    http_port = free_port()
    repository = f"s3://127.0.0.1:{port}/maskline/triton"
    credentials = {"AWS_ACCESS_KEY_ID": "infer", "AWS_SECRET_ACCESS_KEY": "infer-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    store = MinioStore(f"127.0.0.1:{port}", "infer", "infer-secret", "maskline")

    async def scenario() -> tuple[list[str], float]:
        weights, manifest = starter_files()
        model = version("starter", weights, manifest.labels, (128, 128))
        await store.put(model.weights.key, weights)
        triton = Triton(InferSettings(triton_url=f"127.0.0.1:{http_port}", triton_repository=repository), store)
        try:
            await triton.ensure_loaded(model)
            image, truth = shapes.sample(np.random.default_rng(321), size=128)
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG")
            probs = await triton.infer(model, to_model_input(buf.getvalue(), (128, 128)))
            return sorted(await store.list("triton/starter/")), float((probs[0].argmax(axis=0) == truth).mean())
        finally:
            await triton.close()

    asyncio.run(store.put("triton/README", b"Triton's model repository, written by infer"))  # Triton needs the bucket
    proc = start_triton(tmp_path, repository, http_port, free_port(), free_port(), env=credentials)
    try:
        files, accuracy = asyncio.run(scenario())
    finally:
        stop_pid(proc.pid)
        s3.stop()
    assert files == [f"triton/starter/{f}" for f in ("1/model.json", "1/model.pt", "1/model.py", "config.pbtxt")]
    assert accuracy > 0.97
    assert not list(tmp_path.rglob("model.pt"))  # nothing on a shared disk


async def test_an_s3_repository_must_be_in_the_stores_bucket() -> None:
    store = MinioStore("127.0.0.1:9", "k", "s", "maskline")
    with pytest.raises(ValueError, match="not in the object store's bucket"):
        Triton(InferSettings(triton_repository="s3://minio:9000/other/triton"), store)
    with pytest.raises(ValueError, match="needs the S3 object store"):
        Triton(InferSettings(triton_repository="s3://minio:9000/maskline/triton"), FilesystemStore(Path("/tmp")))


class RecordingProxy:
    """A loopback TCP relay in front of the real Triton that keeps every byte each way, so a test can
    read the HTTP headers that really went over the wire."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.rsplit(":", 1)
        self.port = int(port)
        self.sent = bytearray()
        self.received = bytearray()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray) -> None:
        while chunk := await reader.read(65536):
            record.extend(chunk)
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(self.host, self.port)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, self.sent),
            self._pipe(server_reader, client_writer, self.received),
            return_exceptions=True,
        )

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def headers(self, raw: bytearray, start: bytes) -> list[bytes]:
        """The header blocks of the messages that begin with `start` (lower-cased)."""
        return [block.split(b"\r\n\r\n", 1)[0].lower() for block in bytes(raw).split(start)[1:]]


async def test_triton_answers_uncompressed_to_infer(triton_server: tuple[str, Path], tmp_path: Path) -> None:
    """tritonclient's aio client asks for gzip through aiohttp's defaults and Triton compresses every
    response (the control below shows it); infer asks for the bytes as they are, which saved Triton
    4-5 ms of CPU per starter-model job on this machine (docs/benchmarks.md)."""
    url, repository = triton_server
    store = FilesystemStore(tmp_path)
    weights, manifest = starter_files()
    model = version("plain", weights, manifest.labels, (128, 128))
    await store.put(model.weights.key, weights)
    proxy = RecordingProxy(url)
    proxied = await proxy.start()
    triton = Triton(InferSettings(triton_url=proxied, triton_repository=str(repository)), store)
    try:
        await triton.ensure_loaded(model)
        batch = np.zeros((1, 3, 128, 128), np.float32)
        probs = await triton.infer(model, batch)
        assert probs.shape == (1, 4, 128, 128)
        infer_requests = [h for h in proxy.headers(proxy.sent, b"POST ") if b"/infer" in h.split(b"\r\n", 1)[0]]
        assert infer_requests and all(b"accept-encoding: identity" in h for h in infer_requests)
        responses = proxy.headers(proxy.received, b"HTTP/1.1 ")
        assert responses and not any(b"content-encoding" in h for h in responses)

        control = triton_http.InferenceServerClient(proxied)  # the client as it comes
        try:
            image = InferInput("image", list(batch.shape), "FP32")
            image.set_data_from_numpy(batch, binary_data=True)
            proxy.received.clear()
            result = await control.infer(
                "plain", [image], model_version="1", outputs=[InferRequestedOutput("probs", binary_data=True)]
            )
            assert result.as_numpy("probs") is not None
            assert any(b"content-encoding: gzip" in h for h in proxy.headers(proxy.received, b"HTTP/1.1 "))
        finally:
            await control.close()
    finally:
        await triton.close()
        proxy.server.close()
