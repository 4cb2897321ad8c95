"""The baseline a user would write instead of maskline: one litestar process, no bus, no job state.

`POST /segment` (multipart `image`) decodes the upload with the platform's preprocessing, calls the
same Triton model, renders the same three outputs with the same code as merge (mask PNG, overlay
PNG, regions JSON) and writes them to disk (fsync'ed, as maskline's file store does) before it
answers. bench.pipeline starts it beside the embedded stack and reports maskline as a ratio of it.

    BASELINE_TRITON=127.0.0.1:8000 BASELINE_OUT=/tmp/out uvicorn bench.baseline:app --port 8090
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from pathlib import Path

import numpy as np
import tritonclient.http.aio as triton_http
from litestar import Litestar, post
from litestar.datastructures import State, UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body
from numpy.typing import NDArray
from tritonclient.http import InferInput, InferRequestedOutput

from maskline.contracts import seg_v1
from maskline.contracts.common_v1 import ModelRef, ObjectRef
from maskline.models.starter import FOLDER
from maskline.services.infer.triton import uncompressed_headers
from maskline.services.merge.service import render_outputs
from maskline.shared.images.checks import Limits, open_checked
from maskline.shared.images.codec import to_model_input

MANIFEST = json.loads((FOLDER / "weights" / "manifest.json").read_text())
LABELS = tuple(MANIFEST["labels"])
HEIGHT, WIDTH = MANIFEST["input_size"]
TRITON_NAME = "maskline.shapes-unet"
OUT = Path(os.environ.get("BASELINE_OUT", "/tmp/maskline-baseline"))
TRITON_URL = os.environ.get("BASELINE_TRITON", "127.0.0.1:8000")


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _render_and_store(job: str, png: bytes, width: int, height: int, probs: NDArray[np.float32]) -> dict[str, int]:
    ref = ObjectRef(key=job, size=len(png), sha256=hashlib.sha256(png).hexdigest())
    data = seg_v1.SegmentationInferred(
        image=ref,
        width=width,
        height=height,
        prediction=ref,
        model=ModelRef(name="shapes-unet", version=1),
        labels=LABELS,
        options=seg_v1.SegmentationOptions(),
    )
    rendered = render_outputs(job, data, png, np.ascontiguousarray(probs.transpose(1, 2, 0)), ())  # as merge does
    folder = OUT / job
    folder.mkdir(parents=True)
    for name, (content, _) in rendered.files.items():
        _write(folder / name, content)
    return {"regions": rendered.regions}


@post("/segment")
async def segment(state: State, data: UploadFile = Body(media_type=RequestEncodingType.MULTI_PART)) -> dict[str, object]:
    png = await data.read()
    image = open_checked(png, Limits(allowed=frozenset({"PNG", "JPEG"}), max_pixels=50_000_000))
    batch = await asyncio.to_thread(to_model_input, png, (HEIGHT, WIDTH))
    tensor = InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    result = await state.triton.infer(
        TRITON_NAME,
        [tensor],
        model_version="1",
        outputs=[InferRequestedOutput("probs", binary_data=True)],
        headers=uncompressed_headers(),  # as infer asks: the same Triton work on both paths
    )
    probs = result.as_numpy("probs")[0].astype(np.float32)
    job = uuid.uuid4().hex
    summary = await asyncio.to_thread(_render_and_store, job, png, image.width, image.height, probs)
    return {"id": job, "status": "completed", **summary}


async def connect_triton(app: Litestar) -> None:
    app.state.triton = triton_http.InferenceServerClient(TRITON_URL)  # its aiohttp session needs the running loop


app = Litestar([segment], on_startup=[connect_triton], request_max_body_size=20 * 1024 * 1024)
