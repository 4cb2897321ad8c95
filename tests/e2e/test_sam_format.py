"""A SAM-format model: a tiny Segment-Anything built from the `segment-anything` package's own
code (seeded), its decoder exported with the package's exporter, registered as a pair, served on
Triton, and its masks compared with running the same ONNX pair directly on the same prompts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from numpy.typing import NDArray
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.contracts import model_v1
from maskline.models import sam
from maskline.models.starter import shapes
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return sam.export(tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="module")
def registered(client: JsonClient, pair: tuple[Path, Path]) -> dict[str, Any]:
    encoder, decoder = pair
    return client.register_model(
        encoder,
        decoder=decoder,
        name="tiny-sam",
        labels=["background", "object"],
        input_size=(sam.IMAGE_SIZE, sam.IMAGE_SIZE),
        format="sam",
        preprocessing=model_v1.SAM_PREPROCESSING,
    )


class Direct:
    """The pair run directly, as segment-anything's `SamPredictor` and its ONNX example feed it."""

    def __init__(self, pair: tuple[Path, Path], image: NDArray[np.uint8]) -> None:
        self.encoder = onnxruntime.InferenceSession(str(pair[0]), providers=["CPUExecutionProvider"])
        self.decoder = onnxruntime.InferenceSession(str(pair[1]), providers=["CPUExecutionProvider"])
        self.height, self.width = image.shape[:2]
        scale = sam.IMAGE_SIZE / max(self.height, self.width)  # ResizeLongestSide.get_preprocess_shape
        self.new_h, self.new_w = int(self.height * scale + 0.5), int(self.width * scale + 0.5)
        resized = np.asarray(Image.fromarray(image).resize((self.new_w, self.new_h), Image.Resampling.BILINEAR), np.float32)
        normalised = (resized - np.asarray(sam.PIXEL_MEAN, np.float32)) / np.asarray(sam.PIXEL_STD, np.float32)
        batch = np.zeros((1, 3, sam.IMAGE_SIZE, sam.IMAGE_SIZE), np.float32)  # Sam.preprocess pads bottom-right
        batch[0, :, : self.new_h, : self.new_w] = normalised.transpose(2, 0, 1)
        self.embedding = self.encoder.run(None, {"image": batch})[0]

    def mask(self, box: list[float] | None, points: list[list[float]]) -> tuple[NDArray[np.bool_], float]:
        coords = [[p[0], p[1]] for p in points]
        labels = [p[2] if len(p) > 2 else 1.0 for p in points]
        if box is not None:
            coords += [[box[0], box[1]], [box[2], box[3]]]
            labels += [2.0, 3.0]
        else:
            coords.append([0.0, 0.0])
            labels.append(-1.0)
        scaled = np.asarray(coords, np.float32) * np.array([self.new_w / self.width, self.new_h / self.height], np.float32)
        masks, iou, _ = self.decoder.run(
            None,
            {
                "image_embeddings": self.embedding,
                "point_coords": scaled[None],
                "point_labels": np.asarray([labels], np.float32),
                "mask_input": np.zeros((1, 1, 4 * sam.IMAGE_SIZE // sam.PATCH, 4 * sam.IMAGE_SIZE // sam.PATCH), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array([self.height, self.width], np.float32),
            },
        )
        return masks[0, 0] > 0, float(iou[0, 0])


def mask_of(client: JsonClient, job: dict[str, Any]) -> NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))


def test_the_registered_pair_answers_exactly_as_the_onnx_pair_run_directly(
    client: JsonClient, pair: tuple[Path, Path], registered: dict[str, Any]
) -> None:
    assert registered["format"] == "sam" and registered["decoder"]["encoder_output"] == "image_embeddings"
    image = np.ascontiguousarray(shapes.sample(np.random.default_rng(7), 256)[0][:, 30:230])  # 256 high, 200 wide
    direct = Direct(pair, image)
    body = png_bytes(image)
    prompts: list[tuple[list[float] | None, list[list[float]]]] = [
        ([20, 30, 150, 200], []),
        (None, [[50, 60]]),
        ([10, 10, 190, 240], [[100, 120], [30, 40, 0]]),
    ]
    first = None
    for box, points in prompts:
        obj: dict[str, Any] = {"points": points} | ({"box": box} if box else {})
        job = client.submit(
            body, wait=90, model="tiny-sam", version=registered["version"], prompts=json.dumps({"objects": [obj]})
        )
        assert job["status"] == "completed", job
        expected, iou = direct.mask(box, points)
        served = mask_of(client, job) == 1
        assert 0.0 < expected.mean() < 1.0  # a mask with both sides: the comparison says something
        assert (served == expected).all(), f"{int((served != expected).sum())} pixels differ for {obj}"
        assert job["objects"][0]["score"] == pytest.approx(min(max(iou, 0.0), 1.0), abs=1e-4)
        first = first or job
    later = job
    assert first is not None and "encoder" in first["timings_ms"] and "encoder" not in later["timings_ms"]


def test_a_sam_model_without_prompts_is_refused_with_the_reason(client: JsonClient, registered: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as refused:
        client.submit(png_bytes(np.zeros((64, 64, 3), np.uint8)), wait=60, model="tiny-sam", version=registered["version"])
    assert refused.value.code == "prompts_required"


def test_a_pair_in_the_wrong_order_is_refused_at_registration(client: JsonClient, pair: tuple[Path, Path]) -> None:
    encoder, decoder = pair
    with pytest.raises(ApiError) as refused:
        client.register_model(
            decoder,
            decoder=encoder,
            name="tiny-sam-swapped",
            labels=["background", "object"],
            input_size=(256, 256),
            format="sam",
            preprocessing=model_v1.SAM_PREPROCESSING,
        )
    assert (refused.value.status, refused.value.code) == (422, "invalid_model")
    assert "image encoder" in str(refused.value)
    with pytest.raises(ApiError) as refused:  # a pair without SAM's geometry: its prompts would land elsewhere
        client.register_model(
            encoder, decoder=decoder, name="tiny-stretched", labels=["background", "object"], input_size=(256, 256), format="sam"
        )
    assert refused.value.code == "invalid_model" and "longest-side" in str(refused.value)


def test_segment_everything_with_the_pair_keeps_what_the_decoder_says_of_each_grid_point(
    client: JsonClient, pair: tuple[Path, Path], registered: dict[str, Any]
) -> None:
    image = np.ascontiguousarray(shapes.sample(np.random.default_rng(8), 192)[0])
    direct = Direct(pair, image)
    prompts = {"everything": True, "points_per_side": 4, "min_score": 0.0, "min_stability": 0.0}  # random weights
    job = client.submit(png_bytes(image), wait=90, model="tiny-sam", version=registered["version"], prompts=json.dumps(prompts))
    assert job["status"] == "completed", job
    assert 1 <= len(job["objects"]) <= 16
    mask = mask_of(client, job)
    for found in job["objects"]:
        x, y = found["point"][:2]  # [x, y, label]: in the uploaded image's pixels
        expected, iou = direct.mask(None, [[x, y]])
        assert found["score"] == pytest.approx(min(max(iou, 0.0), 1.0), abs=1e-4)
        assert ((mask == found["index"]) <= expected).all()  # its pixels, less any an earlier (better) object took


def test_the_pairs_encoder_quantizes_to_int8_and_the_int8_pair_serves_prompts(
    client: JsonClient, registered: dict[str, Any]
) -> None:
    rng = np.random.default_rng(11)
    for i in range(6):
        client.upload_dataset_file("sam-calibration", "images", png_bytes(shapes.sample(rng, 200)[0]), f"c{i}.png")
    job = client.quantize("tiny-sam", registered["version"], dataset="sam-calibration", method="minmax", name="tiny-sam")
    done = client.wait_job(job["id"], timeout=300)
    assert done["status"] == "completed", done
    int8 = dict(client.http.get(done["links"]["model"]).json())
    assert (int8["format"], int8["precision"]) == ("sam", "int8")
    assert int8["decoder"]["weights"]["sha256"] == registered["decoder"]["weights"]["sha256"]  # the decoder as it was
    assert int8["weights"]["sha256"] != registered["weights"]["sha256"] and int8["metrics"]["output_sqnr_db"] > 20
    image = np.ascontiguousarray(shapes.sample(np.random.default_rng(7), 256)[0][:, 30:230])
    prompts = json.dumps({"objects": [{"box": [20, 30, 150, 200]}]})
    served = {}
    for model in (registered, int8):
        answer = client.submit(png_bytes(image), wait=90, model="tiny-sam", version=model["version"], prompts=prompts)
        assert answer["status"] == "completed", answer
        served[model["precision"]] = mask_of(client, answer) == 1
    agreement = float((served["fp32"] == served["int8"]).mean())
    assert agreement > 0.9, agreement  # the random-weight net's embedding 5% off in int8: most pixels keep their side


def test_another_tenant_cannot_prompt_a_pair_it_was_not_granted(other_tenant: JsonClient, registered: dict[str, Any]) -> None:
    body = png_bytes(np.zeros((64, 64, 3), np.uint8))
    prompts = json.dumps({"objects": [{"box": [4, 4, 40, 40]}]})
    for owner in (None, "tenant-a"):
        with pytest.raises(ApiError) as refused:
            other_tenant.submit(body, wait=60, model="tiny-sam", owner=owner, version=registered["version"], prompts=prompts)
        assert refused.value.code == "model_not_found"
