"""Label Studio's predict context as prompts: clicks in percent, kept inside the image, and
malformed contexts refused with a stable code (never a 500)."""

from __future__ import annotations

from typing import Any

import pytest

from maskline.contracts.seg_v1 import Box, Point
from maskline.services.gateway.core.errors import Unprocessable
from maskline.services.gateway.segmentations.label_studio import controls, prompts_of

pytestmark = pytest.mark.unit


def click(x: Any, y: Any, positive: bool = True) -> dict[str, Any]:
    return {
        "type": "keypointlabels",
        "original_width": 200,
        "original_height": 100,
        "is_positive": positive,
        "value": {"x": x, "y": y, "keypointlabels": ["cat"]},
    }


def test_a_rectangle_and_clicks_are_one_object_in_pixels() -> None:
    drag = {
        "type": "rectanglelabels",
        "original_width": 200,
        "original_height": 100,
        "value": {"x": 10, "y": 20, "width": 50, "height": 30, "rectanglelabels": ["cat"]},
    }
    prompts, label = prompts_of({"result": [drag, click(25, 40), click(50, 40, positive=False)]})
    (obj,) = prompts.objects
    assert label == "cat"
    assert obj.box == Box(20, 20, 120, 50)
    assert obj.points == (Point(50, 40, 1), Point(100, 40, 0))


def test_no_clicks_ask_for_every_object() -> None:
    prompts, label = prompts_of({})
    assert prompts.everything and label is None


def test_clicks_past_the_edge_are_kept_inside_the_image() -> None:
    prompts, _ = prompts_of({"result": [click(-5, 140)]})
    point = prompts.objects[0].points[0]
    assert 0 <= point.x < 200 and 0 <= point.y < 100


@pytest.mark.parametrize(
    "context",
    [
        {"result": [click("abc", 10)]},
        {"result": [click(float("nan"), 10)]},
        {"result": [{"type": "keypointlabels", "original_width": 10, "original_height": 10, "value": {"y": 1}}]},
        {"result": "not a list of results"},
        {"result": [click(10, 10)] * 40},
        {"result": [click(10, 10, positive=False)]},
    ],
)
def test_a_malformed_context_is_refused_as_an_invalid_prompt(context: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable) as refused:
        prompts_of(context)
    assert refused.value.code == "invalid_prompt"


def test_the_labelling_config_names_the_controls_and_must_have_one_for_masks() -> None:
    config = '<View><Image name="img" value="$photo"/><BrushLabels name="m" toName="img"/></View>'
    found = controls(config)
    assert (found.image, found.image_key, found.brush, found.polygon) == ("img", "photo", "m", None)
    with pytest.raises(Unprocessable) as refused:
        controls('<View><Image name="img" value="$photo"/></View>')
    assert refused.value.code == "invalid_label_config"
