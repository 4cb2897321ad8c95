"""The HTML pages, and the headers every answer carries so that a page cannot be framed (clickjacking),
its address (which may name models and datasets) does not leak to other sites as a referrer, and
a page runs only its own scripts: each page's inline scripts are allowed by their sha256 alone,
computed here from the files served, so an injected script never runs."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from litestar import MediaType, Response
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

PACKAGE = resources.files("maskline.services.gateway")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

#: What every answer says, whatever it is (JSON, a file, a problem).
EVERY_ANSWER = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
}


_WITHOUT_POLICY = {k: v for k, v in EVERY_ANSWER.items() if k != "Content-Security-Policy"}


@cache
def _page(name: str) -> tuple[bytes, str]:
    body = PACKAGE.joinpath(name).read_bytes()
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'" for script in _INLINE_SCRIPT.findall(body)
    )
    policy = (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return body, policy


def page(name: str) -> Response[bytes]:
    """One of the package's pages, with the policy that lets only its own scripts run."""
    body, policy = _page(name)
    return Response(body, media_type=MediaType.HTML, headers={"Content-Security-Policy": policy})


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: `EVERY_ANSWER` on each response, unless the route set its own (a page's policy)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        # The OpenAPI document's own viewers (/schema/...) load their scripts as litestar chose: no policy of ours.
        wanted = EVERY_ANSWER if not scope["path"].startswith("/schema") else _WITHOUT_POLICY

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in wanted.items() if k.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await app(scope, receive, with_headers)

    return middleware
