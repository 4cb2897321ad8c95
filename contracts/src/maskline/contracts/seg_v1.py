"""Segmentation contracts, major version 1. Released: change only by adding defaulted fields.

Subjects (constants below): requested → ingested → inferred → completed, or failed.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from maskline.contracts.common_v1 import (
    ALL_VARIANTS,
    Fusion,
    JobFailed,
    ModelRef,
    ObjectRef,
    SuppliedInput,
    Variant,
    VariantName,
    WrittenInput,
    WrittenOutput,
    display_filename,
    reference,
)

REQUESTED = "seg.v1.requested"
INGESTED = "seg.v1.ingested"
AUGMENT_REQUESTED = "seg.v1.augment.requested"
"""Ingest publishes this instead of `ingested` when the request asks for test-time augmentation."""
AUGMENTED = "seg.v1.augmented"
INFERRED = "seg.v1.inferred"
COMPLETED = "seg.v1.completed"
FAILED = "seg.v1.failed"
CANCELLED = "seg.v1.cancelled"

Output = Literal["mask", "overlay", "regions"]
ALL_OUTPUTS: tuple[Output, ...] = ("mask", "overlay", "regions")


class TtaOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Test-time augmentation: segment every variant, map back, fuse. Added in 1.1."""

    variants: tuple[VariantName, ...] = ALL_VARIANTS
    """Each at most once, in the order given: a repeated name is dropped (one inference per variant)."""
    angle: Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)] = 15.0
    blur_sigma: Annotated[float, msgspec.Meta(ge=0.0, le=20.0)] = 1.0
    fusion: Fusion = "mean"

    def __post_init__(self) -> None:
        # However a request spells them (an HTTP form, a bus message), a job costs one inference per
        # distinct variant: never more than len(ALL_VARIANTS).
        msgspec.structs.force_setattr(self, "variants", tuple(dict.fromkeys(self.variants)))

    @property
    def inferences(self) -> int:
        return len(self.variants)


Coordinate = Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)]


class Point(msgspec.Struct, frozen=True, array_like=True):
    """`[x, y]` or `[x, y, label]` in the uploaded image's pixels: label 1 (the default) says the
    object is here, 0 that it is not. Added in 1.10."""

    x: Coordinate
    y: Coordinate
    label: Literal[0, 1] = 1


class Box(msgspec.Struct, frozen=True, array_like=True):
    """`[x0, y0, x1, y1]` in the uploaded image's pixels: the object lies inside. Added in 1.10."""

    x0: Coordinate
    y0: Coordinate
    x1: Coordinate
    y1: Coordinate

    def __post_init__(self) -> None:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError("a box is [x0, y0, x1, y1] with x0 < x1 and y0 < y1")


class PromptedObject(msgspec.Struct, frozen=True, kw_only=True):
    """One object to segment: a box, points, or both (SAM's prompt for one mask). Added in 1.10."""

    box: Box | None = None
    points: Annotated[tuple[Point, ...], msgspec.Meta(max_length=32)] = ()

    def __post_init__(self) -> None:
        if self.box is None and not any(p.label == 1 for p in self.points):
            raise ValueError("an object needs a box or at least one foreground point")


def prompt_objects(boxes: list[Box], points: list[Point]) -> tuple[PromptedObject, ...]:
    """Boxes and points as objects, the way a command line gives them: each box is one object and
    each point joins the first box that holds it; with no box, all the points are one object."""
    if not boxes:
        return (PromptedObject(points=tuple(points)),) if points else ()
    joined: list[list[Point]] = [[] for _ in boxes]
    for point in points:
        holder = next((i for i, b in enumerate(boxes) if b.x0 <= point.x <= b.x1 and b.y0 <= point.y <= b.y1), None)
        if holder is None:
            raise ValueError(f"point ({point.x}, {point.y}) lies in no box: give it with its own box, or give no boxes")
        joined[holder].append(point)
    return tuple(PromptedObject(box=b, points=tuple(ps)) for b, ps in zip(boxes, joined, strict=True))


#: Objects one request may prompt (each is one mask, one class of the result).
MAX_PROMPTED_OBJECTS = 32
#: Objects "segment everything" may return at most.
MAX_EVERYTHING_OBJECTS = 64

#: A prior mask: a PNG the tenant uploaded (`POST /v1/uploads`: an earlier job's mask, say); its
#: nonzero pixels, or those equal to `PriorMask.value`, are the object.
SuppliedPrior = Annotated[ObjectRef, reference("inputs", by="publisher")]


class PriorMask(msgspec.Struct, frozen=True, kw_only=True):
    """The previous answer, for refinement: its pixels are probable foreground of every object. Added in 1.10."""

    ref: SuppliedPrior
    value: Annotated[int, msgspec.Meta(ge=0, le=255)] = 0
    """The mask's value that is the object (0: any nonzero pixel)."""


class Prompts(msgspec.Struct, frozen=True, kw_only=True):
    """Promptable segmentation (Segment-Anything style). Added in 1.10.

    Each object is one mask in the result (class `object-<n>`, n its place here, from 1), with the
    model's predicted quality. With `everything` and no objects, a grid of points covers the image
    and every distinct, stable mask comes back (SAM's automatic mask generator)."""

    objects: Annotated[tuple[PromptedObject, ...], msgspec.Meta(max_length=MAX_PROMPTED_OBJECTS)] = ()
    mask: PriorMask | None = None
    everything: bool = False
    points_per_side: Annotated[int, msgspec.Meta(ge=2, le=32)] = 12
    """`everything`: the grid of point prompts (n x n)."""
    min_score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.7
    """`everything`: masks with a lower predicted quality are dropped."""
    min_stability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.9
    """`everything`: masks less stable than this are dropped (IoU of the mask at a looser and a
    tighter threshold: SAM's stability score)."""

    def __post_init__(self) -> None:
        if bool(self.objects) == self.everything:
            raise ValueError("prompts name objects, or ask for everything (not both, not neither)")
        if self.everything and self.mask is not None:
            raise ValueError("an earlier answer refines objects: everything takes no mask")

    def outside(self, width: int, height: int) -> str | None:
        """Why a box or point leaves a width x height image (upright), or None: the pixels a prompt
        names must exist. The gateway refuses such a request at once; ingest fails a bus one."""
        for i, obj in enumerate(self.objects):
            box = obj.box
            if box is not None and not (box.x1 <= width and box.y1 <= height):
                return f"object {i}: box [{box.x0}, {box.y0}, {box.x1}, {box.y1}] leaves the {width}x{height} image"
            for point in obj.points:
                if not (point.x < width and point.y < height):
                    return f"object {i}: point ({point.x}, {point.y}) is outside the {width}x{height} image"
        return None


class SegmentationOptions(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9_-]{0,63}$")] = "shapes-unet"
    owner: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,128}$")] | None = None
    """Whose model: None looks for your own `model`, then the platform's public one; name the owner
    to use a model another tenant shared with you. Added in 1.3."""
    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """None: the version `alias` names (never simply the newest one)."""
    precision: Literal["fp32", "hybrid", "int8"] | None = None
    """Pick the alias's version in this precision, `<alias>-<precision>` (with `version`: check it
    has it). Added in 1.2."""
    alias: Annotated[str, msgspec.Meta(pattern="^[a-z][a-z0-9_-]{0,31}$")] | None = None
    """Without `version`: the model's alias to run (None: `stable`), with its canary split and
    shadow. Added in 1.6."""
    outputs: tuple[Output, ...] = ALL_OUTPUTS
    overlay_alpha: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    min_region_area: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Connected regions smaller than this many pixels are left out of the regions JSON."""
    tta: TtaOptions | None = None
    """None: one inference, augment is skipped. Added in 1.1."""
    prompts: Prompts | None = None
    """None: every pixel gets the model's class. With prompts: one mask per prompted object (or
    every object), made by the named model when it is promptable (SAM format), else by the bundled
    promptable path over the named model's probabilities. Added in 1.10."""

    def __post_init__(self) -> None:
        if self.prompts is not None and self.tta is not None:
            raise ValueError("prompts and tta do not go together: a prompt names pixels of the image as it is")

    @property
    def inferences(self) -> int:
        """What the request costs Triton: one inference, or one per TTA variant (what admission counts)."""
        return self.tta.inferences if self.tta is not None else 1


class SegmentationRequested(msgspec.Struct, frozen=True, kw_only=True):
    """A client asks for a segmentation of an image already put in object storage."""

    image: SuppliedInput
    options: SegmentationOptions = SegmentationOptions()
    filename: str | None = None
    """The client's file name, kept as `display_filename` makes it (no path, control or bidi characters)."""
    replay_of: str | None = None
    """The job this one re-runs (same input, same pinned version and options). Added in 1.6."""

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "filename", display_filename(self.filename))

    @property
    def inferences(self) -> int:
        """What admission counts for this job (`SegmentationOptions.inferences`)."""
        return self.options.inferences


class SegmentationIngested(msgspec.Struct, frozen=True, kw_only=True):
    """The image decoded, validated and normalised (RGB, upright) and stored as PNG."""

    image: WrittenInput
    width: int
    height: int
    original_format: str
    options: SegmentationOptions
    timings_ms: dict[str, float] = {}
    working: WrittenInput | None = None
    """The copy the later stages compute on: no larger than the platform's working size (inference
    and TTA run on it, outputs keep the original size). Added in 1.3; since 1.8 written for every
    image, as its pixels (`formats.PIXELS`), the image's own size when it is not larger."""
    working_width: int = 0
    working_height: int = 0

    @property
    def work_ref(self) -> ObjectRef:
        return self.working or self.image

    @property
    def work_size(self) -> tuple[int, int]:
        """(height, width) of the image stages compute on."""
        return (self.working_height, self.working_width) if self.working else (self.height, self.width)

    @property
    def full_size_pixels(self) -> ObjectRef:
        """The image at its own size, without decoding when the working copy is that (`formats.PIXELS`)."""
        if self.working is not None and (self.working_width, self.working_height) == (self.width, self.height):
            return self.working
        return self.image


class SegmentationAugmented(msgspec.Struct, frozen=True, kw_only=True):
    """One variant of a TTA job's image (`index` of `count`). Added in 1.1."""

    image: WrittenInput
    """The variant image (PNG)."""
    width: int
    height: int
    original: WrittenInput
    original_width: int
    original_height: int
    variant: Variant
    index: int
    count: int
    options: SegmentationOptions
    timings_ms: dict[str, float] = {}
    working_width: int = 0
    """The geometry the variants were made from (the working copy), when not the original's. Added in 1.3."""
    working_height: int = 0


class SegmentationInferred(msgspec.Struct, frozen=True, kw_only=True):
    """Class probabilities for the image: float16 array (classes, h, w) stored as .npy.

    For a TTA job there is one per variant: `variant` says which (probabilities are in the
    variant's geometry), `image`/`width`/`height` are the original's.
    """

    image: WrittenInput
    width: int
    height: int
    prediction: WrittenOutput
    model: ModelRef
    labels: tuple[str, ...]
    options: SegmentationOptions
    timings_ms: dict[str, float] = {}
    variant: Variant | None = None
    variant_index: int = 0
    variant_count: int = 1
    working_width: int = 0
    """TTA: the geometry the variants' probabilities map back to (the working copy's), when not the
    original's; fusion runs there and only the fused result is brought to the original size. Added in 1.3."""
    working_height: int = 0
    objects: tuple[ObjectFound, ...] = ()
    """A prompted job's objects (`labels` is then `object_labels`, `prediction` a label map). Added in 1.10."""
    brightness: float | None = None
    """Mean brightness (0-1) of the image the model saw: an input statistic drift is watched by. Added in 1.13."""


class ObjectFound(msgspec.Struct, frozen=True, kw_only=True):
    """One object of a prompted job: the mask's pixels of value `index` (class `object-<index>`),
    and how good the model expects that mask to be. Added in 1.10."""

    index: Annotated[int, msgspec.Meta(ge=1)]
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    """Predicted quality: SAM's predicted IoU for a SAM-format model; for the bundled path, its
    stability times its agreement with the model's own mask (docs/prompts.md)."""
    stability: float | None = None
    label: str | None = None
    """The named model's class under the prompt (bundled path), when it sees one there."""
    point: Point | None = None
    """`everything`: the grid point that found it (in the uploaded image's pixels)."""
    area: int = 0
    """Pixels at the image's own size (merge counts them)."""
    bbox: tuple[int, int, int, int] | None = None
    """[x, y, width, height] at the image's own size (merge)."""


def object_labels(count: int) -> tuple[str, ...]:
    """The classes of a prompted job's result: background, then one per object."""
    return ("background", *(f"object-{i}" for i in range(1, count + 1)))


#: A pixel whose winning class has a lower probability than this counts as uncertain.
UNCERTAIN_BELOW = 0.8
#: A result with a larger fraction of uncertain pixels is flagged as low confidence.
LOW_CONFIDENCE_ABOVE = 0.1


class Confidence(msgspec.Struct, frozen=True, kw_only=True):
    """How sure the model was over the whole image: a client's signal that an image is outside
    what the model knows (a shapes model on a photo) before it trusts the mask. Added in 1.5.

    Measured on the bundled models (docs/models.md): the shapes model on shapes images gives a mean
    of 0.989-0.996 with 0.6-2% uncertain pixels, on real photos 0.907-0.972 with 4-18%; more than
    `LOW_CONFIDENCE_ABOVE` uncertain pixels is the rule of thumb the CLI and dashboard flag."""

    mean_probability: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    """Mean over the image's pixels of the winning class's probability (1.0: sure everywhere;
    1 / classes: a guess)."""
    uncertain_fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    """Fraction of pixels whose winning probability is below `uncertain_below`."""
    uncertain_below: float = UNCERTAIN_BELOW


class SegmentationCompleted(msgspec.Struct, frozen=True, kw_only=True):
    """The outputs are stored; `artifacts` maps output name to its object."""

    artifacts: dict[str, WrittenOutput]
    model: ModelRef
    width: int
    height: int
    regions: int
    timings_ms: dict[str, float] = {}
    variants: tuple[Variant, ...] = ()
    """The TTA variants fused into this result (empty without TTA). Added in 1.1."""
    confidence: Confidence | None = None
    """Added in 1.5."""
    objects: tuple[ObjectFound, ...] = ()
    """A prompted job's objects, with their area and box. Added in 1.10."""
    brightness: float | None = None
    """Mean brightness (0-1) of the image the model saw (`SegmentationInferred.brightness`). Added in 1.13."""


SegmentationFailed = JobFailed

#: Payload type of every subject in this family: the one table dispatchers and schemas use.
PAYLOADS: dict[str, type[msgspec.Struct]] = {
    REQUESTED: SegmentationRequested,
    INGESTED: SegmentationIngested,
    AUGMENT_REQUESTED: SegmentationIngested,
    AUGMENTED: SegmentationAugmented,
    INFERRED: SegmentationInferred,
    COMPLETED: SegmentationCompleted,
    FAILED: JobFailed,
}


class SegmentationCancelled(msgspec.Struct, frozen=True, kw_only=True):
    """The job's tenant cancelled it: stages skip its queued work, and no outputs stand for it. Added in 1.6."""

    by: str
    """The tenant (API key) that cancelled it."""
    reason: str = ""
