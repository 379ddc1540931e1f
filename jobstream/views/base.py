"""What every jobstream view shares: JSON error bodies and request metrics."""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
from aiohttp import web as aioweb
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from jobstream.errors import InvalidJob, NotFound, StorageError
from jobstream.telemetry import Metrics, context_from, tracer

log = logging.getLogger(__name__)


def problem(status: int, error: str, message: str) -> aioweb.Response:
    """A JSON error response: `{"error": <code>, "message": <what went wrong>}`."""
    return aioweb.json_response({"error": error, "message": message}, status=status)


class JsonView(faust.web.View):
    """A view whose errors leave as JSON with the right status, never as a bare 500."""

    #: Set by the registering code: the route template used as a metric label.
    route: str = ""
    metrics: Metrics

    async def dispatch(self, request: Any) -> Any:
        """Run the handler, turning jobstream errors into JSON problems and timing the request."""
        started = time.perf_counter()
        method = request.method
        span = tracer.start_span(
            f"{method} {self.route}",
            context=context_from(request.headers.items()),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": self.route},
        )
        try:
            with trace.use_span(span, end_on_exit=False):
                response = await super().dispatch(request)
        except NotFound as exc:
            response = problem(404, "not_found", str(exc))
        except InvalidJob as exc:
            response = problem(exc.status, _code(exc.status), str(exc))
        except StorageError as exc:
            log.warning("storage unavailable: %s", exc)
            response = problem(503, "unavailable", "the database is unavailable; retry later")
        except Exception:
            log.exception("unhandled error in %s %s", method, request.path)
            response = problem(500, "internal", "internal error; it has been logged")
        span.set_attribute("http.response.status_code", response.status)
        span.end()
        self.metrics.http_requests.labels(self.route, method, str(response.status)).inc()
        self.metrics.http_seconds.labels(self.route, method).observe(time.perf_counter() - started)
        return response


def _code(status: int) -> str:
    return {413: "too_large", 415: "unsupported_media_type"}.get(status, "bad_request")


@aioweb.middleware
async def json_errors(request: aioweb.Request, handler: Any) -> aioweb.StreamResponse:
    """Unknown routes and methods answer JSON too (aiohttp's defaults are plain text)."""
    try:
        return await handler(request)
    except aioweb.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
