"""Types shared by every v1 contract."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Sha256 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]


class ObjectRef(msgspec.Struct, frozen=True, kw_only=True):
    """A reference to bytes in object storage: the bus never carries the bytes themselves."""

    key: str
    size: Annotated[int, msgspec.Meta(ge=0)]
    sha256: Sha256
    content_type: str = "application/octet-stream"


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


class JobFailed(msgspec.Struct, frozen=True, kw_only=True):
    """A job ended without a result. Published on `<domain>.v1.failed`."""

    stage: str
    code: str
    """Machine-readable reason, e.g. `invalid_image`, `model_not_found`, `max_deliveries`."""
    reason: str
    """Human-readable explanation."""
    subject: str
    """The subject of the message whose handling failed."""


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
