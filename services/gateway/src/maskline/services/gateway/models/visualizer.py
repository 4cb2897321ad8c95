"""Pages for model owners. The model visualizer: one static page that draws a version's graph with Cytoscape.js and dagre
(vendored, served from here), each layer coloured by its STEP error, with the layer's STEP and
CROSS figures on a click. The comparison page: versions side by side on one dataset, with the
pictures of where two versions' masks differ. The experiments page: an experiment's training runs
and their curves, drawn by uPlot. All read the same JSON the API gives."""

from __future__ import annotations

from importlib import resources

from litestar import Controller, MediaType, Response, get

from maskline.services.gateway.core.errors import NotFound
from maskline.services.gateway.core.pages import page

PACKAGE = resources.files("maskline.services.gateway")
#: The only files `/static/vendor/` serves (nothing else of the package is reachable).
VENDORED = ("cytoscape.min.js", "cytoscape-dagre.min.js", "uPlot.iife.min.js", "uPlot.min.css")


class VisualizerController(Controller):
    tags = ["quantization"]

    @get(
        "/visualizer",
        summary="Model visualizer: ?model=NAME&version=V[&owner=O] (signed in)",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def page(self) -> Response[bytes]:
        return page("visualizer.html")

    @get(
        "/compare",
        summary="Versions side by side: ?model=NAME&versions=1,2&dataset=D (signed in)",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def compare_page(self) -> Response[bytes]:
        return page("compare.html")

    @get(
        "/experiments",
        summary="An experiment's runs: a table and their loss and validation curves (uPlot): ?experiment=E",
        media_type=MediaType.HTML,
        include_in_schema=False,
    )
    async def experiments_page(self) -> Response[bytes]:
        return page("experiments.html")

    @get("/static/vendor/{name:str}", include_in_schema=False)
    async def vendored(self, name: str) -> Response[bytes]:
        if name not in VENDORED:
            raise NotFound(f"no file {name}")
        body = PACKAGE.joinpath("static", "vendor", name).read_bytes()
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(body, media_type=kind, headers={"Cache-Control": "public, max-age=86400"})
