"""Segmentation results in the formats annotation tools import (`?format=` on regions, and
`/v1/exports/segmentations?jobs=` for a batch of jobs):

- `coco`: a COCO *results* file — a list of {image_id, category_id, segmentation (COCO RLE), bbox,
  area, score} that `pycocotools`' `COCO.loadRes` accepts;
- `coco-dataset`: the same as a COCO *dataset* (images, categories, annotations), to open in tools
  that take ground truth, or to pair with the results file;
- `labelstudio`: Label Studio tasks with predictions (`polygonlabels`, points in percent of the
  image), to pre-annotate a labelling project;
- `labelstudio-brush`: the same tasks with each region's exact pixels as `brushlabels` (Label
  Studio's RLE, holes and all; brush.py), to correct masks with the brush tool;
- `labelstudio-config`: the labelling configuration (XML) both kinds of predictions fit — an image,
  a `PolygonLabels` and a `BrushLabels` control with every label of the models that made them — to
  create the project with.

The regions document is merge's output, `regions.json` (contracts/http_v1.RegionsDocument).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

import msgspec

from maskline.contracts.http_v1 import Region, RegionsDocument
from maskline.services.gateway.segmentations import brush

#: The names a Label Studio prediction refers to: its control tags (polygons, brush) and the image it labels.
LABEL_STUDIO_CONTROL, LABEL_STUDIO_BRUSH, LABEL_STUDIO_IMAGE = "label", "brush", "image"


def decode(body: bytes) -> RegionsDocument:
    return msgspec.json.decode(body, type=RegionsDocument)


def coco_results(docs: list[RegionsDocument], first_image_id: int = 1) -> list[dict[str, Any]]:
    """One result per region; image ids count from `first_image_id` in the order of `docs`;
    category ids are the model's class indices."""
    return [
        {
            "image_id": first_image_id + i,
            "category_id": region.class_id,
            "segmentation": {"size": region.rle.size, "counts": region.rle.counts},
            "bbox": region.bbox,
            "area": region.area,
            "score": region.score,
        }
        for i, doc in enumerate(docs)
        for region in doc.regions
    ]


def coco_dataset(docs: list[RegionsDocument], filenames: list[str | None], first_image_id: int = 1) -> dict[str, Any]:
    """`filenames`: each job's image as it was named (a dataset run's are the dataset's), else `<job>.png`."""
    labels = docs[0].labels if docs else []
    images = [
        {
            "id": first_image_id + i,
            "width": doc.image["width"],
            "height": doc.image["height"],
            "file_name": name or f"{doc.job_id}.png",
        }
        for i, (doc, name) in enumerate(zip(docs, filenames, strict=True))
    ]
    annotations = [{"id": n + 1, "iscrowd": 0, **result} for n, result in enumerate(coco_results(docs, first_image_id))]
    return {
        "info": {"description": "maskline segmentations", "jobs": [doc.job_id for doc in docs]},
        "images": images,
        "categories": [{"id": index, "name": label} for index, label in enumerate(labels)],
        "annotations": annotations,
    }


def label_studio_config(docs: list[RegionsDocument]) -> str:
    """The labelling configuration the tasks of `label_studio_tasks` fit: every label, in model order."""
    labels = list(dict.fromkeys(label for doc in docs for label in doc.labels))
    choices = "".join(f"<Label value={quoteattr(label)}/>" for label in labels)
    return (
        f'<View><Image name="{LABEL_STUDIO_IMAGE}" value="${LABEL_STUDIO_IMAGE}"/>'
        f'<PolygonLabels name="{LABEL_STUDIO_CONTROL}" toName="{LABEL_STUDIO_IMAGE}">{choices}</PolygonLabels>'
        f'<BrushLabels name="{LABEL_STUDIO_BRUSH}" toName="{LABEL_STUDIO_IMAGE}">{choices}</BrushLabels></View>'
    )


def polygon_results(region: Region, width: int, height: int) -> list[tuple[str, str, dict[str, Any]]]:
    """A region's outer contours, points in percent of the image."""
    found = []
    for part, flat in enumerate(region.polygon):
        points = [[round(100 * x / width, 4), round(100 * y / height, 4)] for x, y in zip(flat[::2], flat[1::2], strict=True)]
        found.append(
            (f"r{region.id}-{part}", "polygonlabels", {"points": points, "polygonlabels": [region.label], "closed": True})
        )
    return found


def brush_result(region: Region, width: int, height: int) -> list[tuple[str, str, dict[str, Any]]]:
    """A region's exact pixels."""
    rle = brush.label_studio_rle(brush.mask_of(region.rle))
    return [(f"r{region.id}", "brushlabels", {"format": "rle", "rle": rle, "brushlabels": [region.label]})]


def label_studio_tasks(
    docs: list[RegionsDocument], image_urls: list[str], filenames: list[str | None], *, as_brush: bool = False
) -> list[dict[str, Any]]:
    """A task per job with one prediction: a region's outer contours become `polygonlabels`, or
    (`as_brush`) its pixels `brushlabels`."""
    from_name, to_name = (LABEL_STUDIO_BRUSH if as_brush else LABEL_STUDIO_CONTROL), LABEL_STUDIO_IMAGE
    shapes = brush_result if as_brush else polygon_results
    tasks = []
    for doc, url, filename in zip(docs, image_urls, filenames, strict=True):
        width, height = doc.image["width"], doc.image["height"]
        results = [
            {
                "id": result_id,
                "type": kind,
                "from_name": from_name,
                "to_name": to_name,
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "score": region.score,
                "value": value,
            }
            for region in doc.regions
            for result_id, kind, value in shapes(region, width, height)
        ]
        mean = sum(r.score * r.area for r in doc.regions) / max(1, sum(r.area for r in doc.regions))
        model = f"{doc.model.name}:{doc.model.version}"
        tasks.append(
            {
                "data": {to_name: url, "maskline_job": doc.job_id, "maskline_file": filename},
                "predictions": [{"model_version": model, "score": round(mean, 4), "result": results}],
            }
        )
    return tasks
