"""Request bodies, bounded whatever their transfer encoding.

Every route reads its body under the app's limit (`MASKLINE_MAX_UPLOAD_BYTES`), which litestar
enforces on the bytes received, a chunked body without a length included. The few routes that take
more (model weights, a federated site's update: up to `MASKLINE_MAX_MODEL_BYTES`) turn that limit
off, name their own in the route option `STREAMED_BODY`, and stream their body through `limited`
straight into the object store: never whole in memory, stopped at the first byte over the limit.
A test holds every route to one of the two (tests/services/gateway/test_routes.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Request

from maskline.services.gateway.core.errors import PayloadTooLarge

#: Route option naming the settings attribute that bounds a streamed body: `opt={STREAMED_BODY: "max_model_bytes"}`.
STREAMED_BODY = "streamed_body_limit"


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
