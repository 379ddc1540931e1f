"""Client role: the web dashboard at `/`, plain files from the package (no CDN, no build step).

The page is a static shell; everything it shows comes from the API (`/api/...`), which it calls
with the browser session's token when the API asks for one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import faust
from aiohttp import web as aioweb

from jobstream.errors import NotFound
from jobstream.telemetry import Metrics
from jobstream.views.base import JsonView

STATIC = Path(__file__).parent / "static"
#: Every file the dashboard serves, with its type: nothing else under STATIC is reachable.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: The page loads only its own files and talks only to its own origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One file, read once at start."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def load(cls, name: str) -> Asset:
        """Read a file of the dashboard."""
        body = (STATIC / name).read_bytes()
        return cls(body, FILES[name], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')

    def response(self, request: aioweb.Request) -> aioweb.Response:
        """The file, or 304 when the browser has this version (it revalidates every time)."""
        headers = {**SECURITY_HEADERS, "ETag": self.etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == self.etag:
            return aioweb.Response(status=304, headers=headers)
        return aioweb.Response(
            body=self.body, headers={**headers, "Content-Type": self.content_type}
        )


def register_dashboard(app: faust.App, metrics: Metrics) -> None:
    """Serve the dashboard at `/` and its files at `/static/<name>`."""
    assets = {name: Asset.load(name) for name in FILES}

    class View(JsonView):
        pass

    View.metrics = metrics

    @app.page("/")
    class Dashboard(View):
        route = "/"

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            return assets["index.html"].response(request)

    @app.page("/static/{name}")
    class StaticFile(View):
        route = "/static/{name}"

        async def get(self, request: aioweb.Request, name: str) -> aioweb.Response:
            asset = assets.get(name)
            if asset is None or name == "index.html":
                raise NotFound(f"no dashboard file {name[:80]!r}")
            return asset.response(request)
