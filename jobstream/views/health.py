"""`GET /health` on every worker."""

from __future__ import annotations

import faust
from aiohttp import web as aioweb

from jobstream.settings import Settings
from jobstream.telemetry import Metrics, worker_name
from jobstream.views.base import JsonView


def register_health(app: faust.App, settings: Settings, metrics: Metrics) -> None:
    """Register the liveness endpoint: the worker is up and its event loop answers."""

    @app.page("/health")
    class Health(JsonView):
        route = "/health"

        async def get(self, request: aioweb.Request) -> aioweb.Response:
            return aioweb.json_response(
                {"status": "ok", "role": settings.role, "worker": worker_name(settings)}
            )

    Health.metrics = metrics
