"""The difference of two versions' masks on one image, as a picture: the image, each version's mask
in class colours, and where they disagree (red on the dimmed image)."""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageDraw

#: Class colours (background black), repeated past the tenth class.
_COLOURS = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]
_COLOURS += [(240, 50, 230), (210, 245, 60), (250, 190, 212)]
PALETTE = [channel for i in range(256) for channel in _COLOURS[0 if i == 0 else 1 + (i - 1) % (len(_COLOURS) - 1)]]
GAP = 4
CAPTION = 14


def _coloured(mask: Image.Image) -> Image.Image:
    painted = mask.convert("L").convert("P")
    painted.putpalette(PALETTE)
    return painted.convert("RGB")


def difference(image_png: bytes, first_png: bytes, second_png: bytes, captions: tuple[str, str]) -> tuple[bytes, int]:
    """PNG of [image | first mask | second mask | difference] and the number of pixels that differ."""
    image = Image.open(io.BytesIO(image_png)).convert("RGB")
    size = image.size
    first, second = (
        Image.open(io.BytesIO(png)).convert("L").resize(size, Image.Resampling.NEAREST) for png in (first_png, second_png)
    )
    differs = ImageChops.difference(first, second).point(lambda v: 255 if v else 0)
    dimmed = Image.blend(image, Image.new("RGB", size), 0.6)
    marked = Image.composite(Image.new("RGB", size, (255, 0, 0)), dimmed, differs)
    panels = [image, _coloured(first), _coloured(second), marked]
    labels = ["image", captions[0], captions[1], "differs"]
    width, height = size
    canvas = Image.new("RGB", (4 * width + 3 * GAP, height + CAPTION), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        canvas.paste(panel, (i * (width + GAP), CAPTION))
        draw.text((i * (width + GAP) + 2, 1), label, fill=(0, 0, 0))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue(), differs.histogram()[255]
