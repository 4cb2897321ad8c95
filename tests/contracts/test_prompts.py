"""Prompts in the segmentation contract (1.10): their JSON, their rules, and the CLI's grouping."""

from __future__ import annotations

import msgspec
import pytest

from maskline.contracts import seg_v1
from maskline.contracts.seg_v1 import Box, Point, PromptedObject, Prompts

pytestmark = pytest.mark.unit
ZEROS = b"0" * 64


def test_boxes_and_points_are_short_json_arrays() -> None:
    raw = b'{"objects": [{"box": [40, 30, 200, 310], "points": [[120, 90], [60, 50, 0]]}]}'
    prompts = msgspec.json.decode(raw, type=Prompts)
    assert prompts.objects[0].box == Box(40, 30, 200, 310)
    assert prompts.objects[0].points == (Point(120, 90, 1), Point(60, 50, 0))
    assert msgspec.json.decode(msgspec.json.encode(prompts), type=Prompts) == prompts


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"objects": [{"box": [200, 30, 40, 310]}]}', "x0 < x1"),
        (b'{"objects": [{"points": [[1, 2, 0]]}]}', "foreground point"),
        (b'{"objects": [{"points": [[1, 2, 3]]}]}', "Invalid enum value 3"),
        (b'{"objects": [{"box": [-1, 0, 5, 5]}]}', ">= 0"),
        (b"{}", "not neither"),
        (b'{"everything": true, "objects": [{"box": [0, 0, 5, 5]}]}', "not both"),
        (
            b'{"everything": true, "mask": {"ref": {"key": "inputs/t/x.png", "size": 1, "sha256": "' + b"0" * 64 + b'"}}}',
            "no mask",
        ),
    ],
)
def test_a_prompt_that_names_no_pixels_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=why):
        msgspec.json.decode(raw, type=Prompts)


def test_prompts_and_tta_do_not_go_together() -> None:
    raw = {"prompts": {"everything": True}, "tta": {}}
    with pytest.raises(msgspec.ValidationError, match="tta"):
        msgspec.convert(raw, seg_v1.SegmentationOptions)


def test_points_join_the_box_that_holds_them_or_make_one_object_without_boxes() -> None:
    boxes = [Box(0, 0, 10, 10), Box(20, 20, 30, 30)]
    objects = seg_v1.prompt_objects(boxes, [Point(25, 25), Point(5, 5, 0)])
    assert objects == (
        PromptedObject(box=boxes[0], points=(Point(5, 5, 0),)),
        PromptedObject(box=boxes[1], points=(Point(25, 25),)),
    )
    assert seg_v1.prompt_objects([], [Point(1, 1), Point(2, 2, 0)]) == (PromptedObject(points=(Point(1, 1), Point(2, 2, 0))),)
    with pytest.raises(ValueError, match="no box"):
        seg_v1.prompt_objects(boxes, [Point(15, 15)])


def test_a_prompted_result_names_one_class_per_object() -> None:
    assert seg_v1.object_labels(2) == ("background", "object-1", "object-2")
