"""Label Studio's ML-backend exchange against the running gateway: health, setup and predict with an
annotator's rectangle and keypoints, answered with a brush mask (decoded by Label Studio's SDK) and
a polygon (validated by its SDK against the labelling config), behind the tenant's key."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from tests.e2e.test_prompts import box, inner_point, iou, scene
from tests.e2e.test_segmentation import png_bytes

pytestmark = pytest.mark.e2e

CONFIG = """<View>
  <Image name="img" value="$photo"/>
  <BrushLabels name="mask" toName="img"><Label value="thing"/></BrushLabels>
  <PolygonLabels name="outline" toName="img"><Label value="thing"/></PolygonLabels>
  <KeyPointLabels name="click" toName="img" smart="true"><Label value="thing"/></KeyPointLabels>
  <RectangleLabels name="drag" toName="img" smart="true"><Label value="thing"/></RectangleLabels>
</View>"""


def backend(stack: Stack, key: str, model: str = "default") -> httpx.Client:
    """Label Studio's side: the backend URL, and basic auth with the API key as the password."""
    return httpx.Client(base_url=f"{stack.gateway_url}/v1/label-studio/{model}", auth=("label-studio", key), timeout=90)


def context(rect: list[int], point: list[int], size: tuple[int, int]) -> dict[str, Any]:
    """What Label Studio sends while an annotator drags a rectangle and clicks a keypoint."""
    width, height = size
    x0, y0, x1, y1 = rect
    return {
        "result": [
            {
                "type": "rectanglelabels",
                "from_name": "drag",
                "to_name": "img",
                "original_width": width,
                "original_height": height,
                "value": {
                    "x": 100 * x0 / width,
                    "y": 100 * y0 / height,
                    "width": 100 * (x1 - x0) / width,
                    "height": 100 * (y1 - y0) / height,
                    "rectanglelabels": ["thing"],
                },
            },
            {
                "type": "keypointlabels",
                "from_name": "click",
                "to_name": "img",
                "original_width": width,
                "original_height": height,
                "is_positive": True,
                "value": {"x": 100 * point[0] / width, "y": 100 * point[1] / height, "width": 1, "keypointlabels": ["thing"]},
            },
        ]
    }


def test_an_annotators_rectangle_and_click_come_back_as_brush_and_polygon(stack: Stack, client: JsonClient) -> None:
    image, parts = scene(51)
    client.upload_dataset_file("ls-photos", "images", png_bytes(image), "a.png")
    ls = backend(stack, "key-a")
    assert ls.get("/health").json()["status"] == "UP"
    assert ls.post("/setup", json={"project": "1", "schema": CONFIG}).json()["model_version"]
    task = {"id": 7, "data": {"photo": "http://label-studio.local:8080/v1/datasets/ls-photos/images/a.png"}}
    size = (image.shape[1], image.shape[0])
    body = {
        "tasks": [task],
        "label_config": CONFIG,
        "project": "1",
        "params": {"context": context(box(parts[0]), inner_point(parts[0]), size)},
    }
    answer = ls.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    prediction = answer.json()["results"][0]
    kinds = {r["type"]: r for r in prediction["result"]}
    assert set(kinds) == {"brushlabels", "polygonlabels"}
    brushed = kinds["brushlabels"]
    assert (brushed["from_name"], brushed["to_name"], brushed["value"]["brushlabels"]) == ("mask", "img", ["thing"])
    pixels = decode_rle(bytes(brushed["value"]["rle"])).reshape(image.shape[0], image.shape[1], 4)[..., 3] > 0
    assert iou(pixels, parts[0]) > 0.9
    interface = LabelInterface(CONFIG)
    outline = {"result": [r for r in prediction["result"] if r["type"] == "polygonlabels"], "score": prediction["score"]}
    assert interface.validate_prediction(copy.deepcopy(outline))
    assert 0 < prediction["score"] <= 1


def test_pre_annotation_without_clicks_segments_every_object(stack: Stack, client: JsonClient) -> None:
    image, parts = scene(52, at_least=2)
    client.upload_dataset_file("ls-photos", "images", png_bytes(image), "b.png")
    task = {"id": 8, "data": {"photo": "/v1/datasets/ls-photos/images/b.png"}}
    answer = backend(stack, "key-a").post("/predict", json={"tasks": [task], "label_config": CONFIG})
    assert answer.status_code == 200, answer.text
    brushes = [r for r in answer.json()["results"][0]["result"] if r["type"] == "brushlabels"]
    assert len(brushes) >= len(parts)


def test_the_backend_keeps_to_the_tenant_and_fetches_nothing_from_outside(stack: Stack, client: JsonClient) -> None:
    image, _ = scene(53)
    client.upload_dataset_file("ls-private", "images", png_bytes(image), "c.png")
    theirs = {"tasks": [{"id": 1, "data": {"photo": "/v1/datasets/ls-private/images/c.png"}}], "label_config": CONFIG}
    assert backend(stack, "key-b").post("/predict", json=theirs).status_code == 404  # tenant-b has no such dataset
    assert backend(stack, "not-a-key").get("/health").status_code == 401
    outside = {"tasks": [{"id": 1, "data": {"photo": "http://169.254.169.254/latest/meta-data/x.png"}}], "label_config": CONFIG}
    refused = backend(stack, "key-a").post("/predict", json=outside)
    assert (refused.status_code, refused.json()["code"]) == (422, "invalid_image_source")
