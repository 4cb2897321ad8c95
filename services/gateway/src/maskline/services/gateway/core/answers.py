"""What an operation answers besides its plain success, declared next to its handler as the route
option `opt={ANSWERS: Answers(...)}` and written into the OpenAPI document by `openapi.py`.

A handler declares what its own code does: the refusals it raises (`NotFound.coded("model_not_found")`,
errors.py), the other statuses its success can have, the headers it sends, a file or an event
stream it answers instead of JSON. (A raw body it reads itself is declared in bodies.py.) What every
route of a kind answers is derived from the route instead (openapi.py): its API key, parameters and
body, the parts it asks for (the bus, the object store), the admission guard, the idempotency layer.
tests/services/gateway/test_openapi.py reads each handler's code for the errors it can make and
fails on one that its operation does not document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIFormat, OpenAPIType

#: Route option holding an operation's `Answers`.
ANSWERS = "answers"
#: Headers a success may carry (their descriptions are in openapi.py).
LOCATION = "Location"
ETAG = "ETag"
#: A file's bytes, as a body or an answer.
BINARY = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class Refusal:
    """One answer an operation may give instead of its success: a status and the stable `code` of its
    problem+json. `code` None: a code decided at run time (a failed job's), which `note` names."""

    status: int
    code: str | None
    retry_after: bool = False
    """Sent with Retry-After (a 429 or 503 always is: problems.py)."""
    note: str = ""


@dataclass(frozen=True)
class Answers:
    refusals: tuple[Refusal, ...] = ()
    also: Mapping[int, str] = field(default_factory=dict)
    """Success statuses besides the route's own, and when (202 while a job still runs, 200 once it is done)."""
    files: tuple[str, ...] = ()
    """The success is a file of one of these media types: its bytes, not JSON of the handler's type."""
    events: Schema | None = None
    """The success is a stream of server-sent events (`text/event-stream`), each as this schema says."""
    headers: Mapping[str, bool] = field(default_factory=dict)
    """Headers the success carries (`LOCATION`, `ETAG`, ...; openapi.py describes each): name → always sent."""
