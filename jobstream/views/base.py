"""What every jobstream view shares: JSON error bodies and request metrics."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Iterable
from typing import Any

import faust
from aiohttp import web as aioweb
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from jobstream.dbmetrics import origin
from jobstream.errors import InvalidJob, NotFound, StorageError
from jobstream.telemetry import Metrics, context_from, tracer

log = logging.getLogger(__name__)


def problem(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> aioweb.Response:
    """A JSON error response: `{"error": <code>, "message": <what went wrong>}`."""
    return aioweb.json_response(
        {"error": error, "message": message}, status=status, headers=headers
    )


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
            # the API's own reads are labelled apart in mongo_commands_total (a job's cost
            # then leaves out how often someone looked at it)
            label = "api-read" if method in ("GET", "HEAD") else "api"
            with trace.use_span(span, end_on_exit=False), origin(label):
                response = await super().dispatch(request)
        except NotFound as exc:
            response = problem(404, "not_found", str(exc))
        except InvalidJob as exc:
            response = problem(exc.status, _code(exc.status), str(exc))
        except StorageError as exc:
            log.warning("storage unavailable: %s", exc)
            response = problem(
                503,
                "unavailable",
                "the database is full: nothing can be stored until space is freed; retry later"
                if exc.full
                else "the database is unavailable; retry later",
            )
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
        # a 405 keeps aiohttp's Allow header (RFC 9110 requires it)
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason, allow)


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps a token's length out of the comparison's timing.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def needs_token(path: str) -> bool:
    """Whether a (decoded) request path is the API's: `/api` and everything below it.

    The probes (`/health`, `/ready`), `/metrics` and the dashboard's static shell stay open.
    aiohttp routes on a less decoded form of the same path (`rel_url.path_safe`), so every
    request it routes to an `/api` view passes here with a path under `/api/`.
    """
    return path == "/api" or path.startswith("/api/")


def bearer_auth(tokens: Iterable[str], metrics: Metrics) -> Any:
    """A middleware refusing (JSON 401) every API request without one of `tokens`.

    Every token is compared, in constant time, whatever matched: the answer's timing says
    nothing about which token, or how much of one, was right.
    """
    expected = [_digest(token) for token in tokens]

    def authorized(header: str | None) -> bool:
        scheme, _, credentials = (header or "").strip().partition(" ")
        presented = _digest(credentials.strip())
        matched = False
        for digest in expected:
            matched |= hmac.compare_digest(presented, digest)
        return matched and scheme.lower() == "bearer"

    @aioweb.middleware
    async def middleware(request: aioweb.Request, handler: Any) -> aioweb.StreamResponse:
        if not needs_token(request.path) or authorized(request.headers.get("Authorization")):
            return await handler(request)
        route = request.match_info.route.resource
        label = route.canonical if route is not None else "unmatched"
        metrics.http_requests.labels(label, request.method, "401").inc()
        reason = "missing" if "Authorization" not in request.headers else "not accepted"
        return problem(
            401,
            "unauthorized",
            f"bearer token {reason}: send Authorization: Bearer <token>",
            {"WWW-Authenticate": 'Bearer realm="jobstream"'},
        )

    return middleware
