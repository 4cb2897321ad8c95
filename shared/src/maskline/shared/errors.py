"""How a handler tells the runtime what to do with a message it could not process."""

from __future__ import annotations

import re
from typing import Any

#: An object's repr (`<PIL.PngImagePlugin.PngImageFile image mode=RGB size=8x8 at 0x7f...>`): internal
#: names and a memory address, never meant for a client.
_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")


def public_reason(text: str) -> str:
    """A reason as clients read it (problem details, failed jobs, dead letters): no object reprs."""
    return _REPR.sub("<object>", text)


class HandlerError(Exception):
    """Base of the errors a message handler raises on purpose."""

    code = "error"
    #: The model version (`common_v1.ModelRef`) the handler had chosen when it failed: the failed-job
    #: event names it, so the version's error rate counts it (docs/monitoring.md).
    model: Any = None

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


class DependencyUnavailable(RetryableError):
    """A dependency (Triton, the object store, the bus) does not answer. The message is held, not
    failed: its consumer pauses (stops fetching, turns not ready), retries it until the dependency
    is back, and none of the message's deliveries are used up."""

    code = "dependency_unavailable"
    dependency = "a dependency"

    def __init__(self, reason: str, *, dependency: str | None = None, code: str | None = None) -> None:
        super().__init__(reason, code=code)
        if dependency is not None:
            self.dependency = dependency


class DeadlineExceeded(PermanentError):
    """The job's deadline passed before this stage could finish it."""

    code = "deadline_exceeded"
