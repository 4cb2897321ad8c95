"""The console's pages for people: sign-in, account, segment, jobs, files, datasets, models,
federations (the quality, experiments, visualizer, compare and operations pages are served beside
the API they show). Each is a static file (no build
step) over the same JSON API, with the shared `console.js` (who is signed in, the navigation bar,
CSRF) and `console.css`; the session cookie, never an address, says who the visitor is."""

from __future__ import annotations

from importlib import resources

from litestar import Controller, MediaType, Response, get
from litestar.response import Redirect

from maskline.services.gateway.core.errors import NotFound
from maskline.services.gateway.core.pages import page

PACKAGE = resources.files("maskline.services.gateway")
#: The only files `/static/console/` serves.
SHARED = {"console.js": "text/javascript", "console.css": "text/css"}


class ConsoleController(Controller):
    tags = ["console"]
    include_in_schema = False

    @get("/", media_type=MediaType.HTML)
    async def home(self) -> Redirect:
        return Redirect("/segment")

    @get("/sign-in", media_type=MediaType.HTML)
    async def sign_in_page(self) -> Response[bytes]:
        return page("sign-in.html")

    @get("/account", media_type=MediaType.HTML)
    async def account_page(self) -> Response[bytes]:
        return page("account.html")

    @get("/segment", media_type=MediaType.HTML)
    async def segment_page(self) -> Response[bytes]:
        return page("segment.html")

    @get("/jobs", media_type=MediaType.HTML)
    async def jobs_page(self) -> Response[bytes]:
        return page("jobs.html")

    @get("/files", media_type=MediaType.HTML)
    async def files_page(self) -> Response[bytes]:
        return page("files.html")

    @get("/datasets", media_type=MediaType.HTML)
    async def datasets_page(self) -> Response[bytes]:
        return page("datasets.html")

    @get("/models", media_type=MediaType.HTML)
    async def models_page(self) -> Response[bytes]:
        return page("models.html")

    @get("/federations", media_type=MediaType.HTML)
    async def federations_page(self) -> Response[bytes]:
        return page("federations.html")

    @get("/static/console/{name:str}")
    async def shared(self, name: str) -> Response[bytes]:
        if name not in SHARED:
            raise NotFound(f"no file {name}")
        body = PACKAGE.joinpath("static", "console", name).read_bytes()
        return Response(body, media_type=SHARED[name], headers={"Cache-Control": "no-cache"})
