"""Exports for annotation tools, read back with pycocotools (COCO) and Label Studio's SDK (its
labelling configuration and predictions), and checked pixel for pixel against the job's own mask
(COCO RLE, Label Studio brush RLE) and by rasterising the Label Studio polygons."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskline.client import JsonClient
from maskline.infra.embedded.stack import Stack
from tests.e2e.conftest import cli

pytestmark = pytest.mark.e2e


def masks_of(client: JsonClient, job_id: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(client.artifact(job_id, "mask"))))


def test_coco_and_label_studio_exports_load_in_their_tools_and_match_the_mask(
    client: JsonClient, other_tenant: JsonClient, samples: Path
) -> None:
    jobs = [client.submit(samples / f"shapes-{n}.png", wait=120)["id"] for n in (1, 2)]
    export = f"/v1/exports/segmentations?jobs={','.join(jobs)}"
    dataset = client.http.get(export + "&format=coco-dataset").json()
    results = client.http.get(export + "&format=coco").json()
    assert [image["id"] for image in dataset["images"]] == [1, 2] and results

    gt = COCO()  # pycocotools' own reader: the dataset as ground truth, the results loaded onto it
    gt.dataset = dataset
    gt.createIndex()
    loaded = gt.loadRes(copy.deepcopy(results))  # loadRes adds fields to what it is given
    assert len(loaded.getAnnIds()) == len(results)
    evaluation = COCOeval(gt, loaded, "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] > 0.99  # the same regions as results and as truth: AP 1.0

    single = client.http.get(f"/v1/segmentations/{jobs[0]}/regions?format=coco").json()
    assert single == [r for r in results if r["image_id"] == 1]
    mask = masks_of(client, jobs[0])
    for class_id in {r["category_id"] for r in single}:
        decoded = np.zeros(mask.shape, bool)
        for r in single:
            if r["category_id"] == class_id:
                decoded |= coco_mask.decode(r["segmentation"]).astype(bool)
        truth = mask == class_id
        assert not (decoded & ~truth).any() and decoded.sum() >= 0.99 * truth.sum()  # tiny specks may be dropped

    tasks = client.http.get(export + "&format=labelstudio").json()
    assert [t["data"]["maskline_job"] for t in tasks] == jobs
    prediction = tasks[0]["predictions"][0]
    assert prediction["model_version"].startswith("shapes-unet:")
    labels = dataset["categories"]
    for result in prediction["result"]:
        assert result["type"] == "polygonlabels" and result["to_name"] == "image"
        assert (result["original_width"], result["original_height"]) == (mask.shape[1], mask.shape[0])
    for category in labels:
        drawn = np.zeros(mask.shape, np.uint8)
        for result in prediction["result"]:
            if result["value"]["polygonlabels"] == [category["name"]]:
                points = np.array(result["value"]["points"]) * [mask.shape[1] / 100, mask.shape[0] / 100]
                cv2.fillPoly(drawn, [np.round(points).astype(np.int32)], 1)
        truth = mask == category["id"]
        if drawn.any():
            iou = (drawn.astype(bool) & truth).sum() / (drawn.astype(bool) | truth).sum()
            assert iou > 0.9, (category, iou)

    # Label Studio's own SDK: the labelling configuration parses, and every prediction fits it
    config = client.http.get(export + "&format=labelstudio-config")
    assert config.headers["content-type"].startswith("application/xml")
    interface = LabelInterface(config.text)
    assert list(interface.get_control("label").labels) == [c["name"] for c in labels]
    for task in tasks:
        assert all(interface.validate_prediction(p) for p in task["predictions"]), task
    mislabelled = copy.deepcopy(prediction)
    mislabelled["result"][0]["value"]["polygonlabels"] = ["no-such-class"]
    assert not interface.validate_prediction(mislabelled)  # the check is a real one

    # Brush masks: each region's exact pixels, decoded by Label Studio's SDK, equal the job's mask
    brushed = client.http.get(export + "&format=labelstudio-brush").json()
    assert list(interface.get_control("brush").labels) == [c["name"] for c in labels]
    for task in brushed:
        # label-studio-sdk 1.0.10's validator reads a brush RLE as value/count pairs and refuses even
        # its own `mask2rle` output: the tasks' structure (control, image, labels) is checked with a
        # stand-in RLE that rule accepts, and the RLE itself by the SDK's decoder below.
        stand_in = copy.deepcopy(task["predictions"])
        for result in (r for p in stand_in for r in p["result"]):
            result["value"]["rle"] = [0, 1]
        assert all(interface.validate_prediction(p) for p in stand_in), task
    for task, job in zip(brushed, jobs, strict=True):
        job_mask = masks_of(client, job)
        painted = np.zeros(job_mask.shape, np.int16)
        for result in task["predictions"][0]["result"]:
            assert result["type"] == "brushlabels" and result["from_name"] == "brush"
            pixels = decode_rle(bytes(result["value"]["rle"])).reshape(*job_mask.shape, 4)[..., 3] > 0
            class_id = next(c["id"] for c in labels if [c["name"]] == result["value"]["brushlabels"])
            assert not painted[pixels].any()  # regions do not overlap
            painted[pixels] = class_id
        objects = job_mask > 0
        assert (painted[painted > 0] == job_mask[painted > 0]).all()  # every painted pixel has its class
        assert (painted > 0).sum() >= 0.99 * objects.sum()  # tiny specks may be dropped, as in regions.json

    assert client.http.get(export + "&format=voc").json()["code"] == "invalid_options"
    assert client.http.get(f"/v1/segmentations/{jobs[0]}/mask?format=coco").status_code == 422
    assert other_tenant.http.get(export + "&format=coco").status_code == 404  # another tenant's jobs read as missing


def test_a_dataset_run_segments_every_stored_image_and_exports_them_by_name(
    client: JsonClient, other_tenant: JsonClient, stack: Stack, samples: Path, tmp_path: Path
) -> None:
    names = [f"shapes-{n}.png" for n in (1, 2, 3)]
    for name in names:
        client.upload_dataset_file("run-ds", "images", (samples / name).read_bytes(), name)
    out = tmp_path / "run.json"
    run = cli(stack, "--json", "datasets", "segment", "run-ds", "--format", "coco-dataset", "--out", str(out))
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["images"] == 3 and len(summary["completed"]) == 3 and summary["failed"] == []
    dataset = COCO(str(out))  # pycocotools reads the file the run wrote
    assert sorted(image["file_name"] for image in dataset.dataset["images"]) == names
    assert dataset.getAnnIds()
    assert [client.status(j)["filename"] for j in summary["completed"]] == names

    tasks = json.loads(client.export_segmentations(summary["completed"], "labelstudio"))
    interface = LabelInterface(client.export_segmentations(summary["completed"], "labelstudio-config").decode())
    assert [t["data"]["maskline_file"] for t in tasks] == names
    assert all(interface.validate_prediction(p) for t in tasks for p in t["predictions"])

    refused = client.segment_dataset("run-ds", tta=True, tta_variants="spin")  # refused image by image, none runs
    assert [(r["image"], r["status"], r["error"]["code"]) for r in refused] == [(n, "refused", "invalid_options") for n in names]

    def post(who: JsonClient, **form: str) -> dict[str, object]:
        fields = {k: (None, v) for k, v in form.items()}
        return dict(who.http.post("/v1/segmentations", files=fields).json())

    assert post(client, dataset_image="run-ds/nope.png")["code"] == "dataset_image_not_found"
    assert post(other_tenant, dataset_image="run-ds/shapes-1.png")["code"] == "dataset_image_not_found"  # only your own
    assert post(client)["code"] == "invalid_options"  # neither an image nor a dataset image
