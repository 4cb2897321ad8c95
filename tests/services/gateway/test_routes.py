"""Rules every route of the gateway keeps, read off the assembled application (no servers)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from litestar.handlers import HTTPRouteHandler

from maskline.contracts import routes
from maskline.services.gateway.core.app import create_app
from maskline.services.gateway.core.bodies import STREAMED_BODY
from maskline.services.gateway.settings import GatewaySettings

pytestmark = pytest.mark.unit


def handlers() -> list[HTTPRouteHandler]:
    app = create_app(SimpleNamespace(settings=GatewaySettings()))  # type: ignore[arg-type]
    return [h for route in app.routes for h in getattr(route, "route_handlers", []) if isinstance(h, HTTPRouteHandler)]


def test_every_route_reads_its_body_under_a_limit() -> None:
    """The app's limit (litestar counts the bytes received, chunked included), or a streamed one of its own."""
    found = handlers()
    assert len(found) >= 70
    for handler in found:
        limit = handler.resolve_request_max_body_size()
        streamed = handler.opt.get(STREAMED_BODY)
        assert (limit is not None and math.isfinite(limit)) or (streamed and hasattr(GatewaySettings(), streamed)), (
            handler.paths,
            limit,
        )


def test_the_paths_clients_call_are_exactly_the_routes_served() -> None:
    """`contracts/routes.py` is where the clients read every path: it lists what the gateway serves, no more, no less."""
    app = create_app(SimpleNamespace(settings=GatewaySettings()))  # type: ignore[arg-type]
    served = set(app.openapi_schema.to_schema()["paths"])
    assert served == set(routes.ALL), (sorted(served - routes.ALL), sorted(routes.ALL - served))
