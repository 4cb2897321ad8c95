"""The header check reports the upright size: what prompt coordinates refer to (ingest turns the
image by its EXIF orientation)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from maskline.services.gateway.segmentations.sniff import check_image_header

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("orientation", "upright"), [(1, (40, 30)), (3, (40, 30)), (6, (30, 40)), (8, (30, 40))])
def test_a_photo_turned_by_its_exif_orientation_reports_its_upright_size(orientation: int, upright: tuple[int, int]) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.new("RGB", (40, 30)).save(out, "JPEG", exif=exif.tobytes())
    header = check_image_header(out.getvalue(), allowed_formats=frozenset({"JPEG"}), max_pixels=10_000)
    assert (header.width, header.height) == upright
