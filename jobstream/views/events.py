"""Client role: `GET /api/jobs/{id}/events` and `GET /api/events` (Server-Sent Events).

How they behave is `jobstream.views.watch`'s; `GET /api/jobs/{id}?wait=` is there too.
"""

from __future__ import annotations

import faust
from aiohttp import web as aioweb

from jobstream.jobfeed import JobFeed
from jobstream.settings import Settings
from jobstream.telemetry import Metrics
from jobstream.views.base import JsonView
from jobstream.views.jobs import job_id_from
from jobstream.views.watch import STREAM_HEADERS, WATCH, JobReader, Watch


def register_event_views(
    app: faust.App, settings: Settings, jobs: JobReader, feed: JobFeed, metrics: Metrics
) -> Watch:
    """Register the event streams, and the Watch that `?wait=` uses; close them all at shutdown."""
    watch = Watch(feed.hub, jobs, settings, feed.metrics)
    app.web.web_app[WATCH] = watch

    async def close_streams(_: aioweb.Application) -> None:
        feed.hub.close()  # every stream and wait ends now, instead of holding up the shutdown

    app.web.web_app.on_shutdown.append(close_streams)

    class View(JsonView):
        pass

    View.metrics = metrics

    @app.page("/api/jobs/{job_id}/events")
    class JobEvents(View):
        route = "/api/jobs/{job_id}/events"

        async def get(self, request: aioweb.Request, job_id: str) -> aioweb.StreamResponse:
            return await watch.stream(request, job_id_from(job_id))

        async def head(self, request: aioweb.Request, job_id: str) -> aioweb.Response:
            await jobs.get_job(job_id_from(job_id))  # what GET would say, without the stream
            return aioweb.Response(headers=STREAM_HEADERS)

    @app.page("/api/events")
    class Events(View):
        route = "/api/events"

        async def get(self, request: aioweb.Request) -> aioweb.StreamResponse:
            return await watch.stream(request, None)

        async def head(self, request: aioweb.Request) -> aioweb.Response:
            return aioweb.Response(headers=STREAM_HEADERS)

    return watch
