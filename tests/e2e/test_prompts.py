"""Promptable segmentation through the running stack: boxes and points on shapes (IoU against the
known masks), a box on a real photo (IoU against MediaPipe's mask), the image's embedding made once
per tenant (Triton's own counters), segment everything, refinement, replay and refusals."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from maskline.client import ApiError, JsonClient
from maskline.infra.embedded.stack import Stack
from maskline.models.starter import shapes
from maskline.shared.images.codec import encode_png
from tests.e2e.conftest import cli
from tests.e2e.test_bus import envelope, outcomes_of
from tests.e2e.test_segmentation import png_bytes
from tests.models.reference import mediapipe_masks

pytestmark = pytest.mark.e2e


def scene(seed: int, size: int = 256, at_least: int = 2) -> tuple[NDArray[np.uint8], list[NDArray[np.bool_]]]:
    """A generated shapes image and each shape's own pixels (connected parts of one class)."""
    rng = np.random.default_rng(seed)
    while True:
        image, mask = shapes.sample(rng, size)
        parts = []
        for class_id in range(1, len(shapes.LABELS)):
            count, components = cv2.connectedComponents((mask == class_id).astype(np.uint8))
            parts += [components == k for k in range(1, count) if (components == k).sum() >= 100]
        if len(parts) >= at_least:
            return image, parts


def box(pixels: NDArray[np.bool_]) -> list[int]:
    ys, xs = np.nonzero(pixels)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def inner_point(pixels: NDArray[np.bool_]) -> list[int]:
    distance = cv2.distanceTransform(pixels.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return [int(x), int(y)]


def iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def mask_of(client: JsonClient, job: dict[str, Any]) -> NDArray[np.uint8]:
    return np.asarray(Image.open(io.BytesIO(client.artifact(job["id"], "mask"))))


def prompt(client: JsonClient, image: bytes, prompts: dict[str, Any], **options: Any) -> dict[str, Any]:
    job = client.submit(image, wait=90, prompts=json.dumps(prompts), **options)
    assert job["status"] == "completed", job
    return job


def triton_inferences(stack: Stack) -> int:
    """Inferences Triton ran over all its models (its own statistics)."""
    stats = httpx.get(f"http://127.0.0.1:{stack.settings.triton_http_port}/v2/models/stats", timeout=10).json()
    return sum(int(m["inference_stats"]["success"]["count"]) for m in stats["model_stats"])


def test_a_box_and_a_point_each_give_their_shape(client: JsonClient) -> None:
    image, parts = scene(41)
    objects = [{"box": box(parts[0])}, {"points": [inner_point(parts[1])]}]
    job = prompt(client, png_bytes(image), {"objects": objects})
    mask = mask_of(client, job)
    assert [o["index"] for o in job["objects"]] == [1, 2]
    assert iou(mask == 1, parts[0]) > 0.9
    assert iou(mask == 2, parts[1]) > 0.9
    for found, truth in zip(job["objects"], parts, strict=False):
        assert 0.5 < found["score"] <= 1.0 and found["label"] in shapes.LABELS[1:]
        assert found["area"] == pytest.approx(int(truth.sum()), rel=0.15)
    regions = json.loads(client.artifact(job["id"], "regions"))
    assert {r["label"] for r in regions["regions"]} == {"object-1", "object-2"}
    assert regions["objects"] == job["objects"]
    assert job["confidence"] is None  # per object, not per image


def test_a_box_around_the_astronaut_agrees_with_mediapipe(client: JsonClient, tmp_path: Path) -> None:
    photo, expected = mediapipe_masks(tmp_path)["astronaut"]
    job = prompt(client, encode_png(photo), {"objects": [{"box": box(expected)}]}, model="person-selfie")
    assert iou(mask_of(client, job) == 1, expected) > 0.9
    assert job["objects"][0]["label"] == "person"


def test_further_prompts_on_an_image_run_only_the_decoder_and_never_for_another_tenant(
    stack: Stack, client: JsonClient, other_tenant: JsonClient
) -> None:
    image, parts = scene(42)
    body = png_bytes(image)
    before = triton_inferences(stack)
    first = prompt(client, body, {"objects": [{"box": box(parts[0])}]})
    after_first = triton_inferences(stack)
    second = prompt(client, body, {"objects": [{"box": box(parts[1])}]})
    after_second = triton_inferences(stack)
    assert after_first > before and after_second == after_first
    assert "encoder" in first["timings_ms"] and "encoder" not in second["timings_ms"]
    theirs = prompt(other_tenant, body, {"objects": [{"box": box(parts[1])}]})
    assert triton_inferences(stack) > after_second  # tenant-b's own embedding, not tenant-a's
    assert "encoder" in theirs["timings_ms"]


def test_segment_everything_finds_each_shape_once(client: JsonClient) -> None:
    image, parts = scene(43, at_least=3)
    job = prompt(client, png_bytes(image), {"everything": True, "points_per_side": 16, "min_score": 0.5})
    mask = mask_of(client, job)
    assert len(job["objects"]) == len(parts)
    best = [max(iou(mask == o["index"], truth) for o in job["objects"]) for truth in parts]
    assert min(best) > 0.85, best
    assert all(o["point"] is not None and o["bbox"] is not None for o in job["objects"])


def test_an_earlier_answer_is_refined_by_a_point_that_says_not_here(client: JsonClient) -> None:
    image = np.full((96, 96, 3), 30, np.uint8)
    image[20:76, 20:48] = (220, 60, 60)
    image[20:76, 48:76] = (60, 220, 60)
    body = png_bytes(image)
    whole = prompt(client, body, {"objects": [{"box": [18, 18, 78, 78]}]})
    assert mask_of(client, whole)[48, 30] == 1 and mask_of(client, whole)[48, 66] == 1
    refine = {"objects": [{"box": [18, 18, 78, 78], "points": [[30, 48], [66, 48, 0]]}]}
    part = prompt(client, body, refine, prompt_mask_job=whole["id"])
    assert part["options"]["prompts"]["mask"]["ref"]["key"].startswith("inputs/tenant-a/")
    assert mask_of(client, part)[48, 30] == 1 and mask_of(client, part)[48, 66] == 0


def test_a_prompted_job_replays_to_the_same_outputs(client: JsonClient) -> None:
    image, parts = scene(44)
    job = prompt(client, png_bytes(image), {"objects": [{"box": box(parts[0]), "points": [inner_point(parts[0])]}]})
    view = client.replay(job["id"])
    assert view["status"] == "completed" and view["reproduced"], view
    assert set(view["outputs"]) == {"mask", "overlay", "regions"}
    assert client.status(view["replay"])["options"]["prompts"] == job["options"]["prompts"]


def test_prompts_that_leave_the_image_or_name_anothers_job_are_refused(client: JsonClient, other_tenant: JsonClient) -> None:
    image, parts = scene(45)
    body = png_bytes(image)
    with pytest.raises(ApiError) as refused:
        client.submit(body, prompts=json.dumps({"objects": [{"box": [0, 0, 300, 40]}]}))
    assert (refused.value.status, refused.value.code) == (422, "invalid_prompt")
    with pytest.raises(ApiError) as refused:
        client.submit(body, prompts="{not json")
    assert (refused.value.status, refused.value.code) == (422, "invalid_prompt")
    with pytest.raises(ApiError) as refused:
        client.submit(body, prompt_mask_job="any")  # a mask to refine, but nothing to refine it with
    assert (refused.value.status, refused.value.code) == (422, "invalid_prompt")
    mine = prompt(client, body, {"objects": [{"box": box(parts[0])}]})
    with pytest.raises(ApiError) as refused:
        other_tenant.submit(body, prompts=json.dumps({"objects": [{"box": box(parts[0])}]}), prompt_mask_job=mine["id"])
    assert refused.value.status == 404


def test_the_cli_sends_a_box_and_a_point_and_prints_each_object(stack: Stack, client: JsonClient, tmp_path: Path) -> None:
    image, parts = scene(46)
    path = tmp_path / "shapes.png"
    path.write_bytes(png_bytes(image))
    x0, y0, x1, y1 = box(parts[0])
    x, y = inner_point(parts[0])
    out = cli(
        stack, "--json", "submit", str(path), "--box", f"{x0},{y0},{x1},{y1}", "--point", f"{x},{y}", "--out", str(tmp_path)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    job = json.loads(out.stdout)
    assert job["options"]["prompts"]["objects"][0] == {"box": [x0, y0, x1, y1], "points": [[x, y, 1]]}
    assert iou(mask_of(client, job) == 1, parts[0]) > 0.9
    human = cli(stack, "submit", str(path), "--box", f"{x0},{y0},{x1},{y1}", "--out", str(tmp_path))
    assert "object 1: score" in human.stdout, human.stdout
    refused = cli(stack, "submit", str(path), "--box", f"{x0},{y0},{x1},{y1}", "--point", f"{x1 + 5},{y1 + 5}")
    assert refused.returncode != 0 and "lies in no box" in refused.stderr


def test_a_bus_publishers_prompt_outside_the_image_fails_its_job_and_a_good_one_completes(
    stack: Stack, client: JsonClient
) -> None:
    image, parts = scene(47, size=160)
    uploaded = client.upload(png_bytes(image))
    ref = {k: uploaded[k] for k in ("key", "size", "sha256", "content_type")}
    outside = {"image": ref, "options": {"prompts": {"objects": [{"box": [0, 0, 400, 50]}]}}}
    inside = {"image": ref, "options": {"prompts": {"objects": [{"box": box(parts[0])}]}}}
    sends = {
        "prompt-outside": envelope("prompt-outside", outside, version="1.10"),
        "prompt-inside": envelope("prompt-inside", inside, version="1.10"),
    }
    outcomes = asyncio.run(outcomes_of(stack, sends, []))
    assert (outcomes["prompt-outside"]["on"], outcomes["prompt-outside"]["code"]) == ("seg.v1.failed.tenant-a", "invalid_prompt")
    assert outcomes["prompt-inside"]["on"] == "seg.v1.completed.tenant-a"
    assert outcomes["prompt-inside"]["objects"][0]["index"] == 1
