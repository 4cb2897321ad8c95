"""Types shared by every v1 contract."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal

import msgspec

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]

#: Key of a reference's rule in a field's `msgspec.Meta(extra=...)`, and its name in the JSON Schema.
REFERENCE = "maskline_reference"
REFERENCE_SCHEMA = "x-maskline-reference"
WrittenBy = Literal["publisher", "platform"]


def reference(*areas: str, by: WrittenBy, public: bool = False) -> msgspec.Meta:
    """The rule of a field that names stored bytes (an `ObjectRef`) or a dataset (a prefix string).

    The consumer runtime enforces it before any handler runs (`maskline.shared.references`):
    the object lies in one of `areas` of the subject's tenant (`<area>/<tenant>/...`; with `public`,
    the platform's public models too). `publisher`: whoever published the event chose the reference,
    so the stored bytes are checked against its size and sha256 as well. `platform`: only a service
    writes this field, on a subject no outside identity may publish (a test over the subject table
    holds that), so owner and area are what is checked here and the bytes when a service reads them.
    A test walks every payload of the subject table: a reference without a rule fails it.
    """
    rule = {"areas": list(areas), "written_by": by, "public": public}
    return msgspec.Meta(extra={REFERENCE: rule}, extra_json_schema={REFERENCE_SCHEMA: rule})


class ObjectRef(msgspec.Struct, frozen=True, kw_only=True):
    """A reference to bytes in object storage: the bus never carries the bytes themselves."""

    key: str
    size: Annotated[int, msgspec.Meta(ge=0)]
    sha256: Sha256
    content_type: str = "application/octet-stream"


#: What a publisher hands over: an image or weights it uploaded to its tenant's inputs.
SuppliedInput = Annotated[ObjectRef, reference("inputs", by="publisher")]
#: An image of one of the tenant's datasets, named by the publisher.
SuppliedDatasetFile = Annotated[ObjectRef, reference("datasets", by="publisher")]
#: Model weights named by the publisher: the tenant's own, or a public model of the platform's.
SuppliedModelWeights = Annotated[ObjectRef, reference("models", by="publisher", public=True)]
#: A federated site's update, stored under the federation owner's tenant.
SuppliedSiteUpdate = Annotated[ObjectRef, reference("federations", by="publisher")]
#: What the platform wrote for the tenant's job: its working images, predictions and outputs.
WrittenInput = Annotated[ObjectRef, reference("inputs", by="platform")]
WrittenOutput = Annotated[ObjectRef, reference("outputs", by="platform")]
WrittenModelFile = Annotated[ObjectRef, reference("models", by="platform")]
WrittenDatasetFile = Annotated[ObjectRef, reference("datasets", by="platform")]
#: `datasets/<tenant>/<name>/`: one of the tenant's datasets, named by the publisher (or recorded by the platform).
DatasetPrefix = Annotated[str, reference("datasets", by="publisher")]
RecordedDatasetPrefix = Annotated[str, reference("datasets", by="platform")]


class ModelRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    precision: str = "fp32"
    owner: str = ""
    """The tenant that owns the model version (empty before 1.3)."""
    alias: str | None = None
    """The alias the request resolved (none: it pinned a version). Added in 1.6."""
    canary: bool = False
    """The alias's canary served this request (its share of the alias's traffic). Added in 1.6."""


#: Longest file name kept (most file systems' limit).
MAX_FILENAME = 255


def display_filename(value: str | None) -> str | None:
    """A client's file name as it may be kept, shown and exported: its last path component in NFC,
    without control, format (bidi overrides, zero-width) or separator characters, at most
    MAX_FILENAME characters; None when nothing is left (`..`, only control characters)."""
    if value is None:
        return None
    name = unicodedata.normalize("NFC", value).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ" or ch == " ").strip()
    return None if name in ("", ".", "..") else name[:MAX_FILENAME]


class JobFailed(msgspec.Struct, frozen=True, kw_only=True):
    """A job ended without a result. Published on `<domain>.v1.failed`."""

    stage: str
    code: str
    """Machine-readable reason, e.g. `invalid_image`, `model_not_found`, `max_deliveries`."""
    reason: str
    """Human-readable explanation."""
    subject: str
    """The subject of the message whose handling failed."""
    model: ModelRef | None = None
    """The model version the job had reached when it failed (infer's failures), if any. Added in 1.13."""


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message a consumer gave up on; enough to inspect it and re-drive it."""

    consumer: str
    stream: str
    stream_seq: int
    subject: str
    deliveries: int
    code: str
    reason: str
    data: bytes
    headers: dict[str, str] = {}


VariantName = Literal["original", "rotate", "blur", "flip", "flop"]
ALL_VARIANTS: tuple[VariantName, ...] = ("original", "rotate", "blur", "flip", "flop")
Fusion = Literal["mean", "max", "vote"]


class Variant(msgspec.Struct, frozen=True, kw_only=True):
    """One augmentation with its parameters, recorded with every result made from it.

    flip = top-bottom mirror, flop = left-right mirror, rotate = counter-clockwise about the
    centre on the same canvas (exact quarter turns change the canvas instead), blur = Gaussian.
    """

    name: VariantName
    angle: float = 0.0
    sigma: float = 0.0


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """Where to tell a tenant that its jobs ended (the `webhooks` bucket: `<tenant>` for all its
    segmentations, `<tenant>.<job>` for one request's own URL). Added in 1.7."""

    url: str | None = None
    """None: the tenant keeps a signing secret for per-request URLs only."""
    secret: str
    """HMAC-SHA256 key of the `Maskline-Signature` header (shown to the tenant once)."""
    created: str
