"""Gateway errors. Each maps to one problem+json response in `problems.py`; handlers only raise."""

from __future__ import annotations

from maskline.services.gateway.core.answers import Refusal


class GatewayError(Exception):
    """Base: `status` is the HTTP status, `code` a stable machine-readable reason."""

    status = 400
    code = "bad_request"
    title = "Bad request"
    retry_after_s: float | None = None

    def __init__(self, detail: str, *, code: str | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s

    @classmethod
    def coded(cls, *codes: str, retry_after: bool = False, others: str = "") -> tuple[Refusal, ...]:
        """The refusals of this class with these codes (none: the class's own), as a handler declares
        them for its OpenAPI document (answers.py); `others`: codes decided at run time, in words."""
        if not codes and not others:
            codes = (cls.code,)
        refusals = tuple(Refusal(cls.status, code, retry_after) for code in codes)
        return refusals + ((Refusal(cls.status, None, retry_after, others),) if others else ())


class BadRequest(GatewayError):
    """Malformed request: headers, parameters or body the API cannot read."""


class Unauthorized(GatewayError):
    """No API key, or one that maps to no tenant."""

    status, code, title = 401, "unauthorized", "Unauthorized"


class NotFound(GatewayError):
    """No such resource for this tenant (another tenant's job is also 'not found')."""

    status, code, title = 404, "not_found", "Not found"


class PayloadTooLarge(GatewayError):
    """Body or pixel count over the configured limit."""

    status, code, title = 413, "too_large", "Payload too large"


class UnsupportedMedia(GatewayError):
    """The upload is not an image format we accept."""

    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class Unprocessable(GatewayError):
    """Well-formed request that cannot be processed (bad options, undecodable image, failed job)."""

    status, code, title = 422, "unprocessable", "Unprocessable"


class Forbidden(GatewayError):
    """The tenant is known but may not do this (an owner-only or operator-only action)."""

    status, code, title = 403, "forbidden", "Forbidden"


class Conflict(GatewayError):
    """The request conflicts with the resource's state (a model still served, a request in progress)."""

    status, code, title = 409, "conflict", "Conflict"


class TooManyRequests(GatewayError):
    """A tenant's own limit (rate, unfinished jobs): retry after the Retry-After header's seconds."""

    status, code, title = 429, "too_many_requests", "Too many requests"


class Unavailable(GatewayError):
    """A dependency (NATS, storage) is not reachable now; retry later."""

    status, code, title = 503, "unavailable", "Service unavailable"
