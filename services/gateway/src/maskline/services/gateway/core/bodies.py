"""Request bodies, bounded whatever their transfer encoding.

Every route reads its body under the app's limit (`MASKLINE_MAX_UPLOAD_BYTES`), which litestar
enforces on the bytes received, a chunked body without a length included. The few routes that take
more (model weights, a federated site's update: up to `MASKLINE_MAX_MODEL_BYTES`) turn that limit
off, name their own in the route option `STREAMED_BODY`, and stream their body through `limited`
straight into the object store: never whole in memory, stopped at the first byte over the limit.
A test holds every route to one of the two (tests/services/gateway/test_routes.py).

A route that reads its body itself (`request.body()`, `request.stream()`: an image, weights, an
inference request) rather than as a typed `data` parameter says what it takes in the route option
`RAW_BODY`, for the OpenAPI document (openapi.py); a test holds every such route to it
(tests/services/gateway/test_openapi.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.openapi.spec import Parameter, Reference, Schema

from maskline.services.gateway.core.answers import BINARY
from maskline.services.gateway.core.errors import PayloadTooLarge

#: Route option naming the settings attribute that bounds a streamed body: `opt={STREAMED_BODY: "max_model_bytes"}`.
STREAMED_BODY = "streamed_body_limit"
#: Route option of a handler that reads its body itself: `opt={RAW_BODY: RawBody(...)}`.
RAW_BODY = "raw_body"
#: Any of the image formats the gateway accepts (MASKLINE_ALLOWED_FORMATS): the bytes are sniffed, not the type.
IMAGE = "image/*"


@dataclass(frozen=True)
class RawBody:
    description: str
    media: Mapping[str, Schema | Reference]
    """Media type → schema of the body (`raw(...)`: bytes)."""
    headers: tuple[Parameter, ...] = ()
    """Request headers that frame the body."""


def raw(description: str, *media_types: str) -> RawBody:
    """A body of bytes of any of `media_types`."""
    return RawBody(description, dict.fromkeys(media_types, BINARY))


def limit_of(request: Request[Any, Any, Any], settings: Any) -> int:
    """The byte limit the route declares for its streamed body."""
    return int(getattr(settings, request.route_handler.opt[STREAMED_BODY]))


async def limited(
    request: Request[Any, Any, Any], limit: int, too_large: Callable[[int], PayloadTooLarge]
) -> AsyncIterator[bytes]:
    """The body's chunks, refused at once when a declared length is over `limit`, else at the
    first chunk that takes it over (a chunked body without a length)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared))
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise too_large(seen)
        yield chunk
