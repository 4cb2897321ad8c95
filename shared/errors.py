"""How a handler tells the runtime what to do with a message it could not process."""

from __future__ import annotations


class HandlerError(Exception):
    """Base of the errors a message handler raises on purpose."""

    code = "error"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class RetryableError(HandlerError):
    """A transient fault (storage, Triton, network): the message is nak'ed with a back-off delay."""

    code = "transient"


class PermanentError(HandlerError):
    """The message can never succeed: it is terminated, dead-lettered and its job marked failed."""

    code = "invalid"
